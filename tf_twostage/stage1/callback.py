"""Stage 1 inside `fit`: record training-set predictions by example index and keep the best weights.

Ranking labels with a network that has memorized the noisy labels keeps wrong ones (it agrees with them
confidently). So `PredictionRecorder` keeps the weights of the epoch with the best (noisy) validation
accuracy and, at the end of training, predicts the training and validation sets with them; it also
records both sets' predictions of the last `average_last` epochs so they can be averaged instead.

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
    """Collects class probabilities on `train` (and `validation`) for the Stage-1 selection.

    Args:
      train: the training split (noisy labels); predictions are in its order, keyed by its `index`.
      validation: the held-out split; also predicted with the best weights (for the refined
        validation set).
      preprocessor: the pipeline's pre-processing (no augmentation is applied for predictions).
      monitor: the log key whose maximum marks the best epoch (default `val_accuracy`).
      average_last: predictions of this many last epochs are recorded (0: none).
      restore_best: leave the model with the best weights after training (Stage 2 continues from them).

    After `fit`: `best_epoch`, `best_probabilities` / `best_validation_probabilities` (`[N, C]`),
    `epoch_probabilities` and `epoch_validation_probabilities` (dicts epoch -> `[N, C]` for the recorded
    epochs).
    """

    def __init__(
        self,
        train: ImageSplit,
        validation: Optional[ImageSplit],
        preprocessor: Preprocessor,
        total_epochs: int,
        monitor: str = "val_accuracy",
        average_last: int = 0,
        restore_best: bool = True,
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
        self.restore_best = restore_best
        self.batch_size = batch_size
        self.best_value = -np.inf
        self.best_epoch = -1
        self.best_weights = None
        self.epoch_probabilities: dict = {}
        self.epoch_validation_probabilities: dict = {}
        self.best_probabilities = None
        self.best_validation_probabilities = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:  # no validation set: the last epoch counts as best
            value = float(epoch)
        if value > self.best_value:
            self.best_value, self.best_epoch = float(value), int(epoch)
            self.best_weights = self.model.get_weights()
        if self.average_last and epoch >= self.total_epochs - self.average_last:
            self.epoch_probabilities[int(epoch)] = self._predict(self.train)
            if self.validation is not None:
                self.epoch_validation_probabilities[int(epoch)] = self._predict(self.validation)

    def on_train_end(self, logs=None):
        final_weights = self.model.get_weights()
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        self.best_probabilities = self._predict(self.train)
        if self.validation is not None:
            self.best_validation_probabilities = self._predict(self.validation)
        if not self.restore_best:
            self.model.set_weights(final_weights)

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
        self.epoch_probabilities = {int(key.split("/")[1]): value for key, value in arrays.items()
                                    if key.startswith("epoch/")}
        self.epoch_validation_probabilities = {int(key.split("/")[1]): value for key, value in arrays.items()
                                               if key.startswith("validation_epoch/")}

    def averaged_probabilities(self) -> np.ndarray:
        """Mean of the recorded last-epoch predictions (falls back to the best weights' ones)."""
        if not self.epoch_probabilities:
            return self.best_probabilities
        return np.mean(np.stack(list(self.epoch_probabilities.values())), axis=0)

    def averaged_validation_probabilities(self) -> Optional[np.ndarray]:
        """The same mean over the validation set (falls back to the best weights' predictions)."""
        if not self.epoch_validation_probabilities:
            return self.best_validation_probabilities
        return np.mean(np.stack(list(self.epoch_validation_probabilities.values())), axis=0)

    def _predict(self, split: ImageSplit) -> np.ndarray:
        return predict_probabilities(self.model, split, self.preprocessor, self.batch_size)
