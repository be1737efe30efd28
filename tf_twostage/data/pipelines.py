"""tf.data pipelines: validation hold-out, supervised and evaluation streams, class balancing, and the
Stage-2 stream of half-labeled / half-unlabeled batches.

All streams are built from `tf.data` operations over example *positions* in an `ImageSplit`; the
images are gathered (in memory) or decoded (on disk) inside the pipeline, never by Python generators.
Masks travel as float32 and ids as int64: a bool field breaks `fit` under any distribution strategy
(docs/traps.md). Every stream is deterministic given its seed, in any thread schedule: augmentation draws
from a per-batch stateless seed (`batch_seeds`), so a resumed run can replay the batches exactly.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_twostage.data.preprocess import Preprocessor
from tf_twostage.data.source import ImageSplit

AUTOTUNE = tf.data.AUTOTUNE


def stratified_holdout(labels, fraction: float, seed: int):
    """Splits positions into (kept, held_out) with `fraction` of each class held out (rounded).

    Deterministic given `seed`; each class keeps at least one example when it has two or more.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    held_out = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        count = int(round(fraction * len(members)))
        count = min(count, len(members) - 1) if len(members) > 1 else 0
        held_out.append(rng.permutation(members)[:count])
    held_out = np.sort(np.concatenate(held_out)) if held_out else np.zeros(0, np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept.astype(np.int64), held_out.astype(np.int64)


def class_balanced_positions(labels, seed: int, positions=None) -> tf.data.Dataset:
    """An endless stream of positions in which every class present is equally likely.

    Each class's positions are permuted anew on every pass (`permuted_passes`) and repeated, so rare
    classes are oversampled; each draw's class is uniform over the classes present, drawn from a
    stateless seed stream (so the stream is the same in any thread schedule). `positions` restricts the
    draw to a labeled subset (default: all positions); classes without examples are left out.
    """
    labels = np.asarray(labels)
    positions = np.arange(len(labels)) if positions is None else np.asarray(positions, np.int64)
    if positions.size == 0:
        raise ValueError("class balancing needs at least one labeled example, got none")
    per_class = []
    for c in np.unique(labels[positions]):
        members = positions[labels[positions] == c].astype(np.int64)
        per_class.append(permuted_passes(members, seed + int(c)))
    if len(per_class) == 1:
        return per_class[0]
    # The class of each draw, a chunk of draws per stateless op call: `sample_from_datasets` makes one
    # small op call per draw, which made class balancing the pipeline's main cost (6-7 ms of CPU per
    # 128 draws vs 0.5 ms chunked, benchmarks/speed.py).
    num_classes = len(per_class)
    choices = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=False).batch(2).map(
        lambda pair: tf.random.stateless_uniform([_CHOICE_CHUNK], pair, minval=0, maxval=num_classes,
                                                 dtype=tf.int64)
    ).unbatch()
    return tf.data.Dataset.choose_from_datasets(per_class, choices, stop_on_empty_dataset=False)


_CHOICE_CHUNK = 1024  # class draws per stateless op call


def shuffled_positions(count: int, seed: int, repeat: bool = True) -> tf.data.Dataset:
    """Positions 0..count-1, reshuffled on each pass (seeded), repeated forever when `repeat`."""
    return permuted_passes(np.arange(count, dtype=np.int64), seed, repeat=repeat)


def permuted_passes(members, seed: int, repeat: bool = True) -> tf.data.Dataset:
    """`members` (int64) in a new permutation on every pass, a pure function of (seed, pass); endless when
    `repeat`, else one pass.

    A permutation drawn per pass (`stateless_shuffle`) holds 8 bytes per member; a full-size
    `Dataset.shuffle` buffer held about 200 bytes per element (a tensor each): 200 MB per stream over a
    million positions, and a Stage-2 stream holds two sets of them (its labeled and its unlabeled half).
    """
    members = tf.constant(np.asarray(members, np.int64))

    def one_pass(pass_index):
        seeds = tf.stack([tf.constant(seed, tf.int64), pass_index])
        return tf.gather(members, tf.random.experimental.stateless_shuffle(tf.range(tf.size(members)), seeds))

    passes = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    return passes.map(one_pass).unbatch()


