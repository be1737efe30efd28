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


def default_pairs(dataset_name: str) -> dict:
    """The paper's asymmetric pairs for `dataset_name` (MNIST variants and CIFAR-10)."""
    if dataset_name not in _DATASET_PAIRS:
        raise ValueError(
            f"asymmetric noise on dataset {dataset_name!r} has no default pairs (the paper defines them "
            f"for {', '.join(sorted(_DATASET_PAIRS))}); give them as noise.mapping, e.g. '0->1,2->3'"
        )
    return dict(ASYMMETRIC_PAIRS[_DATASET_PAIRS[dataset_name]])


def parse_mapping(text: str) -> dict:
    """Parses pairs such as "2->7, 3->8" into {2: 7, 3: 8}."""
    mapping = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        match = re.fullmatch(r"(\d+)\s*->\s*(\d+)", part)
        if not match:
            raise ValueError(f"noise.mapping must look like '2->7,3->8', got {text!r} (bad part {part!r})")
        source, target = int(match.group(1)), int(match.group(2))
        if source in mapping:
            raise ValueError(f"noise.mapping lists class {source} twice in {text!r}")
        mapping[source] = target
    if not mapping:
        raise ValueError(f"noise.mapping must look like '2->7,3->8', got {text!r}")
    return mapping


def transition_matrix(noise_type: str, rate: float, num_classes: int, mapping=None, matrix=None) -> np.ndarray:
    """The C x C transition matrix of a noise model (rows sum to 1)."""
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"noise.type must be one of {', '.join(NOISE_TYPES)}; got {noise_type!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"the number of classes must be an integer >= 2, got {num_classes!r}")
    if noise_type == "matrix":
        if matrix is None:
            raise ValueError("noise.type=matrix needs a transition matrix (noise.matrix_file)")
        return check_transition_matrix(matrix, num_classes)
    check_rate(rate)
    c = num_classes
    if noise_type == "none":
        return np.eye(c)
    if noise_type == "symmetric":
        return (1.0 - rate) * np.eye(c) + rate / (c - 1) * (1.0 - np.eye(c))
    if noise_type == "uniform":
        return (1.0 - rate) * np.eye(c) + rate / c * np.ones((c, c))
    if not mapping:
        raise ValueError("noise.type=asymmetric needs class pairs (noise.mapping such as '2->7,3->8')")
    result = np.eye(c)
    for source, target in mapping.items():
        for cls in (source, target):
            if not 0 <= int(cls) < c:
                raise ValueError(f"noise.mapping class {cls} is outside [0, {c})")
        if source == target:
            raise ValueError(f"noise.mapping maps class {source} onto itself")
        result[source, source] = 1.0 - rate
        result[source, target] = rate
    return result


def check_rate(rate) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not (
        math.isfinite(rate) and 0.0 <= rate <= 1.0
    ):
        raise ValueError(f"noise.rate must be in [0, 1], got {rate!r}")
    return float(rate)


