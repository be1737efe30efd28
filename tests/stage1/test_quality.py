"""Selection quality (precision, recall, Mann-Whitney ROC AUC) on tiny hand-made arrays."""

import numpy as np
import pytest

from tf_twostage.stage1.quality import average_ranks, format_quality, roc_auc, selection_quality


def test_average_ranks_share_ties():
    np.testing.assert_allclose(average_ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])


def test_auc_perfect_reversed_and_tied():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5], [True, False, False]) == 0.5
    # One of the 2 x 2 pairs misordered and one tied: (2 + 0.5) / 4.
    assert roc_auc([0.9, 0.4, 0.4, 0.5], [True, True, False, False]) == pytest.approx(0.625)


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    positive = rng.random(40) < 0.4
    pos, neg = scores[positive], scores[~positive]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert roc_auc(scores, positive) == pytest.approx(pairwise)


def test_auc_undefined_with_one_group():
    assert roc_auc([0.1, 0.2], [True, True]) is None
    with pytest.raises(ValueError, match="scores must be finite"):
        roc_auc([np.nan, 0.2], [True, False])


def test_precision_recall_overall_and_per_class():
    noisy = np.array([0, 0, 0, 1, 1, 1])
    clean = np.array([0, 0, 1, 1, 1, 0])  # examples 2 and 5 are wrong
    kept = np.array([True, False, True, True, True, False])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.95, 0.1])
    quality = selection_quality(kept, noisy, clean, 2, scores=scores)
    assert quality["precision"] == pytest.approx(3 / 4)  # 0, 3, 4 right; 2 wrong
    assert quality["recall"] == pytest.approx(3 / 4)  # correct: 0, 1, 3, 4
    assert quality["kept_fraction"] == pytest.approx(4 / 6)
    assert quality["correct_fraction"] == pytest.approx(4 / 6)
    row0, row1 = quality["per_class"]
    assert (row0["precision"], row0["recall"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (row1["precision"], row1["recall"]) == (1.0, 1.0)
    assert row0["auc"] == 1.0 and row1["auc"] == 1.0  # wrong labels score lowest in each class
    assert quality["auc"] == pytest.approx(7 / 8)  # 0.7 (wrong) beats 0.6 (right): one of 8 pairs
    assert "precision 75.00%, recall 75.00%, AUC 0.8750, lowest class precision 50.00% (class 0)" == format_quality(quality)


def test_nothing_kept_or_no_scores_gives_none():
    quality = selection_quality(np.zeros(3, bool), np.array([0, 1, 1]), np.array([0, 1, 0]), 3)
    assert quality["precision"] is None and quality["recall"] == 0.0 and quality["auc"] is None
    assert quality["per_class"][2] == {"class": 2, "precision": None, "recall": None, "auc": None}
    assert "precision n/a" in format_quality(quality)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="kept must be a 1-D boolean"):
        selection_quality(np.array([1, 0]), [0, 1], [0, 1], 2)
    with pytest.raises(ValueError, match=r"clean_labels must hold class ids in \[0, 2\), got 5"):
        selection_quality(np.array([True, False]), [0, 1], [0, 5], 2)
    with pytest.raises(ValueError, match="scores must have shape"):
        selection_quality(np.array([True, False]), [0, 1], [0, 1], 2, scores=[0.1])
