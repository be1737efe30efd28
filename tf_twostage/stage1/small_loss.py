"""Class-wise small-loss selection with a two-component mixture on the per-example loss (pure numpy).

DivideMix (Li et al., ICLR 2020) splits the training set by fitting a two-component Gaussian mixture to
the per-example cross-entropy: the component with the smaller mean holds the (probably) clean labels.
Here the mixture is fitted per noisy-label class (classes learn at different speeds, so one global
threshold favours the easy ones), on the loss -log P(noisy label | x) of whatever posterior the caller
ranks with, and a label is kept when its posterior probability of belonging to the small-loss component
is at least `clean_probability` and the model's prediction agrees with it.
"""

from __future__ import annotations

import numpy as np

_EPSILON = 1e-8


def fit_two_gaussians(values, iterations: int = 100, tolerance: float = 1e-6):
    """EM for a 1-D two-component Gaussian mixture. Returns (weights [2], means [2], variances [2]),
    component 0 the one with the smaller mean. Deterministic: starts from the lower and upper thirds."""
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"values must be 1-D with at least 2 entries, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"values must be finite, got {values[~np.isfinite(values)][0]}")
    spread = float(values.var()) + _EPSILON
    low, high = np.quantile(values, [1 / 6, 5 / 6])
    means = np.array([low, high], np.float64)
    variances = np.array([spread, spread]) / 4
    weights = np.array([0.5, 0.5])
    floor = 1e-4 * spread + 1e-10
    previous = -np.inf
    for _ in range(int(iterations)):
        log_density = (np.log(weights + _EPSILON) - 0.5 * np.log(2 * np.pi * variances)
                       - 0.5 * (values[:, None] - means) ** 2 / variances)
        top = log_density.max(axis=1, keepdims=True)
        log_likelihood = top[:, 0] + np.log(np.exp(log_density - top).sum(axis=1))
        responsibility = np.exp(log_density - log_likelihood[:, None])
        mass = responsibility.sum(axis=0) + _EPSILON
        weights = mass / len(values)
        means = (responsibility * values[:, None]).sum(axis=0) / mass
        variances = np.maximum((responsibility * (values[:, None] - means) ** 2).sum(axis=0) / mass, floor)
        total = float(log_likelihood.sum())
        if abs(total - previous) < tolerance * max(1.0, abs(total)):
            break
        previous = total
    order = np.argsort(means, kind="stable")
    return weights[order], means[order], variances[order]


def small_loss_probability(values) -> np.ndarray:
    """P(small-loss component | value) under the two-component mixture fitted to `values` [N]."""
    weights, means, variances = fit_two_gaussians(values)
    values = np.asarray(values, np.float64)
    log_density = (np.log(weights + _EPSILON) - 0.5 * np.log(2 * np.pi * variances)
                   - 0.5 * (values[:, None] - means) ** 2 / variances)
    log_density -= log_density.max(axis=1, keepdims=True)
    density = np.exp(log_density)
    return density[:, 0] / density.sum(axis=1)


def select_small_loss(probabilities, noisy_labels, clean_probability: float = 0.5,
                      require_agreement: bool = True) -> np.ndarray:
    """Keep the labels in each class's small-loss component (a two-Gaussian mixture on -log P(label | x)).

    Args:
      probabilities: `[N, C]` posteriors to rank with.
      noisy_labels: `[N]` integer labels in `[0, C)`.
      clean_probability: keep when P(small-loss component) >= this, in [0, 1].
      require_agreement: also require the argmax of `probabilities` to be the label.

    Returns:
      A boolean `[N]` kept mask. A class with fewer than 4 labels keeps those the model agrees with.
    """
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(noisy_labels)
    if probabilities.ndim != 2 or labels.shape != (len(probabilities),):
        raise ValueError(f"probabilities [N, C] and noisy_labels [N] must match, got {probabilities.shape} "
                         f"and {labels.shape}")
    if not np.all(np.isfinite(probabilities)) or np.any(probabilities < 0):
        raise ValueError("probabilities must be finite and >= 0")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0
                        or labels.max() >= probabilities.shape[1]):
        raise ValueError(f"noisy_labels must be integer class ids in [0, {probabilities.shape[1]})")
    clean_probability = float(clean_probability)
    if not 0.0 <= clean_probability <= 1.0:
        raise ValueError(f"clean_probability must be in [0, 1], got {clean_probability}")
    agrees = probabilities.argmax(axis=1) == labels
    loss = -np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, None))
    kept = np.zeros(len(labels), bool)
    for c in range(probabilities.shape[1]):
        members = np.flatnonzero(labels == c)
        if len(members) < 4 or np.ptp(loss[members]) < 1e-9:
            kept[members] = agrees[members]
            continue
        kept[members] = small_loss_probability(loss[members]) >= clean_probability
    return kept & agrees if require_agreement else kept
