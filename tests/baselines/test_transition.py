"""Transition-matrix estimation and forward correction's label statistics on tiny hand-made arrays."""

import numpy as np
import pytest

from tf_twostage.baselines.transition import (
    check_transition_matrix,
    corrected_label_statistics,
    estimate_transition_matrix,
)

T2 = np.array([[0.8, 0.2], [0.3, 0.7]])


def _symmetric_matrix(num_classes=4, diagonal=0.6):
    off = (1.0 - diagonal) / (num_classes - 1)
    return np.full((num_classes, num_classes), off) + (diagonal - off) * np.eye(num_classes)


def _synthetic_noisy_probabilities(matrix, num_examples=2000, anchors_per_class=150, seed=0):
    """p_noisy = q @ T with q Dirichlet draws plus near one-hot anchors of every class."""
    rng = np.random.default_rng(seed)
    num_classes = matrix.shape[0]
    q = rng.dirichlet(np.ones(num_classes), size=num_examples)
    for i in range(num_classes):
        rows = slice(i * anchors_per_class, (i + 1) * anchors_per_class)
        delta = rng.uniform(0.0, 0.02, size=(anchors_per_class, 1))
        q[rows] = (1.0 - delta) * np.eye(num_classes)[i] + delta * rng.dirichlet(np.ones(num_classes),
                                                                                 size=anchors_per_class)
    return q @ matrix


# --- check_transition_matrix -----------------------------------------------------------------------


def test_check_accepts_a_row_stochastic_matrix():
    np.testing.assert_array_equal(check_transition_matrix(T2, num_classes=2), T2)


@pytest.mark.parametrize("matrix, message", [
    ([[0.8, 0.2], [0.3, 0.6]], "row 1 summing to 0.9"),
    ([[1.2, -0.2], [0.3, 0.7]], "got -0.2 at [0, 1]"),
    ([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]], "square"),
    ([[np.nan, 1.0], [0.3, 0.7]], "finite, got nan"),
    ("abc", "array of numbers"),
])
def test_check_rejects_bad_matrices_naming_the_value(matrix, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(".", r"\.")):
        check_transition_matrix(matrix)


def test_check_rejects_a_class_count_mismatch():
    with pytest.raises(ValueError, match="must be 3 x 3"):
        check_transition_matrix(T2, num_classes=3)


# --- estimate_transition_matrix --------------------------------------------------------------------


def test_estimator_recovers_a_known_matrix_within_0_02():
    matrix = _symmetric_matrix()
    probabilities = _synthetic_noisy_probabilities(matrix)
    estimate = estimate_transition_matrix(probabilities)
    np.testing.assert_allclose(estimate, matrix, atol=0.02)
    np.testing.assert_allclose(estimate.sum(axis=1), 1.0, atol=1e-12)


def test_estimator_recovers_an_asymmetric_matrix():
    matrix = np.array([[0.7, 0.3, 0.0], [0.0, 0.8, 0.2], [0.25, 0.0, 0.75]])
    estimate = estimate_transition_matrix(_synthetic_noisy_probabilities(matrix, 1500, 120, seed=1))
    np.testing.assert_allclose(estimate, matrix, atol=0.02)


def test_percentile_filter_ignores_a_few_outliers_that_plain_argmax_picks():
    matrix = _symmetric_matrix()
    probabilities = _synthetic_noisy_probabilities(matrix)
    outliers = np.repeat(np.eye(4), 3, axis=0)  # 3 impossible, fully confident examples per class
    probabilities = np.concatenate([probabilities, outliers])
    np.testing.assert_allclose(estimate_transition_matrix(probabilities, filter_percentile=100), np.eye(4))
    np.testing.assert_allclose(estimate_transition_matrix(probabilities), matrix, atol=0.02)


def test_filter_takes_the_largest_value_below_the_higher_percentile_and_keeps_the_input():
    column = np.arange(100) / 100.0  # the 97th percentile ("higher") is 0.97: values >= 0.97 are dropped
    probabilities = np.stack([column, 1.0 - column], axis=1)
    before = probabilities.copy()
    estimate = estimate_transition_matrix(probabilities)
    np.testing.assert_allclose(estimate[0], [0.96, 0.04])  # the anchor of class 0 is example 96
    np.testing.assert_allclose(estimate[1], [0.03, 0.97])  # class 1's column is 1 - column: example 3
    np.testing.assert_array_equal(probabilities, before)


