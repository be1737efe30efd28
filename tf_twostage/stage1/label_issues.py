"""Which given labels are likely wrong, and what should they be? Pure numpy, no TensorFlow.

`find_label_issues(labels, pred_probs, rule=...)` flags and ranks the examples whose given label is
likely wrong, from out-of-sample predicted probabilities `pred_probs[N, C]` (K-fold predictions, or a
user's own). `label_health(labels, pred_probs, class_names)` summarizes the label quality of a dataset:
per class, the class pairs most often confused with their estimated flip rates, the overall noise rate.

Both read `pred_probs` in chunks of rows (`chunk_size`), so their extra memory is O(N + C^2 +
chunk_size x C): a 1,000,000 x 1,000 float32 array (4 GB) is processed without a copy of it.

Rules (`RULES`), each a selection rule on arrays:

* `confidence`: the paper's Stage-1 rule (`stage1.selection.select_confident_labels`): a label is kept
  when the model agrees with it with P(label|x) >= `threshold`, topped up to `floor_fraction` of each
  class; every label not kept is flagged. Built to keep few, sure labels, so it flags generously.
* `clean_set`: the paper's rule with a clean subset: `clean_scores[N, C]`, one-vs-rest classifiers
  trained on the clean subset, screen each example's given label (flagged when below `threshold`,
  default 0.5).
* `prune_by_class`: confident learning (Northcutt et al., 2021): the calibrated confident joint
  estimates how many labels of each class are wrong; those with the lowest self-confidence are flagged
  unless the model predicts their given label (cleanlab's `filter_by="prune_by_class"`).
* `prune_by_noise_rate`: confident learning's default (cleanlab's `filter_by="prune_by_noise_rate"`):
  for each off-diagonal cell (given k, true j) of the calibrated confident joint, the examples labeled k
  with the largest margin P(j|x) - P(k|x), as many as the cell counts, unless the model predicts their
  given label. Where prune_by_class asks "which labels of k are least likely", this asks "which
  examples of k look most like j", pair by pair, so it follows directional flips.
* `posterior`: the noise transition matrix T[true, given] is estimated from the
  predictions themselves (`estimate_transition`: k-means clusters of the probability vectors, one per
  true class, matched to classes by the Hungarian method), which holds for flips above 0.5 too; the
  clean posterior p = P(.|x) T^-1 gives each label's probability of being right, p_y T[y, y] / P(y|x)
  (Bayes), and a label is flagged when that is below `threshold` (0.5). It assumes, like confident
  learning, that `pred_probs` come from a model trained on these (noisy) labels, out of sample; when the
  clusters do not explain the given labels (`_reliable_transition`) it falls back to `prune_by_class`
  and says so in `LabelIssues.note`.
* `adaptive` (the default): `posterior` where the estimated noise is directional (the asymmetry of
  T's off-diagonal part, `transition_asymmetry`, is at least 0.55: pair flips), `prune_by_class` where
  it is symmetric (there prune_by_class matched or beat posterior on mnist5k), and `note` says which.
* `agreement`: the model's prediction differs from the given label (argmax rule), a simple baseline.

Every rule returns the same `LabelIssues`: the flagged mask, a label-quality score in [0, 1] (low =
likely wrong) and a suggested label per example, and the flagged examples ranked, most suspicious first.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np

RULES = ("adaptive", "posterior", "prune_by_class", "prune_by_noise_rate", "confidence", "agreement", "clean_set")
DEFAULT_CHUNK_SIZE = 8192
SUM_TOLERANCE = 1e-3  # |row sum - 1| allowed in pred_probs (float32 softmax outputs)


@dataclasses.dataclass(frozen=True)
class LabelIssues:
    """What `find_label_issues` returns (numpy arrays, all in the order of the input).

    Attributes:
      is_issue: bool `[N]`, the label is likely wrong.
      label_quality: float32 `[N]` in [0, 1], the score examples are ranked by; low = likely wrong.
      suggested_label: int64 `[N]`, the most likely other class for a flagged example, the given
        label otherwise.
      ranked_issues: int64 `[num_issues]`, positions of the flagged examples, lowest label quality
        first (ties: lower position first).
      rule: the rule that flagged them.
      transition: `posterior` only: the estimated noise transition matrix T[true, given] `[C, C]`.
      note: why the rule differs from the one asked for (`posterior` falls back to `prune_by_class`
        when the clusters of the predictions do not explain the given labels), else "".
    """

    is_issue: np.ndarray
    label_quality: np.ndarray
    suggested_label: np.ndarray
    ranked_issues: np.ndarray
    rule: str
    transition: Optional[np.ndarray] = None
    note: str = ""

    @property
    def num_issues(self) -> int:
        return int(len(self.ranked_issues))


# ---------------------------------------------------------------------------------------------- checks


def check_labels(labels, num_examples: Optional[int] = None, num_classes: Optional[int] = None) -> np.ndarray:
    """`labels` as int64 `[N]`, or ValueError naming the first bad value and what is allowed."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array [N], got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating):
            bad = ~(np.isfinite(labels) & (labels == np.round(labels)))
            if bad.any():
                position = int(np.flatnonzero(bad)[0])
                raise ValueError(f"labels must be integer class ids, got {labels[position].item()!r} at "
                                 f"position {position}")
        else:
            raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if num_examples is not None and len(labels) != num_examples:
        raise ValueError(f"labels must have one entry per row of pred_probs ({num_examples}), got {len(labels)}")
    if num_classes is not None:
        bad = (labels < 0) | (labels >= num_classes)
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            raise ValueError(f"labels must be class ids in [0, {num_classes}) (pred_probs has {num_classes} "
                             f"columns), got {labels[position]} at position {position}")
    return labels


