"""Synthetic label noise: transition matrices (pure maths) and a per-example sampler (TF).

T[i, j] = P(noisy label j | clean label i). Each example's noisy label is drawn from row `clean` of T
with randomness that depends only on (seed, example index), so it is the same whether computed eagerly
on the whole training set, in any order or batch, or per element inside `tf.data.Dataset.map`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

import numpy as np
import tensorflow as tf

NOISE_TYPES = ("none", "symmetric", "uniform", "asymmetric", "matrix")

# The paper's pair flips (each source flipped with probability p).
ASYMMETRIC_PAIRS = {
    "mnist": {2: 7, 3: 8, 5: 6, 7: 1},
    # truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
}
_DATASET_PAIRS = {"mnist5k": "mnist", "mnist": "mnist", "cifar10": "cifar10"}

# SplitMix64 constants (Steele et al., 2014): a fast, well-mixed 64-bit hash.
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MIX_1, _MIX_2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _show(value) -> str:
    """A value as an error message shows it: numbers plainly, anything else quoted."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return str(value)
    return repr(value)


def default_pairs(dataset_name: str) -> dict[int, int]:
    """The paper's asymmetric pairs for `dataset_name` (MNIST variants and CIFAR-10)."""
    if dataset_name not in _DATASET_PAIRS:
        raise ValueError(
            f"asymmetric noise on dataset {dataset_name!r} has no default pairs (the paper defines them "
            f"for {', '.join(sorted(_DATASET_PAIRS))}); give them as noise.mapping, e.g. '0->1,2->3'"
        )
    return dict(ASYMMETRIC_PAIRS[_DATASET_PAIRS[dataset_name]])


def parse_mapping(text: str) -> dict[int, int]:
    """Parses pairs such as "2->7, 3->8" into {2: 7, 3: 8}."""
    mapping = {}
    for part in str(text).split(","):
        match = re.fullmatch(r"\s*(\d+)\s*->\s*(\d+)\s*", part)
        if not match:
            raise ValueError(f"noise.mapping must look like '2->7,3->8', got {text!r} (bad part {part.strip()!r})")
        source, target = int(match.group(1)), int(match.group(2))
        if source in mapping:
            raise ValueError(f"noise.mapping lists source class {source} twice in {text!r}")
        mapping[source] = target
    return mapping


