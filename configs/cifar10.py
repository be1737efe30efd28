"""CIFAR-10 from tensorflow-datasets with the paper's ResNet-14 recipe (SGD 0.1, 120 epochs)."""

from tf_twostage.config import base_config


def get_config():
    config = base_config()
    config.data.name = "cifar10"
    config.data.subtract_mean = True
    config.augment.flip = True
    config.augment.translate_px = 2
    config.stage1.epochs = 120
    config.stage1.optimizer = "sgd"
    config.stage1.learning_rate = 0.1
    config.stage1.momentum = 0.9
    config.model.name = "resnet14"
    config.model.dropout = 0.0
    return config
