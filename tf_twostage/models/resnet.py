"""The paper's image classifiers: ResNet-14 for CIFAR-10 and a `keras.applications` ResNet-50 for Clothing1M.

Both return plain `keras.Model`s mapping pre-processed images to softmax probabilities (a final float32
`Softmax` layer named "probabilities"), like `build_mlp`. Every BatchNormalization layer is built with
`synchronized=True`, so its moving statistics stay identical across replicas under MirroredStrategy
(docs/traps.md); without a strategy it behaves like a plain BatchNormalization.

Inputs are what our data pipeline produces: pixels scaled to [0, 1], minus the per-pixel training mean when
`data.subtract_mean` is set. ResNet-50 with `input_preprocessing="imagenet"` (for ImageNet weights) starts
with an `ImageNetPreprocessing` layer: Keras' own `keras.applications.resnet50.preprocess_input` (BGR,
ImageNet channel means in 0..255 units) applied to those [0, 1] pixels times 255. It is part of the
classifier, so training, evaluation and the exported SavedModel all apply it.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import keras

RESNET14_FILTERS = (16, 32, 64)
RESNET14_BLOCKS_PER_STAGE = 2


def _check_rate(key: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"model.{key} must be in [0, 1), got {value}")
    return value


def _check_non_negative(key: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"model.{key} must be a finite number >= 0, got {value}")
    return value


def _check_shape_and_classes(input_shape: Sequence[int], num_classes: int) -> tuple:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (height, width, channels), got {tuple(input_shape)}")
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return shape


def _batch_norm(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(synchronized=True, name=name)


def _conv(filters: int, kernel_size: int, strides: int, regularizer, name: str) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,  # followed by BatchNormalization, whose beta is the bias
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer,
        name=name,
    )


def _basic_block(x, filters: int, strides: int, dropout: float, regularizer, seed: int, name: str):
    """conv3x3-BN-ReLU-[dropout]-conv3x3-BN, plus the (projected) shortcut, then ReLU (ResNet v1)."""
    shortcut = x
    y = _conv(filters, 3, strides, regularizer, f"{name}_conv1")(x)
    y = _batch_norm(f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    if dropout:
        y = keras.layers.Dropout(dropout, seed=seed, name=f"{name}_dropout")(y)
    y = _conv(filters, 3, 1, regularizer, f"{name}_conv2")(y)
    y = _batch_norm(f"{name}_bn2")(y)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides, regularizer, f"{name}_projection")(x)
        shortcut = _batch_norm(f"{name}_projection_bn")(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def build_resnet14(
    input_shape: Sequence[int],
    num_classes: int,
    dropout: float = 0.0,
    top_noise: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    name: str = "resnet14",
) -> keras.Model:
    """ResNet-14 for 32x32 images (the paper's CIFAR-10 model), about 176k parameters for 10 classes.

    A 3x3 convolution with 16 filters, 3 stages x 2 basic residual blocks with 16/32/64 filters (stride 2
    in the first block of stages 2 and 3, 1x1 projection shortcut where the shape changes), global average
    pooling, then a dense softmax layer. `dropout` > 0 adds dropout between the two convolutions of every
    residual unit; `top_noise` > 0 adds a `GaussianNoise` layer after the pooling, before the final dense
    layer (the stochastic perturbation of the semi-supervised model). Both are active only in training.
    `weight_decay` > 0 puts an L2 penalty `weight_decay * sum(w ** 2)` on every convolution and dense kernel
    (Keras' convention: the gradient is 2 * weight_decay * w); it shows up in `model.losses`.
    """
    shape = _check_shape_and_classes(input_shape, num_classes)
    dropout = _check_rate("dropout", dropout)
    top_noise = _check_non_negative("top_noise", top_noise)
    weight_decay = _check_non_negative("weight_decay", weight_decay)
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None

    inputs = keras.Input(shape=shape, name="image")
    x = _conv(RESNET14_FILTERS[0], 3, 1, regularizer, "stem_conv")(inputs)
    x = _batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    unit = 0
    for stage, filters in enumerate(RESNET14_FILTERS, start=1):
        for block in range(1, RESNET14_BLOCKS_PER_STAGE + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            unit += 1
            x = _basic_block(x, filters, strides, dropout, regularizer, seed + unit, f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if top_noise:
        x = keras.layers.GaussianNoise(top_noise, seed=seed, name="top_noise")(x)
    logits = keras.layers.Dense(num_classes, kernel_regularizer=regularizer, name="logits")(x)
    probabilities = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
    return keras.Model(inputs, probabilities, name=name)


def _synchronize_batch_norm(model: keras.Model, name: str) -> keras.Model:
    """The same functional model rebuilt with every BatchNormalization set to `synchronized=True`."""
    config = model.get_config()
    config["name"] = name
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["synchronized"] = True
    return keras.Model.from_config(config)


INPUT_PREPROCESSING = ("none", "imagenet")
IMAGENET = "imagenet"  # weights_path value: keras.applications' ImageNet weights (downloaded once, cached)


@keras.saving.register_keras_serializable(package="tf_twostage")
class ImageNetPreprocessing(keras.layers.Layer):
    """[0, 1] RGB pixels -> `keras.applications.resnet50.preprocess_input(255 x pixels)` (caffe mode: BGR,
    minus the ImageNet channel means), the input the ImageNet weights of `keras.applications` expect."""

    def call(self, inputs):
        return keras.applications.resnet50.preprocess_input(keras.ops.multiply(inputs, 255.0))

    def compute_output_shape(self, input_shape):
        return input_shape


def _imagenet_backbone(shape) -> keras.Model:
    """`keras.applications.ResNet50` with `weights="imagenet"` (Keras downloads the file once, into
    ~/.keras/models, and checks its hash); a failed download is one clear error."""
    if shape[-1] != 3:
        raise ValueError(f"model.weights_path=imagenet needs 3 input channels, got input shape {shape}")
    try:
        return keras.applications.ResNet50(include_top=False, weights=IMAGENET, input_shape=shape, pooling="avg")
    except Exception as error:  # Keras raises a bare Exception("URL fetch failure ...") offline
        raise ValueError(
            f"model.weights_path=imagenet: the ImageNet weights could not be obtained ({error}); where there is no "
            "network, give the path of a local weights file (e.g. resnet50_weights_tf_dim_ordering_tf_kernels_"
            "notop.h5 copied into ~/.keras/models or anywhere) instead"
        ) from error


def build_resnet50(
    input_shape: Sequence[int],
    num_classes: int,
    weights_path: str = "",
    dropout: float = 0.0,
    top_noise: float = 0.0,
    seed: int = 0,
    name: str = "resnet50",
    input_preprocessing: str = "none",
) -> keras.Model:
    """ResNet-50 (the paper's Clothing1M model): a `keras.applications.ResNet50` backbone and a dense head.

    The backbone (`include_top=False, pooling="avg"`, nested as the layer named "backbone") is Keras'.
    `weights_path`: "" random initialization; "imagenet" Keras' ImageNet weights through
    `keras.applications.ResNet50(weights="imagenet")` (downloaded once where there is a network, then
    cached); a file path: loaded from that local file with `backbone.load_weights` (e.g. Keras'
    `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`, or a `.weights.h5` saved from a backbone;
    ImageNet weights need 3 input channels). `input_preprocessing="imagenet"` puts `ImageNetPreprocessing`
    before the backbone (inputs: [0, 1] pixels, no mean subtracted). `top_noise` > 0 adds a
    `GaussianNoise` layer and `dropout` > 0 a `Dropout` layer on the pooled features, before the dense
    softmax layer; both are active only in training. Input must be at least 32x32.
    """
    shape = _check_shape_and_classes(input_shape, num_classes)
    dropout = _check_rate("dropout", dropout)
    top_noise = _check_non_negative("top_noise", top_noise)
    weights_path = os.fspath(weights_path) if weights_path else ""
    if input_preprocessing not in INPUT_PREPROCESSING:
        raise ValueError(f"model.input_preprocessing must be one of {', '.join(INPUT_PREPROCESSING)}; "
                         f"got {input_preprocessing!r}")
    if weights_path and weights_path != IMAGENET and not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"model.weights_path: no ResNet-50 weights file at {weights_path!r} (a path is never downloaded; "
            "give the path of a local .h5 / .weights.h5 file, \"imagenet\" to download Keras' ImageNet weights, or "
            "leave it empty for random initialization)"
        )

    stock = (_imagenet_backbone(shape) if weights_path == IMAGENET else
             keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape, pooling="avg"))
    backbone = _synchronize_batch_norm(stock, name="backbone")
    if weights_path == IMAGENET:
        backbone.set_weights(stock.get_weights())
    elif weights_path:
        backbone.load_weights(weights_path)

    inputs = keras.Input(shape=shape, name="image")
    x = inputs
    if input_preprocessing == "imagenet":
        x = ImageNetPreprocessing(name="imagenet_preprocessing")(x)
    x = backbone(x)
    if top_noise:
        x = keras.layers.GaussianNoise(top_noise, seed=seed, name="top_noise")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed + 1, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    probabilities = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
    return keras.Model(inputs, probabilities, name=name)
