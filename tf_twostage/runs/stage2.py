"""Stage 2 end to end: semi-supervised training on all images with only the labels Stage 1 kept.

Continues from the Stage-1 weights (the best-validation epoch) in the semi-supervised variant of the
same architecture (Gaussian noise and the Stage-2 dropout added; they have no weights, so the weights carry
over), trains it with the Pi model or temporal ensembling on the half-labeled / half-unlabeled stream (epochs,
or the paper's Clothing1M sub-epochs; a ramped or a constant learning rate, halved on plateaus; optional
early stopping), and optionally fine-tunes it on a clean subset with a small learning rate (the paper's
Table 4, rows 7, 8 -> 12, 13). Both are checkpointed every epoch (`tf_twostage.training.resume`): a rerun
after a crash continues with the optimizer, the ramps, the plateau and stopping counters and the
temporal-ensemble buffer as they were. With `stage2.ensemble_size` > 1 the last round trains that many networks,
each from its own seed, one after the other (each checkpointed under its own name), and the run's classifier is
their average (`tf_twostage.models.ensemble`).
"""

from __future__ import annotations

import math
import os

import keras
import ml_collections
import numpy as np

from tf_twostage.utils import io_utils
from tf_twostage.utils.memory import release_memory
from tf_twostage.training.progress import fit_verbosity
from tf_twostage.training import schedules
from tf_twostage.data.augment import build_augmenter
from tf_twostage.data.pipelines import semi_supervised_stream, supervised_dataset
from tf_twostage.data.prepare import PreparedData
from tf_twostage.training.distribution import check_global_batch_size
from tf_twostage.models import build_classifier
from tf_twostage.models.ensemble import average_ensemble
from tf_twostage.training.early_stopping import ResumableEarlyStopping
from tf_twostage.training.optimizers import ResumableReduceLROnPlateau
from tf_twostage.training.resume import checkpoint_dir, resume_fit
from tf_twostage.stage1.selection import check_every_class_kept
from tf_twostage.stage2.pi_model import PiModel
from tf_twostage.stage2.temporal_ensembling import EnsembleUpdate, TemporalEnsembling
from tf_twostage.training.optimizers import RampedAdam
from tf_twostage.training.precision import compile_options, trainer_options
from tf_twostage.config.base import eval_batch_size

ALGORITHMS = ("pi", "temporal_ensembling")


def build_semi_supervised_classifier(config, data: PreparedData) -> keras.Model:
    """The config's architecture with the Stage-2 stochastic perturbations (input / top noise, and the
    Stage-2 dropout when `stage2.dropout` is set; none of them has weights, so Stage 1's carry over)."""
    model_config = ml_collections.ConfigDict(config.model.to_dict())
    model_config.input_noise = float(config.stage2.input_noise)
    model_config.top_noise = float(config.stage2.top_noise)
    if config.stage2.dropout is not None:
        model_config.dropout = float(config.stage2.dropout)
    if config.stage2.init_from_stage1:
        model_config.weights_path = ""  # Stage 1's weights replace any initialization: none loaded twice
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


def consistency_schedule(config, num_labeled: int, num_examples: int, steps_per_epoch: int, num_classes: int = 1):
    """weight(step): the fixed alpha, or w_max (scaled by the labeled fraction) x ramp-up of the epoch.

    The trainer averages the squared difference over batch *and classes*; with
    `stage2.consistency_normalization="paper"` the weight is multiplied by `num_classes`, so the term is the
    paper's Eq. 2 (summed over classes, averaged over the batch) times the configured weight.
    """
    stage2 = config.stage2
    scale = float(num_classes) if stage2.consistency_normalization == "paper" else 1.0
    if float(stage2.fixed_weight) > 0:
        return schedules.PerEpoch(float(stage2.fixed_weight) * scale, steps_per_epoch)
    max_weight = stage2.max_weight_pi if stage2.algorithm == "pi" else stage2.max_weight_te
    if stage2.scale_weight_by_labeled_fraction:
        max_weight = schedules.scaled_max_weight(max_weight, num_labeled, num_examples)
    max_weight *= scale
    rampup_epochs = int(stage2.rampup_epochs)
    return schedules.PerEpoch(lambda epoch: schedules.consistency_weight(epoch, max_weight, rampup_epochs),
                              steps_per_epoch)


