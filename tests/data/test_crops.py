"""Random crops from a larger resize (training) and center crops (evaluation, export): data.resize_size."""

import numpy as np
import pytest
import tensorflow as tf

from tf_twostage.data.augment import build_augmenter, random_crop
from tf_twostage.data.preprocess import Preprocessor, fit_preprocessor
from tests.conftest import make_split


def _batch(count=4, size=6):
    return tf.reshape(tf.range(count * size * size, dtype=tf.float32), [count, size, size, 1])


def _find_window(image, window):
    """(top, left) where `window` sits in `image` (both 2-D), or None."""
    height, width = window.shape
    for top in range(image.shape[0] - height + 1):
        for left in range(image.shape[1] - width + 1):
            if np.array_equal(image[top:top + height, left:left + width], window):
                return top, left
    return None


def test_random_crop_takes_a_window_of_each_image_at_its_own_offset():
    images = _batch(8)
    crops = random_crop(images, (4, 3), tf.constant([3, 4], tf.int64)).numpy()
    assert crops.shape == (8, 4, 3, 1)
    offsets = [_find_window(images[i, :, :, 0].numpy(), crops[i, :, :, 0]) for i in range(8)]
    assert None not in offsets and len(set(offsets)) > 1


def test_random_crop_is_deterministic_given_the_seed_also_inside_tf_data():
    images = _batch(4)
    seed = tf.constant([7, 1], tf.int64)
    eager = random_crop(images, (4, 4), seed).numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors(images).map(lambda x: random_crop(x, (4, 4), seed)))).numpy()
    np.testing.assert_array_equal(eager, mapped)
    assert not np.array_equal(eager, random_crop(images, (4, 4), tf.constant([8, 1], tf.int64)).numpy())


def test_preprocessor_center_crops_what_the_augmenter_did_not():
    preprocessor = Preprocessor(None, crop_size=(4, 4))
    images = tf.cast(_batch(2), tf.uint8)
    out = preprocessor(images).numpy()
    np.testing.assert_allclose(out, images.numpy()[:, 1:5, 1:5, :] / 255.0, rtol=1e-6)
    assert preprocessor.output_shape((6, 6, 1)) == (4, 4, 1)
    augmenter = build_augmenter((4, 4, 1), flip=False, crop_size=(4, 4))
    trained = preprocessor(images, augmenter, tf.constant([1, 2], tf.int64)).numpy()
    assert trained.shape == (2, 4, 4, 1)
    with pytest.raises(ValueError, match="larger than the images"):
        Preprocessor(None, crop_size=(8, 8)).output_shape((6, 6, 1))


def test_mean_image_is_that_of_the_center_crop():
    split = make_split(num_examples=10, shape=(6, 6, 1))
    full = fit_preprocessor(split, True).mean_image
    cropped = fit_preprocessor(split, True, crop_size=(4, 4))
    np.testing.assert_allclose(cropped.mean_image, full[1:5, 1:5], rtol=1e-6)
    assert cropped.to_json() == {"mean_subtraction": True, "crop_size": [4, 4]}


def test_a_crop_alone_makes_an_augmenter():
    assert build_augmenter((4, 4, 1)) is None
    assert build_augmenter((4, 4, 1), crop_size=(4, 4)) is not None


def test_random_crop_with_flips_mirrors_exactly_the_windows_marked():
    images = _batch(6)
    seed = tf.constant([2, 9], tf.int64)
    flips = tf.constant([True, False, True, False, False, True])
    plain = random_crop(images, (4, 3), seed).numpy()
    mirrored = random_crop(images, (4, 3), seed, flips=flips).numpy()
    expected = np.where(flips.numpy()[:, None, None, None], plain[:, :, ::-1, :], plain)
    np.testing.assert_array_equal(mirrored, expected)


@pytest.mark.parametrize("mean", [None, np.linspace(0, 1, 4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)])
def test_fused_scaling_of_the_training_streams_matches_the_plain_ops(mean):
    preprocessor = Preprocessor(mean, crop_size=(4, 4))
    images = tf.constant(np.random.RandomState(0).randint(0, 256, (5, 6, 6, 3)).astype(np.uint8))
    plain = preprocessor(images).numpy()
    fused = preprocessor(images, fused=True).numpy()
    assert fused.dtype == np.float32 and fused.shape == (5, 4, 4, 3)
    np.testing.assert_allclose(fused, plain, rtol=0, atol=1e-6)
    in_data = next(iter(tf.data.Dataset.from_tensors(images).map(lambda x: preprocessor(x, fused=True)))).numpy()
    np.testing.assert_array_equal(in_data, fused)
