"""The anchor-free transition estimate (clusters of posteriors) and class-wise small-loss selection."""

import numpy as np
import pytest

from tf_twostage.stage1.clusters import estimate_transition_by_clusters, kmeans
from tf_twostage.stage1.small_loss import fit_two_gaussians, select_small_loss, small_loss_probability


def _pair_flip_matrix(rate):
    """3 classes: 0 -> 1 and 1 -> 2 flip with `rate`, 2 stays (an asymmetric chain like MNIST's 2->7->1)."""
    return np.array([[1 - rate, rate, 0.0], [0.0, 1 - rate, rate], [0.0, 0.0, 1.0]])


def _posteriors(matrix, per_class, jitter, seed=0):
    """Noisy-label posteriors of `per_class` images of each clean class: T's row plus a little noise."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(matrix, per_class, axis=0) + jitter * rng.random((per_class * len(matrix), len(matrix)))
    return rows / rows.sum(axis=1, keepdims=True), np.repeat(np.arange(len(matrix)), per_class)


def test_kmeans_finds_separated_clusters_deterministically():
    points = np.concatenate([np.zeros((5, 2)), np.ones((5, 2)) * 10]) + np.arange(10)[:, None] * 0.01
    centers, assignment = kmeans(points, 2, seed=3)
    assert len(set(assignment[:5])) == 1 and len(set(assignment[5:])) == 1 and assignment[0] != assignment[5]
    again = kmeans(points, 2, seed=3)
    np.testing.assert_array_equal(again[1], assignment)


@pytest.mark.parametrize("rate", [0.3, 0.6, 0.8])
def test_transition_rows_recovered_even_above_one_half(rate):
    truth = _pair_flip_matrix(rate)
    posteriors, clean = _posteriors(truth, 50, jitter=0.05)
    estimate = estimate_transition_by_clusters(posteriors, seed=0)
    # The rows are the mean posterior of each clean class (the jitter shifts them slightly off T).
    means = np.stack([posteriors[clean == c].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(estimate, means, atol=1e-9)
    np.testing.assert_allclose(estimate, truth, atol=0.05)
    np.testing.assert_allclose(estimate.sum(axis=1), 1.0)


def test_the_greedy_reading_would_have_failed():
    """The largest entry of the clean-0 cluster's row is class 1: only the assignment gives it to 0."""
    truth = _pair_flip_matrix(0.6)
    assert truth[0].argmax() == 1
    estimate = estimate_transition_by_clusters(_posteriors(truth, 30, jitter=0.02)[0])
    assert estimate[0, 0] == pytest.approx(0.4, abs=0.02)


def test_transition_bad_input_named():
    with pytest.raises(ValueError, match="probabilities must be finite and >= 0"):
        estimate_transition_by_clusters(np.array([[0.5, -0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="need at least 3 examples"):
        estimate_transition_by_clusters(np.full((2, 3), 1 / 3))


def test_two_gaussians_separate_two_groups():
    values = np.concatenate([np.full(30, 0.1), np.full(10, 3.0)]) + np.linspace(0, 0.05, 40)
    weights, means, _ = fit_two_gaussians(values)
    assert means[0] == pytest.approx(0.12, abs=0.05) and means[1] == pytest.approx(3.0, abs=0.1)
    assert weights[0] == pytest.approx(0.75, abs=0.01)
    probability = small_loss_probability(values)
    assert np.all(probability[:30] > 0.99) and np.all(probability[30:] < 0.01)


def test_small_loss_keeps_the_low_loss_labels_per_class():
    # Class 0: 6 confident labels and 3 in a second, higher-loss mode. Class 1 learns slower: its good
    # labels (0.55) score below class 0's doubtful ones (0.6), yet are kept: the mixture is per class.
    p0 = np.array([0.95, 0.96, 0.97, 0.94, 0.95, 0.96, 0.6, 0.62, 0.58])  # P(label 0) of class-0 labels
    p1 = np.array([0.55, 0.56, 0.54, 0.55, 0.57, 0.2, 0.25, 0.22])  # P(label 1) of class-1 labels
    probabilities = np.concatenate([np.stack([p0, 1 - p0], 1), np.stack([1 - p1, p1], 1)])
    labels = np.array([0] * 9 + [1] * 8)
    kept = select_small_loss(probabilities, labels)
    np.testing.assert_array_equal(kept, [True] * 6 + [False] * 3 + [True] * 5 + [False] * 3)
    # Without the agreement check the mixture alone decides (same result here: the dropped ones are the
    # high-loss mode); a stricter membership probability keeps a subset.
    np.testing.assert_array_equal(select_small_loss(probabilities, labels, require_agreement=False), kept)
    assert not np.any(select_small_loss(probabilities, labels, clean_probability=1.0) & ~kept)


def test_small_loss_bad_input_named():
    with pytest.raises(ValueError, match="clean_probability must be in"):
        select_small_loss(np.full((4, 2), 0.5), np.array([0, 1, 0, 1]), clean_probability=2)
    with pytest.raises(ValueError, match="noisy_labels must be integer class ids"):
        select_small_loss(np.full((4, 2), 0.5), np.array([0, 1, 0, 2]))
