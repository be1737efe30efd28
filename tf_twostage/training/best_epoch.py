"""Keep the weights of the epoch a validation score selects, and let a resumed run keep them too.

`BestEpochKeeper` watches one log key (default `val_accuracy`, the key the learning-rate plateau and
early-stopping callbacks also watch, so they all follow one validation choice), keeps the classifier's
weights of the epoch where it was highest, and at the end of training leaves the classifier with them
(`keep="best"`) or with the last epoch's (`keep="last"`, which still records the best epoch). Its state
(the best epoch, value and weights) is saved in every epoch checkpoint (`tf_twostage.training.resume`),
so a run interrupted after its best epoch still ends on it.
"""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np

KEEP_CHOICES = ("best", "last")


class BestEpochKeeper(keras.callbacks.Callback):
    """Keeps the classifier weights of the epoch with the highest `monitor` (see the module docstring).

    After training: `best_epoch` (0-based, -1 when `monitor` never appeared), `best_value`,
    `last_epoch`, `last_value`, `last_weights` (the classifier's weights after the last epoch) and
    `kept_epoch`, the epoch whose weights the classifier holds.
    """

    def __init__(self, monitor: str = "val_accuracy", keep: str = "best"):
        super().__init__()
        if keep not in KEEP_CHOICES:
            raise ValueError(f"keep must be one of {', '.join(KEEP_CHOICES)}; got {keep!r}")
        self.monitor, self.keep = monitor, keep
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
        if self.keep == "best" and self.best_weights is not None:
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
