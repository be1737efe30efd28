"""A noise transition estimate without anchor points, by clustering the pre-trained model's posteriors.

The anchor-point estimator (Patrini et al.) reads row i of T off the image most confidently predicted
as i. When a class's flip rate exceeds 0.5 its images are most often labeled with another class, so no
image is an anchor of its own class and the row cannot be recovered (docs/traps.md).

Here: a model trained on noisy labels predicts, for an image of clean class y, roughly the noisy-label
distribution T[y, :]. So its posteriors gather around C points, the rows of T. Cluster them with
k-means (k = C, k-means++ seeding, several restarts, seeded), take each cluster's mean posterior as a
candidate row, and give the rows to the classes by the assignment that maximizes the product of the
diagonal (every class keeps some of its labels; Hungarian method, `scipy.optimize.linear_sum_assignment`
on -log). At asymmetric 0.6 the cluster of the clean 2s has mean (2: 0.4, 7: 0.6) and that of the 7s
(7: 0.4, 1: 0.6): the greedy "largest entry" reading gives the 2s to class 7, the assignment does not
(1.0 x 0.4 x 0.4 > 0.6 x 0.6 x 0). A summed diagonal fails on a chain at 0.8 (0.2 + 0.2 + 1 < 0.8 + 0.8
+ 0), the product does not. A two-class swap above 0.5 (5 <-> 6) is not identifiable by any method
that sees only the labels: renaming the classes gives the same data at a flip rate below 0.5. Nothing here reads a
clean label: only the posteriors (which the noisy labels trained).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

# What `stage1.transition` may name: the anchor-point estimator (tf_twostage.baselines.transition) or this one.
TRANSITION_ESTIMATES = ("anchors", "clusters")


def _check_posteriors(probabilities) -> np.ndarray:
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[0] == 0 or probabilities.shape[1] < 2:
        raise ValueError(f"probabilities must be a non-empty [N, C] array with C >= 2, got shape {probabilities.shape}")
    if not np.issubdtype(probabilities.dtype, np.floating):
        raise ValueError(f"probabilities must hold floats, got dtype {probabilities.dtype}")
    if not np.all(np.isfinite(probabilities)) or np.any(probabilities < 0):
        bad = probabilities[~np.isfinite(probabilities) | (probabilities < 0)][0]
        raise ValueError(f"probabilities must be finite and >= 0, got {bad}")
    return probabilities.astype(np.float64)


def kmeans(points, num_clusters: int, seed: int, restarts: int = 5, iterations: int = 100):
    """Lloyd's k-means with k-means++ seeding; the best of `restarts` runs by inertia.

    Returns (centers [K, D], assignment [N]). Deterministic given `seed`. A cluster that empties is
    re-seeded at the point farthest from its center.
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or len(points) < num_clusters or num_clusters < 1:
        raise ValueError(f"kmeans needs at least {num_clusters} points of shape [N, D], got shape {points.shape}")
    if int(restarts) < 1 or int(iterations) < 1:
        raise ValueError(f"restarts and iterations must be >= 1, got {restarts} and {iterations}")
    rng = np.random.default_rng(int(seed))
    best = None
    for _ in range(int(restarts)):
        centers = [points[rng.integers(len(points))]]
        for _ in range(1, num_clusters):
            distance = np.min(((points[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1), axis=1)
            total = distance.sum()
            pick = rng.choice(len(points), p=distance / total) if total > 0 else rng.integers(len(points))
            centers.append(points[pick])
        centers = np.asarray(centers)
        assignment = None
        for _ in range(int(iterations)):
            distance = ((points[:, None, :] - centers[None]) ** 2).sum(-1)
            new_assignment = distance.argmin(axis=1)
            if assignment is not None and np.array_equal(new_assignment, assignment):
                break
            assignment = new_assignment
            for k in range(num_clusters):
                members = assignment == k
                if members.any():
                    centers[k] = points[members].mean(axis=0)
                else:
                    far = int(distance[np.arange(len(points)), assignment].argmax())
                    centers[k] = points[far]
                    assignment[far] = k
        inertia = float(((points - centers[assignment]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, centers.copy(), assignment.copy())
    return best[1], best[2]


def estimate_transition_by_clusters(probabilities, seed: int = 0, restarts: int = 5) -> np.ndarray:
    """T[clean, noisy] estimated from noisy-label posteriors `[N, C]` without anchor points.

    Rows: the mean posterior of each of C k-means clusters, given to the classes by the assignment of
    clusters to classes that maximizes the product of T's diagonal. Each row sums to 1 (re-normalized).
    """
    probabilities = _check_posteriors(probabilities)
    num_classes = probabilities.shape[1]
    if len(probabilities) < num_classes:
        raise ValueError(f"need at least {num_classes} examples to estimate a {num_classes}-class transition "
                         f"matrix, got {len(probabilities)}")
    rows = probabilities / np.maximum(probabilities.sum(axis=1, keepdims=True), 1e-12)
    centers, _ = kmeans(rows, num_classes, seed, restarts=restarts)
    cluster_of, class_of = linear_sum_assignment(-np.log(np.clip(centers, 1e-6, None)))
    matrix = np.empty_like(centers)
    matrix[class_of] = centers[cluster_of]
    matrix = np.clip(matrix, 0.0, None)
    return matrix / matrix.sum(axis=1, keepdims=True)


def estimated_noise_rate(transition, noisy_labels) -> float:
    """The share of wrong labels that a transition estimate `T[clean, noisy]` implies: 1 - sum_c w_c T[c, c],
    weighted by the noisy labels' class shares `w` (a proxy for the clean prior, which is unknown)."""
    transition = np.asarray(transition, np.float64)
    num_classes = transition.shape[0]
    if transition.ndim != 2 or transition.shape != (num_classes, num_classes):
        raise ValueError(f"transition must be a square matrix, got shape {transition.shape}")
    labels = np.asarray(noisy_labels)
    if labels.ndim != 1 or not len(labels) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"noisy_labels must be a non-empty 1-D array of labels in [0, {num_classes})")
    shares = np.bincount(labels, minlength=num_classes) / len(labels)
    return float(1.0 - np.sum(shares * np.diag(transition)))
