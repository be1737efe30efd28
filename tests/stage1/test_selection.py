"""Stage 1 selection rules and Table-2 statistics on tiny hand-made arrays."""

import json

import numpy as np
import pytest

from tf_twostage.stage1.selection import (
    corrected_posteriors,
    select_confident_labels,
    select_with_clean_classifiers,
    selection_statistics,
)


def _two_class_probs(p_class0):
    """[N, 2] probabilities whose column 0 is `p_class0`."""
    p = np.asarray(p_class0, dtype=np.float64)
    return np.stack([p, 1.0 - p], axis=1)


# --- select_confident_labels ---------------------------------------------------------------------


def test_threshold_keeps_equal_and_drops_just_below():
    probs = _two_class_probs([0.9, np.nextafter(0.9, 0.0), 0.95, 0.6])
    kept = select_confident_labels(probs, [0, 0, 0, 0], threshold=0.9, floor_fraction=0.0)
    np.testing.assert_array_equal(kept, [True, False, True, False])


def test_floor_zero_is_pure_threshold():
    probs = _two_class_probs([0.8, 0.7, 0.6, 0.55])
    kept = select_confident_labels(probs, [0, 0, 0, 0], threshold=0.9, floor_fraction=0.0)
    assert not kept.any()


def test_floor_tops_up_in_decreasing_confidence_order():
    # 10 examples labeled 0, none >= 0.9; floor 0.3 -> the 3 most confident are kept.
    p0 = [0.6, 0.85, 0.7, 0.55, 0.8, 0.65, 0.75, 0.52, 0.58, 0.62]
    kept = select_confident_labels(_two_class_probs(p0), [0] * 10, threshold=0.9, floor_fraction=0.3)
    np.testing.assert_array_equal(np.flatnonzero(kept), [1, 4, 6])


def test_floor_tops_up_after_confident_ones():
    # 1 confident of 10; floor 0.3 needs 3: the confident one plus the next two.
    p0 = [0.95, 0.6, 0.85, 0.7, 0.55, 0.8, 0.65, 0.52, 0.58, 0.62]
    kept = select_confident_labels(_two_class_probs(p0), [0] * 10, threshold=0.9, floor_fraction=0.3)
    np.testing.assert_array_equal(np.flatnonzero(kept), [0, 2, 5])


def test_floor_does_not_cut_confident_examples():
    p0 = [0.95, 0.99, 0.91, 0.6]
    kept = select_confident_labels(_two_class_probs(p0), [0] * 4, threshold=0.9, floor_fraction=0.25)
    np.testing.assert_array_equal(kept, [True, True, True, False])


def test_floor_top_up_only_among_agreeing_predictions_when_asked():
    # Labeled 0 throughout; positions 0-2 are predicted 1. Floor 1.0 wants all 5 but only 2 agree.
    p0 = [0.45, 0.3, 0.1, 0.6, 0.51]
    kept = select_confident_labels(_two_class_probs(p0), [0] * 5, threshold=0.9, floor_fraction=1.0,
                                   top_up="agreeing")
    np.testing.assert_array_equal(kept, [False, False, False, True, True])


def test_floor_top_up_from_the_whole_class_ranking_by_default():
    # Floor 0.8 wants 4 of 5: the two agreeing ones and then the best-ranked disagreeing ones.
    p0 = [0.45, 0.3, 0.1, 0.6, 0.51]
    kept = select_confident_labels(_two_class_probs(p0), [0] * 5, threshold=0.9, floor_fraction=0.8)
    np.testing.assert_array_equal(kept, [True, True, False, True, True])


def test_floor_counts_all_labeled_examples_of_the_class():
    # n_c = 10 (of which only 4 agree); ceil(0.2 * 10) = 2 are kept, not ceil(0.2 * 4) = 1.
    p0 = [0.6, 0.7, 0.8, 0.55] + [0.1] * 6
    kept = select_confident_labels(_two_class_probs(p0), [0] * 10, threshold=0.9, floor_fraction=0.2)
    np.testing.assert_array_equal(np.flatnonzero(kept), [1, 2])


def test_floor_is_ceiled_without_float_error():
    # 0.1 * 30 is 3.0000000000000004 in floating point; the floor must still be 3.
    p0 = np.linspace(0.8, 0.6, 30)
    kept = select_confident_labels(_two_class_probs(p0), [0] * 30, threshold=0.9, floor_fraction=0.1)
    np.testing.assert_array_equal(np.flatnonzero(kept), [0, 1, 2])
    kept = select_confident_labels(_two_class_probs(p0[:25]), [0] * 25, threshold=0.9, floor_fraction=0.1)
    assert kept.sum() == 3  # ceil(2.5)


