"""Random flips and translations with Keras core preprocessing layers, applied to whole batches.

Keras core layers, not keras-cv: keras-cv 0.9's augmentation layers moved into Keras core, and its
batched crop fell back to a slow while-loop (TRAPS.md). `RandomTranslation` draws a shift per example
even on a batch (unlike `RandomCrop`, which crops a whole batch alike), so it is our crop: a shift by up
to `translate_px` pixels with zero fill is the usual pad-and-crop.
"""

from __future__ import annotations

from typing import Optional

import keras


def build_augmenter(
    image_shape, flip: bool = False, translate_px: int = 0, seed: int = 0
) -> Optional[keras.Sequential]:
    """A batch augmenter for images scaled to [0, 1], or None when nothing is asked."""
    height, width, _ = image_shape
    if translate_px < 0 or translate_px >= min(height, width):
        raise ValueError(
            f"augment.translate_px must be in [0, {min(height, width)}) for {height}x{width} images, "
            f"got {translate_px}"
        )
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if translate_px:
        layers.append(
            keras.layers.RandomTranslation(
                height_factor=translate_px / height,
                width_factor=translate_px / width,
                fill_mode="constant",
                fill_value=0.0,
                interpolation="nearest",
                seed=seed + 1,
            )
        )
    if not layers:
        return None
    return keras.Sequential(layers, name="augment")