def gather_batches(split: ImageSplit, positions: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batches of examples (dicts of `ImageSplit.element`) at the streamed positions.

    In memory, a batch of positions is gathered at once; on disk, files are decoded in parallel.
    """
    if split.in_memory:
        return positions.batch(batch_size).map(split.element, num_parallel_calls=AUTOTUNE)
    return positions.map(split.element, num_parallel_calls=AUTOTUNE).batch(batch_size)


def supervised_dataset(
    split: ImageSplit,
    preprocessor: Preprocessor,
    batch_size: int,
    *,
    training: bool,
    seed: int = 0,
    augmenter=None,
    balance_classes: bool = False,
    positions: Optional[Sequence[int]] = None,
) -> tf.data.Dataset:
    """(image, label) batches for `keras.Model.fit` / `evaluate`.

    `training=True` shuffles (or, with `balance_classes`, oversamples classes to equal frequency)
    endlessly, so pass `steps_per_epoch` to `fit`; `training=False` is one ordered pass. `positions`
    restricts the examples (e.g. to the labels Stage 1 kept).
    """
    _check_batch_size(batch_size)
    if training:
        if balance_classes:
            stream = class_balanced_positions(split.labels, seed, positions)
        elif positions is not None:
            stream = permuted_passes(positions, seed)
        else:
            stream = shuffled_positions(len(split), seed)
    else:
        order = np.arange(len(split)) if positions is None else np.asarray(positions, np.int64)
        stream = tf.data.Dataset.from_tensor_slices(order.astype(np.int64))
    batches = gather_batches(split, stream, batch_size)
    if not training or augmenter is None:
        return batches.map(lambda example: (preprocessor(example["image"], fused=training), example["label"]),
                           num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)

    def to_inputs(example, seed):
        return preprocessor(example["image"], augmenter, seed, fused=True), example["label"]

    return tf.data.Dataset.zip(batches, batch_seeds(seed)).map(to_inputs, num_parallel_calls=AUTOTUNE).prefetch(
        AUTOTUNE
    )


def batch_seeds(seed: int) -> tf.data.Dataset:
    """An endless, deterministic stream of stateless `[2]` seeds, one per batch (for augmentation)."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=False).batch(2)


def evaluation_dataset(split: ImageSplit, preprocessor: Preprocessor, batch_size: int) -> tf.data.Dataset:
    """One ordered pass of dict batches: `image` (pre-processed), `label`, `clean_label`, `index`."""
    _check_batch_size(batch_size)
    positions = tf.data.Dataset.range(len(split))
    batches = gather_batches(split, positions, batch_size)

    def prepare(example):
        return dict(example, image=preprocessor(example["image"]))

    return batches.map(prepare, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def semi_supervised_stream(
    split: ImageSplit,
    labeled_positions: Sequence[int],
    labels,
    preprocessor: Preprocessor,
    global_batch_size: int,
    *,
    seed: int = 0,
    augmenter=None,
    num_views: int = 1,
) -> tf.data.Dataset:
    """The Stage-2 stream: every batch holds N/2 labeled and N/2 unlabeled examples.

    The labeled half is drawn class-balanced (oversampled) from `labeled_positions` with `labels`
    (the labels Stage 1 kept, by position in `split`); the unlabeled half is a shuffled pass over all
    images of `split`. Labeled and unlabeled examples alternate inside the batch, so when a strategy
    splits the global batch into contiguous per-replica slices each replica still gets half of each.

    Yields dicts: `image` (and `image_2`, ... for `num_views` > 1: independent augmentations of the
    same images, for the Pi model), `label` (int64; 0 where unlabeled), `labeled` (float32 mask) and
    `index` (int64 example ids). The stream is endless: give `fit` a `steps_per_epoch`.
    """
    _check_batch_size(global_batch_size)
    if global_batch_size % 2:
        raise ValueError(f"batch_size must be even (half labeled, half unlabeled), got {global_batch_size}")
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    labels = np.asarray(labels, np.int64)
    if labels.shape != (len(split),):
        raise ValueError(f"labels must have one entry per example ({len(split)}), got {labels.shape}")
    half = global_batch_size // 2
    label_table = tf.constant(labels)
    labeled = gather_batches(split, class_balanced_positions(labels, seed, labeled_positions), half)
    unlabeled = gather_batches(split, shuffled_positions(len(split), seed + 7919), half)

    def combine(labeled_batch, unlabeled_batch, seed):
        images = _interleave(labeled_batch["image"], unlabeled_batch["image"])
        index = _interleave(labeled_batch["index"], unlabeled_batch["index"])
        kept = tf.gather(label_table, labeled_batch["position"])
        kept_labels = _interleave(kept, tf.zeros_like(kept))
        mask = _interleave(tf.ones([half], tf.float32), tf.zeros([half], tf.float32))
        view_seeds = tf.random.experimental.stateless_split(seed, num_views)
        example = {"image": preprocessor(images, augmenter, view_seeds[0], fused=True), "label": kept_labels,
                   "labeled": mask, "index": index}
        for view in range(2, num_views + 1):
            example[f"image_{view}"] = preprocessor(images, augmenter, view_seeds[view - 1], fused=True)
        return example

    return tf.data.Dataset.zip(labeled, unlabeled, batch_seeds(seed + 104729)).map(
        combine, num_parallel_calls=AUTOTUNE
    ).prefetch(AUTOTUNE)


def _interleave(first: tf.Tensor, second: tf.Tensor) -> tf.Tensor:
    """[a0, b0, a1, b1, ...] from two equally long batches."""
    stacked = tf.stack([first, second], axis=1)
    return tf.reshape(stacked, tf.concat([[-1], tf.shape(first)[1:]], axis=0))


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
