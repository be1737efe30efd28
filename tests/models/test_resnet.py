"""ResNet-14 / ResNet-50 builders and their factory dispatch (forward passes and one tiny fit step only)."""

import math

import keras
import ml_collections
import numpy as np
import pytest

from tf_twostage.config import base_config
from tf_twostage.models import MODEL_NAMES, build_classifier, build_resnet14, build_resnet50

# 3x3 stem (432) + 3 stages x 2 basic blocks (16/32/64 filters) + two 1x1 projections (512 + 2048),
# all without bias, + BatchNormalization (gamma, beta, moving mean, moving variance) + dense 64x10+10.
RESNET14_PARAMS_C10 = 176_378
RESNET14_TRAINABLE_C10 = 175_258


def _images(n=4, shape=(32, 32, 3), seed=0):
    return np.random.RandomState(seed).uniform(-0.5, 0.5, size=(n, *shape)).astype("float32")


def _layers_of(model, cls):
    """Layers of type `cls` in `model`, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, cls):
            found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_layers_of(layer, cls))
    return found


def _batch_norms(model):
    return _layers_of(model, keras.layers.BatchNormalization)


@pytest.fixture(scope="module")
def resnet50_plain():
    return build_resnet50((32, 32, 3), 5)


# ---------------------------------------------------------------- ResNet-14


def test_resnet14_outputs_probabilities():
    model = build_resnet14((32, 32, 3), 10)
    probabilities = model(_images(), training=False).numpy()
    assert probabilities.shape == (4, 10)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities >= 0).all()
    assert model.layers[-1].name == "probabilities"
    assert model.name == "resnet14"


def test_resnet14_parameter_count_is_about_176k():
    model = build_resnet14((32, 32, 3), 10)
    assert model.count_params() == pytest.approx(RESNET14_PARAMS_C10, rel=0.01)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == pytest.approx(RESNET14_TRAINABLE_C10, rel=0.01)
    # Regularization, dropout and noise add no parameters.
    assert build_resnet14((32, 32, 3), 10, dropout=0.3, top_noise=0.1, weight_decay=1e-4).count_params() == (
        model.count_params()
    )


def test_resnet14_architecture():
    model = build_resnet14((32, 32, 3), 10)
    convs = _layers_of(model, keras.layers.Conv2D)
    assert len(convs) == 1 + 3 * 2 * 2 + 2  # stem, 12 block convolutions, 2 projections
    assert [c.name for c in convs if c.kernel_size == (1, 1)] == [
        "stage2_block1_projection",
        "stage3_block1_projection",
    ]
    assert [c.name for c in convs if c.strides == (2, 2)] == [
        "stage2_block1_conv1",
        "stage2_block1_projection",
        "stage3_block1_conv1",
        "stage3_block1_projection",
    ]
    assert model.get_layer("stage3_block2_out").output.shape[1:] == (8, 8, 64)
    assert len(_layers_of(model, keras.layers.Add)) == 6
    batch_norms = _batch_norms(model)
    assert len(batch_norms) == len(convs)
    assert all(bn.synchronized for bn in batch_norms)


def test_resnet14_dropout_and_noise_layers_only_when_asked():
    plain = build_resnet14((32, 32, 3), 10)
    assert not _layers_of(plain, keras.layers.Dropout)
    assert not _layers_of(plain, keras.layers.GaussianNoise)

    dropped = build_resnet14((32, 32, 3), 10, dropout=0.2)
    dropouts = _layers_of(dropped, keras.layers.Dropout)
    assert len(dropouts) == 6  # one per residual unit
    assert all(d.rate == 0.2 for d in dropouts)
    # Between the two convolutions of each unit.
    for d in dropouts:
        unit = d.name.removesuffix("_dropout")
        assert d.input is dropped.get_layer(f"{unit}_relu1").output
        assert dropped.get_layer(f"{unit}_conv2").input is d.output
    assert not _layers_of(dropped, keras.layers.GaussianNoise)

    noisy = build_resnet14((32, 32, 3), 10, top_noise=0.3)
    (noise,) = _layers_of(noisy, keras.layers.GaussianNoise)
    assert noise.stddev == 0.3
    assert noise.input is noisy.get_layer("avg_pool").output
    assert noisy.get_layer("logits").input is noise.output
    assert not _layers_of(noisy, keras.layers.Dropout)


@pytest.mark.parametrize(
    "kwargs, stochastic",
    [({}, False), ({"dropout": 0.3}, True), ({"top_noise": 0.5}, True)],
)
def test_resnet14_is_stochastic_only_in_training(kwargs, stochastic):
    model = build_resnet14((32, 32, 3), 10, **kwargs)
    x = _images(8)
    np.testing.assert_array_equal(model(x, training=False).numpy(), model(x, training=False).numpy())
    first, second = model(x, training=True).numpy(), model(x, training=True).numpy()
    if stochastic:
        assert np.abs(first - second).max() > 1e-4
    else:
        np.testing.assert_allclose(first, second, atol=1e-6)


def test_resnet14_weight_decay_adds_l2_losses():
    assert build_resnet14((32, 32, 3), 10).losses == []
    model = build_resnet14((32, 32, 3), 10, weight_decay=1e-3)
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    assert len(kernels) == 15 + 1  # 15 convolutions + the dense layer
    assert len(model.losses) == len(kernels)
    expected = 1e-3 * sum(float(np.sum(np.square(w.numpy()))) for w in kernels)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-4)


def test_resnet14_one_fit_step_updates_weights_and_batch_norm_statistics():
    model = build_resnet14((32, 32, 3), 3, dropout=0.1, top_noise=0.1, weight_decay=1e-4)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy")
    kernel_before = model.get_layer("logits").kernel.numpy().copy()
    mean_before = model.get_layer("stem_bn").moving_mean.numpy().copy()
    history = model.fit(_images(8), np.arange(8) % 3, batch_size=8, epochs=1, verbose=0)
    assert math.isfinite(history.history["loss"][0])
    assert not np.allclose(model.get_layer("logits").kernel.numpy(), kernel_before)
    assert not np.allclose(model.get_layer("stem_bn").moving_mean.numpy(), mean_before)


def test_resnet14_accepts_other_image_shapes():
    probabilities = build_resnet14((28, 28, 1), 4)(_images(2, (28, 28, 1)), training=False)
    assert probabilities.shape == (2, 4)


@pytest.mark.parametrize(
    "kwargs, value",
    [
        ({"dropout": -0.1}, "-0.1"),
        ({"dropout": 1.0}, "1.0"),
        ({"top_noise": -0.5}, "-0.5"),
        ({"top_noise": float("nan")}, "nan"),
        ({"weight_decay": -1e-4}, "-0.0001"),
        ({"weight_decay": float("inf")}, "inf"),
    ],
)
def test_resnet14_rejects_bad_arguments(kwargs, value):
    (key,) = kwargs
    with pytest.raises(ValueError, match=rf"model\.{key}.*{value}"):
        build_resnet14((32, 32, 3), 10, **kwargs)


@pytest.mark.parametrize("builder", [build_resnet14, build_resnet50])
@pytest.mark.parametrize(
    "input_shape, num_classes, message",
    [((32, 32), 10, r"input_shape.*\(32, 32\)"), ((32, 32, 3), 1, "num_classes.*1"), ((32, 32, 3), 2.5, "2.5")],
)
def test_bad_shapes_and_class_counts(builder, input_shape, num_classes, message):
    with pytest.raises(ValueError, match=message):
        builder(input_shape, num_classes)


# ---------------------------------------------------------------- ResNet-50


def test_resnet50_outputs_probabilities(resnet50_plain):
    probabilities = resnet50_plain(_images(2), training=False).numpy()
    assert probabilities.shape == (2, 5)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert resnet50_plain.layers[-1].name == "probabilities"
    assert resnet50_plain.name == "resnet50"


def test_resnet50_backbone_is_keras_resnet50_with_synchronized_batch_norm(resnet50_plain):
    backbone = resnet50_plain.get_layer("backbone")
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    assert backbone.count_params() == reference.count_params()
    # Same layers in the same order (the input layer's name is auto-numbered).
    assert [layer.name for layer in backbone.layers][1:] == [layer.name for layer in reference.layers][1:]
    batch_norms = _batch_norms(backbone)
    assert len(batch_norms) == 53
    assert all(bn.synchronized for bn in batch_norms)
    assert backbone.output.shape == (None, 2048)
    assert not _layers_of(resnet50_plain, keras.layers.Dropout)
    assert not _layers_of(resnet50_plain, keras.layers.GaussianNoise)


def test_resnet50_head_layers_and_stochasticity():
    model = build_resnet50((32, 32, 3), 3, dropout=0.4, top_noise=0.2)
    (noise,) = _layers_of(model, keras.layers.GaussianNoise)
    (dropout,) = _layers_of(model, keras.layers.Dropout)
    assert (noise.stddev, dropout.rate) == (0.2, 0.4)
    assert model.get_layer("logits").input is dropout.output
    x = _images(4)
    np.testing.assert_array_equal(model(x, training=False).numpy(), model(x, training=False).numpy())
    assert np.abs(model(x, training=True).numpy() - model(x, training=True).numpy()).max() > 1e-6


def test_resnet50_weights_path_round_trip(tmp_path, resnet50_plain):
    path = tmp_path / "backbone.weights.h5"
    resnet50_plain.get_layer("backbone").save_weights(str(path))
    loaded = build_resnet50((32, 32, 3), 5, weights_path=str(path))
    for saved, restored in zip(resnet50_plain.get_layer("backbone").weights, loaded.get_layer("backbone").weights):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())
    # The head is not part of the file; copy it to compare whole-model outputs.
    loaded.get_layer("logits").set_weights(resnet50_plain.get_layer("logits").get_weights())
    x = _images(2)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), resnet50_plain(x, training=False).numpy(), atol=1e-6)


def test_resnet50_loads_weights_saved_from_a_stock_keras_backbone(tmp_path):
    """The synchronized-BN rebuild keeps keras.applications' layout, so its weight files still load."""
    stock = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    path = tmp_path / "stock.weights.h5"
    stock.save_weights(str(path))
    loaded = build_resnet50((32, 32, 3), 2, weights_path=path).get_layer("backbone")
    for expected, actual in zip(stock.weights, loaded.weights):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())


