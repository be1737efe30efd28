"""Full MNIST from tensorflow-datasets (prepare it once with --config.data.download=True)."""

from tf_twostage.config import base_config


def get_config():
    config = base_config()
    config.data.name = "mnist"
    return config
