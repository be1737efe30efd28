"""Noise transition matrices for the loss-correction baselines (pure numpy).

`T[i, j] = P(noisy label = j | clean label = i)`: rows are clean classes, columns noisy classes, and each row
sums to 1.

- `check_transition_matrix`: the validation every user of a matrix goes through (also used by the losses).
- `estimate_transition_matrix`: Patrini et al.'s anchor-point estimator from a model trained on the noisy
  labels (CVPR 2017, "Making deep neural networks robust to label noise: a loss correction approach").
- `corrected_label_statistics`: how the labels implied by forward correction compare with the clean labels
  (the paper's Table 2 row for forward correction).
"""

from __future__ import annotations

import numpy as np

# Row sums may be off by float32 round-off (a matrix written out as text, or computed in float32).
_ROW_SUM_TOLERANCE = 1e-3


def check_transition_matrix(matrix, num_classes=None, name: str = "transition_matrix") -> np.ndarray:
    """Returns `matrix` as a float64 [C, C] array after checking that it is row-stochastic.

    Raises ValueError naming the bad value: not square, not finite, a negative entry, or a row whose sum is
    not 1 (within 1e-3). `num_classes`, when given, must equal C.
    """
    try:
        matrix = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a [C, C] array of numbers, got {matrix!r}") from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"{name} must be a square [C, C] matrix with C >= 1, got shape {matrix.shape}")
    if num_classes is not None and matrix.shape[0] != num_classes:
        raise ValueError(f"{name} must be {num_classes} x {num_classes} for {num_classes} classes, "
                         f"got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        i, j = np.argwhere(~np.isfinite(matrix))[0]
        raise ValueError(f"{name} must be finite, got {matrix[i, j]} at [{i}, {j}]")
    if np.any(matrix < 0):
        i, j = np.argwhere(matrix < 0)[0]
        raise ValueError(f"{name} entries must be probabilities >= 0, got {matrix[i, j]} at [{i}, {j}]")
    sums = matrix.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE)
    if bad.size:
        raise ValueError(f"{name} must be row-stochastic (each row sums to 1), "
                         f"got row {bad[0]} summing to {sums[bad[0]]:.6g}")
    return matrix


def _check_probabilities(name: str, values) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array [N, C], got shape {values.shape}")
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {values.dtype}")
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite, got {values[~np.isfinite(values)][0]}")
    if np.any(values < 0):
        raise ValueError(f"{name} must be probabilities >= 0, got {values[values < 0][0]}")
    return values