def test_resnet50_loads_a_legacy_h5_file_like_the_imagenet_release(tmp_path):
    """Keras' ImageNet file (`resnet50_..._notop.h5`) is legacy HDF5, loaded by topology."""
    h5py = pytest.importorskip("h5py")
    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    stock = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    path = tmp_path / "resnet50_notop.h5"
    with h5py.File(path, "w") as f:
        legacy.save_weights_to_hdf5_group(f, stock)
    loaded = build_resnet50((32, 32, 3), 2, weights_path=str(path)).get_layer("backbone")
    for expected, actual in zip(stock.weights, loaded.weights):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())


def test_resnet50_missing_weights_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "resnet50_notop.h5"
    with pytest.raises(FileNotFoundError, match="nowhere/resnet50_notop.h5"):
        build_resnet50((32, 32, 3), 5, weights_path=str(missing))


@pytest.mark.parametrize("kwargs, value", [({"dropout": 1.5}, "1.5"), ({"top_noise": -1.0}, "-1.0")])
def test_resnet50_rejects_bad_arguments(kwargs, value):
    (key,) = kwargs
    with pytest.raises(ValueError, match=rf"model\.{key}.*{value}"):
        build_resnet50((32, 32, 3), 5, **kwargs)


# ---------------------------------------------------------------- factory


