import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_twostage.data.augment import build_augmenter, translate
from tf_twostage.data.pipelines import (
    class_balanced_positions,
    evaluation_dataset,
    semi_supervised_stream,
    stratified_holdout,
    supervised_dataset,
)
from tf_twostage.data.preprocess import Preprocessor, fit_preprocessor
from tests.conftest import make_split


def test_holdout_takes_ten_percent_of_each_class_deterministically():
    labels = np.repeat(np.arange(3), [100, 50, 20])
    kept, held = stratified_holdout(labels, 0.1, seed=3)
    assert np.bincount(labels[held]).tolist() == [10, 5, 2]
    assert len(kept) + len(held) == len(labels) and not set(kept) & set(held)
    again_kept, again_held = stratified_holdout(labels, 0.1, seed=3)
    assert np.array_equal(held, again_held)
    assert not np.array_equal(held, stratified_holdout(labels, 0.1, seed=4)[1])


def test_holdout_rejects_fraction_outside_range():
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.5"):
        stratified_holdout([0, 1], 1.5, 0)


def test_balanced_positions_oversample_rare_classes_to_equal_frequency():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    drawn = np.array(list(class_balanced_positions(labels, seed=0).take(3000).as_numpy_iterator()))
    frequencies = np.bincount(labels[drawn], minlength=3) / len(drawn)
    np.testing.assert_allclose(frequencies, [1 / 3] * 3, atol=0.04)


def test_balanced_positions_draw_only_from_the_given_subset():
    labels = np.array([0, 0, 1, 1, 2, 2])
    drawn = set(class_balanced_positions(labels, 0, positions=[1, 2]).take(50).as_numpy_iterator())
    assert drawn == {1, 2}
    with pytest.raises(ValueError, match="at least one labeled example"):
        class_balanced_positions(labels, 0, positions=[])


def test_supervised_training_stream_yields_float_images_and_labels_endlessly():
    split = make_split(10, 2)
    dataset = supervised_dataset(split, Preprocessor(), 4, training=True, seed=0)
    batches = list(dataset.take(6).as_numpy_iterator())
    images, labels = batches[0]
    assert images.shape == (4, 6, 6, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels.dtype == np.int64
    seen = np.concatenate([b[0][:, 0, 0, 0] for b in batches[:5]]) * 255
    assert set(np.round(seen).astype(int)[:20]) >= set(range(10)) - set(), "a shuffled pass covers every example"


def test_supervised_stream_is_deterministic_given_the_seed():
    split = make_split(20, 2)
    first = [b[1] for b in supervised_dataset(split, Preprocessor(), 5, training=True, seed=1).take(4)]
    second = [b[1] for b in supervised_dataset(split, Preprocessor(), 5, training=True, seed=1).take(4)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))


def test_evaluation_stream_is_one_ordered_pass_with_ids_and_clean_labels():
    split = make_split(10, 2)
    batches = list(evaluation_dataset(split, Preprocessor(), 4).as_numpy_iterator())
    assert [len(b["index"]) for b in batches] == [4, 4, 2]
    assert np.concatenate([b["index"] for b in batches]).tolist() == list(range(10))
    assert "clean_label" in batches[0]


def test_preprocessor_subtracts_the_training_set_pixel_mean():
    split = make_split(10, 2)
    preprocessor = fit_preprocessor(split, subtract_mean=True)
    np.testing.assert_allclose(preprocessor.mean_image, split.images.mean(axis=0) / 255.0, atol=1e-6)
    processed = preprocessor(tf.constant(split.images)).numpy()
    np.testing.assert_allclose(processed.mean(axis=0), 0.0, atol=1e-5)
    assert fit_preprocessor(split, subtract_mean=False).mean_image is None


def test_augmenter_translates_each_image_of_a_batch_differently():
    augment = build_augmenter((8, 8, 1), translate_px=2, seed=0)
    images = np.zeros((16, 8, 8, 1), np.float32)
    images[:, 3:5, 3:5] = 1.0
    shifted = augment(images, training=True).numpy()
    centers = {tuple(np.argwhere(im[..., 0] > 0.5).mean(axis=0).round(1)) for im in shifted}
    assert len(centers) > 2
    np.testing.assert_allclose(shifted.sum(axis=(1, 2, 3)), 4.0)  # shifts of <= 2 px keep the square
    assert build_augmenter((8, 8, 1)) is None
    with pytest.raises(ValueError, match="translate_px"):
        build_augmenter((8, 8, 1), translate_px=8)


