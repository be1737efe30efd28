"""Labeled image splits, held in memory or as image files decoded lazily.

Every dataset in the package (MNIST-5k, tfds MNIST/CIFAR-10, Clothing1M, a user's folder or CSV) is
turned into the same two types:

* `ImageSplit`: one split's labels, stable example `index` and either the images themselves
  (`uint8 [N, H, W, C]`) or their file paths, decoded (and resized) only when the pipeline reads them,
  so a million Clothing1M images never sit in memory. The clean label, where known, travels beside the
  (noisy) label for evaluation only.
* `DatasetSplits`: the training split (noisy labels), the clean test split, and optionally an extra
  clean subset (Clothing1M's 50K clean images, a user's hand-checked folder) and a given validation split.

Pipelines reach an example through `ImageSplit.element(position)`, a TF function of the position, so
the same `tf.data` code serves in-memory and on-disk data.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

UNKNOWN_LABEL = -1  # clean_label value of examples whose true label is not known


def _scalar(value):
    """A numpy scalar as the plain Python value (so messages show 0.5, not np.float64(0.5))."""
    return value.item() if isinstance(value, np.generic) else value


def check_labels(labels, num_classes: int, what: str = "labels") -> np.ndarray:
    """Returns `labels` as int64 after checking they are integers in [0, num_classes).

    Integral floats (2.0) pass; fractions, NaN, infinities, booleans and strings are refused with the
    first bad value and its position.
    """
    labels = np.asarray(labels)
    allowed = f"integers in [0, {num_classes})"
    if labels.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of {allowed}, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating):
            raise ValueError(
                f"{what} must be {allowed}, got dtype {labels.dtype} (e.g. {_scalar(labels[0])!r} at position 0)"
            )
        integral = np.isfinite(labels) & (labels == np.round(labels))
        if not np.all(integral):
            position = int(np.flatnonzero(~integral)[0])
            raise ValueError(
                f"{what} must be {allowed}, got {_scalar(labels[position])!r} at position {position} "
                f"(dtype {labels.dtype})"
            )
    labels = labels.astype(np.int64)
    out_of_range = (labels < 0) | (labels >= num_classes)
    if np.any(out_of_range):
        position = int(np.flatnonzero(out_of_range)[0])
        raise ValueError(
            f"{what} must be in [0, {num_classes}), got {int(labels[position])} at position {position}"
        )
    return labels


def check_images(images, what: str = "images") -> np.ndarray:
    """Checks that `images` is a uint8 array of rank 4 `[N, H, W, C]` with H, W >= 1 and C in {1, 3}.

    Raw pixels only: a float array is refused (naming its first NaN or infinite pixel, if any), since
    whether it holds 0..255 or 0..1 values cannot be told safely.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        if np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.complexfloating):
            bad = ~np.isfinite(images)
            if np.any(bad):
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(
                    f"{what} hold a non-finite pixel ({_scalar(images[where])!r} at {list(where)}); pixels "
                    "must be finite raw values 0..255 in a uint8 array [N, H, W, C]"
                )
        raise ValueError(
            f"{what} must have dtype uint8 (raw pixels 0..255), got {images.dtype}; convert them first, "
            "e.g. np.clip(np.round(x * 255), 0, 255).astype(np.uint8) for floats in [0, 1]"
        )
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or 0 in images.shape[1:3]:
        raise ValueError(
            f"{what} must have rank 4 [N, H, W, C] with H, W >= 1 and C in (1, 3), got shape {images.shape}"
        )
    return images


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSplit:
    """One split of a dataset: labels, stable ids and images (in memory) or image paths (lazy).

    Attributes:
      labels: int64 `[N]`, the labels as given; for a training split, the noisy labels.
      index: int64 `[N]`, a stable id per example (unique within the dataset); Stage-1 selections
        and the temporal-ensemble buffer are keyed by it.
      num_classes: number of classes C; every label is in [0, C).
      image_shape: `(H, W, C)` of the images the pipeline yields.
      images: uint8 `[N, H, W, C]` when the split lives in memory, else None.
      paths: `[N]` file paths (str) when the split is decoded lazily from disk, else None.
      clean_labels: int64 `[N]` true labels where known (`UNKNOWN_LABEL` elsewhere), else None.
        For evaluation and statistics only: no training code reads it.
    """

    labels: np.ndarray
    index: np.ndarray
    num_classes: int
    image_shape: tuple
    images: Optional[np.ndarray] = None
    paths: Optional[np.ndarray] = None
    clean_labels: Optional[np.ndarray] = None

    def __post_init__(self):
        if (self.images is None) == (self.paths is None):
            raise ValueError("an ImageSplit needs exactly one of `images` (in memory) or `paths` (lazy)")
        labels = check_labels(self.labels, self.num_classes)
        object.__setattr__(self, "labels", labels)
        index = _check_index(self.index, labels.shape)
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "image_shape", _check_image_shape(self.image_shape))
        if self.images is not None:
            images = check_images(self.images)
            if images.shape[0] != labels.shape[0]:
                raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
            if images.shape[1:] != self.image_shape:
                raise ValueError(
                    f"images have shape {images.shape[1:]} [H, W, C] but image_shape is {self.image_shape}; "
                    "every image must have the split's image_shape"
                )
        else:
            paths = np.asarray(self.paths, dtype=object)
            if paths.shape != labels.shape:
                raise ValueError(f"{paths.shape[0]} image paths but {labels.shape[0]} labels")
            object.__setattr__(self, "paths", paths)
        if self.clean_labels is not None:
            clean = np.asarray(self.clean_labels, dtype=np.int64)
            if clean.shape != labels.shape:
                raise ValueError(f"clean_labels have shape {clean.shape}, labels {labels.shape}")
            known = clean != UNKNOWN_LABEL
            check_labels(clean[known], self.num_classes, "clean_labels")
            object.__setattr__(self, "clean_labels", clean)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    @property
    def has_clean_labels(self) -> bool:
        return self.clean_labels is not None and bool(np.all(self.clean_labels != UNKNOWN_LABEL))

    def subset(self, positions: Sequence[int]) -> "ImageSplit":
        """The examples at `positions` (their `index` ids are kept)."""
        positions = np.asarray(positions, dtype=np.int64)
        return dataclasses.replace(
            self,
            labels=self.labels[positions],
            index=self.index[positions],
            images=None if self.images is None else self.images[positions],
            paths=None if self.paths is None else self.paths[positions],
            clean_labels=None if self.clean_labels is None else self.clean_labels[positions],
        )

    def with_labels(self, labels, clean_labels=None) -> "ImageSplit":
        """A copy with other labels (e.g. after adding synthetic noise) and optionally clean labels."""
        return dataclasses.replace(
            self,
            labels=labels,
            clean_labels=self.clean_labels if clean_labels is None else clean_labels,
        )

    def element(self, position: tf.Tensor) -> dict:
        """TF function: the example at `position` as a dict of tensors.

        Keys: `image` (uint8 `[H, W, C]`), `label`, `clean_label`, `index` and `position` (int64).
        Also works on a vector of positions for in-memory splits. Call it inside
        `tf.data.Dataset.map`; for a lazy split the image file is read and decoded here.
        """
        tensors = self._tensors()
        image = (
            tf.gather(tensors["images"], position)
            if self.in_memory
            else decode_image_file(tf.gather(tensors["paths"], position), self.image_shape)
        )
        return {
            "image": image,
            "label": tf.gather(tensors["labels"], position),
            "clean_label": tf.gather(tensors["clean_labels"], position),
            "index": tf.gather(tensors["index"], position),
            "position": tf.cast(position, tf.int64),
        }

    def to_dataset(self) -> tf.data.Dataset:
        """All examples in order, as dicts (see `element`); decoding is parallel for lazy splits."""
        return tf.data.Dataset.range(len(self)).map(
            self.element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    def _tensors(self) -> dict:
        # Built once per split, eagerly (init_scope lifts out of any tf.data / tf.function graph),
        # and captured by the tf.data functions that use them.
        cached = self.__dict__.get("_cached_tensors")
        if cached is None:
            with tf.init_scope():
                cached = self._build_tensors()
            object.__setattr__(self, "_cached_tensors", cached)
        return cached

    def _build_tensors(self) -> dict:
        clean = (
            self.clean_labels
            if self.clean_labels is not None
            else np.full_like(self.labels, UNKNOWN_LABEL)
        )
        tensors = {
            "labels": tf.constant(self.labels, tf.int64),
            "clean_labels": tf.constant(clean, tf.int64),
            "index": tf.constant(self.index, tf.int64),
        }
        if self.in_memory:
            tensors["images"] = tf.constant(self.images, tf.uint8)
        else:
            tensors["paths"] = tf.constant(self.paths.astype(str), tf.string)
        return tensors


def _check_index(index, shape) -> np.ndarray:
    """Example ids as int64: integers >= 0, one per label, no id twice."""
    index = np.asarray(index)
    if index.shape != shape:
        raise ValueError(f"index has shape {index.shape} but labels have shape {shape}; give one id per example")
    if index.size and not np.issubdtype(index.dtype, np.integer):
        raise ValueError(f"index must hold integer ids >= 0, got dtype {index.dtype} (e.g. {_scalar(index[0])!r})")
    index = index.astype(np.int64)
    if index.size and index.min() < 0:
        raise ValueError(f"index must hold integer ids >= 0, got {int(index.min())}")
    unique, counts = np.unique(index, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"index must hold distinct ids (one per example), got id {int(unique[counts > 1][0])} "
                         f"{int(counts[counts > 1][0])} times")
    return index


def _check_image_shape(image_shape) -> tuple:
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape) \
            or min(shape[:2]) < 1 or shape[-1] not in (1, 3):
        raise ValueError(
            f"image_shape must be (H, W, C) with integers H, W >= 1 and C in (1, 3), got {image_shape!r}"
        )
    return tuple(int(d) for d in shape)