def test_ties_broken_by_lower_position_first():
    p0 = [0.7, 0.8, 0.7, 0.8, 0.7]
    kept = select_confident_labels(_two_class_probs(p0), [0] * 5, threshold=0.9, floor_fraction=0.6)
    np.testing.assert_array_equal(kept, [True, True, False, True, False])
    again = select_confident_labels(_two_class_probs(p0), [0] * 5, threshold=0.9, floor_fraction=0.6)
    np.testing.assert_array_equal(again, kept)


def test_threshold_one_with_floor_keeps_top_k_only():
    p0 = [0.99, 0.7, 0.999, 0.8, 0.6, 0.95]
    kept = select_confident_labels(_two_class_probs(p0), [0] * 6, threshold=1.0, floor_fraction=0.5)
    np.testing.assert_array_equal(np.flatnonzero(kept), [0, 2, 5])


def test_class_with_no_agreeing_example_keeps_only_its_floor():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.95, 0.05, 0.0], [0.1, 0.6, 0.3]])
    labels = np.array([0, 2, 0, 2])  # class 2 is never predicted
    kept = select_confident_labels(probs, labels, threshold=0.9, floor_fraction=0.5, top_up="agreeing")
    np.testing.assert_array_equal(kept, [True, False, True, False])
    kept = select_confident_labels(probs, labels, threshold=0.9, floor_fraction=0.5)
    np.testing.assert_array_equal(kept, [True, False, True, True])  # its best-ranked half: P(2|x) = 0.3
    assert not select_confident_labels(probs, labels, threshold=0.9, floor_fraction=0.0)[[1, 3]].any()


def test_unknown_top_up_pool_is_refused():
    with pytest.raises(ValueError, match="top_up must be one of class, agreeing; got 'all'"):
        select_confident_labels(_two_class_probs([0.5]), [0], top_up="all")


def test_empty_class_does_not_crash():
    probs = np.array([[0.95, 0.05, 0.0], [0.1, 0.9, 0.0]])
    kept = select_confident_labels(probs, np.array([0, 1]), threshold=0.9, floor_fraction=0.5)
    np.testing.assert_array_equal(kept, [True, True])
    assert kept.dtype == np.bool_


def test_classes_are_selected_independently():
    probs = np.array([
        [0.95, 0.05, 0.00],
        [0.60, 0.40, 0.00],
        [0.00, 0.70, 0.30],
        [0.00, 0.55, 0.45],
        [0.00, 0.20, 0.80],
    ])
    labels = np.array([0, 0, 1, 1, 2])
    kept = select_confident_labels(probs, labels, threshold=0.9, floor_fraction=0.5)
    np.testing.assert_array_equal(kept, [True, False, True, False, True])