def test_percentile_100_is_the_plain_argmax_and_rows_are_renormalized():
    probabilities = np.array([[2.0, 1.0], [1.0, 3.0], [0.5, 0.5]])
    np.testing.assert_allclose(estimate_transition_matrix(probabilities, filter_percentile=100),
                               [[2 / 3, 1 / 3], [0.25, 0.75]])


def test_constant_column_falls_back_to_the_argmax():
    probabilities = np.array([[0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(estimate_transition_matrix(probabilities), probabilities)


@pytest.mark.parametrize("kwargs, message", [
    ({"probabilities": [0.2, 0.8]}, "2-D array"),
    ({"probabilities": [[0.2, -0.1]]}, "got -0.1"),
    ({"probabilities": [[0.2, np.inf]]}, "finite"),
    ({"probabilities": [[0.5, 0.5]], "filter_percentile": 0}, r"\(0, 100\], got 0"),
    ({"probabilities": [[0.5, 0.5]], "filter_percentile": 101}, "got 101"),
])
def test_estimator_validates_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate_transition_matrix(**kwargs)


# --- corrected_label_statistics --------------------------------------------------------------------


def test_statistics_on_a_hand_computed_example():
    # posterior ∝ T[:, y] * q:  [0.18, 0.07] -> 0 | [0.40, 0.15] -> 0 | [0.04, 0.56] -> 1 | [0.2, 0] -> 0
    q = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [1.0, 0.0]])
    noisy = np.array([1, 0, 1, 1])
    clean = np.array([0, 1, 1, 0])
    stats = corrected_label_statistics(q, noisy, clean, T2)
    assert stats["argmax_correct_fraction"] == pytest.approx(0.75)
    assert stats["argmax_incorrect_fraction"] == pytest.approx(0.25)
    assert stats["sampling_correct_fraction"] + stats["sampling_incorrect_fraction"] == pytest.approx(1.0)
    assert all(type(value) is float for value in stats.values())
    assert set(stats) == {"argmax_correct_fraction", "argmax_incorrect_fraction",
                          "sampling_correct_fraction", "sampling_incorrect_fraction"}


def test_sampling_equals_argmax_when_the_posterior_is_certain():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    stats = corrected_label_statistics(q, [0, 1, 1], [0, 1, 1], T2)
    assert stats["sampling_correct_fraction"] == stats["argmax_correct_fraction"] == pytest.approx(2 / 3)


def test_sampling_follows_the_posterior_and_is_seeded():
    # q = [0.9, 0.1], y = 1: posterior [0.18, 0.07] / 0.25 = [0.72, 0.28]
    n = 20000
    q = np.tile([0.9, 0.1], (n, 1))
    noisy, clean = np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    stats = corrected_label_statistics(q, noisy, clean, T2, seed=3)
    assert stats["argmax_correct_fraction"] == 1.0
    assert stats["sampling_correct_fraction"] == pytest.approx(0.72, abs=0.015)
    assert corrected_label_statistics(q, noisy, clean, T2, seed=3) == stats
    assert corrected_label_statistics(q, noisy, clean, T2, seed=4) != stats


def test_zero_posterior_keeps_the_noisy_label():
    matrix = np.array([[1.0, 0.0], [0.5, 0.5]])
    stats = corrected_label_statistics([[1.0, 0.0]], [1], [1], matrix)  # T[0, 1] * 1 + T[1, 1] * 0 = 0
    assert stats["argmax_correct_fraction"] == stats["sampling_correct_fraction"] == 1.0


@pytest.mark.parametrize("noisy, clean, matrix, message", [
    ([0, 2], [0, 1], T2, r"noisy_labels must be in \[0, 2\), got 2"),
    ([0, 1], [0], T2, r"clean_labels must have shape \(2,\)"),
    ([0.0, 1.0], [0, 1], T2, "integers"),
    ([0, 1], [0, 1], np.eye(3), "must be 2 x 2"),
])
def test_statistics_validate_inputs(noisy, clean, matrix, message):
    with pytest.raises(ValueError, match=message):
        corrected_label_statistics([[0.5, 0.5], [0.5, 0.5]], noisy, clean, matrix)
