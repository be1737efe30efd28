"""How good a Stage-1 selection is, measured the way the label-noise literature measures it (pure numpy).

A label is *correct* when the noisy label equals the true one. Given the kept mask, the noisy and the
true labels (and optionally the score the selection ranked by):

- precision: the share of the kept labels that are correct (1 - the noise rate after selection);
- recall: the share of the correct labels that are kept;
- ROC AUC: the probability that a random correct label scores higher than a random wrong one (ties
  count one half), i.e. the Mann-Whitney U statistic over the two groups, from average ranks.

The true labels are read here only to evaluate: no selection rule may see them.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def _ratio(numerator: int, denominator: int) -> Optional[float]:
    return float(numerator) / denominator if denominator else None


def average_ranks(values) -> np.ndarray:
    """1-based ranks of `values` (ascending); tied values share the mean of their ranks."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # Start of each run of equal values in sorted order.
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    ends = np.concatenate([starts[1:], [len(values)]])
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends, averaged
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(scores, positive) -> Optional[float]:
    """ROC AUC of `scores` for the boolean `positive` (Mann-Whitney); None if either group is empty."""
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    if scores.shape != positive.shape or scores.ndim != 1:
        raise ValueError(f"scores and positive must be 1-D of one length, got {scores.shape} and {positive.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scores must be finite, got {scores[~np.isfinite(scores)][0]}")
    num_positive = int(np.count_nonzero(positive))
    num_negative = len(positive) - num_positive
    if num_positive == 0 or num_negative == 0:
        return None
    rank_sum = float(average_ranks(scores)[positive].sum())
    u_statistic = rank_sum - num_positive * (num_positive + 1) / 2.0
    return u_statistic / (num_positive * num_negative)


def _as_labels(name: str, labels, length: int, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (length,) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"{name} must be {length} integer class ids, got shape {labels.shape} dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} must hold class ids in [0, {num_classes}), got {labels[(labels < 0) | (labels >= num_classes)][0]}")
    return labels.astype(np.int64)


def selection_quality(kept, noisy_labels, clean_labels, num_classes: int, scores=None) -> dict:
    """Precision, recall and (with `scores`) ROC AUC of a selection, overall and per noisy-label class.

    Args:
      kept: boolean `[N]` mask of the kept labels.
      noisy_labels: `[N]` the labels the selection saw.
      clean_labels: `[N]` the true labels (evaluation only).
      num_classes: C.
      scores: optional `[N]` ranking score of each example's noisy label (higher = more likely kept,
        e.g. P(noisy label | x)).

    Returns:
      {"precision", "recall", "auc", "kept_fraction", "correct_fraction", "per_class": [{"class",
      "precision", "recall", "auc"}]}; a value that is undefined (nothing kept, no correct label, one
      group empty, no scores) is None. Per class means among the examples whose noisy label is c.
    """
    kept = np.asarray(kept)
    if kept.ndim != 1 or kept.dtype != np.bool_:
        raise ValueError(f"kept must be a 1-D boolean array [N], got shape {kept.shape} dtype {kept.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    noisy = _as_labels("noisy_labels", noisy_labels, len(kept), int(num_classes))
    clean = _as_labels("clean_labels", clean_labels, len(kept), int(num_classes))
    if scores is not None:
        scores = np.asarray(scores, np.float64)
        if scores.shape != kept.shape:
            raise ValueError(f"scores must have shape {kept.shape} (one per example), got {scores.shape}")
    correct = noisy == clean

    def measure(members) -> dict:
        kept_here, correct_here = kept[members], correct[members]
        hits = int(np.count_nonzero(kept_here & correct_here))
        return {
            "precision": _ratio(hits, int(np.count_nonzero(kept_here))),
            "recall": _ratio(hits, int(np.count_nonzero(correct_here))),
            "auc": None if scores is None else roc_auc(scores[members], correct_here),
        }

    everything = np.ones(len(kept), bool)
    result = measure(everything)
    result["kept_fraction"] = _ratio(int(np.count_nonzero(kept)), len(kept))
    result["correct_fraction"] = _ratio(int(np.count_nonzero(correct)), len(kept))
    result["per_class"] = [{"class": c, **measure(noisy == c)} for c in range(int(num_classes))]
    return result


def format_quality(quality: dict) -> str:
    """One line: precision / recall / AUC overall and the lowest per-class precision, in percent."""
    def show(value):
        return "n/a" if value is None else f"{100 * value:.2f}%"

    precisions = [(row["precision"], row["class"]) for row in quality["per_class"] if row["precision"] is not None]
    worst = min(precisions) if precisions else None
    tail = "" if worst is None else f", lowest class precision {show(worst[0])} (class {worst[1]})"
    auc = "n/a" if quality["auc"] is None else f"{quality['auc']:.4f}"
    return f"precision {show(quality['precision'])}, recall {show(quality['recall'])}, AUC {auc}{tail}"


def format_per_class(quality: dict) -> str:
    """`class: precision / recall` per noisy-label class, in percent."""
    def show(value):
        return "n/a" if value is None else f"{100 * value:.1f}%"

    return ", ".join(f"{row['class']}: {show(row['precision'])} / {show(row['recall'])}" for row in quality["per_class"])