def test_no_examples_returns_empty_mask():
    kept = select_confident_labels(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    assert kept.shape == (0,) and kept.dtype == np.bool_


# --- select_with_clean_classifiers --------------------------------------------------------------


def test_clean_classifier_rule_at_its_threshold():
    scores = np.array([
        [0.5, 0.9],
        [np.nextafter(0.5, 0.0), 0.9],
        [0.9, 0.2],
        [0.1, 0.7],
    ])
    labels = np.array([0, 0, 1, 1])
    kept = select_with_clean_classifiers(scores, labels, threshold=0.5)
    np.testing.assert_array_equal(kept, [True, False, False, True])


def test_clean_classifier_rule_reads_only_the_noisy_label_column():
    scores = np.array([[0.1, 0.99, 0.99], [0.6, 0.0, 0.0]])
    kept = select_with_clean_classifiers(scores, [0, 0], threshold=0.5)
    np.testing.assert_array_equal(kept, [False, True])


# --- selection_statistics -----------------------------------------------------------------------


def _hand_made():
    noisy = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    clean = np.array([0, 1, 0, 1, 0, 1, 1, 1])  # wrong at positions 1, 4, 7
    kept = np.array([True, True, False, True, True, False, True, False])
    return kept, noisy, clean


def test_statistics_with_clean_labels_hand_computed():
    kept, noisy, clean = _hand_made()
    stats = selection_statistics(kept, noisy, clean, num_classes=3)
    # 5 kept of 8: correct at 0, 3, 6; incorrect at 1, 4.
    assert stats["num_examples"] == 8
    assert stats["kept_fraction"] == pytest.approx(5 / 8)
    assert stats["unlabeled_fraction"] == pytest.approx(3 / 8)
    assert stats["kept_correct_fraction"] == pytest.approx(3 / 8)
    assert stats["kept_incorrect_fraction"] == pytest.approx(2 / 8)
    assert stats["noise_rate_before"] == pytest.approx(3 / 8)
    assert stats["noise_rate_after"] == pytest.approx(2 / 5)
    assert stats["per_class"] == [
        {"class": 0, "labeled": 4, "kept": 2, "kept_correct": 1, "kept_incorrect": 1},
        {"class": 1, "labeled": 4, "kept": 3, "kept_correct": 2, "kept_incorrect": 1},
        {"class": 2, "labeled": 0, "kept": 0, "kept_correct": 0, "kept_incorrect": 0},
    ]
    json.dumps(stats)


def test_statistics_without_clean_labels_has_no_correctness_keys():
    kept, noisy, _ = _hand_made()
    stats = selection_statistics(kept, noisy)
    assert set(stats) == {"num_examples", "kept_fraction", "unlabeled_fraction", "per_class"}
    assert stats["per_class"] == [
        {"class": 0, "labeled": 4, "kept": 2},
        {"class": 1, "labeled": 4, "kept": 3},
    ]
    json.dumps(stats)


def test_statistics_values_are_plain_python_numbers():
    kept, noisy, clean = _hand_made()
    stats = selection_statistics(kept, noisy, clean)
    for key, value in stats.items():
        if key != "per_class":
            assert type(value) in (int, float), key
    for row in stats["per_class"]:
        assert all(type(v) is int for v in row.values())


def test_statistics_noise_rate_after_is_zero_when_nothing_kept():
    _, noisy, clean = _hand_made()
    stats = selection_statistics(np.zeros(8, dtype=bool), noisy, clean)
    assert stats["noise_rate_after"] == 0.0
    assert stats["kept_fraction"] == 0.0 and stats["unlabeled_fraction"] == 1.0


def test_statistics_of_empty_training_set():
    stats = selection_statistics(np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64), num_classes=2)
    assert stats["num_examples"] == 0 and stats["kept_fraction"] == 0.0
    assert [row["labeled"] for row in stats["per_class"]] == [0, 0]


def test_statistics_of_a_selection_rule_end_to_end():
    probs = np.array([[0.95, 0.05], [0.3, 0.7], [0.2, 0.8], [0.05, 0.95]])
    noisy, clean = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    kept = select_confident_labels(probs, noisy, threshold=0.9, floor_fraction=0.5)
    stats = selection_statistics(kept, noisy, clean)
    assert stats["kept_correct_fraction"] == pytest.approx(2 / 4)
    assert stats["kept_incorrect_fraction"] == 0.0


# --- validation ----------------------------------------------------------------------------------

