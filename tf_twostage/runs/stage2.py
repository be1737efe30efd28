"""Stage 2 end to end: semi-supervised training on all images with only the labels Stage 1 kept.

Continues from the Stage-1 weights (the best-validation epoch) in the semi-supervised variant of the
same architecture (Gaussian noise added; it has no weights, so they carry over), trains it with the Pi
model or temporal ensembling on the half-labeled / half-unlabeled stream, and optionally fine-tunes it
on a clean subset with a small learning rate (the paper's Table 4, rows 7 -> 8). Both are checkpointed
every epoch (`tf_twostage.training.resume`): a rerun after a crash continues with the optimizer, the ramps and
the temporal-ensemble buffer as they were.
"""

from __future__ import annotations

import math
import os

import keras
import ml_collections
import numpy as np

from tf_twostage.utils import io_utils
from tf_twostage.training.progress import fit_verbosity
from tf_twostage.training import schedules
from tf_twostage.data.augment import build_augmenter
from tf_twostage.data.pipelines import semi_supervised_stream, supervised_dataset
from tf_twostage.data.prepare import PreparedData
from tf_twostage.training.distribution import check_global_batch_size
from tf_twostage.models import build_classifier
from tf_twostage.training.resume import checkpoint_dir, resume_fit
from tf_twostage.stage1.selection import check_every_class_kept
from tf_twostage.stage2.pi_model import PiModel
from tf_twostage.stage2.temporal_ensembling import EnsembleUpdate, TemporalEnsembling
from tf_twostage.training.optimizers import RampedAdam
from tf_twostage.training.precision import compile_options
from tf_twostage.config.base import eval_batch_size

ALGORITHMS = ("pi", "temporal_ensembling")


def build_semi_supervised_classifier(config, data: PreparedData) -> keras.Model:
    """The config's architecture with the Stage-2 stochastic perturbations (input / top noise)."""
    model_config = ml_collections.ConfigDict(config.model.to_dict())
    model_config.input_noise = float(config.stage2.input_noise)
    model_config.top_noise = float(config.stage2.top_noise)
    return build_classifier(model_config, data.image_shape, data.num_classes, config.seed)


def make_trainer(config, classifier: keras.Model, data: PreparedData):
    """The `SemiSupervisedTrainer` subclass named by `stage2.algorithm`."""
    algorithm = config.stage2.algorithm
    if algorithm == "pi":
        return PiModel(classifier, stop_gradient_targets=bool(config.stage2.stop_gradient))
    if algorithm == "temporal_ensembling":
        return TemporalEnsembling(classifier, num_examples=int(data.train.index.max()) + 1,
                                  num_classes=data.num_classes,
                                  momentum=float(config.stage2.ensemble_momentum))
    raise ValueError(f"stage2.algorithm must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}")


def consistency_schedule(config, num_labeled: int, num_examples: int, steps_per_epoch: int):
    """weight(step): the fixed alpha, or w_max (scaled by the labeled fraction) x ramp-up of the epoch."""
    stage2 = config.stage2
    if float(stage2.fixed_weight) > 0:
        return schedules.PerEpoch(float(stage2.fixed_weight), steps_per_epoch)
    max_weight = stage2.max_weight_pi if stage2.algorithm == "pi" else stage2.max_weight_te
    if stage2.scale_weight_by_labeled_fraction:
        max_weight = schedules.scaled_max_weight(max_weight, num_labeled, num_examples)
    rampup_epochs = int(stage2.rampup_epochs)
    return schedules.PerEpoch(lambda epoch: schedules.consistency_weight(epoch, max_weight, rampup_epochs),
                              steps_per_epoch)


