"""Decoding with resizing, and the folded flip + translation of the augmenter (issue 17's faster pipeline)."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tf_twostage.data.augment import build_augmenter, flip_draws, translate
from tf_twostage.data.preprocess import Preprocessor
from tf_twostage.data.source import decode_image_bytes


def _png(pixels) -> tf.Tensor:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return tf.constant(buffer.getvalue())


def _reference(images, max_shift, shift_seed, flip_seed):
    """The previous two-step augmentation: TF's stateless flip of the batch, then each image shifted by
    (max_shift - row offset, max_shift - column offset), zero outside (numpy)."""
    flipped = tf.image.stateless_random_flip_left_right(images, flip_seed).numpy()
    batch, height, width = images.shape[:3]
    offsets = tf.random.stateless_uniform([batch, 2], shift_seed, minval=0, maxval=2 * max_shift + 1,
                                          dtype=tf.int32).numpy()
    padded = np.pad(flipped, [(0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)])
    return np.stack([padded[i, r:r + height, c:c + width] for i, (r, c) in enumerate(offsets)])


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("shape,max_shift", [((9, 6, 5, 3), 2), ((7, 4, 4, 1), 3)])
def test_folded_flip_and_translation_equal_flipping_then_shifting(dtype, shape, max_shift):
    images = np.random.RandomState(1).randint(1, 255, shape).astype(dtype)
    shift_seed, flip_seed = tf.constant([5, 9], tf.int64), tf.constant([2, 3], tf.int64)
    flips = flip_draws(tf.constant(images), flip_seed)

    eager = translate(tf.constant(images), max_shift, shift_seed, flips=flips).numpy()
    in_data = tf.data.Dataset.from_tensors(images).map(
        lambda x: translate(x, max_shift, shift_seed, flips=flip_draws(x, flip_seed))).get_single_element()

    assert eager.dtype == dtype and 0 < flips.numpy().sum() < shape[0]
    np.testing.assert_array_equal(eager, _reference(images, max_shift, shift_seed, flip_seed))
    np.testing.assert_array_equal(in_data.numpy(), eager)


def test_augmenting_raw_pixels_then_scaling_equals_scaling_then_augmenting():
    images = np.random.RandomState(2).randint(0, 256, (6, 8, 8, 3)).astype(np.uint8)
    mean = np.random.RandomState(3).uniform(0, 1, (8, 8, 3)).astype(np.float32)
    augment = build_augmenter((8, 8, 3), flip=True, translate_px=2, seed=4)
    seed = tf.constant([7, 1], tf.int64)

    out = Preprocessor(mean)(tf.constant(images), augment, seed).numpy()

    scaled_first = augment(tf.constant(images, tf.float32) / 255.0, seed=seed).numpy() - mean
    np.testing.assert_array_equal(out, scaled_first)


def test_an_image_of_the_target_size_is_decoded_unchanged():
    pixels = np.random.RandomState(0).randint(0, 256, (10, 12, 3)).astype(np.uint8)

    np.testing.assert_array_equal(decode_image_bytes(_png(pixels), (10, 12, 3)).numpy(), pixels)


@pytest.mark.parametrize("size,antialias", [((16, 16), False), ((12, 14), False), ((8, 10), True), ((5, 6), True)])
def test_resizing_is_antialiased_only_when_shrinking_by_half_or_more(size, antialias):
    pixels = np.random.RandomState(0).randint(0, 256, (16, 20, 3)).astype(np.uint8)
    height, width = size

    decoded = decode_image_bytes(_png(pixels), (height, width, 3)).numpy()

    expected = tf.image.resize(pixels, size, method="bilinear", antialias=antialias)
    expected = tf.cast(tf.clip_by_value(tf.round(expected), 0, 255), tf.uint8).numpy()
    np.testing.assert_array_equal(decoded, expected)
    other = tf.image.resize(pixels, size, method="bilinear", antialias=not antialias)
    other = tf.cast(tf.clip_by_value(tf.round(other), 0, 255), tf.uint8).numpy()
    assert not np.array_equal(decoded, other)


def test_permuted_passes_cover_every_member_once_per_pass_in_new_orders():
    from tf_twostage.data.pipelines import permuted_passes  # pylint: disable=import-outside-toplevel

    members = np.arange(10, 60, 5, dtype=np.int64)
    drawn = np.array(list(permuted_passes(members, seed=3).take(3 * len(members)).as_numpy_iterator()))
    passes = drawn.reshape(3, len(members))

    assert all(sorted(p) == members.tolist() for p in passes)
    assert len({tuple(p) for p in passes}) == 3
    again = list(permuted_passes(members, seed=3).take(len(members)).as_numpy_iterator())
    assert again == passes[0].tolist()
    assert list(permuted_passes(members, seed=4).take(len(members)).as_numpy_iterator()) != again
    assert sorted(permuted_passes(members, seed=3, repeat=False).as_numpy_iterator()) == members.tolist()
