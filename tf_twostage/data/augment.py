"""Random flips and translations of whole batches, drawn from an explicit seed: same seed, same batch.

Why not Keras' `RandomFlip` / `RandomTranslation` layers: inside a parallel `tf.data` map they draw
from one stateful seed generator that the concurrent map calls race for, so the same config gave
different batches from run to run (measured: three runs of the Stage-2 stream, three different
hashes), and a resumed run could not replay the batches of an uninterrupted one. Here every batch
gets its own stateless seed from the pipeline (`tf.data.Dataset.random`), and the ops are the
stateless ones of `tf.image` / `tf.random`.

A translation by up to `translate_px` pixels with zero fill is the usual pad-and-crop: each image is
shifted by its own integer offset in [-translate_px, translate_px] along each axis. `crop_size` takes a
random window of that size from each (larger) image, at its own offset (images resized to 256, cropped to
224: the ImageNet / Clothing1M way).
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf


class RandomFlipTranslate:
    """Batch augmenter (`[B, H, W, C]`, any dtype; the pipelines pass uint8): `augmenter(images, seed)` with
    `seed` a `[2]` int tensor (stateless). Without a seed (eager, interactive use) one is drawn from the
    global RNG."""

    def __init__(self, image_shape, flip: bool = False, translate_px: int = 0, seed: int = 0, crop_size=None):
        self.image_shape = tuple(int(size) for size in image_shape)
        self.flip = bool(flip)
        self.translate_px = int(translate_px)
        self.seed = int(seed)
        self.crop_size = None if crop_size is None else tuple(int(size) for size in crop_size)

    def __call__(self, images, seed=None, training: bool = True) -> tf.Tensor:
        images = tf.convert_to_tensor(images)
        if not training:
            return images
        if seed is None:
            seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
        seed = tf.cast(seed, tf.int64) + tf.constant([self.seed, 0], tf.int64)
        flip_seed, shift_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        flips = flip_draws(images, flip_seed) if self.flip else None  # folded into the per-image copy below
        if self.crop_size is not None and tuple(images.shape[1:3]) != self.crop_size:
            crop_seed = tf.random.experimental.stateless_fold_in(seed, 3)
            if not self.translate_px:
                return random_crop(images, self.crop_size, crop_seed, flips=flips)
            images = random_crop(images, self.crop_size, crop_seed)
        if self.translate_px:
            return translate(images, self.translate_px, shift_seed, flips=flips)
        if self.flip:
            images = tf.image.stateless_random_flip_left_right(images, flip_seed)
        return images


def flip_draws(images: tf.Tensor, seed) -> tf.Tensor:
    """bool `[B]`: which images `tf.image.stateless_random_flip_left_right(images, seed)` mirrors (the same
    draw: a uniform per image, mirrored when it rounds to 1)."""
    uniform = tf.random.stateless_uniform([tf.shape(images)[0]], seed, minval=0, maxval=1.0)
    return tf.round(uniform) > 0.5


def translate(images: tf.Tensor, max_shift: int, seed, flips=None) -> tf.Tensor:
    """Shifts each image of the batch by its own integer offset in [-max_shift, max_shift] (zero fill).

    With `flips` (bool `[B]`), the images marked are mirrored left-right *before* the shift, as
    `tf.image.stateless_random_flip_left_right` would, but in the same pass: a shift of the mirrored
    image is the mirror of the image shifted the other way. Any dtype (uint8 before scaling is 4x less
    memory traffic than float32; zero fill and mirroring commute with the scaling).
    """
    height, width = images.shape[1], images.shape[2]
    batch = tf.shape(images)[0]
    offsets = tf.random.stateless_uniform([batch, 2], seed, minval=0, maxval=2 * max_shift + 1, dtype=tf.int32)
    padded = tf.pad(images, [[0, 0], [max_shift, max_shift], [max_shift, max_shift], [0, 0]])
    if flips is None:
        return windows(padded, offsets[:, 0], offsets[:, 1], (height, width))
    # A mirrored image shifted by d columns is the mirror of the image shifted by -d: offset o -> 2M - o.
    return windows(padded, offsets[:, 0], tf.where(flips, 2 * max_shift - offsets[:, 1], offsets[:, 1]),
                   (height, width), flips)


def random_crop(images: tf.Tensor, size, seed, flips=None) -> tf.Tensor:
    """A `size` = (h, w) window of each image of the batch, at its own uniform offset; with `flips` (bool `[B]`)
    the windows marked are mirrored left-right in the same pass (the same result as flipping the crops)."""
    height, width = images.shape[1], images.shape[2]
    crop_height, crop_width = size
    batch = tf.shape(images)[0]
    row_seed, column_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    top = tf.random.stateless_uniform([batch, 1], row_seed, minval=0, maxval=height - crop_height + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([batch, 1], column_seed, minval=0, maxval=width - crop_width + 1,
                                       dtype=tf.int32)
    return windows(images, top[:, 0], left[:, 0], (crop_height, crop_width), flips)


def windows(images: tf.Tensor, tops, lefts, size, flips=None) -> tf.Tensor:
    """The `size` = (h, w) window at (`tops[i]`, `lefts[i]`) of each image `i`, mirrored where `flips[i]`.

    One slice (and a reverse when mirrored) per image in a `map_fn`: per image, one copy of the window's
    pixels. Row gathers with transposes over the batch cost 3x the CPU, a single pixel gather 2x, at
    224x224 (benchmarks/scale.py).
    """
    channels = images.shape[3]
    if flips is None:
        flips = tf.zeros([tf.shape(images)[0]], tf.bool)

    def window(args):
        image, row, column, flip = args
        cropped = tf.slice(image, tf.stack([row, column, 0]), [size[0], size[1], channels])
        return tf.cond(flip, lambda: tf.reverse(cropped, [1]), lambda: cropped)

    return tf.map_fn(window, (images, tops, lefts, flips),
                     fn_output_signature=tf.TensorSpec([size[0], size[1], channels], images.dtype),
                     parallel_iterations=16)


def build_augmenter(image_shape, flip: bool = False, translate_px: int = 0, seed: int = 0, crop_size=None
                    ) -> Optional[RandomFlipTranslate]:
    """A batch augmenter (flip, translation, random crop), or None when nothing is asked.

    `image_shape` is the shape after any crop; `crop_size` (the pre-processor's) adds a random crop of
    larger images to that size."""
    height, width, _ = image_shape
    if translate_px < 0 or translate_px >= min(height, width):
        raise ValueError(
            f"augment.translate_px must be in [0, {min(height, width)}) for {height}x{width} images, "
            f"got {translate_px}"
        )
    if not flip and not translate_px and crop_size is None:
        return None
    return RandomFlipTranslate(image_shape, flip=flip, translate_px=translate_px, seed=seed, crop_size=crop_size)