def check_pred_probs(pred_probs, chunk_size: int = DEFAULT_CHUNK_SIZE, name: str = "pred_probs",
                     rows_sum_to_one: bool = True) -> np.ndarray:
    """Checks `[N, C]` finite probabilities in [0, 1] whose rows sum to 1 (within 1e-3), chunk by chunk.

    Returns the array itself (no copy when it is already a float array). Raises ValueError naming the
    first bad value, its position and what is allowed.
    """
    pred_probs = np.asarray(pred_probs)
    if pred_probs.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N examples, C classes], got shape {pred_probs.shape}")
    if not np.issubdtype(pred_probs.dtype, np.floating):
        raise ValueError(f"{name} must hold floating-point probabilities, got dtype {pred_probs.dtype}")
    num_examples, num_classes = pred_probs.shape
    if num_classes < 2:
        raise ValueError(f"{name} must have at least 2 class columns, got shape {pred_probs.shape}")
    if num_examples < 1:
        raise ValueError(f"{name} must have at least one row, got shape {pred_probs.shape}")
    for start in range(0, num_examples, chunk_size):
        block = pred_probs[start:start + chunk_size]
        bad = ~np.isfinite(block)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise ValueError(f"{name} must be finite, got {block[row, column].item()} at row {start + row}, "
                             f"column {column}")
        bad = (block < 0) | (block > 1)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise ValueError(f"{name} must be probabilities in [0, 1], got {block[row, column].item():g} at row "
                             f"{start + row}, column {column}")
        if rows_sum_to_one:
            sums = block.sum(axis=1, dtype=np.float64)
            bad = np.abs(sums - 1.0) > SUM_TOLERANCE
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(f"each row of {name} must sum to 1 (class probabilities, e.g. a softmax), "
                                 f"row {start + row} sums to {sums[row]:.6g}")
    return pred_probs


def _check_chunk_size(chunk_size) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    return int(chunk_size)


def _check_fraction(name: str, value) -> float:
    # The same check as stage1.selection's, repeated on purpose: this file loads alone with numpy only
    # (tests/stage1/test_label_issues.py::test_module_imports_no_tensorflow), importing no tf_twostage module.
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


# ------------------------------------------------------------------------------------------- one pass


@dataclasses.dataclass(frozen=True)
class _RowStats:
    """Per-example numbers of one pass over pred_probs (all `[N]`)."""

    self_confidence: np.ndarray  # P(given label | x)
    best_other: np.ndarray  # max over k != given of P(k | x)
    best_other_label: np.ndarray  # its class (first maximum)
    prediction: np.ndarray  # argmax P(. | x) (first maximum)


def _row_stats(labels: np.ndarray, pred_probs: np.ndarray, chunk_size: int) -> _RowStats:
    num_examples = len(labels)
    self_confidence = np.empty(num_examples, np.float32)
    best_other = np.empty(num_examples, np.float32)
    best_other_label = np.empty(num_examples, np.int64)
    prediction = np.empty(num_examples, np.int64)
    for start in range(0, num_examples, chunk_size):
        stop = min(num_examples, start + chunk_size)
        block = np.array(pred_probs[start:stop], dtype=np.float32)  # a copy we may overwrite
        rows = np.arange(stop - start)
        given = labels[start:stop]
        prediction[start:stop] = block.argmax(axis=1)
        self_confidence[start:stop] = block[rows, given]
        block[rows, given] = -1.0
        best_other_label[start:stop] = block.argmax(axis=1)
        best_other[start:stop] = block[rows, best_other_label[start:stop]]
    return _RowStats(self_confidence, best_other, best_other_label, prediction)


def per_class_thresholds(labels: np.ndarray, self_confidence: np.ndarray, num_classes: int) -> np.ndarray:
    """t_c: the mean P(c|x) over the examples labeled c (confident learning's per-class threshold).

    Computed as cleanlab does (a float32 mean per class, at least 2e-6), so that confident joints match
    to the example; a class without examples gets 2 (nothing is confidently it).
    """
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    values = np.asarray(self_confidence, np.float32)[order]
    starts = np.searchsorted(sorted_labels, np.arange(num_classes), side="left")
    ends = np.searchsorted(sorted_labels, np.arange(num_classes), side="right")
    thresholds = np.array([np.mean(values[start:end]) if end > start else 2.0 for start, end in zip(starts, ends)],
                          np.float32)
    return np.clip(thresholds, 2e-6, None)