def scaled_to_data(config, num_examples: int):
    """`config`, or with `stage2.target_steps` > 0 a copy whose Stage-2 epochs are scaled to the data size
    (`schedules.epochs_for_data`) and whose ramp-up / ramp-down keep their share of the schedule."""
    stage2 = config.stage2
    if not int(stage2.target_steps):
        return config
    steps_per_epoch = math.ceil(num_examples / (int(stage2.batch_size) // 2))
    epochs = schedules.epochs_for_data(int(stage2.epochs), int(stage2.target_steps), steps_per_epoch)
    scaled = config.copy_and_resolve_references()
    ratio = epochs / int(stage2.epochs)
    scaled.stage2.epochs = epochs
    scaled.stage2.rampup_epochs = int(round(int(stage2.rampup_epochs) * ratio))
    scaled.stage2.rampdown_epochs = int(round(int(stage2.rampdown_epochs) * ratio))
    return scaled


def train_stage2(config, data: PreparedData, kept, strategy, workdir: str, stage1_weights: str,
                 validation_positions=None, validation_split=None, extra_callbacks=()):
    """Trains the semi-supervised classifier from `stage1_weights`; returns (classifier, history dict).

    `kept` is Stage 1's boolean mask over `data.train`; `validation_split` (default: the noisy validation
    split) and `validation_positions` (default: all of it) are the examples `val_accuracy` scores;
    `extra_callbacks` (e.g. `BestEpochKeeper`) see the trainer's logs.
    """
    config = scaled_to_data(config, len(data.train))
    stage2 = config.stage2
    kept = np.asarray(kept, bool)
    check_every_class_kept(kept, data.train.labels, data.num_classes, data.dataset.class_names)
    labeled_positions = np.flatnonzero(kept)
    batch_size = int(stage2.batch_size)
    check_global_batch_size(batch_size, strategy, halves=True, key="stage2.batch_size")
    epochs = int(stage2.epochs)
    steps_per_epoch = math.ceil(len(data.train) / (batch_size // 2))

    with strategy.scope():
        classifier = build_semi_supervised_classifier(config, data)
        if stage2.init_from_stage1:
            classifier.load_weights(stage1_weights)
        trainer = make_trainer(config, classifier, data)
        optimizer = RampedAdam(stage2.learning_rate, steps_per_epoch, epochs, stage2.rampup_epochs,
                               stage2.rampdown_epochs)
        trainer.compile(optimizer, consistency_weight=consistency_schedule(
            config, len(labeled_positions), len(data.train), steps_per_epoch), **compile_options(config.train))
    augmenter = build_augmenter(data.image_shape, flip=bool(config.augment.flip),
                                translate_px=int(stage2.translate_px), seed=config.seed)
    stream = semi_supervised_stream(
        data.train, labeled_positions, data.train.labels, data.preprocessor, batch_size,
        seed=config.seed, augmenter=augmenter, num_views=2 if stage2.algorithm == "pi" else 1,
    )
    validation = None
    validation_split = data.validation if validation_split is None else validation_split
    if len(validation_split) and (validation_positions is None or len(validation_positions)):
        validation = supervised_dataset(validation_split, data.preprocessor, eval_batch_size(config), training=False,
                                        positions=validation_positions)
    callbacks = [keras.callbacks.TensorBoard(os.path.join(workdir, "logs", "stage2"),
                                                                  write_graph=False)]
    if stage2.algorithm == "temporal_ensembling":
        callbacks.append(EnsembleUpdate())
    callbacks += list(extra_callbacks)
    history = resume_fit(trainer, stream, epochs=epochs, steps_per_epoch=steps_per_epoch,
                         directory=checkpoint_dir(workdir, "stage2"), validation_data=validation,
                         callbacks=callbacks, verbose=fit_verbosity(config.verbose))
    histories = {"stage2": io_utils.history_json(history)}
    if int(stage2.finetune_epochs) > 0:
        histories["finetune"] = finetune_on_clean(config, data, classifier, strategy, workdir)
    return classifier, histories


def finetune_on_clean(config, data: PreparedData, classifier: keras.Model, strategy, workdir: str) -> dict:
    """A few epochs of cross-entropy on the clean subset at a small learning rate."""
    if data.clean is None or not len(data.clean):
        raise ValueError("stage2.finetune_epochs > 0 needs a clean subset (Clothing1M, or data.clean)")
    batch_size = int(config.batch_size)
    with strategy.scope():
        classifier.compile(optimizer=keras.optimizers.Adam(float(config.stage2.finetune_learning_rate)),
                           loss=keras.losses.SparseCategoricalCrossentropy(),
                           metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                           **compile_options(config.train))
    history = resume_fit(
        classifier,
        supervised_dataset(data.clean, data.preprocessor, batch_size, training=True, seed=config.seed),
        steps_per_epoch=math.ceil(len(data.clean) / batch_size), epochs=int(config.stage2.finetune_epochs),
        directory=checkpoint_dir(workdir, "finetune"),
        callbacks=[keras.callbacks.TensorBoard(os.path.join(workdir, "logs", "finetune"), write_graph=False)],
        verbose=fit_verbosity(config.verbose),
    )
    return io_utils.history_json(history)

