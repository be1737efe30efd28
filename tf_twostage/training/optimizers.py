"""Optimizers by name and the learning-rate-on-plateau callback whose state survives a resume."""

from __future__ import annotations

import keras

from tf_twostage.training import schedules

OPTIMIZER_NAMES = ("adagrad", "sgd", "adam")


def make_optimizer(stage_config) -> keras.optimizers.Optimizer:
    """The optimizer named by `stage_config.optimizer` at `stage_config.learning_rate`."""
    name, lr = stage_config.optimizer, float(stage_config.learning_rate)
    if not lr > 0:
        raise ValueError(f"learning_rate must be > 0, got {lr}")
    if name == "adagrad":
        return keras.optimizers.Adagrad(learning_rate=lr)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=float(stage_config.momentum))
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_NAMES)}; got {name!r}")


class ResumableReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """`ReduceLROnPlateau` whose patience counter and best value survive a resume (`tf_twostage.training.resume`).

    The learning rate itself is an optimizer variable, saved with the trainer's weights.
    """

    _STATE = ("wait", "best", "cooldown_counter")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._restored = None

    def checkpoint_state(self):
        return {name: float(getattr(self, name)) for name in self._STATE}, {}

    def restore_state(self, scalars, arrays):
        self._restored = dict(scalars)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # resets the counters: apply a restored state after it
        if self._restored:
            self.wait, self.best = int(self._restored["wait"]), float(self._restored["best"])
            self.cooldown_counter = int(self._restored["cooldown_counter"])


def plateau_callbacks(stage_config, log_dir: str) -> list:
    """Halve the learning rate on a validation-accuracy plateau; log to TensorBoard."""
    return [
        ResumableReduceLROnPlateau(
            monitor="val_accuracy",
            mode="max",
            factor=float(stage_config.lr_factor),
            patience=int(stage_config.lr_patience),
            min_lr=float(stage_config.min_lr),
        ),
        keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False),
    ]


class RampedAdam(keras.optimizers.Adam):
    """Adam with the temporal-ensembling recipe's ramps (Laine & Aila), both read from `iterations`:

    * the learning rate max_lr x rampup x rampdown of the fractional epoch (`RampedLearningRate`);
    * beta1 moving from 0.9 to 0.5 over the ramp-down, a function of the whole epoch
      (`schedules.adam_beta1`), held in a variable that `apply` sets before every update.

    Keras' `Adam` takes a float `beta_1`; the update reads it as a tensor (`ops.cast(self.beta_1, ...)`),
    so a variable passed as `beta_1` reaches the compiled step. Its value follows from `iterations`,
    which checkpoints carry: no callback keeps it.
    """

    def __init__(self, max_lr, steps_per_epoch, total_epochs, rampup_length, rampdown_length, **kwargs):
        super().__init__(
            learning_rate=schedules.RampedLearningRate(max_lr, steps_per_epoch, total_epochs, rampup_length,
                                                       rampdown_length),
            beta_1=keras.Variable(0.9, trainable=False, dtype="float32", name="beta_1",
                                  aggregation="only_first_replica"),
            **kwargs,
        )
        self.beta_1_schedule = schedules.PerEpoch(
            lambda epoch: schedules.adam_beta1(epoch, int(total_epochs), int(rampdown_length)), steps_per_epoch)

    def apply(self, grads, trainable_variables=None):
        self.beta_1.assign(self.beta_1_schedule(self.iterations))
        return super().apply(grads, trainable_variables)
