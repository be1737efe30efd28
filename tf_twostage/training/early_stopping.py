"""Early stopping whose patience counter and best value survive a resume (`tf_twostage.training.resume`).

Keras' `EarlyStopping.on_train_begin` resets its counters, so a run resumed from an epoch checkpoint
would forget how long the monitored value has not improved; this subclass saves and restores them, like
`ResumableReduceLROnPlateau`. It keeps the last weights when it stops (Keras' default,
`restore_best_weights=False`): which epoch a stage keeps is the run's choice, not the callback's.
"""

from __future__ import annotations

import math

import keras


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` (monitoring `val_accuracy`, mode max by default) with resumable state."""

    def __init__(self, monitor: str = "val_accuracy", mode: str = "max", **kwargs):
        if kwargs.get("restore_best_weights"):
            raise ValueError("ResumableEarlyStopping keeps the last weights; restore_best_weights is not supported")
        super().__init__(monitor=monitor, mode=mode, **kwargs)
        self._restored = None

    def checkpoint_state(self):
        best = self.best
        return {"wait": int(self.wait), "best": None if best is None else float(best),
                "best_epoch": int(self.best_epoch), "stopped_epoch": int(self.stopped_epoch)}, {}

    def restore_state(self, scalars, arrays):
        self._restored = dict(scalars) if scalars else None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # resets the counters: apply a restored state after it
        if self._restored:
            self.wait = int(self._restored["wait"])
            best = self._restored.get("best")
            self.best = None if best is None or not math.isfinite(best) else float(best)
            self.best_epoch = int(self._restored.get("best_epoch", 0))