_PROBS = np.array([[0.9, 0.1], [0.2, 0.8]])
_LABELS = np.array([0, 1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(probabilities=np.array([0.9, 0.1])),
         r"probabilities must be a 2-D array \[N, C\], got shape \(2,\)"),
        (dict(probabilities=np.array([[np.nan, 1.0], [0.2, 0.8]])), r"probabilities must be finite, got nan"),
        (dict(probabilities=np.array([[np.inf, 1.0], [0.2, 0.8]])), r"probabilities must be finite, got inf"),
        (dict(probabilities=np.array([[-0.1, 1.1], [0.2, 0.8]])),
         r"probabilities must be non-negative, got -0.1"),
        (dict(probabilities=np.array([["a", "b"], ["c", "d"]])), r"probabilities must hold real numbers"),
        (dict(noisy_labels=np.array([[0, 1]])),
         r"noisy_labels must be a 1-D array \[N\], got shape \(1, 2\)"),
        (dict(noisy_labels=np.array([0.0, 1.0])),
         r"noisy_labels must hold integer class ids, got dtype float64"),
        (dict(noisy_labels=np.array([0, 1, 1])), r"noisy_labels must have length 2 .*got 3"),
        (dict(noisy_labels=np.array([0, 2])), r"noisy_labels must hold class ids in \[0, 2\), got 2"),
        (dict(noisy_labels=np.array([-1, 0])), r"noisy_labels must hold class ids in \[0, 2\), got -1"),
        (dict(threshold=1.5), r"threshold must be in \[0, 1\], got 1.5"),
        (dict(threshold=-0.1), r"threshold must be in \[0, 1\], got -0.1"),
        (dict(threshold=float("nan")), r"threshold must be in \[0, 1\], got nan"),
        (dict(threshold="high"), r"threshold must be a number in \[0, 1\], got 'high'"),
        (dict(floor_fraction=1.2), r"floor_fraction must be in \[0, 1\], got 1.2"),
        (dict(floor_fraction=-0.5), r"floor_fraction must be in \[0, 1\], got -0.5"),
    ],
)
def test_confident_rule_rejects_bad_input(kwargs, message):
    args = dict(probabilities=_PROBS, noisy_labels=_LABELS, threshold=0.9, floor_fraction=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        select_confident_labels(**args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scores=np.array([0.9, 0.1])), r"scores must be a 2-D array \[N, C\], got shape \(2,\)"),
        (dict(scores=np.array([[np.nan, 0.1], [0.2, 0.8]])), r"scores must be finite, got nan"),
        (dict(scores=np.array([[-0.5, 0.1], [0.2, 0.8]])), r"scores must be non-negative, got -0.5"),
        (dict(scores=np.array([[2.5, 0.1], [0.2, 0.8]])), r"scores must be in \[0, 1\], got 2.5"),
        (dict(noisy_labels=np.array([0, 5])), r"noisy_labels must hold class ids in \[0, 2\), got 5"),
        (dict(noisy_labels=np.array([0])), r"noisy_labels must have length 2 .*got 1"),
        (dict(threshold=2.0), r"threshold must be in \[0, 1\], got 2.0"),
    ],
)
def test_clean_classifier_rule_rejects_bad_input(kwargs, message):
    args = dict(scores=_PROBS, noisy_labels=_LABELS, threshold=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        select_with_clean_classifiers(**args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kept=np.array([1, 0])),
         r"kept must be a 1-D boolean array \[N\], got shape \(2,\) dtype int64"),
        (dict(kept=np.array([[True, False]])), r"kept must be a 1-D boolean array"),
        (dict(noisy_labels=np.array([0, 1, 1])), r"noisy_labels must have length 2 .*got 3"),
        (dict(noisy_labels=np.array([0, -2])), r"noisy_labels must hold class ids >= 0, got -2"),
        (dict(clean_labels=np.array([0])), r"clean_labels must have length 2 .*got 1"),
        (dict(clean_labels=np.array([0, 3]), num_classes=2),
         r"clean_labels must hold class ids in \[0, 2\), got 3"),
        (dict(noisy_labels=np.array([0, 2]), num_classes=2),
         r"noisy_labels must hold class ids in \[0, 2\), got 2"),
        (dict(num_classes=0), r"num_classes must be a positive integer or None, got 0"),
        (dict(num_classes=2.5), r"num_classes must be a positive integer or None, got 2.5"),
    ],
)
def test_statistics_rejects_bad_input(kwargs, message):
    args = dict(kept=np.array([True, False]), noisy_labels=_LABELS, clean_labels=None, num_classes=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        selection_statistics(**args)


def test_corrected_posteriors_undo_a_known_flip():
    # True classes 0 and 1; 60% of the 0s are labeled 1. A model of the noisy labels gives a true 0
    # P(noisy) = (0.4, 0.6): it looks like a 1, but the corrected posterior says 0.
    transition = np.array([[0.4, 0.6], [0.0, 1.0]])
    noisy = np.array([[0.4, 0.6], [0.0, 1.0], [0.2, 0.8]])
    clean = corrected_posteriors(noisy, transition)
    np.testing.assert_allclose(clean, [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], atol=1e-6)
    kept = select_confident_labels(clean, np.array([0, 1, 1]), threshold=0.9, floor_fraction=0.0)
    np.testing.assert_array_equal(kept, [True, True, False])


def test_corrected_posteriors_are_the_identity_without_noise_and_clip_negatives():
    noisy = np.array([[0.7, 0.3], [0.1, 0.9]])
    np.testing.assert_allclose(corrected_posteriors(noisy, np.eye(2)), noisy, atol=1e-6)
    clean = corrected_posteriors(np.array([[0.9, 0.1]]), np.array([[0.8, 0.2], [0.2, 0.8]]))
    assert (clean >= 0).all() and np.isclose(clean.sum(), 1.0)
    np.testing.assert_allclose(clean, [[1.0, 0.0]], atol=1e-6)


def test_corrected_posteriors_refuse_a_singular_or_misshapen_matrix():
    with pytest.raises(ValueError, match="singular"):
        corrected_posteriors(np.array([[0.5, 0.5]]), np.array([[0.5, 0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"\[2, 2\]"):
        corrected_posteriors(np.array([[0.5, 0.5]]), np.eye(3))