def _check_labels(name: str, labels, num_examples: int, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (num_examples,):
        raise ValueError(f"{name} must have shape ({num_examples},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {labels.dtype}")
    out = (labels < 0) | (labels >= num_classes)
    if np.any(out):
        raise ValueError(f"{name} must be in [0, {num_classes}), got {labels[out][0]}")
    return labels.astype(np.int64)


def estimate_transition_matrix(probabilities, filter_percentile: float = 97.0) -> np.ndarray:
    """Estimates T from a model's noisy-label probabilities `P(noisy = j | x)`, [N, C] (anchor points).

    For each class i the anchor is the example most confidently of class i, after discarding the values of
    column i at or above its `filter_percentile`-th percentile (numpy's `method="higher"`) as outliers, as in
    Patrini et al.'s code; row i of T is the anchor's probability vector, renormalized to sum to 1.
    `filter_percentile=100` takes the plain argmax. If no value of a column lies below its percentile (a
    constant column), the plain argmax is used for that class. The input is not modified.
    """
    probabilities = _check_probabilities("probabilities", probabilities)
    try:
        filter_percentile = float(filter_percentile)
    except (TypeError, ValueError):
        raise ValueError(f"filter_percentile must be a number in (0, 100], got {filter_percentile!r}") from None
    if not 0.0 < filter_percentile <= 100.0:  # also rejects NaN
        raise ValueError(f"filter_percentile must be in (0, 100], got {filter_percentile}")

    num_classes = probabilities.shape[1]
    matrix = np.empty((num_classes, num_classes), dtype=np.float64)
    for i in range(num_classes):
        column = probabilities[:, i]
        anchor = int(np.argmax(column))
        if filter_percentile < 100.0:
            threshold = np.percentile(column, filter_percentile, method="higher")
            below = column < threshold
            if np.any(below):
                anchor = int(np.argmax(np.where(below, column, -np.inf)))
        row = probabilities[anchor]
        total = row.sum()
        if total <= 0:
            raise ValueError(f"the anchor of class {i} (example {anchor}) has all-zero probabilities")
        matrix[i] = row / total
    return matrix


def corrected_label_statistics(probabilities, noisy_labels, clean_labels, transition_matrix,
                               seed: int = 0) -> dict:
    """How often the label implied by forward correction is the clean label.

    `probabilities` are the clean-class probabilities q(x) [N, C] of a model trained with forward correction
    (its softmax output, before T is applied). The posterior over the clean label given the noisy label y is
    `P(clean = i | noisy = y, x) ∝ T[i, y] * q_i(x)`; the corrected label is its argmax, or a draw from it
    (seeded). Where the posterior is all zero (q puts no mass on any class that can produce y) the noisy
    label is kept. Returns plain floats, each a fraction of all N examples:
    `argmax_correct_fraction`, `argmax_incorrect_fraction`, `sampling_correct_fraction`,
    `sampling_incorrect_fraction`.
    """
    probabilities = _check_probabilities("probabilities", probabilities)
    num_examples, num_classes = probabilities.shape
    noisy_labels = _check_labels("noisy_labels", noisy_labels, num_examples, num_classes)
    clean_labels = _check_labels("clean_labels", clean_labels, num_examples, num_classes)
    matrix = check_transition_matrix(transition_matrix, num_classes)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")

    posterior = matrix[:, noisy_labels].T * probabilities  # [N, C]: T[i, y_n] q_i(x_n)
    totals = posterior.sum(axis=1, keepdims=True)
    defined = totals[:, 0] > 0
    posterior = np.divide(posterior, totals, out=np.zeros_like(posterior), where=totals > 0)

    by_argmax = np.where(defined, np.argmax(posterior, axis=1), noisy_labels)
    uniforms = np.random.default_rng(seed).random(num_examples)
    cumulative = np.cumsum(posterior, axis=1)
    # Dividing by the last edge makes it exactly 1 (and keeps trailing zero-probability classes at 1), so a
    # draw in [0, 1) lands in a class of non-zero probability.
    cumulative = np.divide(cumulative, cumulative[:, -1:], out=np.ones_like(cumulative),
                           where=cumulative[:, -1:] > 0)
    drawn = np.minimum((cumulative <= uniforms[:, None]).sum(axis=1), num_classes - 1)
    by_sampling = np.where(defined, drawn, noisy_labels)

    argmax_correct = float(np.mean(by_argmax == clean_labels))
    sampling_correct = float(np.mean(by_sampling == clean_labels))
    return {
        "argmax_correct_fraction": argmax_correct,
        "argmax_incorrect_fraction": float(1.0 - argmax_correct),
        "sampling_correct_fraction": sampling_correct,
        "sampling_incorrect_fraction": float(1.0 - sampling_correct),
    }


__all__ = ["check_transition_matrix", "corrected_label_statistics", "estimate_transition_matrix"]


def estimated_clean_accuracy(predictions, noisy_labels, transition_matrix, clip: bool = True) -> float:
    """The accuracy against the (unknown) clean labels, estimated from the noisy ones and T.

    Under class-conditional noise the noisy label depends on the image only through its clean class,
    so the joint frequencies of (prediction k, noisy label j) are N = C T, where C[k, y] are those of
    (prediction k, clean class y). Hence C = N T^-1 and the clean accuracy is trace(C), clipped to
    [0, 1] (`clip=False`: unclipped; a value above 1 says T over-states the flips). Unbiased when T is
    the true matrix; an estimated T that under-states the flips makes the estimate low. T must be
    invertible (`tf_twostage.stage1.selection.transition_problem` says why not).

    Args:
      predictions: `[N]` predicted classes in `[0, C)`.
      noisy_labels: `[N]` noisy labels in `[0, C)`.
      transition_matrix: `[C, C]` row-stochastic, T[y, j] = P(noisy = j | clean = y).
    """
    matrix = check_transition_matrix(transition_matrix)
    num_classes = matrix.shape[0]
    predictions = np.asarray(predictions)
    if predictions.ndim != 1 or not len(predictions):
        raise ValueError(f"predictions must be a non-empty 1-D array [N], got shape {predictions.shape}")
    noisy_labels = _check_labels("noisy_labels", noisy_labels, len(predictions), num_classes)
    predictions = _check_labels("predictions", predictions, len(predictions), num_classes)
    joint = np.zeros((num_classes, num_classes), np.float64)
    np.add.at(joint, (predictions, noisy_labels), 1.0)
    joint /= len(predictions)
    clean = float(np.trace(joint @ np.linalg.inv(matrix)))
    return float(np.clip(clean, 0.0, 1.0)) if clip else clean


def estimated_accuracy_standard_error(predictions, noisy_labels, transition_matrix, resamples: int = 200,
                                      seed: int = 0) -> float:
    """Bootstrap standard error of `estimated_clean_accuracy` over the examples (deterministic given `seed`).

    The correction divides by about 1 - (flip rate) - (flip rate)/(C-1): at symmetric 0.5 on 10 classes it
    multiplies the sampling error of the noisy accuracy by 2.25 (400 examples: about +-5.6 points).
    The draws are not clipped: clipped at 1, an estimate that over-corrects would look certain.
    """
    predictions, noisy_labels = np.asarray(predictions), np.asarray(noisy_labels)
    rng = np.random.default_rng(seed)
    draws = [estimated_clean_accuracy(predictions[sample], noisy_labels[sample], transition_matrix, clip=False)
             for sample in rng.integers(0, len(predictions), size=(int(resamples), len(predictions)))]
    return float(np.std(draws))