def stage2_steps_per_epoch(config, num_labeled: int, num_examples: int) -> int:
    """Steps of one Stage-2 epoch: a pass of the unlabeled half over all `num_examples` images, or with
    `stage2.epoch_unit="labeled"` a sub-epoch, a pass of the labeled half over the `num_labeled` kept labels."""
    half = int(config.stage2.batch_size) // 2
    count = num_labeled if config.stage2.epoch_unit == "labeled" else num_examples
    return max(1, math.ceil(count / half))


def stage2_optimizer(config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam with the temporal-ensembling ramps (`RampedAdam`), or, without ramps (rampup_epochs =
    rampdown_epochs = 0), plain Adam at a constant learning rate that the plateau callback can halve (a
    `LearningRateSchedule` cannot be set)."""
    stage2 = config.stage2
    # stage2.weight_ema: Keras keeps the average in the optimizer (checkpointed with it) and writes it into
    # the weights when `fit` ends.
    average = {"use_ema": True, "ema_momentum": float(stage2.weight_ema)} if float(stage2.weight_ema) > 0 else {}
    if not int(stage2.rampup_epochs) and not int(stage2.rampdown_epochs):
        return keras.optimizers.Adam(float(stage2.learning_rate), **average)
    return RampedAdam(stage2.learning_rate, steps_per_epoch, int(stage2.epochs), stage2.rampup_epochs,
                      stage2.rampdown_epochs, **average)


def plateau_and_stopping_callbacks(config, has_validation: bool) -> list:
    """Learning-rate halving on a validation-accuracy plateau and early stopping, as `stage2` asks.

    Both monitor `val_accuracy` (what Stage 2 validates on is the run's choice) and keep their counters
    across a resume.
    """
    stage2 = config.stage2
    callbacks = []
    for key in ("lr_patience", "early_stopping_patience"):
        if int(stage2[key]) and not has_validation:
            raise ValueError(f"stage2.{key}={stage2[key]} monitors validation accuracy, but this run has no "
                             "validation examples in Stage 2 (data.val_fraction, or an empty refined "
                             "validation set); set it to 0")
    if int(stage2.lr_patience):
        callbacks.append(ResumableReduceLROnPlateau(monitor="val_accuracy", mode="max",
                                                    factor=float(stage2.lr_factor),
                                                    patience=int(stage2.lr_patience),
                                                    min_lr=float(stage2.min_lr)))
    if int(stage2.early_stopping_patience):
        callbacks.append(ResumableEarlyStopping(patience=int(stage2.early_stopping_patience)))
    return callbacks


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
                 validation_positions=None, validation_split=None, extra_callbacks=(), stage_name: str = "stage2",
                 finetune: bool = True, members: int = 1):
    """Trains the semi-supervised classifier from `stage1_weights`; returns (classifier, history dict).

    `kept` is Stage 1's boolean mask over `data.train`; `validation_split` (default: the noisy validation
    split) and `validation_positions` (default: all of it) are the examples `val_accuracy` scores;
    `extra_callbacks[k]` (e.g. `[BestEpochKeeper]`) are network k's further callbacks, which see its trainer's
    logs. `stage_name` names the checkpoint and TensorBoard folders and the history entry (a second round has
    its own); `finetune=False` skips the clean fine-tuning (`stage2.finetune_epochs`) of a round that is not
    the last.

    `members` > 1 (`stage2.ensemble_size`) trains that many networks one after the other, member k with the
    seed `config.seed + k` (its initialization, stream order, augmentation and noise; member 0 is the network
    `members=1` trains), each under `<stage_name>_member<k>` (member 0 under `stage_name`), and returns their
    average (`tf_twostage.models.ensemble`), fine-tuned as one model.
    """
    members = int(members)
    networks, histories = [], {}
    for member in range(members):
        member_config = config
        if member:
            member_config = config.copy_and_resolve_references()
            member_config.seed = int(config.seed) + member
        name = stage_name if not member else f"{stage_name}_member{member}"
        callbacks = extra_callbacks[member] if member < len(extra_callbacks) else ()
        network, history = _train_network(member_config, data, kept, strategy, workdir, stage1_weights,
                                          validation_positions, validation_split, callbacks, name)
        networks.append(network)
        histories[name] = history
        if member + 1 < members:
            release_memory()
    with strategy.scope():
        classifier = average_ensemble(networks)
    if finetune and int(config.stage2.finetune_epochs) > 0:
        release_memory()  # the semi-supervised trainer's step buffers are done with
        histories["finetune"] = finetune_on_clean(config, data, classifier, strategy, workdir)
    return classifier, histories


def _train_network(config, data: PreparedData, kept, strategy, workdir: str, stage1_weights: str,
                   validation_positions, validation_split, extra_callbacks, stage_name: str):
    """One network of `train_stage2`: (classifier, history as JSON)."""
    config = scaled_to_data(config, len(data.train))
    stage2 = config.stage2
    kept = np.asarray(kept, bool)
    check_every_class_kept(kept, data.train.labels, data.num_classes, data.dataset.class_names)
    labeled_positions = np.flatnonzero(kept)
    batch_size = int(stage2.batch_size)
    check_global_batch_size(batch_size, strategy, halves=True, key="stage2.batch_size")
    epochs = int(stage2.epochs)
    steps_per_epoch = stage2_steps_per_epoch(config, len(labeled_positions), len(data.train))

    if not stage2.init_from_stage1:
        # A fresh network: the layers' default initializers draw from Keras' global seed, which everything
        # built earlier in the process has advanced. Reseeded here, the network of seed S is the same whether
        # the run went straight through, resumed after Stage 1, or trained other networks first (an ensemble).
        keras.utils.set_random_seed(int(config.seed))
    with strategy.scope():
        classifier = build_semi_supervised_classifier(config, data)
        if stage2.init_from_stage1:
            classifier.load_weights(stage1_weights)
        trainer = make_trainer(config, classifier, data)
        optimizer = stage2_optimizer(config, steps_per_epoch)
        trainer.compile(optimizer, consistency_weight=consistency_schedule(
            config, len(labeled_positions), len(data.train), steps_per_epoch, data.num_classes),
            **trainer_options(config.train))
    augmenter = build_augmenter(data.image_shape, flip=bool(config.augment.flip),
                                translate_px=int(stage2.translate_px), seed=config.seed,
                                crop_size=data.preprocessor.crop_size)
    stream = semi_supervised_stream(
        data.train, labeled_positions, data.train.labels, data.preprocessor, batch_size,
        seed=config.seed, augmenter=augmenter, num_views=2 if stage2.algorithm == "pi" else 1,
    )
    validation = None
    validation_split = data.validation if validation_split is None else validation_split
    if len(validation_split) and (validation_positions is None or len(validation_positions)):
        validation = supervised_dataset(validation_split, data.preprocessor, eval_batch_size(config), training=False,
                                        positions=validation_positions)
    callbacks = [keras.callbacks.TensorBoard(os.path.join(workdir, "logs", stage_name), write_graph=False)]
    if stage2.algorithm == "temporal_ensembling":
        callbacks.append(EnsembleUpdate())
    callbacks += plateau_and_stopping_callbacks(config, validation is not None)
    callbacks += list(extra_callbacks)
    history = resume_fit(trainer, stream, epochs=epochs, steps_per_epoch=steps_per_epoch,
                         directory=checkpoint_dir(workdir, stage_name), validation_data=validation,
                         callbacks=callbacks, verbose=fit_verbosity(config.verbose))
    return classifier, io_utils.history_json(history)


def finetune_on_clean(config, data: PreparedData, classifier: keras.Model, strategy, workdir: str) -> dict:
    """A few epochs of cross-entropy on the clean subset at a small learning rate."""
    if data.clean is None or not len(data.clean):
        raise ValueError("stage2.finetune_epochs > 0 needs a clean subset (Clothing1M, or data.clean)")
    # Micro-batches: batches of batch_size / k, the gradient averaged over k of them (the same examples as one
    # batch of batch_size: the stream is the same sequence) before each update.
    slices = int(config.train.micro_batches)
    batch_size = int(config.batch_size) // slices
    with strategy.scope():
        classifier.compile(optimizer=keras.optimizers.Adam(float(config.stage2.finetune_learning_rate),
                                                           gradient_accumulation_steps=slices if slices > 1 else None),
                           loss=keras.losses.SparseCategoricalCrossentropy(),
                           metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                           **compile_options(config.train))
    history = resume_fit(
        classifier,
        supervised_dataset(data.clean, data.preprocessor, batch_size, training=True, seed=config.seed),
        steps_per_epoch=slices * math.ceil(len(data.clean) / (batch_size * slices)),
        epochs=int(config.stage2.finetune_epochs),
        directory=checkpoint_dir(workdir, "finetune"),
        callbacks=[keras.callbacks.TensorBoard(os.path.join(workdir, "logs", "finetune"), write_graph=False)],
        verbose=fit_verbosity(config.verbose),
    )
    return io_utils.history_json(history)

