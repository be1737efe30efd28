"""Chooses the `tf.distribute` strategy a run builds its models and optimizers under."""

from __future__ import annotations

import os

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


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_workdir(workdir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes: `workdir` for the chief, a private sub-folder for other workers.

    Every worker computes the same things in sync (and writes its own copies, which the next stage
    reads back), but only the chief's land where users and scripts look.
    """
    if is_chief(strategy):
        return workdir
    resolver = strategy.cluster_resolver
    return os.path.join(workdir, "workers", f"{resolver.task_type}_{resolver.task_id}")


def check_global_batch_size(batch_size: int, strategy: tf.distribute.Strategy, halves: bool = False,
                            key: str = "batch_size", micro_batches: int = 1) -> None:
    """The global batch must split evenly over replicas (and, for Stage 2, into labeled/unlabeled halves),
    and each replica's share into `micro_batches` non-empty slices (checked before any training)."""
    replicas = strategy.num_replicas_in_sync
    unit = replicas * (2 if halves else 1)
    if batch_size % unit:
        what = "2 x the replica count" if halves else "the replica count"
        raise ValueError(
            f"{key} must be a multiple of {what} ({unit} with {replicas} replicas), got {batch_size}"
        )
    if batch_size // replicas < micro_batches:
        raise ValueError(f"train.micro_batches={micro_batches} is more than a replica's share of {key}={batch_size} "
                         f"({batch_size // replicas} with {replicas} replicas): each micro-batch needs an example")
