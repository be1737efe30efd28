"""Stage 1's selection rules: which noisy labels are kept for Stage 2 (pure functions on arrays).

- `select_confident_labels`: the rule without a clean set (the network agrees with the noisy label and is
  confident, with a per-class floor).
- `reselect_labels_second_round`: the second round's rule (`stage2.rounds=2`): the Stage-2 model's
  confident agreement, optionally topped up per class to Stage 1's count.
- `select_with_clean_classifiers`: the rule with a clean set (a one-vs-rest classifier per class screens the
  examples labeled with that class).
- `selection_statistics`: the numbers of the paper's Table 2, overall and per class.
- `check_every_class_kept`: refuses a selection that leaves a class without any kept label.
- `fill_empty_classes`: the fallback that gives such a class the labels another rule keeps.
- `transition_problem`: why a transition matrix cannot (or should not) be inverted, or None.

Each rule returns a boolean mask `kept[N]`: example i keeps its noisy label iff `kept[i]`; the others
go to Stage 2 unlabeled.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np


def _check_fraction(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def _check_scores(name: str, values, upper: Optional[float] = None) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, C], got shape {values.shape}")
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {values.dtype}")
    if values.shape[1] == 0:
        raise ValueError(f"{name} must have at least one class column, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite, got {values[~np.isfinite(values)][0]}")
    if np.any(values < 0):
        raise ValueError(f"{name} must be non-negative, got {values[values < 0][0]}")
    if upper is not None and np.any(values > upper):
        raise ValueError(f"{name} must be in [0, {upper:g}], got {values[values > upper][0]}")
    return values


def _check_labels(name: str, labels, num_examples: int, num_classes: Optional[int]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array [N], got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if len(labels) != num_examples:
        raise ValueError(f"{name} must have length {num_examples} (one per example), got {len(labels)}")
    bad = labels[(labels < 0) | (labels >= num_classes)] if num_classes is not None else labels[labels < 0]
    if bad.size:
        allowed = f"in [0, {num_classes})" if num_classes is not None else ">= 0"
        raise ValueError(f"{name} must hold class ids {allowed}, got {bad[0]}")
    return labels


def _floor_count(floor_fraction: float, num_labeled: int) -> int:
    """ceil(floor_fraction * n), robust to float error (0.1 * 30 is 3, not 4)."""
    return int(math.ceil(round(floor_fraction * num_labeled, 9)))


TOP_UP_POOLS = ("class", "agreeing")


def select_confident_labels(probabilities, noisy_labels, threshold: float = 0.9,
                            floor_fraction: float = 0.1, top_up: str = "class") -> np.ndarray:
    """The rule without a clean set: keep labels the network agrees with, confidently.

    Per class c, among the examples labeled c: those whose prediction (argmax, the first maximum on
    ties) is c and whose P(c|x) >= `threshold` are kept. If fewer than ceil(`floor_fraction` * n_c)
    are, more are added down the ranking by P(c|x) (equal values: lower position first) until that
    many are kept. The ranking is, with `top_up="class"`, every example labeled c (the paper: "the
    labels of the top 10% of the images of that class pass"), so a class the network mostly
    contradicts still keeps its most plausible labels; with `top_up="agreeing"` only the examples
    whose prediction is c, so a disagreeing example is never kept.

    Args:
      probabilities: `[N, C]` class probabilities (finite, non-negative; e.g. softmax or averages).
      noisy_labels: `[N]` integer labels in `[0, C)`.
      threshold: the confidence that keeps a label outright, in [0, 1].
      floor_fraction: the fraction of each class kept at least (if enough candidates), in [0, 1].
      top_up: where the floor's extra labels come from, "class" or "agreeing".

    Returns:
      A boolean `[N]` mask of the examples that keep their label.
    """
    probabilities = _check_scores("probabilities", probabilities)
    num_examples, num_classes = probabilities.shape
    noisy_labels = _check_labels("noisy_labels", noisy_labels, num_examples, num_classes)
    threshold = _check_fraction("threshold", threshold)
    floor_fraction = _check_fraction("floor_fraction", floor_fraction)
    if top_up not in TOP_UP_POOLS:
        raise ValueError(f"top_up must be one of {', '.join(TOP_UP_POOLS)}; got {top_up!r}")

    predictions = np.argmax(probabilities, axis=1)
    kept = np.zeros(num_examples, dtype=bool)
    for c in range(num_classes):
        labeled = np.flatnonzero(noisy_labels == c)
        agrees = predictions[labeled] == c
        kept[labeled[agrees & (probabilities[labeled, c] >= threshold)]] = True
        missing = _floor_count(floor_fraction, len(labeled)) - int(np.count_nonzero(kept[labeled]))
        _keep_most_confident(kept, labeled[~kept[labeled] & (agrees if top_up == "agreeing" else True)],
                             probabilities[:, c], missing)
    return kept


def _keep_most_confident(kept: np.ndarray, pool: np.ndarray, scores: np.ndarray, count: int) -> None:
    """Sets `kept` (in place) for the `count` positions of `pool` with the highest `scores` (none if
    `count` <= 0). Stable sort of ascending positions: ties keep the lower position first."""
    if count > 0:
        kept[pool[np.argsort(-scores[pool], kind="stable")[:count]]] = True


RESELECT_KEEP = ("threshold", "at_least_first")


def reselect_labels_second_round(probabilities, noisy_labels, first_kept, threshold: float = 0.7,
                                 keep: str = "threshold") -> np.ndarray:
    """The second round's rule: which labels the Stage-2 model (`probabilities`) keeps.

    `keep="threshold"`: a label is kept when the prediction (argmax) is that label with P >= `threshold`
    (the confidence rule without a floor). `keep="at_least_first"`: then, per class, as many more of the
    labels the model predicts (by P(label|x), highest first; equal values: lower position first) as it
    takes to keep at least as many labels as Stage 1 kept in that class (`first_kept`), so a round never
    shrinks a class; a label the Stage-2 model contradicts is never kept.

    Returns a boolean `[N]` mask.
    """
    if keep not in RESELECT_KEEP:
        raise ValueError(f"keep must be one of {', '.join(RESELECT_KEEP)}; got {keep!r}")
    kept = select_confident_labels(probabilities, noisy_labels, threshold, 0.0, top_up="agreeing")
    first_kept = np.asarray(first_kept)
    if first_kept.shape != kept.shape or first_kept.dtype != np.bool_:
        raise ValueError(f"first_kept must be a boolean array of shape {kept.shape}, got "
                         f"{first_kept.shape} {first_kept.dtype}")
    if keep == "at_least_first":
        probabilities, noisy_labels = np.asarray(probabilities), np.asarray(noisy_labels)
        agrees = np.argmax(probabilities, axis=1) == noisy_labels
        for c in np.unique(noisy_labels):
            labeled = noisy_labels == c
            missing = int(np.count_nonzero(first_kept & labeled)) - int(np.count_nonzero(kept & labeled))
            _keep_most_confident(kept, np.flatnonzero(labeled & agrees & ~kept), probabilities[:, c], missing)
    return kept


def select_with_clean_classifiers(scores, noisy_labels, threshold: float = 0.5) -> np.ndarray:
    """The rule with a clean set: keep example i iff `scores[i, noisy_labels[i]] >= threshold`.

    Args:
      scores: `[N, C]`; column c is class c's one-vs-rest classifier (trained on the clean subset: clean
        examples of c positive, clean examples of other classes negative), as a sigmoid probability.
      noisy_labels: `[N]` integer labels in `[0, C)`.
      threshold: the score from which an example is classified positive, in [0, 1].

    Returns:
      A boolean `[N]` mask of the examples that keep their label.
    """
    scores = _check_scores("scores", scores, upper=1.0)
    num_examples, num_classes = scores.shape
    noisy_labels = _check_labels("noisy_labels", noisy_labels, num_examples, num_classes)
    threshold = _check_fraction("threshold", threshold)
    return scores[np.arange(num_examples), noisy_labels] >= threshold


POSTERIORS = ("noisy", "corrected")
# Above this condition number the inverse of an estimated T can multiply a 0.1% error of the posteriors
# into a 100% one. (A 16-unit MLP after 2 epochs on mnist5k gave about 200; a singular one is the case
# seen on a user's image folder, where two classes shared an anchor.)
MAX_TRANSITION_CONDITION = 1e3


def transition_problem(transition_matrix, max_condition: float = MAX_TRANSITION_CONDITION) -> Optional[str]:
    """Why `transition_matrix` should not be inverted to correct posteriors, or None when it can be.

    A singular matrix (rank < C) has no inverse; an ill-conditioned one (condition number above
    `max_condition`) has one that turns small estimation errors into large posterior errors.
    """
    matrix = np.asarray(transition_matrix, np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or not np.all(np.isfinite(matrix)):
        return f"the transition matrix is not a finite square matrix (shape {matrix.shape})"
    rank = int(np.linalg.matrix_rank(matrix))
    if rank < matrix.shape[0]:
        return f"the estimated transition matrix is singular (rank {rank} of {matrix.shape[0]})"
    condition = float(np.linalg.cond(matrix))
    if not condition <= max_condition:
        return (f"the estimated transition matrix is ill-conditioned (condition number {condition:.3g} > "
                f"{max_condition:g})")
    return None


def corrected_posteriors(noisy_probabilities, transition_matrix) -> np.ndarray:
    """Clean-class posteriors P(y|x) from noisy-label ones P(noisy|x) = P(y|x) T (row vectors).

    Solves p T = q for p, then clips negatives and renormalizes each row. Why: under asymmetric noise
    the pre-trained model's P(c|x) is low for the images of a class whose labels mostly flipped away
    (at p = 0.6, a "2" image gets P(2|x) ~ 0.4), so the confidence rule keeps few of that class's
    correct labels; the corrected posterior gives them back. A row that corrects to all zeros keeps
    its noisy probabilities. `transition_matrix` must be invertible (row-stochastic, [C, C]).
    """
    noisy = _check_scores("noisy_probabilities", noisy_probabilities, upper=1.0).astype(np.float64)
    matrix = np.asarray(transition_matrix, np.float64)
    num_classes = noisy.shape[1]
    if matrix.shape != (num_classes, num_classes) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"transition_matrix must be a finite [{num_classes}, {num_classes}] array, "
                         f"got shape {matrix.shape}")
    if np.linalg.matrix_rank(matrix) < num_classes:
        raise ValueError("transition_matrix is singular: the clean posterior cannot be recovered; "
                         "use stage1.posterior=noisy")
    clean = np.clip(noisy @ np.linalg.inv(matrix), 0.0, None)
    totals = clean.sum(axis=1, keepdims=True)
    clean = np.where(totals > 0, clean / np.where(totals > 0, totals, 1.0), noisy)
    return clean.astype(np.float32)


def fill_empty_classes(kept, fallback_kept, labels, num_classes: int):
    """Gives every class that keeps no label the labels `fallback_kept` keeps in it.

    Returns `(kept, filled)`: the new mask (the input is not modified) and the sorted list of classes
    whose labels came from the fallback. Classes without any label stay empty (nothing to keep).
    """
    kept = np.asarray(kept)
    fallback_kept = np.asarray(fallback_kept)
    if kept.ndim != 1 or kept.dtype != np.bool_ or fallback_kept.shape != kept.shape or fallback_kept.dtype != np.bool_:
        raise ValueError(f"kept and fallback_kept must be 1-D boolean arrays of one length, got "
                         f"{kept.shape} {kept.dtype} and {fallback_kept.shape} {fallback_kept.dtype}")
    labels = _check_labels("labels", labels, len(kept), int(num_classes))
    kept_counts = np.bincount(labels[kept], minlength=num_classes)
    labeled = np.bincount(labels, minlength=num_classes)
    filled = [int(c) for c in np.flatnonzero((kept_counts == 0) & (labeled > 0))]
    result = kept.copy()
    for c in filled:
        in_class = labels == c
        result[in_class] = fallback_kept[in_class]
    return result, filled


def check_every_class_kept(kept, labels, num_classes: int, class_names=None) -> None:
    """Raises ValueError when a class keeps no label: Stage 2 could never learn it (it trains on the
    kept labels, class-balanced, so a class without one silently drops out of the classifier).

    Args:
      kept: boolean `[N]` mask of the examples that keep their label (Stage 1's selection).
      labels: `[N]` integer (noisy) labels in `[0, num_classes)`.
      num_classes: the number of classes C.
      class_names: optional C names, shown beside the class ids.

    Raises:
      ValueError: naming every empty class (with how many labels it had) and the config keys that keep
        more labels: a lower `stage1.threshold`, a higher `stage1.floor_fraction`, `stage1.top_up=class`,
        or (clean-set rule) a lower `stage1.clean_threshold`.
    """
    kept = np.asarray(kept)
    if kept.ndim != 1 or kept.dtype != np.bool_:
        raise ValueError(f"kept must be a 1-D boolean array [N], got shape {kept.shape} dtype {kept.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    labels = _check_labels("labels", labels, len(kept), int(num_classes))
    names = None if class_names is None else [str(name) for name in class_names]
    if names is not None and len(names) != num_classes:
        raise ValueError(f"class_names must have {num_classes} names (one per class), got {len(names)}")
    labeled = np.bincount(labels, minlength=num_classes)
    kept_counts = np.bincount(labels[kept], minlength=num_classes)
    empty = np.flatnonzero(kept_counts == 0)
    if empty.size == 0:
        return

    def describe(classes) -> str:
        return ", ".join(
            f"{c}{'' if names is None else f' ({names[c]!r})'}: 0 of {labeled[c]} labels kept" for c in classes
        )

    dropped, unlabeled = empty[labeled[empty] > 0], empty[labeled[empty] == 0]
    problems = []
    if dropped.size:
        problems.append(
            f"Stage 1 kept no label of {dropped.size} of {num_classes} classes ({describe(dropped)}). Keep more "
            "labels: lower stage1.threshold, raise stage1.floor_fraction above 0 (e.g. 0.1), use "
            "stage1.top_up=class, or with the clean-set rule lower stage1.clean_threshold"
        )
    if unlabeled.size:
        problems.append(
            f"{unlabeled.size} of {num_classes} classes have no training label at all ({describe(unlabeled)}); "
            "give each class training images, or leave it out of data.class_names"
        )
    raise ValueError(
        f"every class needs at least one kept label for Stage 2 to learn it: {'; and '.join(problems)}"
    )


def selection_statistics(kept, noisy_labels, clean_labels=None,
                         num_classes: Optional[int] = None) -> dict:
    """Table 2 of the paper: kept / unlabeled (and kept correct / incorrect) labels, overall and per class.

    Fractions are of the whole training set, except `noise_rate_after` (incorrect among kept, 0 if none
    is kept). Without `clean_labels` the correctness keys are absent. `per_class` lists, per noisy-label
    class, the counts `labeled`, `kept` (and `kept_correct`, `kept_incorrect`). `num_classes` defaults to
    one more than the largest label seen. All values are plain Python numbers (JSON-serializable).
    """
    kept = np.asarray(kept)
    if kept.ndim != 1 or kept.dtype != np.bool_:
        raise ValueError(f"kept must be a 1-D boolean array [N], got shape {kept.shape} dtype {kept.dtype}")
    num_examples = len(kept)
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer or None, got {num_classes!r}")
        num_classes = int(num_classes)
    noisy_labels = _check_labels("noisy_labels", noisy_labels, num_examples, num_classes)
    if clean_labels is not None:
        clean_labels = _check_labels("clean_labels", clean_labels, num_examples, num_classes)
    if num_classes is None:
        seen = [labels for labels in (noisy_labels, clean_labels) if labels is not None and labels.size]
        num_classes = int(max(labels.max() for labels in seen)) + 1 if seen else 0

    def fraction(count, total=num_examples) -> float:
        return float(count) / total if total else 0.0

    num_kept = int(np.count_nonzero(kept))
    stats = {
        "num_examples": num_examples,
        "kept_fraction": fraction(num_kept),
        "unlabeled_fraction": fraction(num_examples - num_kept),
    }
    correct = None
    if clean_labels is not None:
        correct = noisy_labels == clean_labels
        kept_correct = int(np.count_nonzero(kept & correct))
        kept_incorrect = num_kept - kept_correct
        stats.update(
            kept_correct_fraction=fraction(kept_correct),
            kept_incorrect_fraction=fraction(kept_incorrect),
            noise_rate_before=fraction(np.count_nonzero(~correct)),
            noise_rate_after=fraction(kept_incorrect, num_kept),
        )
    per_class = []
    for c in range(num_classes):
        in_class = noisy_labels == c
        row = {
            "class": c,
            "labeled": int(np.count_nonzero(in_class)),
            "kept": int(np.count_nonzero(kept & in_class)),
        }
        if correct is not None:
            row["kept_correct"] = int(np.count_nonzero(kept & in_class & correct))
            row["kept_incorrect"] = row["kept"] - row["kept_correct"]
        per_class.append(row)
    stats["per_class"] = per_class
    return stats