def test_model_names_are_the_builders_and_auto():
    assert set(MODEL_NAMES) == {"mlp", "resnet14", "resnet50", "auto"}


def test_factory_builds_resnet14_from_the_base_config():
    config = base_config()
    config.model.name = "resnet14"
    config.model.dropout = 0.25
    model = build_classifier(config.model, (32, 32, 3), 10, seed=3)
    assert model.name == "resnet14"
    assert model.count_params() == RESNET14_PARAMS_C10
    assert {d.rate for d in _layers_of(model, keras.layers.Dropout)} == {0.25}
    # top_noise / weight_decay are not in the base config yet: they default to off.
    assert not _layers_of(model, keras.layers.GaussianNoise)
    assert model.losses == []


def test_factory_passes_optional_resnet_keys():
    model_config = ml_collections.ConfigDict(
        {"name": "resnet14", "hidden_units": (), "dropout": 0.0, "top_noise": 0.15, "weight_decay": 5e-4}
    )
    model = build_classifier(model_config, (32, 32, 3), 10)
    (noise,) = _layers_of(model, keras.layers.GaussianNoise)
    assert noise.stddev == 0.15
    assert len(model.losses) == 16
    assert not _layers_of(model, keras.layers.Dropout)


def test_factory_resnet50_with_missing_weights_file(tmp_path):
    model_config = ml_collections.ConfigDict(
        {"name": "resnet50", "dropout": 0.0, "weights_path": str(tmp_path / "absent.h5")}
    )
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        build_classifier(model_config, (32, 32, 3), 14)


