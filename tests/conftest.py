"""Shared fixtures: tiny in-memory splits, MNIST-5k (loaded once), and two logical CPUs for strategy tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs so MirroredStrategy tests have two replicas (correctness only: it is slower).
_CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _CPUS[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

from tf_twostage.data.source import ImageSplit  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke_config(**overrides):
    """configs/smoke.py with `section.key=value` overrides (the whole chain in seconds)."""
    import importlib.util  # pylint: disable=import-outside-toplevel

    spec = importlib.util.spec_from_file_location("smoke", os.path.join(ROOT, "configs", "smoke.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in overrides.items():
        section, _, leaf = key.rpartition(".")
        (config[section] if section else config)[leaf] = value
    return config


def make_split(num_examples=40, num_classes=4, shape=(6, 6, 1), seed=0, index_offset=0) -> ImageSplit:
    """A tiny in-memory split whose pixel (0, 0) encodes the example's position (for checks)."""
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, size=(num_examples, *shape)).astype(np.uint8)
    images[:, 0, 0, 0] = np.arange(num_examples) % 256
    labels = np.arange(num_examples) % num_classes
    return ImageSplit(
        labels=labels,
        index=np.arange(num_examples) + index_offset,
        num_classes=num_classes,
        image_shape=shape,
        images=images,
        clean_labels=labels,
    )


@pytest.fixture
def tiny_split():
    return make_split()


@pytest.fixture(scope="session")
def mnist5k():
    from tf_twostage.data.datasets import load_mnist5k

    return load_mnist5k()


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the two logical CPUs, shared: several in one process clash in collectives."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
