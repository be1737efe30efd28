"""Losses of the comparison rows (forward / backward loss correction, soft / hard bootstrapping) and the
noise-robust generalized cross-entropy that Stage 1 can pre-train with (`stage1.loss=gce`).

All take sparse integer labels `y_true` [B] (or [B, 1]) and softmax probabilities `y_pred` [B, C] (our
classifiers end in a softmax, so these are probabilities, not logits). Each is a `keras.losses.Loss` whose
`call` returns per-example losses [B]; Keras does the reduction, which keeps them correct under
MirroredStrategy (the mean over the global batch). Probabilities are clipped to [eps, 1] with
`eps = keras.config.epsilon()` before any logarithm.

- Forward correction (Patrini et al. 2017): cross-entropy of the noisy label against `y_pred @ T`.
- Backward correction (Patrini et al. 2017): `(T^{-1} l)[y]` with `l = -log(y_pred)`, the per-class losses.
- Bootstrapping (Reed et al. 2015): cross-entropy against a mix of the noisy label and the model's own
  prediction (soft: the probabilities; hard: the one-hot argmax), the prediction taken as a constant.
- Generalized cross-entropy (Zhang & Sabuncu 2018): `(1 - p_y^q) / q`, cross-entropy as q -> 0 and mean
  absolute error at q = 1. Its gradient is cross-entropy's times `p_y^q`, so labels the network finds
  unlikely (most of the wrong ones) pull less, and it memorizes them later.

`T[i, j] = P(noisy = j | clean = i)`; see `tf_twostage.baselines.transition`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_twostage.baselines.transition import check_transition_matrix

# Above this, T^{-1} in float32 is mostly round-off: backward correction refuses the matrix.
MAX_CONDITION_NUMBER = 1e6

_PACKAGE = "tf_twostage"


def _check_fraction(name: str, value, include_zero: bool) -> float:
    """`value` as a float in [0, 1] (or (0, 1] without `include_zero`); a ValueError naming `name` otherwise."""
    allowed = "[0, 1]" if include_zero else "(0, 1]"
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}") from None
    if not (0.0 <= value if include_zero else 0.0 < value) or not value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in {allowed}, got {value}")
    return value


def _sparse_labels(y_true, y_pred, num_classes=None):
    """Integer labels shaped like `y_pred` without its class axis (checking C against T's when given)."""
    if num_classes is not None and y_pred.shape[-1] is not None and y_pred.shape[-1] != num_classes:
        raise ValueError(f"y_pred has {y_pred.shape[-1]} classes but the transition matrix is "
                         f"{num_classes} x {num_classes}")
    labels = tf.reshape(tf.cast(y_true, tf.int32), tf.shape(y_pred)[:-1])  # Keras casts y_true to float
    return labels


def _clip(probabilities):
    return tf.clip_by_value(probabilities, keras.config.epsilon(), 1.0)


def _take(values, labels):
    """values[..., labels]: the entry of each example's label."""
    return tf.gather(values, labels[..., None], batch_dims=labels.shape.rank)[..., 0]


class _TransitionLoss(keras.losses.Loss):
    """Holds a validated row-stochastic T; serializes it as nested lists."""

    def __init__(self, transition_matrix, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._matrix = check_transition_matrix(transition_matrix)

    @property
    def num_classes(self) -> int:
        return self._matrix.shape[0]

    @property
    def transition_matrix(self) -> np.ndarray:
        return self._matrix.copy()

    def get_config(self):
        return {**super().get_config(), "transition_matrix": self._matrix.tolist()}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ForwardCorrectedCrossEntropy(_TransitionLoss):
    """`-log((y_pred @ T)[y])`: the noisy label's cross-entropy after pushing the clean posterior through T.

    With T the identity it equals sparse categorical cross-entropy.
    """

    def __init__(self, transition_matrix, name="forward_corrected_cross_entropy",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(transition_matrix, name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        labels = _sparse_labels(y_true, y_pred, self.num_classes)
        matrix = tf.constant(self._matrix, dtype=y_pred.dtype)
        noisy = tf.tensordot(y_pred, matrix, axes=1)  # [..., C] @ [C, C]
        return -tf.math.log(_take(_clip(noisy), labels))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BackwardCorrectedCrossEntropy(_TransitionLoss):
    """`(T^{-1} l)[y]` with `l = -log(y_pred)` over all C classes: an unbiased estimate of the clean loss.

    T must be invertible: a ValueError names its condition number when it exceeds `MAX_CONDITION_NUMBER`.
    The corrected loss can be negative for some examples (the estimator is unbiased, not non-negative).
    """

    def __init__(self, transition_matrix, name="backward_corrected_cross_entropy",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(transition_matrix, name=name, reduction=reduction, dtype=dtype)
        condition = float(np.linalg.cond(self._matrix))
        if not condition <= MAX_CONDITION_NUMBER:  # also catches inf / NaN
            raise ValueError(f"transition_matrix is singular or nearly so (condition number {condition:.3g} > "
                             f"{MAX_CONDITION_NUMBER:.0e}); backward correction needs an invertible T")
        self._inverse = np.linalg.inv(self._matrix)

    def call(self, y_true, y_pred):
        labels = _sparse_labels(y_true, y_pred, self.num_classes)
        inverse = tf.constant(self._inverse, dtype=y_pred.dtype)
        per_class = -tf.math.log(_clip(y_pred))  # [..., C]
        rows = tf.gather(inverse, labels)  # [..., C]: row y of T^{-1}
        return tf.reduce_sum(rows * per_class, axis=-1)


class _Bootstrapping(keras.losses.Loss):
    def __init__(self, beta, name, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.beta = _check_fraction("beta", beta, include_zero=True)

    def _prediction_target(self, y_pred):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        labels = _sparse_labels(y_true, y_pred)
        num_classes = tf.shape(y_pred)[-1]
        observed = tf.one_hot(labels, num_classes, dtype=y_pred.dtype)
        target = self.beta * observed + (1.0 - self.beta) * tf.stop_gradient(self._prediction_target(y_pred))
        return -tf.reduce_sum(target * tf.math.log(_clip(y_pred)), axis=-1)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SoftBootstrapping(_Bootstrapping):
    """`-sum_k (beta * onehot(y) + (1 - beta) * p) log p`, p = y_pred, the target's p a constant."""

    def __init__(self, beta=0.95, name="soft_bootstrapping", reduction="sum_over_batch_size", dtype=None):
        super().__init__(beta, name=name, reduction=reduction, dtype=dtype)

    def _prediction_target(self, y_pred):
        return y_pred


@keras.saving.register_keras_serializable(package=_PACKAGE)
class HardBootstrapping(_Bootstrapping):
    """`-sum_k (beta * onehot(y) + (1 - beta) * onehot(argmax p)) log p`, p = y_pred."""

    def __init__(self, beta=0.8, name="hard_bootstrapping", reduction="sum_over_batch_size", dtype=None):
        super().__init__(beta, name=name, reduction=reduction, dtype=dtype)

    def _prediction_target(self, y_pred):
        return tf.one_hot(tf.argmax(y_pred, axis=-1), tf.shape(y_pred)[-1], dtype=y_pred.dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GeneralizedCrossEntropy(keras.losses.Loss):
    """`(1 - p_y^q) / q`, p = y_pred: between cross-entropy (q -> 0) and mean absolute error (q = 1)."""

    def __init__(self, q=0.7, name="generalized_cross_entropy", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.q = _check_fraction("q", q, include_zero=False)

    def call(self, y_true, y_pred):
        labels = _sparse_labels(y_true, y_pred)
        return (1.0 - tf.pow(_take(_clip(y_pred), labels), self.q)) / self.q

    def get_config(self):
        return {**super().get_config(), "q": self.q}


__all__ = [
    "BackwardCorrectedCrossEntropy",
    "ForwardCorrectedCrossEntropy",
    "GeneralizedCrossEntropy",
    "HardBootstrapping",
    "MAX_CONDITION_NUMBER",
    "SoftBootstrapping",
]