def decode_image_file(path: tf.Tensor, image_shape: Sequence[int]) -> tf.Tensor:
    """TF function: reads an image file (JPEG/PNG/GIF/BMP) into uint8 `image_shape`, resizing if needed."""
    return decode_image_bytes(tf.io.read_file(path), image_shape)


ANTIALIAS_BELOW = 0.5  # resize scales at or below this (in either axis) are antialiased


def decode_image_bytes(data: tf.Tensor, image_shape: Sequence[int]) -> tf.Tensor:
    """TF function: encoded image bytes (JPEG/PNG/GIF/BMP) -> uint8 `image_shape`, resized if needed.

    The one decoding of the package (`decode_pixels`): pipelines, the load-time check and the export's
    `serving_bytes` endpoint all use it.

    Bilinear resizing; antialiased only when an axis shrinks to `ANTIALIAS_BELOW` or less, where plain
    bilinear sampling skips pixels and aliases. At milder scales (Clothing1M's 256x256 -> 224x224 is
    0.875) antialiasing changes pixels little but cost 1.2 ms per image, more than the JPEG decode
    itself (benchmarks/scale.py). Images already of the target size are not resampled.
    """
    height, width, channels = image_shape
    image = decode_pixels(data, channels)  # GIF/BMP with one channel too
    size = tf.shape(image)[:2]
    target = tf.constant([height, width], tf.int32)
    alias_limit = tf.constant([math.ceil(height / ANTIALIAS_BELOW), math.ceil(width / ANTIALIAS_BELOW)], tf.int32)

    def resized():
        shrink = tf.reduce_any(size >= alias_limit)
        image_float = tf.cond(
            shrink,
            lambda: tf.image.resize(image, (height, width), method="bilinear", antialias=True),
            lambda: tf.image.resize(image, (height, width), method="bilinear", antialias=False),
        )
        return tf.cast(tf.clip_by_value(tf.round(image_float), 0.0, 255.0), tf.uint8)

    image = tf.cond(tf.reduce_all(tf.equal(size, target)), lambda: image, resized)
    image.set_shape((height, width, channels))
    return image


