"""Your own images (an image-folder tree; `--config.data.name=csv` for a CSV of `path,label`), with defaults
chosen for a dataset nobody has tuned on, not for MNIST. Set `data.dir`, `data.train`, `data.test` (and
`data.clean` if you have a small clean subset) and `data.image_size` to the size to train at.

Each value says why it is what it is; benchmarks/own_data.py measures the preset on mnist5k written out as a
folder of 32x32 RGB PNGs under noise it was not tuned on."""

from tf_twostage.config import base_config


def get_config():
    config = base_config()
    config.method = "two_stage"
    config.data.name = "folder"  # folder | csv: the two layouts of a user's own data
    # Your labels are the noisy ones: no synthetic noise on top (the base config's is for the paper's benchmarks).
    config.noise.type = "none"
    config.noise.rate = 0.0
    # Small images train fast and a small ResNet fits them; raise it for photos (then model=auto picks ResNet-50).
    config.data.image_size = (32, 32)
    # Per-pixel mean subtraction: a CNN on raw 0..255 pixels trains slower and less reliably (CIFAR, Clothing1M).
    config.data.subtract_mean = True
    # A small ResNet (ResNet-14) up to 64x64 pixels, ResNet-50 above: the model follows the image size.
    config.model.name = "auto"
    # No dropout in the ResNet: batch normalization regularizes it, and the kept best epoch (validation.keep)
    # stops it before it memorizes the noisy labels.
    config.model.dropout = 0.0
    # +-2 px translations keep a digit, a letter or an object what it is; flips would not (6/9, text).
    config.augment.translate_px = 2
    # Adam at 1e-3 trains any of these models without a tuned learning rate; the MNIST recipe's Adagrad 0.1
    # trained a user's 32x32 RGB folder to 21% where a plain Keras model with Adam reached 79%.
    config.stage1.optimizer = "adam"
    config.stage1.learning_rate = 1e-3
    config.stage1.lr_patience = 5  # halve the learning rate after 5 epochs without a validation gain
    # Epochs scaled to the data size: ~1,000 steps of 128 images (35 epochs for 3,600 images), at least 10
    # and at most 60 epochs.
    config.stage1.epochs = 60
    config.stage1.target_steps = 1000
    # The noisy posterior: the corrected one needs a well-estimated transition matrix, which a user's data
    # may not give (it falls back to this anyway, stage1.posterior in results.json["fallbacks"]).
    config.stage1.posterior = "noisy"
    # Temporal ensembling: one forward pass per step where the Pi model needs two, so Stage 2 costs about half.
    config.stage2.algorithm = "temporal_ensembling"
    # Stage 2 scaled the same way: ~2,000 steps of 100 (28 epochs for 3,600 images), ramps in proportion.
    config.stage2.epochs = 60
    config.stage2.target_steps = 2000
    config.stage2.rampup_epochs = 20
    config.stage2.rampdown_epochs = 15
    # Score on the clean subset when there is one, else on the noisy validation split corrected with the
    # estimated transition matrix; keep the epoch that score selects (results.json["validation"]).
    config.validation.source = "auto"
    config.validation.keep = "best"
    return config