def check_transition_matrix(matrix, num_classes: int) -> np.ndarray:
    """Checks a C x C row-stochastic matrix (non-negative, finite, rows summing to 1)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"the transition matrix must be {num_classes} x {num_classes}, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise ValueError("the transition matrix must have finite, non-negative entries")
    sums = matrix.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        row = int(np.argmax(np.abs(sums - 1.0)))
        raise ValueError(f"each transition-matrix row must sum to 1; row {row} sums to {sums[row]:.6g}")
    return matrix


def load_matrix_file(path: str, num_classes: int) -> np.ndarray:
    """Reads a C x C transition matrix from `.npy` (no pickles) or `.csv` / `.txt`."""
    if not os.path.isfile(path):
        raise ValueError(f"noise.matrix_file {path!r} does not exist")
    if path.endswith(".npy"):
        matrix = np.load(path, allow_pickle=False)
    elif path.endswith((".csv", ".txt")):
        with open(path, encoding="utf-8") as file:
            text = file.read()
        matrix = np.loadtxt(text.replace(",", " ").splitlines(), ndmin=2)
    else:
        raise ValueError(f"noise.matrix_file must end in .npy, .csv or .txt, got {path!r}")
    return check_transition_matrix(matrix, num_classes)


def corrupt_labels(labels, index, matrix, seed: int) -> tf.Tensor:
    """Noisy labels drawn from the rows of `matrix`; the draw of example i depends on (seed, index[i]).

    Works on scalars (inside `tf.data.Dataset.map`) and on 1-D tensors (vectorized).
    """
    cumulative = np.cumsum(np.asarray(matrix, np.float64), axis=1)
    cumulative[:, -1] = np.inf  # rounding can never push a draw past the last class
    # Zero-probability classes have no width on the cumulative axis, so they are never drawn.
    table = tf.constant(cumulative, tf.float64)
    labels = tf.convert_to_tensor(labels, tf.int64)
    index = tf.convert_to_tensor(index, tf.int64)

    def draw(label, example_index):
        seed_pair = tf.stack([tf.constant(seed, tf.int64), example_index])
        u = tf.random.stateless_uniform([], seed=seed_pair, dtype=tf.float64)
        return tf.searchsorted(tf.gather(table, label)[tf.newaxis], u[tf.newaxis, tf.newaxis],
                               side="right", out_type=tf.int64)[0, 0]

    if labels.shape.rank == 0:
        return draw(labels, index)
    return tf.vectorized_map(lambda pair: draw(pair[0], pair[1]), (labels, index))


def add_label_noise(labels, index, matrix, seed: int) -> np.ndarray:
    """Eager numpy wrapper of `corrupt_labels`."""
    labels = np.asarray(labels, np.int64)
    if labels.size == 0:
        return labels.copy()
    return corrupt_labels(labels, np.asarray(index, np.int64), matrix, seed).numpy()


def realized_transition_matrix(clean, noisy, num_classes: int) -> np.ndarray:
    """Row-normalized counts of (clean, noisy) pairs; a class with no examples keeps a zero row."""
    counts = np.zeros((num_classes, num_classes), np.float64)
    np.add.at(counts, (np.asarray(clean, np.int64), np.asarray(noisy, np.int64)), 1)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def realized_noise_rate(clean, noisy) -> float:
    """The fraction of labels that differ from the clean ones (0 for no labels)."""
    clean, noisy = np.asarray(clean), np.asarray(noisy)
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
        return {
            "type": self.type,
            "rate": float(self.rate),
            "realized_rate": float(self.realized_rate),
            "target_matrix": np.asarray(self.target_matrix, float).tolist(),
            "realized_matrix": np.asarray(self.realized_matrix, float).tolist(),
        }


def matrix_from_config(noise_config, num_classes: int, dataset_name: str) -> np.ndarray:
    """The transition matrix a config's `noise` block describes."""
    noise_type = noise_config.type
    if noise_type == "asymmetric":
        mapping = parse_mapping(noise_config.mapping) if noise_config.mapping else default_pairs(dataset_name)
        return transition_matrix(noise_type, noise_config.rate, num_classes, mapping=mapping)
    if noise_type == "matrix":
        if not noise_config.matrix_file:
            raise ValueError("noise.type=matrix needs noise.matrix_file (a C x C .npy or .csv file)")
        return transition_matrix("matrix", 0.0, num_classes, matrix=load_matrix_file(noise_config.matrix_file,
                                                                                      num_classes))
    return transition_matrix(noise_type, noise_config.rate, num_classes)


def apply_noise_config(noise_config, labels, index, num_classes: int, dataset_name: str, seed: int):
    """Corrupts `labels` as `noise_config` says; returns (noisy labels, NoiseReport)."""
    matrix = matrix_from_config(noise_config, num_classes, dataset_name)
    labels = np.asarray(labels, np.int64)
    noisy = labels.copy() if noise_config.type == "none" else add_label_noise(labels, index, matrix, seed)
    report = NoiseReport(
        type=noise_config.type,
        rate=float(noise_config.rate),
        realized_rate=realized_noise_rate(labels, noisy),
        target_matrix=matrix,
        realized_matrix=realized_transition_matrix(labels, noisy, num_classes),
    )
    return noisy, report
