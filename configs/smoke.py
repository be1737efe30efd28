"""The whole chain in seconds, for tests: MNIST-5k, tiny model, one epoch per stage."""

from tf_twostage.config import base_config


def get_config():
    config = base_config()
    config.verbose = 0
    config.batch_size = 64
    config.model.hidden_units = (16,)
    config.stage1.epochs = 1
    config.stage2.epochs = 1
    config.stage2.rampup_epochs = 1
    config.stage2.rampdown_epochs = 1
    return config
