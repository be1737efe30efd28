"""Random flips and translations of whole batches, drawn from an explicit seed: same seed, same batch.

Why not Keras' `RandomFlip` / `RandomTranslation` layers: inside a parallel `tf.data` map they draw
from one stateful seed generator that the concurrent map calls race for, so the same config gave
different batches from run to run (measured: three runs of the Stage-2 stream, three different
hashes), and a resumed run could not replay the batches of an uninterrupted one. Here every batch
gets its own stateless seed from the pipeline (`tf.data.Dataset.random`), and the ops are the
stateless ones of `tf.image` / `tf.random`.

A translation by up to `translate_px` pixels with zero fill is the usual pad-and-crop: each image is
shifted by its own integer offset in [-translate_px, translate_px] along each axis.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf


class RandomFlipTranslate:
    """Batch augmenter for images scaled to [0, 1]: `augmenter(images, seed)` with `seed` a `[2]` int
    tensor (stateless). Without a seed (eager, interactive use) one is drawn from the global RNG."""

    def __init__(self, image_shape, flip: bool = False, translate_px: int = 0, seed: int = 0):
        self.image_shape = tuple(int(size) for size in image_shape)
        self.flip = bool(flip)
        self.translate_px = int(translate_px)
        self.seed = int(seed)

    def __call__(self, images, seed=None, training: bool = True) -> tf.Tensor:
        images = tf.convert_to_tensor(images)
        if not training:
            return images
        if seed is None:
            seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
        seed = tf.cast(seed, tf.int64) + tf.constant([self.seed, 0], tf.int64)
        flip_seed, shift_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        if self.flip:
            images = tf.image.stateless_random_flip_left_right(images, flip_seed)
        if self.translate_px:
            images = translate(images, self.translate_px, shift_seed)
        return images


def translate(images: tf.Tensor, max_shift: int, seed) -> tf.Tensor:
    """Shifts each image of the batch by its own integer offset in [-max_shift, max_shift] (zero fill).

    Pad, then two plain row gathers (rows of every image, then, transposed, its columns) from the batch
    flattened along its first axes: `tf.gather(..., batch_dims=1)` builds the same indices with a dozen
    more ops, and the two-view Pi stream spent 40% more CPU per batch on it (benchmarks/speed.py).
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    batch = tf.shape(images)[0]
    offsets = tf.random.stateless_uniform([batch, 2], seed, minval=0, maxval=2 * max_shift + 1, dtype=tf.int32)
    padded = tf.pad(images, [[0, 0], [max_shift, max_shift], [max_shift, max_shift], [0, 0]])
    padded_height, padded_width = height + 2 * max_shift, width + 2 * max_shift
    first = tf.range(batch)[:, tf.newaxis]
    rows = first * padded_height + offsets[:, :1] + tf.range(height)[tf.newaxis]  # [B, H] into B * Hp rows
    shifted = tf.gather(tf.reshape(padded, [-1, padded_width, channels]), rows)  # [B, H, Wp, C]
    columns = first * padded_width + offsets[:, 1:] + tf.range(width)[tf.newaxis]  # [B, W] into B * Wp
    by_column = tf.reshape(tf.transpose(shifted, [0, 2, 1, 3]), [-1, height, channels])  # [B * Wp, H, C]
    return tf.transpose(tf.gather(by_column, columns), [0, 2, 1, 3])


def build_augmenter(image_shape, flip: bool = False, translate_px: int = 0, seed: int = 0
                    ) -> Optional[RandomFlipTranslate]:
    """A batch augmenter for images scaled to [0, 1], or None when nothing is asked."""
    height, width, _ = image_shape
    if translate_px < 0 or translate_px >= min(height, width):
        raise ValueError(
            f"augment.translate_px must be in [0, {min(height, width)}) for {height}x{width} images, "
            f"got {translate_px}"
        )
    if not flip and not translate_px:
        return None
    return RandomFlipTranslate(image_shape, flip=flip, translate_px=translate_px, seed=seed)