def confident_joint(labels: np.ndarray, pred_probs: np.ndarray, thresholds: np.ndarray,
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple:
    """(counts `[C, C]`, confident class `[N]`): example i counts in (given label, j) where j is the one
    class with P(j|x) >= t_j - 1e-6 or, when several reach their thresholds, the argmax of P(.|x)
    (cleanlab's `compute_confident_joint`, diagonal clipped to at least 1 likewise); -1 (not counted)
    where no class reaches its threshold. Rows: given label; columns: the (confidently) predicted true label.
    """
    num_examples, num_classes = pred_probs.shape
    thresholds = np.asarray(thresholds, np.float32) - np.float32(1e-6)
    confident = np.empty(num_examples, np.int64)
    for start in range(0, num_examples, chunk_size):
        block = np.asarray(pred_probs[start:start + chunk_size], dtype=np.float32)
        above = block >= thresholds[None, :]
        count = above.sum(axis=1)
        best = np.where(count > 1, block.argmax(axis=1), above.argmax(axis=1))
        confident[start:start + len(block)] = np.where(count > 0, best, -1)
    valid = confident >= 0
    counts = np.bincount(labels[valid] * num_classes + confident[valid],
                         minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    np.fill_diagonal(counts, np.maximum(np.diag(counts), 1))
    return counts, confident


def calibrate_joint(counts: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The confident joint rescaled so that row i sums to the number of examples labeled i (float).

    A row without any confident example keeps all its examples on the diagonal.
    """
    label_counts = np.bincount(labels, minlength=num_classes)
    counts = np.where(counts.sum(axis=1, keepdims=True) > 0, counts, np.eye(num_classes, dtype=counts.dtype))
    calibrated = (counts.T / counts.sum(axis=1) * label_counts).T  # cleanlab's arithmetic, for equal rounding
    return calibrated / np.sum(calibrated) * label_counts.sum()


def estimate_issue_counts(labels: np.ndarray, pred_probs: np.ndarray, chunk_size: int = DEFAULT_CHUNK_SIZE,
                          stats: Optional[_RowStats] = None) -> tuple:
    """(issues per class `[C]` (int), calibrated joint `[C, C]`, thresholds `[C]`)."""
    num_classes = pred_probs.shape[1]
    if stats is None:
        stats = _row_stats(labels, pred_probs, chunk_size)
    thresholds = per_class_thresholds(labels, stats.self_confidence, num_classes)
    counts, _ = confident_joint(labels, pred_probs, thresholds, chunk_size)
    joint = calibrate_joint(counts, labels, num_classes)
    label_counts = np.bincount(labels, minlength=num_classes)
    return label_counts - np.diag(round_preserving_row_totals(joint)), joint, thresholds


# ------------------------------------------------------------------------------ noise transition estimate


def confident_transition(labels, pred_probs, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    """T[true, given] from confident learning's calibrated confident joint (Northcutt et al., 2021, eq. 3-4).

    The calibrated joint Q[given k, true j] counts the examples labeled k that the model confidently
    puts in class j (P(j|x) at least the mean self-confidence of class j), rescaled to the label counts;
    column j normalized is P(given | true = j), i.e. row j of T. A class never confidently predicted
    keeps an identity row. Only confident examples count, so a model's hesitations are not read as
    noise the way the anchor and cluster estimates read them: on the finished runs of the mnist5k
    benchmark (36 runs, tuned preset, none / symmetric 0.2 / asymmetric 0.2 / 0.6) correcting the noisy
    validation accuracy with this T from the scored model's training-set predictions was on average 2.6
    points from test accuracy (the true T: 1.8; anchor points on the same predictions: 8.7, clusters:
    4.6 to 8.6). Like every estimate from noisy labels alone it cannot tell flips above 0.5 from the
    true class when the model has learnt them (cross-entropy at asymmetric 0.6: 61-83% for 58-60%).
    Returns a row-stochastic `[C, C]` float64 matrix.
    """
    chunk_size = _check_chunk_size(chunk_size)
    pred_probs = check_pred_probs(pred_probs, chunk_size)
    labels = check_labels(labels, len(pred_probs), pred_probs.shape[1])
    _, joint, _ = estimate_issue_counts(labels, pred_probs, chunk_size)
    transition = np.asarray(joint, np.float64).T
    totals = transition.sum(axis=1, keepdims=True)
    return np.where(totals > 0, transition / np.where(totals > 0, totals, 1.0), np.eye(len(transition)))



def _kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int) -> tuple:
    """Lloyd's k-means with k-means++ seeding: (centers `[k, D]`, assignment `[n]`)."""
    n = len(points)
    squared = np.einsum("ij,ij->i", points, points)
    centers = np.empty((k, points.shape[1]), points.dtype)
    centers[0] = points[rng.integers(n)]
    distance = np.maximum(squared - 2 * points @ centers[0] + centers[0] @ centers[0], 0)
    for j in range(1, k):
        total = distance.sum()
        pick = rng.choice(n, p=distance / total) if total > 0 else rng.integers(n)
        centers[j] = points[pick]
        distance = np.minimum(distance, np.maximum(squared - 2 * points @ centers[j] + centers[j] @ centers[j], 0))
    assignment = np.zeros(n, np.int64)
    for iteration in range(iterations):
        scores = points @ centers.T * -2 + np.einsum("ij,ij->i", centers, centers)[None, :]
        new_assignment = scores.argmin(axis=1)
        if iteration and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        sizes = np.bincount(assignment, minlength=k)
        sums = np.zeros_like(centers, dtype=np.float64)
        np.add.at(sums, assignment, points)
        filled = sizes > 0
        centers[filled] = (sums[filled] / sizes[filled, None]).astype(points.dtype)
    return centers, assignment


def max_weight_assignment(weights: np.ndarray) -> np.ndarray:
    """`column[r]` for each row r of a square matrix, maximizing the sum of `weights[r, column[r]]`.

    The Hungarian method (shortest augmenting paths with potentials, O(n^3), vectorized per row).
    """
    cost = -np.asarray(weights, np.float64)
    n = cost.shape[0]
    if cost.shape != (n, n):
        raise ValueError(f"weights must be square, got shape {cost.shape}")
    u, v = np.zeros(n + 1), np.zeros(n + 1)
    match = np.zeros(n + 1, np.int64)  # match[column] = row (1-based; 0 = free)
    way = np.zeros(n + 1, np.int64)
    for row in range(1, n + 1):
        match[0] = row
        column = 0
        minimum = np.full(n + 1, np.inf)
        used = np.zeros(n + 1, bool)
        while True:
            used[column] = True
            current = match[column]
            free = ~used[1:]
            reduced = cost[current - 1] - u[current] - v[1:]
            better = free & (reduced < minimum[1:])
            minimum[1:][better] = reduced[better]
            way[1:][better] = column
            candidates = np.where(free, minimum[1:], np.inf)
            nxt = int(np.argmin(candidates)) + 1
            delta = candidates[nxt - 1]
            u[match[used]] += delta
            v[used] -= delta
            minimum[1:][free] -= delta
            column = nxt
            if match[column] == 0:
                break
        while column:
            previous = way[column]
            match[column] = match[previous]
            column = previous
    assignment = np.empty(n, np.int64)
    assignment[match[1:] - 1] = np.arange(n)
    return assignment


def estimate_transition(pred_probs, seed: int = 0, restarts: Optional[int] = None, max_points: int = 20000,
                        iterations: Optional[int] = None) -> np.ndarray:
    """The noise transition matrix T[true, given] from out-of-sample predictions, for flips above 0.5 too.

    The probability vector P(.|x) of an image whose true class is j is, when the model has learnt the
    noisy labels, near row j of T. So the rows of T are found as the C centers of k-means on the rows of
    pred_probs (`max_points` of them, drawn with `seed`), and each center is given to a class by the
    assignment of centers to classes that maximizes the total probability mass its members put on their
    class (the Hungarian method). Unlike the anchor-point estimate (a class's most confident example),
    this recovers a row whose flip rate exceeds 0.5: the images of a class mostly labeled as another
    still form their own cluster. Of `restarts` k-means runs, the one of least inertia (the k-means
    objective) wins; choosing by matched mass instead was less stable (mnist5k, asymmetric 0.6: F1 0.68
    to 0.90 depending on the seed, against 0.90 for every seed by inertia with 3 restarts).
    By default 5 restarts of up to 30 iterations, or with more than 100 classes (where one k-means
    iteration on n points costs n x C x C operations) one run of up to 10 on at most 10 x C points.
    Returns a row-stochastic `[C, C]` float64 matrix.
    """
    return _cluster_transitions(pred_probs, None, seed, restarts, max_points, iterations)[0]


def _cluster_transitions(pred_probs, labels, seed: int, restarts: Optional[int] = None, max_points: int = 20000,
                         iterations: Optional[int] = None) -> tuple:
    """(T from the cluster centers, T from the given labels of each cluster's members or None)."""
    pred_probs = np.asarray(pred_probs)
    num_examples, num_classes = pred_probs.shape
    many = num_classes > 100
    restarts = (1 if many else 5) if restarts is None else int(restarts)
    iterations = (10 if many else 30) if iterations is None else int(iterations)
    if many:
        max_points = min(max_points, 10 * num_classes)
    rng = np.random.default_rng(seed)
    positions = np.arange(num_examples)
    if num_examples > max_points:
        positions = np.sort(rng.choice(num_examples, max_points, replace=False))
    points = np.asarray(pred_probs[positions], np.float32)
    best = None
    for _ in range(restarts):
        centers, assignment = _kmeans(points, min(num_classes, len(points)), rng, iterations)
        inertia = float(np.sum((points - centers[assignment]) ** 2))
        if best is None or inertia < best[0]:
            best = (inertia, centers, assignment)
    _, centers, assignment = best
    sizes = np.bincount(assignment, minlength=len(centers)).astype(np.float64)
    mass = np.zeros((num_classes, num_classes))
    mass[:len(centers)] = sizes[:, None] * centers
    classes = max_weight_assignment(mass)
    filled = np.flatnonzero(sizes > 0)

    def matrix(rows):
        transition = np.eye(num_classes)
        transition[classes[filled]] = rows[filled]
        transition = np.clip(transition, 0, None)
        return transition / transition.sum(axis=1, keepdims=True)

    by_labels = None
    if labels is not None:
        histograms = np.zeros((len(centers), num_classes))
        np.add.at(histograms, (assignment, np.asarray(labels)[positions]), 1.0)
        by_labels = matrix(histograms)
    return matrix(centers.astype(np.float64)), by_labels


# ---------------------------------------------------------------------------------------------- rules


def _lowest_per_class(labels: np.ndarray, score: np.ndarray, counts: np.ndarray, candidates=None,
                      kind: Optional[str] = None) -> np.ndarray:
    """Mask of the `counts[c]` examples of lowest `score` among those labeled c (and `candidates`).

    Within a class, examples in position order are sorted by `np.argsort` of `kind` (default: numpy's,
    so that ties fall as in cleanlab's prune_by_class; "stable": lower position first).
    """
    flagged = np.zeros(len(labels), bool)
    groups = class_groups(labels, len(counts), candidates)
    for c in np.flatnonzero(counts > 0):
        group = groups[c]
        flagged[group[np.argsort(score[group], kind=kind)[:counts[c]]]] = True
    return flagged


def class_groups(labels: np.ndarray, num_classes: int, candidates=None) -> list:
    """Per class c, the positions labeled c (among `candidates`, a mask; default all), in position order."""
    pool = np.arange(len(labels)) if candidates is None else np.flatnonzero(candidates)
    members = pool[np.argsort(labels[pool], kind="stable")]  # each class a run, in position order
    bounds = np.searchsorted(labels[members], np.arange(num_classes + 1), side="left")
    return [members[bounds[c]:bounds[c + 1]] for c in range(num_classes)]


def round_preserving_row_totals(matrix: np.ndarray) -> np.ndarray:
    """Rounds each row to integers whose sum is the row's rounded sum (largest remainders first), as
    cleanlab's `round_preserving_row_totals`."""
    rounded = np.rint(matrix)
    for row, values in enumerate(np.asarray(matrix, np.float64)):
        ints = rounded[row]
        target, total = np.round(values.sum()), np.round(ints.sum())
        while abs(total - target) > 1e-6:
            difference = np.round(target - total)
            step = -1 if difference < 0 else 1
            changes = min(int(abs(difference)), len(values))
            ints[np.argsort(values - ints)[::-step][:changes]] += step  # most under- (over-)rounded first
            total = np.round(ints.sum())
    return rounded.astype(np.int64)


def _floor_count(fraction: float, count: int) -> int:
    return int(math.ceil(round(fraction * count, 9)))


def confidence_rule_kept(labels: np.ndarray, self_confidence: np.ndarray, agrees: np.ndarray, num_classes: int,
                         threshold: float = 0.9, floor_fraction: float = 0.1, top_up: str = "class") -> np.ndarray:
    """The paper's rule (`select_confident_labels`) on per-example numbers: the kept mask.

    Same result as `stage1.selection.select_confident_labels(pred_probs, labels, ...)` given
    `self_confidence = pred_probs[i, labels[i]]` and `agrees = argmax(pred_probs[i]) == labels[i]`.
    """
    kept = agrees & (self_confidence >= threshold)
    label_counts = np.bincount(labels, minlength=num_classes)
    kept_counts = np.bincount(labels[kept], minlength=num_classes)
    missing = np.array([_floor_count(floor_fraction, n) for n in label_counts]) - kept_counts
    if np.any(missing > 0):
        pool = ~kept & (agrees if top_up == "agreeing" else True)
        kept |= _lowest_per_class(labels, -self_confidence, np.maximum(missing, 0), candidates=pool, kind="stable")
    return kept


def find_label_issues(labels, pred_probs, rule: str = "adaptive", clean_scores=None, threshold: Optional[float] = None,
                      floor_fraction: float = 0.1, chunk_size: int = DEFAULT_CHUNK_SIZE,
                      seed: int = 0) -> LabelIssues:
    """Flags and ranks the examples whose given label is likely wrong.

    Args:
      labels: `[N]` given (possibly noisy) integer labels in [0, C).
      pred_probs: `[N, C]` out-of-sample predicted probabilities (rows sum to 1): K-fold predictions,
        never those of a model trained on these very labels (it would agree with them).
      rule: one of `RULES` (see the module docstring).
      clean_scores: `[N, C]` one-vs-rest scores in [0, 1] from classifiers trained on a clean subset
        (rule `clean_set` only).
      threshold: `confidence`: P(label|x) that keeps a label (default 0.9); `clean_set`: the score that
        keeps it (default 0.5); `posterior`: the probability of being right that keeps it (default 0.5).
      floor_fraction: `confidence`: the share of each class kept at least (the paper: 0.1).
      chunk_size: rows of pred_probs processed at once.
      seed: `posterior`: the seed of the k-means runs (deterministic given it).

    Returns:
      `LabelIssues`. The label quality is, for `posterior`, the estimated probability that the label is
      right (ties broken by the normalized margin); for `clean_set` the clean score of the label; else the
      normalized margin (P(label|x) - max_{k != label} P(k|x) + 1) / 2. ranked_issues orders the flagged
      examples by it.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    chunk_size = _check_chunk_size(chunk_size)
    pred_probs = check_pred_probs(pred_probs, chunk_size)
    num_examples, num_classes = pred_probs.shape
    labels = check_labels(labels, num_examples, num_classes)
    stats = _row_stats(labels, pred_probs, chunk_size)
    quality = ((stats.self_confidence - stats.best_other + 1.0) / 2.0).astype(np.float32)

    if rule == "clean_set":
        if clean_scores is None:
            raise ValueError("rule=clean_set needs clean_scores [N, C] (one-vs-rest scores of classifiers "
                             "trained on a clean subset)")
        clean_scores = check_pred_probs(clean_scores, chunk_size, name="clean_scores", rows_sum_to_one=False)
        if clean_scores.shape != pred_probs.shape:
            raise ValueError(f"clean_scores must have the shape of pred_probs {pred_probs.shape}, got "
                             f"{clean_scores.shape}")
        limit = 0.5 if threshold is None else _check_fraction("threshold", threshold)
        quality = np.asarray(clean_scores[np.arange(num_examples), labels], np.float32)
        is_issue = quality < limit
    elif rule == "confidence":
        limit = 0.9 if threshold is None else _check_fraction("threshold", threshold)
        floor_fraction = _check_fraction("floor_fraction", floor_fraction)
        is_issue = ~confidence_rule_kept(labels, stats.self_confidence, stats.prediction == labels, num_classes,
                                         limit, floor_fraction)
    elif rule == "agreement":
        is_issue = stats.prediction != labels
    elif rule in ("posterior", "adaptive"):
        transition = _reliable_transition(pred_probs, labels, seed)
        asymmetry = None if transition is None else transition_asymmetry(transition)
        note = UNRELIABLE_NOTE if transition is None else ""
        if rule == "adaptive" and transition is not None:
            note = "" if asymmetry >= MIN_ASYMMETRY else SYMMETRIC_NOTE.format(asymmetry)
        if note:
            return _result(_prune_by_class(labels, pred_probs, chunk_size, stats), quality, labels, stats,
                           "prune_by_class", note=f"{rule}: {note}")
        limit = 0.5 if threshold is None else _check_fraction("threshold", threshold)
        correct, suggested = _posterior_correct(labels, pred_probs, transition, chunk_size)
        is_issue = correct < limit
        stats = dataclasses.replace(stats, best_other_label=suggested)
        # Rank by the probability that the label is right, ties (often 0) by the normalized margin.
        order_quality = correct - 1e-3 * (1.0 - quality)
        note = "" if rule == "posterior" else f"adaptive: the estimated noise is directional (asymmetry {asymmetry:.2f})"
        return _result(is_issue, np.clip(order_quality, 0.0, 1.0), labels, stats, "posterior", transition, note)
    elif rule == "prune_by_noise_rate":
        is_issue = _prune_by_noise_rate(labels, pred_probs, chunk_size, stats)
    else:
        is_issue = _prune_by_class(labels, pred_probs, chunk_size, stats)
    return _result(is_issue, quality, labels, stats, rule)


MAX_CONDITION = 20.0  # of the label-based transition estimate the posterior rule trusts (_reliable_transition)
UNRELIABLE_NOTE = ("the predictions do not cluster by class consistently with the given labels (an undertrained "
                   "model, or predictions unrelated to the labels?), so prune_by_class was used instead of "
                   "posterior")


def _reliable_transition(pred_probs, labels, seed: int) -> Optional[np.ndarray]:
    """`estimate_transition(pred_probs)`, or None when the clusters do not explain the given labels.

    The check: the same clusters' *given labels* define a second estimate of T (row j: the label histogram
    of the cluster matched to class j); when the predictions come from a model that learnt these labels,
    it is well-conditioned like the first (condition number 2-9 on mnist5k's K-fold MLP predictions,
    symmetric 0.2 to asymmetric 0.6); for predictions unrelated to the labels its rows are alike (47 to
    2,800 on random probabilities), and then the posterior rule would flag at random.
    """
    transition, by_labels = _cluster_transitions(pred_probs, labels, seed)
    return transition if np.linalg.cond(by_labels) <= MAX_CONDITION else None


MIN_ASYMMETRY = 0.55  # adaptive: the posterior rule for directional noise, prune_by_class for symmetric noise
SYMMETRIC_NOTE = ("the estimated noise is not directional (asymmetry {:.2f} < 0.55: flips go both ways "
                  "between classes), where prune_by_class was as good or better than posterior, so it was used")


def transition_asymmetry(transition) -> float:
    """|O - O^T|_1 / |O|_1 for the off-diagonal part O of T: 0 for symmetric noise, up to 2 for one-way flips.

    On mnist5k's K-fold MLP predictions (3 seeds each) it was 0.16-0.26 at symmetric 0.5, 0.41-0.48 at
    symmetric 0.2, 0.67-0.82 at asymmetric (pair flips) 0.2 and 1.07-1.16 at asymmetric 0.6.
    """
    transition = np.asarray(transition, np.float64)
    off = transition - np.diag(np.diag(transition))
    total = off.sum()
    return float(np.abs(off - off.T).sum() / total) if total > 0 else 0.0


def _prune_by_class(labels, pred_probs, chunk_size: int, stats: _RowStats) -> np.ndarray:
    """Confident learning's prune_by_class: per class the estimated number of wrong labels, lowest
    self-confidence first, keeping only examples whose prediction differs from the label (as cleanlab)."""
    counts, _, _ = estimate_issue_counts(labels, pred_probs, chunk_size, stats)
    return _lowest_per_class(labels, stats.self_confidence, counts) & (stats.prediction != labels)


def prune_counts(joint: np.ndarray) -> np.ndarray:
    """`counts[true, given]` (int) to flag per off-diagonal cell, from the calibrated joint `[given, true]`:
    rounded per given label, every class keeping at least one example on the diagonal (the amount added
    there taken evenly from the column's nonzero off-diagonal cells), rounded again per true class
    (cleanlab's `_keep_at_least_n_per_class` with n = 1, so that counts agree with it)."""
    counts = round_preserving_row_totals(joint).T.astype(np.float64)
    diagonal = np.diag(counts).copy()
    raised = np.maximum(diagonal, 1.0)
    nonzero_off = np.maximum(np.count_nonzero(counts, axis=0) - 1.0, 1.0)
    counts = np.clip(counts - (raised - diagonal) / nonzero_off, 0.0, None)
    np.fill_diagonal(counts, raised)
    return round_preserving_row_totals(counts)


def _prune_by_noise_rate(labels, pred_probs, chunk_size: int, stats: _RowStats) -> np.ndarray:
    """Confident learning's prune_by_noise_rate: for each cell (given k, true j) of `prune_counts`, the
    examples labeled k of largest margin P(j|x) - P(k|x), keeping only those whose prediction differs from
    the label (as cleanlab). Reads the needed columns of one class at a time, at most about
    `chunk_size` x C values at once."""
    _, joint, _ = estimate_issue_counts(labels, pred_probs, chunk_size, stats)
    counts = prune_counts(joint)
    num_classes = counts.shape[0]
    flagged = np.zeros(len(labels), bool)
    for k, group in enumerate(class_groups(labels, num_classes)):
        others = np.flatnonzero(counts[:, k] > 0)
        others = others[others != k]
        if len(group) <= 1 or not len(others):
            continue
        own = np.asarray(pred_probs[group, k])
        mask = np.zeros(len(group), bool)
        step = max(1, (chunk_size * num_classes) // len(group))
        for start in range(0, len(others), step):
            columns = others[start:start + step]
            margins = np.asarray(pred_probs[np.ix_(group, columns)]) - own[:, None]
            for position, j in enumerate(columns):
                mask[np.argsort(-margins[:, position])[:counts[j, k]]] = True
        flagged[group[mask]] = True
    return flagged & (stats.prediction != labels)


def _posterior_correct(labels, pred_probs, transition, chunk_size: int) -> tuple:
    """(P(given label is right | x, label) `[N]`, the most likely other clean class `[N]`) under `transition`.

    Clean posterior p = P(.|x) T^-1 (clipped at 0, renormalized); Bayes: P(right) = p_y T[y, y] / P(y|x).
    """
    inverse = np.linalg.pinv(transition).astype(np.float32)
    diagonal = np.diag(transition).astype(np.float32)
    num_examples = len(labels)
    correct = np.empty(num_examples, np.float32)
    suggested = np.empty(num_examples, np.int64)
    for start in range(0, num_examples, chunk_size):
        block = np.asarray(pred_probs[start:start + chunk_size], dtype=np.float32)
        rows = np.arange(len(block))
        given = labels[start:start + len(block)]
        clean = np.clip(block @ inverse, 0.0, None)
        totals = clean.sum(axis=1)
        clean = np.where(totals[:, None] > 0, clean / np.where(totals > 0, totals, 1.0)[:, None], block)
        noisy = block[rows, given]
        right = np.where(noisy > 0, clean[rows, given] * diagonal[given] / np.where(noisy > 0, noisy, 1.0), 0.0)
        correct[start:start + len(block)] = np.clip(right, 0.0, 1.0)
        clean[rows, given] = -1.0
        suggested[start:start + len(block)] = clean.argmax(axis=1)
    return correct, suggested


def _result(is_issue, quality, labels, stats: _RowStats, rule: str, transition=None, note: str = "") -> LabelIssues:
    is_issue = np.asarray(is_issue, bool)
    suggested = np.where(is_issue, stats.best_other_label, labels).astype(np.int64)
    flagged = np.flatnonzero(is_issue)
    ranked = flagged[np.lexsort((flagged, quality[flagged]))]
    return LabelIssues(is_issue=is_issue, label_quality=np.asarray(quality, np.float32),
                       suggested_label=suggested, ranked_issues=ranked.astype(np.int64), rule=rule,
                       transition=transition, note=note)


# ----------------------------------------------------------------------------------------- label health


def label_health(labels, pred_probs, class_names: Optional[Sequence[str]] = None, top_pairs: int = 10,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, seed: int = 0) -> dict:
    """The label quality of a dataset, estimated from out-of-sample predictions (JSON-serializable).

    Built on the `posterior` rule's estimates: the noise transition matrix T[true, given]
    (`estimate_transition`) and each example's probability that its label is right, where the `adaptive`
    rule picks `posterior`; elsewhere on the calibrated confident joint (`estimator` says which). On
    mnist5k the posterior estimate of the noise rate counted the model's own confusions as flips under
    symmetric noise (0.42 at a realized 0.20), where the confident joint's was closer.

    Returns:
      `num_examples`, `num_classes`;
      `estimated_noise_rate`: the share of wrong labels, sum_i n_i (1 - T[i, i]) / N with n = the
        estimated true class sizes (the given class sizes times T^-1);
      `per_class`: per given class `class`, `name`, `labeled`, `estimated_issues` (expected number of
        wrong labels: the sum over its examples of 1 - P(label right)), `estimated_issue_fraction`,
        `label_quality` (mean P(label right)), `mean_self_confidence` (mean P(label|x));
      `confused_pairs`: the `top_pairs` largest estimated flows of true class `true` to given label
        `given` (`count`), with `flip_rate` = T[true, given] (of the images really `true`, the share
        labeled `given`) and `share_of_given` (of the examples labeled `given`, the share really `true`);
      `estimated_transition`: T as a nested list, when C <= 100.
    """
    chunk_size = _check_chunk_size(chunk_size)
    pred_probs = check_pred_probs(pred_probs, chunk_size)
    num_examples, num_classes = pred_probs.shape
    labels = check_labels(labels, num_examples, num_classes)
    names = [str(c) for c in range(num_classes)] if class_names is None else [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names must have {num_classes} names (one per column of pred_probs), "
                         f"got {len(names)}")
    if isinstance(top_pairs, bool) or not isinstance(top_pairs, (int, np.integer)) or top_pairs < 0:
        raise ValueError(f"top_pairs must be an integer >= 0, got {top_pairs!r}")
    stats = _row_stats(labels, pred_probs, chunk_size)
    labeled = np.bincount(labels, minlength=num_classes).astype(np.float64)
    transition = _reliable_transition(pred_probs, labels, seed)
    reliable = transition is not None and transition_asymmetry(transition) >= MIN_ASYMMETRY
    if reliable:
        right, _ = _posterior_correct(labels, pred_probs, transition, chunk_size)
        wrong_sum = np.bincount(labels, weights=1.0 - right.astype(np.float64), minlength=num_classes)
        true_sizes = np.clip(labeled @ np.linalg.pinv(transition), 0.0, None)
        true_sizes *= num_examples / max(true_sizes.sum(), 1e-12)
        flows = true_sizes[:, None] * transition  # [true, given] expected counts
    else:  # the calibrated confident joint (rows: given, columns: true)
        _, joint, _ = estimate_issue_counts(labels, pred_probs, chunk_size, stats)
        flows = joint.T
        wrong_sum = joint.sum(axis=1) - np.diag(joint)
        transition = flows / np.maximum(flows.sum(axis=1, keepdims=True), 1e-12)
    confidence_sum = np.bincount(labels, weights=stats.self_confidence.astype(np.float64), minlength=num_classes)
    per_class = []
    for c in range(num_classes):
        n = int(labeled[c])
        per_class.append({
            "class": c, "name": names[c], "labeled": n, "estimated_issues": int(round(wrong_sum[c])),
            "estimated_issue_fraction": float(wrong_sum[c] / n) if n else 0.0,
            "label_quality": float(1.0 - wrong_sum[c] / n) if n else None,
            "mean_self_confidence": float(confidence_sum[c] / n) if n else None,
        })
    off_diagonal = flows.copy()
    np.fill_diagonal(off_diagonal, 0.0)
    pairs = []
    for cell in np.argsort(-off_diagonal, axis=None, kind="stable")[:top_pairs]:
        true, given = divmod(int(cell), num_classes)
        if off_diagonal[true, given] < 0.5:  # rounds to no example
            break
        pairs.append({
            "given": given, "given_name": names[given], "true": true, "true_name": names[true],
            "count": int(round(off_diagonal[true, given])), "flip_rate": float(transition[true, given]),
            "share_of_given": float(off_diagonal[true, given] / labeled[given]) if labeled[given] else 0.0,
        })
    health = {
        "num_examples": int(num_examples), "num_classes": int(num_classes),
        "estimated_noise_rate": float(off_diagonal.sum() / num_examples),
        "per_class": per_class, "confused_pairs": pairs,
        "estimator": "posterior" if reliable else "confident joint",
    }
    if num_classes <= 100:
        health["estimated_transition"] = np.round(transition, 4).tolist()
    return health