def decode_pixels(contents: tf.Tensor, channels: int) -> tf.Tensor:
    """TF function: encoded image bytes -> uint8 `[H, W, channels]` at the file's own size.

    GIF and BMP decoders have no one-channel output: for `channels=1` they are decoded as RGB and
    converted with `tf.image.rgb_to_grayscale`, so a folder mixing GIF, BMP, PNG and JPEG files works
    with `data.channels=1`. Raises `InvalidArgumentError` for bytes that do not decode.
    """
    if channels != 1:
        return tf.io.decode_image(contents, channels=channels, expand_animations=False)
    no_gray_decoder = tf.logical_or(tf.equal(tf.strings.substr(contents, 0, 3), b"GIF"),
                                    tf.equal(tf.strings.substr(contents, 0, 2), b"BM"))
    return tf.cond(
        no_gray_decoder,
        lambda: tf.image.rgb_to_grayscale(tf.io.decode_image(contents, channels=3, expand_animations=False)),
        lambda: tf.io.decode_image(contents, channels=1, expand_animations=False),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetSplits:
    """A dataset as the experiment uses it.

    Attributes:
      name: dataset name (`mnist5k`, `mnist`, `cifar10`, `clothing1m`, `folder`, `csv`).
      class_names: one name per class; C = len(class_names).
      train: the training split whose labels are noisy (10% of it is later held out as validation).
      test: the clean test split.
      clean: an optional extra split with clean labels (Clothing1M's clean training subset, a user's
        checked subset), available to Stage 1's clean-set rule and to fine-tuning.
      validation: an optional given validation split (Clothing1M's clean validation list); when None
        the experiment holds out 10% of `train`.
      checks: what the load-time checks found (skipped bad files, duplicates; `data.hygiene`), as
        JSON dicts for results.json's `data_checks`.
    """

    name: str
    class_names: tuple
    train: ImageSplit
    test: ImageSplit
    clean: Optional[ImageSplit] = None
    validation: Optional[ImageSplit] = None
    checks: tuple = ()

    def __post_init__(self):
        names = tuple(self.class_names)
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"dataset {self.name!r} needs at least 2 distinct class names, got {names!r}")
        object.__setattr__(self, "class_names", names)
        for split_name in ("train", "test", "clean", "validation"):
            split = getattr(self, split_name)
            if split is None:
                continue
            if split.num_classes != len(names):
                raise ValueError(f"dataset {self.name!r}: the {split_name} split has {split.num_classes} classes "
                                 f"but there are {len(names)} class names; every split must use the same classes")
            if split.image_shape != self.train.image_shape:
                raise ValueError(f"dataset {self.name!r}: {split_name} images have shape {split.image_shape} but "
                                 f"training images {self.train.image_shape}; every split must have the same shape")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return self.train.image_shape
