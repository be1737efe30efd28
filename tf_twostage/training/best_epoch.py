"""Keep the weights of the epoch a validation score selects, and let a resumed run keep them too.

`BestEpochKeeper` watches one log key (default `val_accuracy`, the key the learning-rate plateau and
early-stopping callbacks also watch, so they all follow one validation choice), keeps the classifier's
weights of the epoch where it was highest, and at the end of training leaves the classifier with them
(`keep="best"`; given `num_examples`, only when the best score beats the last epoch's by more than two
standard errors of an accuracy on that many examples, `best_beats_last`, else the last epoch is kept) or with the last epoch's (`keep="last"`, which still records the best epoch). Its state
(the best epoch, value and weights) is saved in every epoch checkpoint (`tf_twostage.training.resume`),
so a run interrupted after its best epoch still ends on it.
"""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np

KEEP_CHOICES = ("best", "last")


def best_beats_last(best_value: float, last_value: float, num_examples: int, standard_errors: float = 2.0) -> bool:
    """Whether an accuracy `best_value` beats `last_value` by more than `standard_errors` binomial standard
    errors of an accuracy on `num_examples` examples (always, when the size is unknown: `num_examples` 0).

    On 400 noisy validation images an accuracy has a standard error of about 2.5 points, as much as the
    differences between the late epochs of a schedule that anneals to its end (Stage 2's ramp-down): the
    maximum over epochs then picks noise, and keeping it cost 2.2 points of test accuracy against the last
    epoch (mnist5k, two-stage TE, symmetric 0.5, seed 0: 93.0% vs 95.2%).
    """
    if num_examples <= 0:
        return best_value > last_value
    error = np.sqrt(max(last_value * (1.0 - last_value), 0.0) / num_examples)
    return best_value - last_value > standard_errors * error


class BestEpochKeeper(keras.callbacks.Callback):
    """Keeps the classifier weights of the epoch with the highest `monitor` (see the module docstring).

    After training: `best_epoch` (0-based, -1 when `monitor` never appeared), `best_value`,
    `last_epoch`, `last_value`, `last_weights` (the classifier's weights after the last epoch) and
    `kept_epoch`, the epoch whose weights the classifier holds.
    """

    def __init__(self, monitor: str = "val_accuracy", keep: str = "best", num_examples: int = 0):
        super().__init__()
        if keep not in KEEP_CHOICES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_CHOICES)}; got {keep!r}")
        self.monitor, self.keep, self.num_examples = monitor, keep, int(num_examples)
        self.best_value, self.best_epoch, self.best_weights = -np.inf, -1, None
        self.last_value: Optional[float] = None
        self.last_epoch = -1
        self.last_weights = None
        self.kept_epoch = -1

    def _classifier(self) -> keras.Model:
        return getattr(self.model, "classifier", self.model)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        self.last_epoch = int(epoch)
        if value is None:
            return
        value = float(np.asarray(value).reshape(-1)[0])
        self.last_value = value
        if value > self.best_value:
            self.best_value, self.best_epoch = value, int(epoch)
            self.best_weights = self._classifier().get_weights()

    def on_train_end(self, logs=None):
        classifier = self._classifier()
        self.last_weights = classifier.get_weights()
        self.kept_epoch = self.last_epoch
        if self.keep == "best" and self.best_weights is not None and (
                self.last_value is None or best_beats_last(self.best_value, self.last_value, self.num_examples)):
            classifier.set_weights(self.best_weights)
            self.kept_epoch = self.best_epoch

    def checkpoint_state(self):
        """(scalars, arrays) for `resume.EpochCheckpoint`."""
        arrays = {f"best_weight/{number}": weight for number, weight in enumerate(self.best_weights or [])}
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "last_epoch": self.last_epoch,
                "last_value": self.last_value}, arrays

    def restore_state(self, scalars, arrays):
        self.best_value = float(scalars["best_value"])
        self.best_epoch = int(scalars["best_epoch"])
        self.last_epoch = int(scalars.get("last_epoch", -1))
        self.last_value = scalars.get("last_value")
        keys = sorted((key for key in arrays if key.startswith("best_weight/")), key=lambda k: int(k.split("/")[1]))
        self.best_weights = [arrays[key] for key in keys] or None
