"""The paper's MNIST classifier: a fully connected 784-128-128-C network with dropout."""

from __future__ import annotations

from typing import Sequence

import keras


def build_mlp(
    input_shape: Sequence[int],
    num_classes: int,
    hidden_units: Sequence[int] = (128, 128),
    dropout: float = 0.5,
    input_noise: float = 0.0,
    seed: int = 0,
    name: str = "mlp",
) -> keras.Model:
    """MLP classifier returning softmax probabilities.

    `input_noise` > 0 adds a `GaussianNoise` layer on the input (the stochastic perturbation of the
    semi-supervised model); dropout follows every hidden layer. Both are active only in training.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {dropout}")
    if input_noise < 0.0:
        raise ValueError(f"model.input_noise must be >= 0, got {input_noise}")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    if input_noise:
        x = keras.layers.GaussianNoise(input_noise, seed=seed, name="input_noise")(x)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=seed + i + 1, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    probabilities = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
    return keras.Model(inputs, probabilities, name=name)
