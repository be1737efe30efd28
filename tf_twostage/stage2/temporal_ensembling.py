"""Temporal ensembling (Laine & Aila): the target is an ensemble of the network's past predictions.

One pass per step. Every prediction of the epoch is recorded per example; after each epoch
Z <- a Z + (1 - a) z and the targets become Z / (1 - a^t) (bias correction after t updates; the
factor is computed with the update, once per epoch).

Z, the epoch's predictions and t are non-trainable weights of the trainer, so checkpoints (and
`BackupAndRestore`) carry them. Under a strategy they are `only_first_replica` variables that every
replica updates with the ids and rows gathered from all replicas, so all copies stay identical.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tf_twostage.stage2.trainer import SemiSupervisedTrainer


class TemporalEnsembling(SemiSupervisedTrainer):
    """Args: `num_examples`: rows of the buffer (one past the largest example `index`); `momentum`: a."""

    def __init__(self, classifier, num_examples: int, num_classes: int, momentum: float = 0.6, **kwargs):
        super().__init__(classifier, stop_gradient_targets=True, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"stage2.ensemble_momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        shape = (int(num_examples), int(num_classes))
        # float32 under any dtype policy: the predictions it averages come from a float32 softmax.
        common = {"initializer": "zeros", "trainable": False, "aggregation": "only_first_replica",
                  "dtype": "float32"}
        self.ensemble = self.add_weight(shape=shape, name="ensemble", **common)
        self.epoch_predictions = self.add_weight(shape=shape, name="epoch_predictions", **common)
        self.ensemble_updates = self.add_weight(shape=(), name="ensemble_updates", **common)
        # 1 / (1 - a^t), set with each update (not recomputed in every step).
        self.bias_correction = self.add_weight(shape=(), name="bias_correction", **common)

    def consistency_targets(self, batch, predictions):
        rows = ops.take(self.ensemble, batch["index"], axis=0)
        return ops.where(self.ensemble_updates > 0, rows * self.bias_correction, predictions)

    def after_step(self, batch, predictions):
        ids = _gather_from_replicas(batch["index"])
        rows = _gather_from_replicas(predictions)
        # An example can occur twice in a batch (oversampled labels; labeled and unlabeled halves), and a
        # scatter with repeated ids applies them in no defined order: keep each id's last row only.
        unique_ids, slots = tf.unique(ids)
        last = tf.math.unsorted_segment_max(tf.range(tf.shape(ids)[0]), slots, tf.shape(unique_ids)[0])
        self.epoch_predictions.value.scatter_update(tf.IndexedSlices(tf.gather(rows, last), unique_ids))

    @tf.function
    def update_ensemble(self):
        """Z <- a Z + (1 - a) z; called after every epoch by `EnsembleUpdate`."""
        self.ensemble.assign(self.momentum * self.ensemble + (1.0 - self.momentum) * self.epoch_predictions)
        self.ensemble_updates.assign_add(1.0)
        self.bias_correction.assign(1.0 / ops.maximum(1.0 - ops.power(self.momentum, self.ensemble_updates), 1e-8))


def _gather_from_replicas(value):
    """Every replica's `value` stacked along axis 0, on every replica (equal shapes per replica).

    An all-reduce of zero-padded slots: `ReplicaContext.all_gather` fails under
    MultiWorkerMirroredStrategy inside `fit` ("destinations can not be empty"), the all-reduce works
    everywhere. Integer values (ids) travel as float64, exact below 2**53.
    """
    replica = tf.distribute.get_replica_context()
    replicas = replica.num_replicas_in_sync
    if replicas == 1:
        return value
    dtype = value.dtype
    if dtype.is_integer:
        value = tf.cast(value, tf.float64)
    slot = tf.one_hot(replica.replica_id_in_sync_group, replicas, dtype=value.dtype)
    slots = tf.reshape(slot, [replicas] + [1] * value.shape.rank) * value[tf.newaxis]
    gathered = replica.all_reduce("sum", slots)
    return tf.cast(tf.reshape(gathered, tf.concat([[-1], tf.shape(value)[1:]], axis=0)), dtype)


class EnsembleUpdate(keras.callbacks.Callback):
    """Folds the epoch's predictions into the temporal ensemble at the end of every epoch."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.update_ensemble()
