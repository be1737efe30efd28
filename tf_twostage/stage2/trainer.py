"""The semi-supervised trainer that Stage 2's algorithms share: one loss, one hook per algorithm.

`SemiSupervisedTrainer` wraps a plain classifier (the product: that is what gets exported) and trains it
on the Stage-2 stream (`semi_supervised_stream`: dicts with `image`, `label`, `labeled`, `index`):

    loss = CE over the labeled examples + weight(epoch) x consistency over the whole batch

where consistency is the squared difference between the softmax outputs and the algorithm's targets,
averaged over batch and classes. Subclasses implement `consistency_targets` (Pi: a second stochastic
pass; temporal ensembling: the per-example ensemble). The step itself (tape, weight decay, loss
scaling, apply, logs) is `ClassifierTrainer.train_step`.

weight(epoch) is a schedule of the trainer's own step counter (`train_steps`, a weight that checkpoints
carry): `compile(consistency_weight=schedules.PerEpoch(fn, steps_per_epoch))`, or a number. No
callback sets it, so it is right in any `fit`, after a resume too.

Distribution: each replica differentiates its share of the *global* loss: sums over its examples
divided by global counts (labeled examples and batch size summed over replicas), never a per-replica
mean.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tf_twostage.training.trainer import ClassifierTrainer, correct_predictions, global_sum

# What `train_step` logs (epoch means), besides `monitor/consistency_weight`. `accuracy/labeled_augmented`:
# agreement with the kept (possibly noisy) labels of the labeled half, on augmented, class-oversampled
# images; a training signal, not an estimate of test accuracy (that is results.json["validation"]).
TRAIN_LOGS = ("loss", "loss/supervised", "loss/consistency", "accuracy/labeled_augmented")


class SemiSupervisedTrainer(ClassifierTrainer):
    """Trains `classifier` (softmax outputs) with a supervised + consistency loss.

    Args:
      classifier: a `keras.Model` mapping images to class probabilities.
      stop_gradient_targets: treat the consistency targets as constants.
    """

    TRAIN_LOGS = TRAIN_LOGS[1:]

    def __init__(self, classifier: keras.Model, stop_gradient_targets: bool = True, **kwargs):
        super().__init__(classifier, **kwargs)
        self.stop_gradient_targets = bool(stop_gradient_targets)
        self.consistency_weight = lambda step: ops.zeros((), "float32")

    def compile(self, optimizer="rmsprop", consistency_weight=0.0, **kwargs):
        """`consistency_weight`: the weight of the consistency term, a number or a function of the
        trainer's step (`schedules.PerEpoch(weight_of_epoch, steps_per_epoch)`)."""
        super().compile(optimizer=optimizer, **kwargs)
        if callable(consistency_weight):
            self.consistency_weight = consistency_weight
        else:
            fixed = float(consistency_weight)
            self.consistency_weight = lambda step: ops.convert_to_tensor(fixed, "float32")

    def current_consistency_weight(self):
        """The weight the next step uses."""
        return ops.cast(self.consistency_weight(self.train_steps), "float32")

    # The one hook an algorithm implements.
    def consistency_targets(self, batch: dict, predictions: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def after_step(self, batch: dict, predictions: tf.Tensor) -> None:
        """Optional: state an algorithm keeps per step (temporal ensembling records predictions)."""

    def batch_totals(self, batch):
        labeled = ops.cast(batch["labeled"], "float32")
        return global_sum(ops.stack([ops.sum(labeled), ops.cast(ops.shape(labeled)[0], "float32")]))

    def compute_step_loss(self, batch, totals=None):
        labeled = ops.cast(batch["labeled"], "float32")
        labels = batch["label"]
        counts = self.batch_totals(batch) if totals is None else totals
        global_labeled, global_batch = counts[0], counts[1]
        weight = self.current_consistency_weight()

        predictions = self.classifier(batch["image"], training=True)
        targets = self.consistency_targets(batch, predictions)
        if self.stop_gradient_targets:
            targets = ops.stop_gradient(targets)
        cross_entropy = keras.losses.sparse_categorical_crossentropy(labels, predictions)
        supervised = ops.sum(cross_entropy * labeled) / ops.maximum(global_labeled, 1.0)
        num_classes = ops.cast(ops.shape(predictions)[-1], "float32")
        consistency = ops.sum(ops.square(predictions - targets)) / (global_batch * num_classes)
        self.after_step(batch, ops.stop_gradient(predictions))
        accuracy = ops.sum(correct_predictions(labels, predictions) * labeled) / ops.maximum(global_labeled, 1.0)
        return supervised + weight * consistency, {
            "loss/supervised": supervised, "loss/consistency": consistency, "accuracy/labeled_augmented": accuracy,
            "monitor/consistency_weight": weight}