def _shifted(image, dy, dx):
    """`image` [H, W, C] moved so that out[y, x] = image[y + dy, x + dx], zero outside (numpy reference)."""
    height, width = image.shape[:2]
    out = np.zeros_like(image)
    for y in range(height):
        for x in range(width):
            if 0 <= y + dy < height and 0 <= x + dx < width:
                out[y, x] = image[y + dy, x + dx]
    return out


@pytest.mark.parametrize("shape,max_shift", [((6, 5, 7, 3), 2), ((4, 4, 4, 1), 3)])
def test_translation_is_an_integer_shift_with_zero_fill_of_each_image(shape, max_shift):
    images = np.random.RandomState(0).uniform(0.1, 1.0, shape).astype(np.float32)
    shifted = translate(tf.constant(images), max_shift, tf.constant([5, 9], tf.int64)).numpy()
    assert shifted.shape == images.shape
    shifts = range(-max_shift, max_shift + 1)
    for image, out in zip(images, shifted):
        matches = [(dy, dx) for dy in shifts for dx in shifts if np.array_equal(out, _shifted(image, dy, dx))]
        assert len(matches) == 1, matches
    unknown_batch = tf.function(lambda x: translate(x, max_shift, tf.constant([5, 9], tf.int64)),
                                input_signature=[tf.TensorSpec([None, *shape[1:]], tf.float32)])
    np.testing.assert_array_equal(unknown_batch(images).numpy(), shifted)


def test_augmentation_runs_inside_tf_data():
    split = make_split(8, 2)
    augment = build_augmenter(split.image_shape, flip=True, translate_px=1, seed=0)
    images, _ = next(iter(supervised_dataset(split, Preprocessor(), 8, training=True, augmenter=augment)))
    assert images.shape == (8, 6, 6, 1)


def _stream(split, labeled_positions, batch_size=8, **kwargs):
    return semi_supervised_stream(split, labeled_positions, split.labels, Preprocessor(), batch_size, **kwargs)


def test_stage2_batches_alternate_labeled_and_unlabeled_halves():
    split = make_split(40, 4)
    labeled_positions = np.arange(0, 40, 5)
    batch = next(iter(_stream(split, labeled_positions)))
    assert batch["labeled"].dtype == tf.float32
    assert batch["labeled"].numpy().tolist() == [1, 0] * 4
    labeled_ids = batch["index"].numpy()[::2]
    assert set(labeled_ids) <= set(labeled_positions)
    np.testing.assert_array_equal(batch["label"].numpy()[::2], split.labels[labeled_ids])
    assert np.all(batch["label"].numpy()[1::2] == 0)


def test_every_replica_slice_of_a_stage2_batch_is_half_labeled():
    split = make_split(40, 4)
    mask = next(iter(_stream(split, np.arange(20), batch_size=16)))["labeled"].numpy()
    for replica_slice in np.split(mask, 4):
        assert replica_slice.sum() == len(replica_slice) / 2


def test_stage2_labeled_half_is_class_balanced_and_unlabeled_half_covers_all_images():
    split = make_split(100, 4).with_labels(np.array([0] * 70 + [1] * 20 + [2] * 8 + [3] * 2))
    batches = list(_stream(split, np.arange(100), batch_size=20).take(60).as_numpy_iterator())
    labeled_labels = np.concatenate([b["label"][::2] for b in batches])
    np.testing.assert_allclose(np.bincount(labeled_labels) / len(labeled_labels), [0.25] * 4, atol=0.05)
    unlabeled_first_pass = np.concatenate([b["index"][1::2] for b in batches[:10]])
    assert sorted(unlabeled_first_pass) == list(range(100))


def test_stage2_stream_gives_independent_views_for_the_pi_model():
    split = make_split(20, 2)
    augment = build_augmenter(split.image_shape, translate_px=2, seed=0)
    batch = next(iter(_stream(split, np.arange(20), augmenter=augment, num_views=2)))
    assert batch["image"].shape == batch["image_2"].shape
    assert not np.allclose(batch["image"], batch["image_2"])


def test_stage2_stream_rejects_an_odd_batch_and_has_no_clean_labels():
    split = make_split(10, 2)
    with pytest.raises(ValueError, match="must be even"):
        _stream(split, np.arange(10), batch_size=7)
    assert "clean_label" not in next(iter(_stream(split, np.arange(10))))


def test_streams_feed_keras_fit():
    split = make_split(32, 4, shape=(4, 4, 1))
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(supervised_dataset(split, Preprocessor(), 8, training=True), steps_per_epoch=4,
                        epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    stream = _stream(split, np.arange(16)).map(lambda b: (b["image"], b["label"], b["labeled"]))
    history = model.fit(stream, steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
