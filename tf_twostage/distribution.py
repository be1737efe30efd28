"""Chooses the `tf.distribute` strategy a run builds its models and optimizers under."""

from __future__ import annotations

import tensorflow as tf

STRATEGY_NAMES = ("auto", "none", "mirrored", "multi_worker")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """`auto`: MirroredStrategy over all GPUs when there are 2 or more, else the default strategy.

    `mirrored` mirrors over every local device TF sees; `multi_worker` reads the cluster from the
    `TF_CONFIG` environment variable (one process per machine).
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(f"distribution.strategy must be one of {', '.join(STRATEGY_NAMES)}; got {name!r}")
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MultiWorkerMirroredStrategy()


def check_global_batch_size(batch_size: int, strategy: tf.distribute.Strategy, halves: bool = False) -> None:
    """The global batch must split evenly over replicas (and, for Stage 2, into labeled/unlabeled halves)."""
    replicas = strategy.num_replicas_in_sync
    unit = replicas * (2 if halves else 1)
    if batch_size % unit:
        what = "2 x the replica count" if halves else "the replica count"
        raise ValueError(
            f"batch_size must be a multiple of {what} ({unit} with {replicas} replicas), got {batch_size}"
        )
