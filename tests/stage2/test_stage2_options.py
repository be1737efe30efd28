"""Stage-2 options of the paper's recipes: consistency normalization, sub-epochs, a constant learning rate
halved on plateaus, early stopping (resumable), Stage-2-only dropout, and their config checks."""

import keras
import numpy as np
import pytest

from tf_twostage.config import base_config
from tf_twostage.config.checks import validate_config
from tf_twostage.runs.experiment import METHODS
from tf_twostage.runs.stage2 import (
    build_semi_supervised_classifier,
    consistency_schedule,
    plateau_and_stopping_callbacks,
    stage2_optimizer,
    stage2_steps_per_epoch,
)
from tf_twostage.training.early_stopping import ResumableEarlyStopping
from tf_twostage.training.optimizers import ResumableReduceLROnPlateau
from tf_twostage.training.optimizers import RampedAdam


def _config(**stage2):
    config = base_config()
    for key, value in stage2.items():
        config.stage2[key] = value
    return config


def test_paper_normalization_multiplies_the_weight_by_the_class_count():
    # Schedules of the step, 10 steps per epoch.
    classes = consistency_schedule(_config(fixed_weight=100.0), 10, 100, 10, num_classes=14)
    paper = consistency_schedule(_config(fixed_weight=100.0, consistency_normalization="paper"), 10, 100, 10, 14)
    assert float(classes(50)) == 100.0 and float(paper(50)) == 1400.0
    # Mean over batch and classes x (alpha x C) == sum over classes, mean over batch, x alpha (Eq. 2).
    diff = np.random.RandomState(0).rand(6, 14)
    assert np.isclose(np.mean(diff ** 2) * float(paper(50)), 100.0 * np.mean(np.sum(diff ** 2, axis=1)))
    ramped = consistency_schedule(_config(consistency_normalization="paper", algorithm="pi"), 10, 100, 10, 14)
    plain = consistency_schedule(_config(algorithm="pi"), 10, 100, 10, 14)
    assert float(ramped(400)) == pytest.approx(14 * float(plain(400)))


def test_a_sub_epoch_is_a_pass_of_the_labeled_half_over_the_kept_labels():
    assert stage2_steps_per_epoch(_config(batch_size=100), num_labeled=120, num_examples=1000) == 20
    assert stage2_steps_per_epoch(_config(batch_size=100, epoch_unit="labeled"), 120, 1000) == 3


def test_learning_rate_is_a_plain_float_without_ramps_so_a_plateau_can_halve_it():
    constant = stage2_optimizer(_config(rampup_epochs=0, rampdown_epochs=0, learning_rate=3e-4), 10)
    assert not isinstance(constant, RampedAdam)
    assert float(constant.learning_rate) == pytest.approx(3e-4)
    constant.learning_rate = 1.5e-4  # what ReduceLROnPlateau does
    assert isinstance(stage2_optimizer(_config(), 10), RampedAdam)


def test_plateau_and_stopping_callbacks_monitor_validation_accuracy():
    config = _config(rampup_epochs=0, rampdown_epochs=0, lr_patience=10, early_stopping_patience=20)
    plateau, stopping = plateau_and_stopping_callbacks(config, has_validation=True)
    assert isinstance(plateau, ResumableReduceLROnPlateau) and isinstance(stopping, ResumableEarlyStopping)
    assert (plateau.monitor, plateau.patience, plateau.factor, plateau.min_lr) == ("val_accuracy", 10, 0.5, 1e-7)
    assert (stopping.monitor, stopping.patience) == ("val_accuracy", 20)
    assert plateau_and_stopping_callbacks(_config(), has_validation=False) == []
    with pytest.raises(ValueError, match="stage2.lr_patience=10 monitors validation accuracy"):
        plateau_and_stopping_callbacks(config, has_validation=False)


def _fit(model, epochs, callbacks, initial_epoch=0, accuracies=()):
    """Fits `model` on a constant batch while feeding `val_accuracy` values to the callbacks."""
    class FeedAccuracy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_accuracy"] = accuracies[epoch]

    x, y = np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32)
    return model.fit(x, y, epochs=epochs, initial_epoch=initial_epoch, verbose=0,
                     callbacks=[FeedAccuracy(), *callbacks])


def test_early_stopping_state_survives_a_resume():
    accuracies = [0.5, 0.6, 0.6, 0.6, 0.6, 0.6]
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    uninterrupted = ResumableEarlyStopping(patience=3)
    history = _fit(model, 6, [uninterrupted], accuracies=accuracies)
    assert len(history.epoch) == 5  # best at epoch 2 (0.6), three epochs without improvement

    first = ResumableEarlyStopping(patience=3)
    _fit(model, 3, [first], accuracies=accuracies)  # "crash" after 3 epochs
    scalars, arrays = first.checkpoint_state()
    assert scalars["wait"] == 1 and scalars["best"] == 0.6
    resumed = ResumableEarlyStopping(patience=3)
    resumed.restore_state(scalars, arrays)
    history = _fit(model, 6, [resumed], initial_epoch=3, accuracies=accuracies)
    assert history.epoch == [3, 4]  # stops where the uninterrupted run stopped, not 3 epochs later


def test_stage2_dropout_replaces_the_models_dropout_in_stage2_only():
    config = base_config()
    config.model.dropout = 0.0
    config.stage2.dropout = 0.3

    class Data:
        image_shape, num_classes = (28, 28, 1), 10

    stage2_model = build_semi_supervised_classifier(config, Data())
    assert {layer.rate for layer in stage2_model.layers if isinstance(layer, keras.layers.Dropout)} == {0.3}
    config.stage2.dropout = None  # unset: the model's
    assert not [layer for layer in build_semi_supervised_classifier(config, Data()).layers
                if isinstance(layer, keras.layers.Dropout)]


@pytest.mark.parametrize("key, value, message", [
    ("stage2.consistency_normalization", "sum", "stage2.consistency_normalization must be one of classes, paper"),
    ("stage2.epoch_unit", "steps", "stage2.epoch_unit must be one of all, labeled"),
    ("stage2.dropout", 1.5, r"stage2.dropout must be in \[0, 0.99\], got 1.5"),
    ("stage2.weight_ema", 1.0, r"stage2.weight_ema must be in \[0, 0.9999\], got 1.0"),
    ("stage2.lr_patience", 10, "stage2.lr_patience=10 halves a constant learning rate"),
    ("stage2.early_stopping_patience", -1, "stage2.early_stopping_patience must be an integer >= 0"),
    ("model.input_preprocessing", "imagenet", "model.input_preprocessing=imagenet needs model.name=resnet50"),
    ("data.resize_size", (256, 256), "data.resize_size is for datasets read from image files"),
])
def test_bad_stage2_and_input_keys_are_named(key, value, message):
    config = base_config()
    section, leaf = key.split(".")
    config[section][leaf] = value
    with pytest.raises(ValueError, match=message):
        validate_config(config, methods=tuple(METHODS))


def test_resize_smaller_than_the_crop_is_refused():
    config = base_config()
    config.data.name, config.data.dir = "clothing1m", "/data"
    config.data.image_size, config.data.resize_size = (224, 224), (200, 256)
    with pytest.raises(ValueError, match=r"data.resize_size \(200, 256\) must be at least data.image_size"):
        validate_config(config, methods=tuple(METHODS))
