"""Cross-entropy training on the noisy labels: Stage 1's pre-training and the `ce` baseline.

Plain `compile` + `fit` with Keras callbacks: the learning rate is halved when validation accuracy
has not improved for `lr_patience` epochs (down to `min_lr`), TensorBoard logs go under the workdir,
and every epoch is checkpointed under `workdir/checkpoints/<stage_name>/`, so a rerun after a crash
continues where it stopped (`tf_twostage.training.resume`).
"""

from __future__ import annotations

import math
import os

import keras

from tf_twostage.training.progress import fit_verbosity
from tf_twostage.training import schedules
from tf_twostage.training.trainer import CrossEntropyTrainer
from tf_twostage.data.augment import build_augmenter
from tf_twostage.data.pipelines import supervised_dataset
from tf_twostage.data.prepare import PreparedData
from tf_twostage.training.optimizers import make_optimizer, plateau_callbacks
from tf_twostage.training.precision import trainer_options
from tf_twostage.config.base import eval_batch_size
from tf_twostage.training.resume import checkpoint_dir, resume_fit

def train_cross_entropy(
    classifier: keras.Model,
    data: PreparedData,
    config,
    workdir: str,
    extra_callbacks=(),
    stage_name: str = "stage1",
    loss=None,
    positions=None,
    validation_positions=None,
    validation_split=None,
) -> keras.callbacks.History:
    """Fits `classifier` with cross-entropy on the noisy training labels (through `CrossEntropyTrainer`).

    Call under the strategy's scope (the classifier built in it too): the optimizer is created here.
    Callbacks see the trainer as `self.model`; its weights are the classifier's. `loss` replaces the
    cross-entropy (a baseline's `keras.losses.Loss`); `positions` / `validation_positions` restrict the
    training / validation examples (e.g. to the labels Stage 1 kept and the refined validation set);
    `validation_split` replaces the noisy validation split (e.g. by the clean subset, `runs.validation`).
    """
    stage_config = config.stage1
    batch_size = int(config.batch_size)
    num_examples = len(data.train) if positions is None else len(positions)
    epochs = stage1_epochs(config, num_examples)
    trainer = CrossEntropyTrainer(classifier, loss=loss)
    trainer.compile(optimizer=make_optimizer(stage_config), **trainer_options(config.train))
    train = supervised_dataset(
        data.train,
        data.preprocessor,
        batch_size,
        training=True,
        seed=config.seed,
        augmenter=build_stage_augmenter(config, data),
        balance_classes=bool(stage_config.balance_classes),
        positions=positions,
    )
    validation_split = data.validation if validation_split is None else validation_split
    num_validation = len(validation_split) if validation_positions is None else len(validation_positions)
    validation = supervised_dataset(validation_split, data.preprocessor, eval_batch_size(config), training=False,
                                    positions=validation_positions)
    callbacks = plateau_callbacks(stage_config, os.path.join(workdir, "logs", stage_name))
    return resume_fit(
        trainer,
        train,
        epochs=epochs,
        steps_per_epoch=max(1, math.ceil(num_examples / batch_size)),
        directory=checkpoint_dir(workdir, stage_name),
        validation_data=validation if num_validation else None,
        callbacks=callbacks + list(extra_callbacks),
        verbose=fit_verbosity(config.verbose),
    )


def stage1_epochs(config, num_examples: int) -> int:
    """`stage1.epochs`, or with `stage1.target_steps` > 0 the epochs scaled to the data size."""
    epochs = int(config.stage1.epochs)
    if epochs < 1:
        raise ValueError(f"stage1.epochs must be >= 1, got {epochs}")
    steps_per_epoch = max(1, math.ceil(num_examples / int(config.batch_size)))
    return schedules.epochs_for_data(epochs, int(config.stage1.target_steps), steps_per_epoch)


def build_stage_augmenter(config, data: PreparedData):
    """The batch augmenter of `config.augment` for this data's images (None when nothing is asked)."""
    return build_augmenter(
        data.image_shape,
        flip=bool(config.augment.flip),
        translate_px=int(config.augment.translate_px),
        seed=config.seed,
        crop_size=data.preprocessor.crop_size,
    )