def check_rate(rate) -> float:
    """The noise rate as a float, or a ValueError naming the bad value."""
    is_number = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, bool)
    if not (is_number and math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise ValueError(f"noise.rate must be in [0, 1], got {_show(rate)}")
    return float(rate)


def check_transition_matrix(matrix, num_classes: int) -> np.ndarray:
    """A C x C row-stochastic matrix (finite, non-negative, rows summing to 1 within 1e-6) as float64."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"the transition matrix must be {num_classes} x {num_classes}, got shape {matrix.shape}")
    bad = ~np.isfinite(matrix) | (matrix < 0)
    if np.any(bad):
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"transition-matrix entries must be finite and non-negative; entry [{row}, {col}] is {matrix[row, col]}"
        )
    sums = matrix.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > 1e-6):
        row = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(f"each transition-matrix row must sum to 1; row {row} sums to {sums[row]:.9g}")
    return matrix


def transition_matrix(noise_type: str, rate: float, num_classes: int, mapping=None, matrix=None) -> np.ndarray:
    """The C x C transition matrix of a noise model (float64, rows sum to 1).

    symmetric: flip to one of the other C-1 classes; uniform: re-draw among all C; asymmetric: flip
    each `mapping` source to its target; matrix: `matrix` as given (`rate` unused); none: identity.
    """
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"noise.type must be one of {', '.join(NOISE_TYPES)}; got {noise_type!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"the number of classes must be an integer >= 2, got {_show(num_classes)}")
    c = int(num_classes)
    if noise_type == "matrix":
        if matrix is None:
            raise ValueError("noise.type='matrix' needs a transition matrix (noise.matrix_file)")
        return check_transition_matrix(matrix, c)
    rate = check_rate(rate)
    eye = np.eye(c)
    if noise_type == "none":
        return eye
    if noise_type == "symmetric":
        return (1.0 - rate) * eye + rate / (c - 1) * (1.0 - eye)
    if noise_type == "uniform":
        return (1.0 - rate) * eye + rate / c
    if not mapping:
        raise ValueError("noise.type='asymmetric' needs class pairs (noise.mapping such as '2->7,3->8')")
    result = eye
    for source, target in mapping.items():
        for cls in (source, target):
            if isinstance(cls, bool) or not isinstance(cls, (int, np.integer)) or not 0 <= cls < c:
                raise ValueError(f"noise.mapping class {_show(cls)} is outside [0, {c}) (pair {source}->{target})")
        if source == target:
            raise ValueError(f"noise.mapping maps class {source} onto itself")
        result[source, source] = 1.0 - rate
        result[source, target] = rate
    return result


def load_matrix_file(path, num_classes: int) -> np.ndarray:
    """Reads a C x C transition matrix from `.npy` (no pickles) or `.csv` / `.txt` (comma or whitespace)."""
    path = os.fspath(path)
    if not path.endswith((".npy", ".csv", ".txt")):
        raise ValueError(f"noise.matrix_file must end in .npy, .csv or .txt, got {path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"noise.matrix_file {path!r} does not exist; give a C x C transition matrix as a "
                         ".npy, .csv or .txt file")
    try:
        if path.endswith(".npy"):
            matrix = np.load(path, allow_pickle=False)
        else:
            with open(path, encoding="utf-8") as file:
                lines = file.read().replace(",", " ").splitlines()
            matrix = np.loadtxt(lines, dtype=np.float64, ndmin=2)
    except (ValueError, OSError) as error:
        raise ValueError(f"noise.matrix_file {path!r} is not a readable matrix: {error}") from error
    try:
        return check_transition_matrix(matrix, num_classes)
    except ValueError as error:
        raise ValueError(f"noise.matrix_file {path!r}: {error}") from error


def _square_transition_matrix(matrix) -> np.ndarray:
    """`matrix` checked as a transition matrix over as many classes as it has rows."""
    matrix = np.asarray(matrix, np.float64)
    return check_transition_matrix(matrix, matrix.shape[0] if matrix.ndim else 0)


def _mix64(z: tf.Tensor) -> tf.Tensor:
    """SplitMix64's finalizer on uint64 (wrapping arithmetic)."""
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(30, tf.uint64)))
    z = z * tf.constant(_MIX_1, tf.uint64)
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(27, tf.uint64)))
    z = z * tf.constant(_MIX_2, tf.uint64)
    return tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(31, tf.uint64)))


def _uniform(seed, index: tf.Tensor) -> tf.Tensor:
    """A float64 in [0, 1) per element of `index`, a pure function of (seed, index).

    Element-wise integer hashing (not `stateless_uniform`, which `vectorized_map` can only run as a
    slow per-example loop), so a scalar and a whole array give bit-identical draws, fast.
    """
    key = _mix64(tf.bitcast(tf.cast(seed, tf.int64), tf.uint64))
    counter = tf.bitcast(index, tf.uint64) + tf.constant(1, tf.uint64)
    bits = _mix64(key + counter * tf.constant(_GOLDEN_GAMMA, tf.uint64))
    # The top 53 bits convert to float64 exactly.
    return tf.cast(tf.bitwise.right_shift(bits, tf.constant(11, tf.uint64)), tf.float64) * 2.0**-53


def _cumulative_rows(matrix: np.ndarray) -> np.ndarray:
    """Row-wise cumulative sums for inverse-CDF sampling, guarded against float rounding.

    From each row's last positive entry on, the cumulative value is +inf: a draw just below 1 can then
    never pass the last drawable class, even when the row sums to 0.9999999 or ends in zeros.
    """
    cumulative = np.cumsum(matrix, axis=1)
    num_classes = matrix.shape[1]
    last_positive = num_classes - 1 - np.argmax(matrix[:, ::-1] > 0, axis=1)
    cumulative[np.arange(num_classes)[np.newaxis, :] >= last_positive[:, np.newaxis]] = np.inf
    return cumulative


