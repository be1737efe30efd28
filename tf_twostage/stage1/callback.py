"""Stage 1 inside `fit`: record training-set predictions by example index and keep the best weights.

Ranking labels with a network that has memorized the noisy labels keeps wrong ones (it agrees with them
confidently). So `PredictionRecorder` keeps the weights of the epoch with the best (noisy) validation
accuracy and, at the end of training, predicts the training and validation sets with them; or, instead,
records both sets' predictions of the last `average_last` epochs to be averaged.

The best epoch is an argmax over a noisy curve: on a plateau float rounding alone moves it (mnist5k,
asymmetric 0.6, seed 2: epoch 9 with oneDNN, 39 without), and with it the kept set. The average of a fixed
window of epochs has no argmax (`stage1.ranking=average`, which also leaves the last epoch's weights).
"""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np

from tf_twostage.data.preprocess import Preprocessor
from tf_twostage.data.source import ImageSplit
from tf_twostage.training.metrics import predict_probabilities

RANKINGS = ("best", "average", "kfold")


class PredictionRecorder(keras.callbacks.Callback):
    """Collects class probabilities on `train` (and `validation`) for the Stage-1 selection, in one of two modes.

    `average_last=0` (`stage1.ranking=best`): keeps the weights of the epoch where `monitor` peaked and, at
    the end of training, predicts both sets with them and leaves the model with them (Stage 2 continues
    from them). `average_last=K > 0` (`stage1.ranking=average`): records both sets' predictions of the last K
    epochs to be averaged; no weights are copied, no extra pass is made at the end, and the model keeps its
    last epoch's weights. Either mode reports `best_epoch`.

    Args:
      train: the training split (noisy labels); predictions are in its order, keyed by its `index`.
      validation: the held-out split (for the refined validation set), or None.
      preprocessor: the pipeline's pre-processing (no augmentation is applied for predictions).
      monitor: the log key whose maximum marks the best epoch (default `val_accuracy`).
      average_last: how many last epochs to record (0: the best-epoch mode).

    After `fit`: `best_epoch`; in the best-epoch mode `best_probabilities` / `best_validation_probabilities`
    (`[N, C]`), in the average mode `epoch_probabilities` / `epoch_validation_probabilities` (dicts epoch ->
    `[N, C]`) and their means `averaged_probabilities()` / `averaged_validation_probabilities()`.
    """

    def __init__(
        self,
        train: ImageSplit,
        validation: Optional[ImageSplit],
        preprocessor: Preprocessor,
        total_epochs: int,
        monitor: str = "val_accuracy",
        average_last: int = 0,
        batch_size: int = 512,
    ):
        super().__init__()
        if average_last < 0:
            raise ValueError(f"stage1.average_last must be >= 0, got {average_last}")
        self.train = train
        self.validation = validation if validation is not None and len(validation) else None
        self.preprocessor = preprocessor
        self.total_epochs = int(total_epochs)
        self.monitor = monitor
        self.average_last = int(average_last)
        self.batch_size = batch_size
        self.best_value = -np.inf
        self.best_epoch = -1
        self.best_weights = None
        self.epoch_probabilities: dict = {}
        self.epoch_validation_probabilities: dict = {}
        self.best_probabilities = None
        self.best_validation_probabilities = None

    @property
    def averaging(self) -> bool:
        return self.average_last > 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:  # no validation set: the last epoch counts as best
            value = float(epoch)
        if value > self.best_value:
            self.best_value, self.best_epoch = float(value), int(epoch)
            if not self.averaging:
                self.best_weights = self.model.get_weights()
        if self.averaging and epoch >= self.total_epochs - self.average_last:
            self.epoch_probabilities[int(epoch)] = self._predict(self.train)
            if self.validation is not None:
                self.epoch_validation_probabilities[int(epoch)] = self._predict(self.validation)

    def on_train_end(self, logs=None):
        if self.averaging:
            return  # the recorded epochs rank; the model keeps its last weights
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        self.best_probabilities = self._predict(self.train)
        if self.validation is not None:
            self.best_validation_probabilities = self._predict(self.validation)

    def checkpoint_state(self):
        """(scalars, arrays) for `resume.EpochCheckpoint`: the best epoch so far and what it recorded."""
        arrays = {f"best_weight/{number}": weight for number, weight in enumerate(self.best_weights or [])}
        arrays.update({f"epoch/{epoch}": value for epoch, value in self.epoch_probabilities.items()})
        arrays.update({f"validation_epoch/{epoch}": value
                       for epoch, value in self.epoch_validation_probabilities.items()})
        return {"best_value": self.best_value, "best_epoch": self.best_epoch}, arrays

    def restore_state(self, scalars, arrays):
        self.best_value = float(scalars["best_value"])
        self.best_epoch = int(scalars["best_epoch"])
        weights = sorted((key for key in arrays if key.startswith("best_weight/")),
                         key=lambda key: int(key.split("/")[1]))
        self.best_weights = [arrays[key] for key in weights] or None
        self.epoch_probabilities = _epochs(arrays, "epoch/")
        self.epoch_validation_probabilities = _epochs(arrays, "validation_epoch/")

    def averaged_probabilities(self) -> Optional[np.ndarray]:
        """Mean of the recorded epochs' predictions of the training set (None before any was recorded)."""
        return _mean(self.epoch_probabilities)

    def averaged_validation_probabilities(self) -> Optional[np.ndarray]:
        """The same mean over the validation set."""
        return _mean(self.epoch_validation_probabilities)

    def _predict(self, split: ImageSplit) -> np.ndarray:
        return predict_probabilities(self.model, split, self.preprocessor, self.batch_size)


def _epochs(arrays: dict, prefix: str) -> dict:
    return {int(key[len(prefix):]): value for key, value in arrays.items() if key.startswith(prefix)}


def _mean(epochs: dict) -> Optional[np.ndarray]:
    return np.mean(np.stack(list(epochs.values())), axis=0) if epochs else None
