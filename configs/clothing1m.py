"""Clothing1M from its release layout on disk (data.dir); real noise, so no synthetic noise."""

from tf_twostage.config import base_config


def get_config():
    config = base_config()
    config.data.name = "clothing1m"
    config.data.dir = "/data/clothing1m"
    # Decoded at 256x256 (the release's images are about that size: no resize), then a random 224x224 crop and a
    # flip per image in training, the center crop in evaluation and in the export: the paper's augmentation, and
    # the cheaper input stream (no resize; benchmarks/scale.py, --augment=crop vs shift).
    config.data.image_size = (224, 224)
    config.data.resize_size = (256, 256)
    config.data.subtract_mean = True
    config.noise.type = "none"
    config.noise.rate = 0.0
    config.augment.flip = True
    config.augment.translate_px = 0  # the random crop is the shift
    config.batch_size = 64
    config.stage1.epochs = 100
    config.stage1.optimizer = "adam"
    config.stage1.learning_rate = 3e-4
    config.model.name = "resnet50"
    config.model.dropout = 0.0
    return config
