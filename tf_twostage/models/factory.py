"""Builds the classifier a config names (`model.name`)."""

from __future__ import annotations

import keras

from tf_twostage.models.mlp import build_mlp
from tf_twostage.models.resnet import build_resnet14, build_resnet50

MODEL_NAMES = ("mlp", "resnet14", "resnet50", "auto")
# model.name=auto: ResNet-14 (176k parameters, made for 32x32) up to this image side, ResNet-50 above it.
AUTO_SMALL_IMAGE_SIDE = 64


def model_for_image(name: str, input_shape) -> str:
    """`name`, with `auto` resolved from the image size: a small ResNet for small images, ResNet-50 else."""
    if name != "auto":
        return name
    return "resnet14" if max(input_shape[0], input_shape[1]) <= AUTO_SMALL_IMAGE_SIDE else "resnet50"


def build_classifier(model_config, input_shape, num_classes: int, seed: int = 0) -> keras.Model:
    """The classifier of `model_config` for images of `input_shape` and `num_classes` classes.

    Keys only some models read (`top_noise`, `weight_decay`, `weights_path`, `input_preprocessing`) default
    when absent.
    """
    name = model_for_image(model_config.name, input_shape)
    if name == "mlp":
        return build_mlp(
            input_shape,
            num_classes,
            hidden_units=tuple(model_config.hidden_units),
            dropout=float(model_config.dropout),
            input_noise=float(model_config.get("input_noise", 0.0)),
            seed=seed,
        )
    if name == "resnet14":
        return build_resnet14(
            input_shape,
            num_classes,
            dropout=float(model_config.get("dropout", 0.0)),
            top_noise=float(model_config.get("top_noise", 0.0)),
            weight_decay=float(model_config.get("weight_decay", 0.0)),
            seed=seed,
        )
    if name == "resnet50":
        return build_resnet50(
            input_shape,
            num_classes,
            weights_path=str(model_config.get("weights_path", "") or ""),
            dropout=float(model_config.get("dropout", 0.0)),
            top_noise=float(model_config.get("top_noise", 0.0)),
            seed=seed,
            input_preprocessing=str(model_config.get("input_preprocessing", "none") or "none"),
        )
    raise ValueError(f"model.name must be one of {', '.join(MODEL_NAMES)}; got {name!r}")
