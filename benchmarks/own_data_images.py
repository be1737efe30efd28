"""The own-data benchmarks' images and label noise: MNIST-5k's digits as 32x32 RGB pictures, and noise that no
preset was tuned on (benchmarks/own_data.py trains on them, benchmarks/label_issues.py ranks their labels)."""

import numpy as np

PAIRS = "0->6,1->7,4->9,8->3,9->4"


def colored_digits(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """28x28 gray digits -> 32x32 RGB: a colored digit on a random gradient background with pixel noise."""
    rng = np.random.RandomState(seed)
    count = len(images)
    digit = np.zeros((count, 32, 32), np.float32)
    digit[:, 2:30, 2:30] = images.reshape(count, 28, 28) / 255.0
    low, high = rng.uniform(0, 255, (count, 1, 1, 3)), rng.uniform(0, 255, (count, 1, 1, 3))
    ramp = np.linspace(0, 1, 32, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi, (count, 1, 1, 1))
    position = (np.cos(angle) * ramp[None, :, None, None] + np.sin(angle) * ramp[None, None, :, None] + 1.5) / 3
    background = low + (high - low) * position
    color = rng.uniform(0, 255, (count, 1, 1, 3))
    # Keep the digit visible: its color is pushed away from the background's mean.
    color = np.where(np.abs(color - background.mean(axis=(1, 2), keepdims=True)) < 80,
                     255 - background.mean(axis=(1, 2), keepdims=True), color)
    alpha = digit[..., None]
    rgb = alpha * color + (1 - alpha) * background + rng.normal(0, 12, (count, 32, 32, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def class_conditional_matrix(kind: str, rate: float) -> np.ndarray:
    """The transition matrix of the class-conditional settings (`pair`, `symmetric`), 10 classes."""
    from tf_twostage.data import noise

    if kind == "pair":
        return noise.transition_matrix("asymmetric", rate, 10, mapping=noise.parse_mapping(PAIRS))
    if kind == "symmetric":
        return noise.transition_matrix("symmetric", rate, 10)
    raise ValueError(f"{kind!r} noise has no transition matrix of its own (pair or symmetric do)")


def noisy_labels(kind: str, rate: float, labels, index, images, seed: int) -> np.ndarray:
    from tf_twostage.data import noise

    if kind in ("pair", "symmetric"):
        return noise.add_label_noise(labels, index, class_conditional_matrix(kind, rate), seed)
    if kind == "instance":
        import keras

        keras.utils.set_random_seed(0)  # the similarity model is the same for every seed
        model = keras.Sequential([keras.Input((784,)), keras.layers.Rescaling(1 / 255), keras.layers.Dense(10),
                                  keras.layers.Softmax()])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        flat = images.reshape(len(images), -1).astype(np.float32)
        model.fit(flat, labels, epochs=5, batch_size=128, verbose=0)
        probabilities = model.predict(flat, verbose=0)
        return noise.instance_dependent_noise(labels, index, probabilities, rate, seed)[0]
    raise ValueError(f"noise must be pair, symmetric or instance, got {kind!r}")
