"""Classifier builders: plain `keras.Model`s that map pre-processed images to class probabilities."""

from tf_twostage.models.ensemble import average_ensemble
from tf_twostage.models.factory import MODEL_NAMES, build_classifier
from tf_twostage.models.mlp import build_mlp
from tf_twostage.models.resnet import build_resnet14, build_resnet50

__all__ = ["MODEL_NAMES", "average_ensemble", "build_classifier", "build_mlp", "build_resnet14", "build_resnet50"]