def test_factory_resnet50_without_optional_keys():
    config = base_config()
    config.model.name = "resnet50"
    config.model.dropout = 0.0
    model = build_classifier(config.model, (32, 32, 3), 14)
    assert model.name == "resnet50"
    assert model.output.shape == (None, 14)


def test_factory_rejects_unknown_names():
    with pytest.raises(ValueError, match="resnet14.*'resnet18'"):
        build_classifier(ml_collections.ConfigDict({"name": "resnet18"}), (32, 32, 3), 10)


# ---------------------------------------------------------------- ImageNet weights and pre-processing


def test_resnet50_imagenet_weights_go_through_keras_applications(tmp_path, monkeypatch):
    """weights_path="imagenet" is keras.applications' own loading code; only its download is replaced by a
    small local file the test makes (Keras' release file is legacy HDF5 of the same topology)."""
    h5py = pytest.importorskip("h5py")
    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    from keras.src.utils import file_utils

    keras.utils.set_random_seed(5)
    stock = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        legacy.save_weights_to_hdf5_group(f, stock)
    fetched = []
    monkeypatch.setattr(file_utils, "get_file", lambda name, *args, **kwargs: fetched.append(name) or str(path))
    model = build_resnet50((32, 32, 3), 14, weights_path="imagenet", input_preprocessing="imagenet")
    assert fetched == ["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"]
    backbone = model.get_layer("backbone")
    assert all(bn.synchronized for bn in _batch_norms(backbone))
    for expected, actual in zip(stock.weights, backbone.weights):
        np.testing.assert_array_equal(expected.numpy(), actual.numpy())


def test_resnet50_imagenet_download_failure_is_one_clear_error(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(ValueError, match="model.weights_path=imagenet: the ImageNet weights could not be obtained"):
        build_resnet50((32, 32, 3), 14, weights_path="imagenet")


def test_imagenet_preprocessing_is_keras_preprocess_input_of_the_pixels():
    model = build_resnet50((32, 32, 3), 3, input_preprocessing="imagenet")
    layer = model.get_layer("imagenet_preprocessing")
    pixels = np.random.RandomState(0).randint(0, 256, size=(2, 32, 32, 3)).astype("float32")
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    np.testing.assert_allclose(np.asarray(layer(pixels / 255.0)), expected, atol=1e-3)
    assert model.get_layer("backbone").input is not None and model.layers[1] is layer
    with pytest.raises(ValueError, match="model.input_preprocessing must be one of none, imagenet"):
        build_resnet50((32, 32, 3), 3, input_preprocessing="caffe")
