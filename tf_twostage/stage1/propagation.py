"""Label propagation: a posterior smoothed over a k-nearest-neighbour graph of the images themselves.

A network trained on noisy labels bends towards them, so its posterior for an image with a wrong label
partly repeats that label. The image's nearest neighbours in pixel space are a view the training could
not bend: propagating the posterior over their graph (Zhou et al. 2004, "Learning with local and global
consistency"; Iscen et al. 2019 use it to label images for semi-supervised training) pulls each image
towards what its look-alikes are predicted to be. With F0 the posterior and S = D^-1/2 W D^-1/2 the
normalized graph, the propagated posterior is F = (I - alpha S)^-1 F0, rows renormalized.

`stage1.propagation=pixels` ranks Stage 1's labels (and the second round's, `stage2.rounds=2`) with it
(`tf_twostage.runs.propagation` makes the pixel features). The graph is exact (every pair compared, in
blocks), so its cost grows with the square of the number of images: `MAX_EXAMPLES` bounds it, and the run
refuses larger data before any training.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse

PROPAGATION_SOURCES = ("none", "pixels")
PROPAGATION_INPUTS = ("posterior", "labels")  # what spreads: the network's P(c|x), or the noisy labels one-hot
# The graph compares every pair of images: 50,000 images are 2.5e9 comparisons of up to 3,072 values.
MAX_EXAMPLES = 50_000
# The fixed-point solve runs until alpha^steps <= RESIDUAL, and at least MIN_ITERATIONS steps.
RESIDUAL = 1e-9
MIN_ITERATIONS = 200


def neighbour_graph(features, neighbours: int, block_size: int = 1024) -> tuple:
    """(indices, weights) of each row's `neighbours` nearest rows by cosine similarity of the centred
    features, itself excluded; weights are similarity^3, negative similarities counted as 0."""
    features = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    count = len(features)
    if not 1 <= neighbours < count:
        raise ValueError(f"neighbours must be in [1, {count - 1}] for {count} examples, got {neighbours}")
    centred = features - features.mean(0)
    unit = centred / (np.linalg.norm(centred, axis=1, keepdims=True) + 1e-8)
    indices = np.empty((count, neighbours), np.int64)
    weights = np.empty((count, neighbours), np.float32)
    for start in range(0, count, block_size):
        rows = np.arange(start, min(start + block_size, count))
        similarity = unit[rows] @ unit.T
        similarity[np.arange(len(rows)), rows] = -np.inf
        nearest = np.argpartition(-similarity, neighbours - 1, axis=1)[:, :neighbours]
        nearest = np.sort(nearest, axis=1)  # a fixed order: the result must not depend on the partition's
        indices[rows] = nearest
        weights[rows] = np.maximum(np.take_along_axis(similarity, nearest, axis=1), 0.0) ** 3
    return indices, weights


def iterations_for(alpha: float) -> int:
    """Fixed-point steps that leave at most `RESIDUAL` of the series' tail: 200 at alpha = 0.9 (0.9^200 =
    7e-10), 2,062 at 0.99 (200 steps there leave 0.13 of it and the ranking is not yet the solution's)."""
    if alpha <= 0:
        return MIN_ITERATIONS
    return max(MIN_ITERATIONS, int(np.ceil(np.log(RESIDUAL) / np.log(alpha))))


def propagate(probabilities, indices, weights, alpha: float = 0.9, iterations: Optional[int] = None) -> np.ndarray:
    """(I - alpha S)^-1 probabilities over the symmetrized graph, rows renormalized to sum to 1.

    Solved by the fixed-point iteration F <- alpha S F + F0 (it converges for alpha < 1 since S's
    eigenvalues lie in [-1, 1]), `iterations_for(alpha)` steps unless `iterations` says. An image with no
    positive similarity keeps its own posterior.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    count = len(probabilities)
    if indices.shape[0] != count:
        raise ValueError(f"the graph has {indices.shape[0]} rows for {count} posteriors")
    rows = np.repeat(np.arange(count), indices.shape[1])
    graph = scipy.sparse.csr_matrix((weights.ravel().astype(np.float64), (rows, indices.ravel())),
                                    shape=(count, count))
    graph = graph + graph.T
    degree = np.asarray(graph.sum(axis=1)).ravel()
    scale = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-300)), 0.0)
    normalized = scipy.sparse.diags(scale) @ graph @ scipy.sparse.diags(scale)
    propagated = probabilities.copy()
    for _ in range(iterations_for(alpha) if iterations is None else int(iterations)):
        propagated = alpha * (normalized @ propagated) + probabilities
    propagated = np.maximum(propagated, 0.0)
    return propagated / propagated.sum(axis=1, keepdims=True)


def one_hot_labels(labels, num_classes: int) -> np.ndarray:
    """`[N, num_classes]` rows with a 1 at each label: what `stage1.propagation_input=labels` spreads."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return np.eye(num_classes, dtype=np.float64)[labels]


def propagated_posterior(probabilities, features, neighbours: int = 10, alpha: float = 0.9) -> np.ndarray:
    """`probabilities` propagated over the neighbour graph of `features` (one row per example, same order).

    With no more images than `neighbours`, there is no graph to speak of: the posterior is returned as is.
    """
    probabilities = np.asarray(probabilities)
    if len(probabilities) <= neighbours:
        return probabilities.astype(np.float64)
    indices, weights = neighbour_graph(features, neighbours)
    return propagate(probabilities, indices, weights, alpha)