def _inverse_cdf(cumulative: tf.Tensor, labels: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """The class j with cumulative[label, j-1] <= u < cumulative[label, j] (zero-width classes never)."""
    rows = tf.gather(cumulative, labels)
    return tf.reduce_sum(tf.cast(rows <= u[..., tf.newaxis], tf.int64), axis=-1)


def corrupt_labels(labels, index, matrix, seed: int) -> tf.Tensor:
    """Noisy int64 labels drawn from the rows of `matrix`; example i's draw depends on (seed, index[i]) only.

    Element-wise, so it works on scalars (inside `tf.data.Dataset.map`) and on tensors of any shape.
    """
    cumulative = tf.constant(_cumulative_rows(_square_transition_matrix(matrix)))
    labels = tf.cast(labels, tf.int64)
    index = tf.cast(index, tf.int64)
    return _inverse_cdf(cumulative, labels, _uniform(seed, index))


def add_label_noise(labels, index, matrix, seed: int) -> np.ndarray:
    """Eager numpy wrapper of `corrupt_labels`, checking its inputs."""
    labels, index = _as_integers(labels, "labels"), _as_integers(index, "index")
    if labels.shape != index.shape:
        raise ValueError(f"labels and index must have the same shape, got {labels.shape} and {index.shape}")
    _check_labels(labels, len(_square_transition_matrix(matrix)), "labels")
    return corrupt_labels(labels, index, matrix, seed).numpy()


def instance_dependent_noise(labels, index, probabilities, rate: float, seed: int):
    """Instance-dependent label noise: each image may flip to the class a trained model finds most similar.

    Image i flips to `argmax_{c != labels[i]} probabilities[i, c]` (the most similar other class) with
    probability `p_i = min(1, rate * d_i / mean(d))`, where `d_i = 1 - probabilities[i, labels[i]]` is how
    unsure the model is of the true class: ambiguous images flip more, and the expected rate is `rate`
    (a little less when some `p_i` are clipped at 1; all `p_i = rate` when the model is certain of every
    image). The draw of image i depends only on (seed, index[i]), like `corrupt_labels`.

    Args:
      labels: `[N]` clean labels in `[0, C)`.
      index: `[N]` example ids (the randomness is keyed on them).
      probabilities: `[N, C]` a trained model's class probabilities for the images (C >= 2).
      rate: the mean flip probability, in [0, 1].
      seed: the noise seed.

    Returns:
      `(noisy_labels [N] int64, flip_probabilities [N] float64)`.
    """
    rate = check_rate(rate)
    labels, index = _as_integers(labels, "labels"), _as_integers(index, "index")
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != len(labels) or probabilities.shape[1] < 2:
        raise ValueError(f"probabilities must be [N, C] with N = {len(labels)} labels and C >= 2 classes, got shape "
                         f"{probabilities.shape}")
    if labels.shape != index.shape or labels.ndim != 1:
        raise ValueError(f"labels and index must be 1-D of the same length, got {labels.shape} and {index.shape}")
    if not np.all(np.isfinite(probabilities)) or np.any(probabilities < 0):
        raise ValueError("probabilities must be finite and non-negative")
    _check_labels(labels, probabilities.shape[1], "labels")
    rows = np.arange(len(labels))
    others = probabilities.copy()
    others[rows, labels] = -np.inf
    similar = np.argmax(others, axis=1)
    doubt = np.clip(1.0 - probabilities[rows, labels], 0.0, 1.0)
    mean_doubt = float(doubt.mean()) if len(doubt) else 0.0
    flip_probability = np.full(len(labels), rate) if mean_doubt <= 0 else np.minimum(1.0, rate * doubt / mean_doubt)
    draws = _uniform(seed, tf.constant(index)).numpy().astype(np.float64) if len(labels) else np.zeros(0)
    noisy = np.where(draws < flip_probability, similar, labels).astype(np.int64)
    return noisy, flip_probability


def _as_integers(values, name: str) -> np.ndarray:
    """`values` as int64, refusing fractions, NaN, infinities, booleans and strings (integral floats pass)."""
    values = np.asarray(values)
    if values.size and not np.issubdtype(values.dtype, np.integer):
        bad = np.ones(values.shape, bool)
        if np.issubdtype(values.dtype, np.floating):
            bad = ~(np.isfinite(values) & (values == np.round(values)))
        if np.any(bad):
            first = values[tuple(np.argwhere(bad)[0])]
            first = first.item() if isinstance(first, np.generic) else first
            raise ValueError(f"{name} must be integers, got {first!r} (dtype {values.dtype})")
    return values.astype(np.int64)


def _check_labels(labels: np.ndarray, num_classes: int, name: str) -> None:
    bad = (labels < 0) | (labels >= num_classes)
    if np.any(bad):
        raise ValueError(f"{name} must be in [0, {num_classes}), got {labels[bad][0]}")


def realized_transition_matrix(clean, noisy, num_classes: int) -> np.ndarray:
    """Row-normalized counts of (clean, noisy) pairs; a class with no examples keeps a zero row."""
    clean, noisy = np.asarray(clean, np.int64).ravel(), np.asarray(noisy, np.int64).ravel()
    if clean.shape != noisy.shape:
        raise ValueError(f"clean and noisy labels must have the same length, got {clean.size} and {noisy.size}")
    _check_labels(clean, num_classes, "clean labels")
    _check_labels(noisy, num_classes, "noisy labels")
    counts = np.zeros((num_classes, num_classes), np.float64)
    np.add.at(counts, (clean, noisy), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def realized_noise_rate(clean, noisy) -> float:
    """The fraction of labels that differ from the clean ones (0.0 for no labels)."""
    clean, noisy = np.asarray(clean), np.asarray(noisy)
    if clean.shape != noisy.shape:
        raise ValueError(f"clean and noisy labels must have the same shape, got {clean.shape} and {noisy.shape}")
    return float(np.mean(clean != noisy)) if clean.size else 0.0


@dataclasses.dataclass(frozen=True)
class NoiseReport:
    """What a run's noise was: the asked-for model and what the draw realized."""

    type: str
    rate: float
    realized_rate: float
    target_matrix: np.ndarray
    realized_matrix: np.ndarray

    def to_json(self) -> dict:
        """Plain Python types (lists of floats), ready for `json.dump`."""
        return {
            "type": str(self.type),
            "rate": float(self.rate),
            "realized_rate": float(self.realized_rate),
            "target_matrix": np.asarray(self.target_matrix, np.float64).tolist(),
            "realized_matrix": np.asarray(self.realized_matrix, np.float64).tolist(),
        }


def matrix_from_config(noise_config, num_classes: int, dataset_name: str) -> np.ndarray:
    """The transition matrix a config's `noise` block describes."""
    noise_type = noise_config.type
    mapping_text = getattr(noise_config, "mapping", "")
    matrix_file = getattr(noise_config, "matrix_file", "")
    if noise_type == "asymmetric":
        mapping = parse_mapping(mapping_text) if mapping_text else default_pairs(dataset_name)
        return transition_matrix(noise_type, noise_config.rate, num_classes, mapping=mapping)
    if noise_type == "matrix":
        if not matrix_file:
            raise ValueError("noise.type='matrix' needs noise.matrix_file (a C x C .npy, .csv or .txt file)")
        return transition_matrix("matrix", 0.0, num_classes, matrix=load_matrix_file(matrix_file, num_classes))
    return transition_matrix(noise_type, noise_config.rate, num_classes)


def apply_noise_config(noise_config, labels, index, num_classes: int, dataset_name: str, seed: int):
    """Corrupts `labels` as `noise_config` says; returns (noisy int64 labels, NoiseReport)."""
    matrix = matrix_from_config(noise_config, num_classes, dataset_name)
    labels = _as_integers(labels, "labels")
    if noise_config.type == "none":
        _check_labels(labels, num_classes, "labels")
        noisy = labels.copy()
    else:
        noisy = add_label_noise(labels, index, matrix, seed)
    report = NoiseReport(
        type=noise_config.type,
        rate=float(noise_config.rate),
        realized_rate=realized_noise_rate(labels, noisy),
        target_matrix=matrix,
        realized_matrix=realized_transition_matrix(labels, noisy, num_classes),
    )
    return noisy, report
