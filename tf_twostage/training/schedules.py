"""Ramps of the semi-supervised stage (Laine & Aila's temporal-ensembling recipe), as pure functions.

Each takes the (possibly fractional) epoch as a Python number, numpy array or tensor and returns a value
of the same kind, so the same function drives a `LearningRateSchedule` (from `optimizer.iterations`),
the consistency weight (from the trainer's epoch variable) and the unit tests.
"""

from __future__ import annotations

import math

import keras
from keras import ops


def rampup(epoch, length):
    """exp(-5 (1 - t)^2) with t = epoch / length clipped to [0, 1]; 1 when `length` is 0."""
    if length <= 0:
        return ops.ones_like(ops.cast(epoch, "float32"))
    t = ops.clip(ops.cast(epoch, "float32") / float(length), 0.0, 1.0)
    return ops.exp(-5.0 * ops.square(1.0 - t))


def rampdown(epoch, total_epochs, length):
    """exp(-12.5 t^2) over the last `length` epochs (t from 0 to 1); 1 before them."""
    if length <= 0:
        return ops.ones_like(ops.cast(epoch, "float32"))
    start = float(total_epochs - length)
    t = ops.clip((ops.cast(epoch, "float32") - start) / float(length), 0.0, 1.0)
    return ops.exp(-12.5 * ops.square(t))


def consistency_weight(epoch, max_weight, rampup_length, first_epoch_zero=True):
    """max_weight x rampup(epoch), and exactly 0 during the first epoch (epoch < 1) if asked."""
    weight = float(max_weight) * rampup(epoch, rampup_length)
    if first_epoch_zero:
        weight = ops.where(ops.cast(epoch, "float32") < 1.0, 0.0, weight)
    return weight


def scaled_max_weight(max_weight, num_labeled, num_examples):
    """The original code's w_max scaled by the labeled fraction (num_labeled / num_examples)."""
    if num_examples <= 0:
        raise ValueError(f"num_examples must be > 0, got {num_examples}")
    return float(max_weight) * float(num_labeled) / float(num_examples)


def adam_beta1(epoch, total_epochs, rampdown_length, start=0.9, end=0.5):
    """Adam's beta1 moving from `start` to `end` as the ramp-down proceeds."""
    down = rampdown(epoch, total_epochs, rampdown_length)
    return down * start + (1.0 - down) * end


@keras.saving.register_keras_serializable(package="tf_twostage")
class RampedLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """max_lr x rampup x rampdown of the epoch `step / steps_per_epoch` (state: optimizer.iterations)."""

    def __init__(self, max_lr, steps_per_epoch, total_epochs, rampup_length, rampdown_length):
        self.max_lr = float(max_lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.total_epochs = int(total_epochs)
        self.rampup_length = int(rampup_length)
        self.rampdown_length = int(rampdown_length)

    def __call__(self, step):
        epoch = ops.cast(step, "float32") / float(self.steps_per_epoch)
        return self.max_lr * rampup(epoch, self.rampup_length) * rampdown(
            epoch, self.total_epochs, self.rampdown_length
        )

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "steps_per_epoch": self.steps_per_epoch,
            "total_epochs": self.total_epochs,
            "rampup_length": self.rampup_length,
            "rampdown_length": self.rampdown_length,
        }


class PerEpoch:
    """`schedule(epoch)` as a function of the training step: the whole epoch `step // steps_per_epoch`.

    The value a schedule of the epoch takes during every step of that epoch, computed from a step
    counter that lives in a variable (`ClassifierTrainer.train_steps`, `optimizer.iterations`), so it is
    right after a resume and needs no callback. `schedule` is any function of a float32 tensor (the
    functions above), or a number for a constant.
    """

    def __init__(self, schedule, steps_per_epoch: int):
        if int(steps_per_epoch) < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.schedule = schedule
        self.steps_per_epoch = int(steps_per_epoch)

    def epoch(self, step):
        return ops.cast(ops.floor_divide(ops.cast(step, "int64"), self.steps_per_epoch), "float32")

    def __call__(self, step):
        if not callable(self.schedule):
            return ops.cast(ops.convert_to_tensor(float(self.schedule)), "float32")
        return ops.cast(self.schedule(self.epoch(step)), "float32")


def epochs_for_data(max_epochs: int, target_steps: int, steps_per_epoch: int, min_epochs: int = 10) -> int:
    """Epochs scaled to the data size: enough for about `target_steps` optimizer steps, between
    `min(min_epochs, max_epochs)` and `max_epochs`; `max_epochs` itself when `target_steps` is 0 (off).

    A small dataset gets more passes (1,400 images at batch 128 and 1,500 steps: 137 -> max_epochs), a large
    one fewer (50,000 images: 4 -> min_epochs).
    """
    max_epochs, target_steps, steps_per_epoch = int(max_epochs), int(target_steps), int(steps_per_epoch)
    if max_epochs < 1 or target_steps < 0 or steps_per_epoch < 1:
        raise ValueError(f"epochs_for_data needs max_epochs >= 1, target_steps >= 0, steps_per_epoch >= 1; got "
                         f"{max_epochs}, {target_steps}, {steps_per_epoch}")
    if target_steps == 0:
        return max_epochs
    return int(min(max_epochs, max(min(min_epochs, max_epochs), math.ceil(target_steps / steps_per_epoch))))
