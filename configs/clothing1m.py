"""Clothing1M from its release layout on disk (data.dir); real noise, so no synthetic noise."""

from tf_twostage.config import base_config


def get_config():
    config = base_config()
    config.data.name = "clothing1m"
    config.data.dir = "/data/clothing1m"
    config.data.image_size = (224, 224)
    config.data.subtract_mean = True
    config.noise.type = "none"
    config.noise.rate = 0.0
    config.augment.flip = True
    config.augment.translate_px = 16
    config.batch_size = 64
    config.stage1.epochs = 100
    config.stage1.optimizer = "adam"
    config.stage1.learning_rate = 3e-4
    config.model.name = "resnet50"
    config.model.dropout = 0.0
    return config
