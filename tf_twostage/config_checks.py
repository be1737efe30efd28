"""Checks a config before any work starts, so a bad value fails at once with a clear message."""

from __future__ import annotations

import math
from typing import Sequence

from tf_twostage.data.datasets import DATASET_NAMES
from tf_twostage.data.noise import NOISE_TYPES
from tf_twostage.distribution import STRATEGY_NAMES
from tf_twostage.models import MODEL_NAMES
from tf_twostage.stage1.pretrain import OPTIMIZER_NAMES

STAGE2_ALGORITHMS = ("pi", "temporal_ensembling")
BAD_FILE_POLICIES = ("error", "skip")


def validate_config(config, methods: Sequence[str]) -> None:
    """Raises ValueError naming the first bad key, its value and what is allowed."""
    _one_of("method", config.method, methods)
    _one_of("data.name", config.data.name, DATASET_NAMES)
    _one_of("noise.type", config.noise.type, NOISE_TYPES)
    _one_of("stage2.algorithm", config.stage2.algorithm, STAGE2_ALGORITHMS)
    _one_of("model.name", config.model.name, MODEL_NAMES)
    _one_of("stage1.optimizer", config.stage1.optimizer, OPTIMIZER_NAMES)
    _one_of("distribution.strategy", config.distribution.strategy, STRATEGY_NAMES)
    _one_of("data.on_bad_file", config.data.on_bad_file, BAD_FILE_POLICIES)
    _integer("seed", config.seed, minimum=0)
    _integer("batch_size", config.batch_size, minimum=1)
    _integer("stage1.epochs", config.stage1.epochs, minimum=1)
    _integer("stage2.epochs", config.stage2.epochs, minimum=1)
    _integer("augment.translate_px", config.augment.translate_px, minimum=0)
    _in_range("noise.rate", config.noise.rate, 0.0, 1.0)
    _in_range("data.val_fraction", config.data.val_fraction, 0.0, 0.99)
    _in_range("model.dropout", config.model.dropout, 0.0, 0.99)
    if config.noise.type == "none" and config.noise.rate:
        raise ValueError(f"noise.type is 'none' but noise.rate is {config.noise.rate}; set the rate to 0")
    if config.noise.type == "matrix" and not config.noise.matrix_file:
        raise ValueError("noise.type=matrix needs noise.matrix_file (a C x C .npy or .csv file)")
    if config.data.name in ("folder", "csv"):
        for key in ("dir", "train", "test"):
            if not config.data[key]:
                raise ValueError(f"data.name={config.data.name} needs data.{key}; it is empty")
    if config.data.name == "clothing1m" and not config.data.dir:
        raise ValueError("data.name=clothing1m needs data.dir, the root of the Clothing1M release")


def _one_of(key: str, value, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


def _integer(key: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _in_range(key: str, value, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not (
        low <= value <= high
    ):
        raise ValueError(f"{key} must be in [{low:g}, {high:g}], got {value!r}")
