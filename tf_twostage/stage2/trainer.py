"""The semi-supervised trainer that Stage 2's algorithms share: one `train_step`, one hook per algorithm.

`SemiSupervisedTrainer` wraps a plain classifier (the product: that is what gets exported) and trains it
on the Stage-2 stream (`semi_supervised_stream`: dicts with `image`, `label`, `labeled`, `index`):

    loss = CE over the labeled examples + weight(epoch) x consistency over the whole batch

where consistency is the squared difference between the softmax outputs and the algorithm's targets,
averaged over batch and classes. Subclasses implement `consistency_targets` (Pi: a second stochastic
pass; temporal ensembling: the per-example ensemble).

Distribution: Keras runs `train_step` once per replica and SUM-reduces the gradients, so each replica
differentiates its share of the *global* loss: sums over its examples divided by global counts
(labeled examples and batch size summed over replicas), never a per-replica mean (TRAPS.md).
"""

from __future__ import annotations

from typing import Callable, Optional

import keras
import tensorflow as tf
from keras import ops

from tf_twostage.classifier_trainer import ClassifierTrainer, correct_predictions, global_sum


class SemiSupervisedTrainer(ClassifierTrainer):
    """Trains `classifier` (softmax outputs) with a supervised + consistency loss.

    Args:
      classifier: a `keras.Model` mapping images to class probabilities.
      stop_gradient_targets: treat the consistency targets as constants.
    """

    def __init__(self, classifier: keras.Model, stop_gradient_targets: bool = True, **kwargs):
        super().__init__(classifier, **kwargs)
        self.stop_gradient_targets = bool(stop_gradient_targets)
        # The epoch drives the consistency ramp; a variable, so checkpoints carry it.
        self.epoch = self.add_weight(shape=(), initializer="zeros", trainable=False, name="epoch",
                                     dtype="float32", aggregation="only_first_replica")
        self.consistency_weight_fn: Callable = lambda epoch: 0.0
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.cross_entropy_tracker = keras.metrics.Mean(name="loss/supervised")
        self.consistency_tracker = keras.metrics.Mean(name="loss/consistency")
        self.weight_tracker = keras.metrics.Mean(name="monitor/consistency_weight")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    def compile(self, optimizer, consistency_weight: Optional[Callable] = None, **kwargs):
        """`consistency_weight(epoch)` gives the weight of the consistency term (a schedule)."""
        super().compile(optimizer=optimizer, **kwargs)
        if consistency_weight is not None:
            self.consistency_weight_fn = consistency_weight

    @property
    def metrics(self):
        return [self.loss_tracker, self.cross_entropy_tracker, self.consistency_tracker, self.weight_tracker,
                self.accuracy_tracker]

    # The one hook an algorithm implements.
    def consistency_targets(self, batch: dict, predictions: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def after_step(self, batch: dict, predictions: tf.Tensor) -> None:
        """Optional: state an algorithm keeps per step (temporal ensembling records predictions)."""

    def train_step(self, batch):
        labeled = ops.cast(batch["labeled"], "float32")
        labels = batch["label"]
        global_labeled = global_sum(ops.sum(labeled))
        global_batch = global_sum(ops.cast(ops.shape(labeled)[0], "float32"))
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        weight = ops.cast(self.consistency_weight_fn(self.epoch), "float32")

        with tf.GradientTape() as tape:
            predictions = self.classifier(batch["image"], training=True)
            targets = self.consistency_targets(batch, predictions)
            if self.stop_gradient_targets:
                targets = ops.stop_gradient(targets)
            cross_entropy = keras.losses.sparse_categorical_crossentropy(labels, predictions)
            supervised = ops.sum(cross_entropy * labeled) / ops.maximum(global_labeled, 1.0)
            num_classes = ops.cast(ops.shape(predictions)[-1], "float32")
            consistency = ops.sum(ops.square(predictions - targets)) / (global_batch * num_classes)
            loss = supervised + weight * consistency
            if self.classifier.losses:  # weight decay: each replica carries 1/R of it
                loss += ops.sum(self.classifier.losses) / num_replicas
        variables = self.classifier.trainable_variables
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.after_step(batch, ops.stop_gradient(predictions))

        correct = correct_predictions(labels, predictions)
        # Logs are MEAN-reduced over replicas: scale each replica's share back to the global value.
        self.loss_tracker.update_state(loss * num_replicas)
        self.cross_entropy_tracker.update_state(supervised * num_replicas)
        self.consistency_tracker.update_state(consistency * num_replicas)
        self.weight_tracker.update_state(weight)
        self.accuracy_tracker.update_state(ops.sum(correct * labeled) / ops.maximum(global_labeled, 1.0)
                                           * num_replicas)
        return self.logs({metric.name: metric for metric in self.metrics})


class EpochTracker(keras.callbacks.Callback):
    """Copies the epoch number into the trainer's `epoch` variable (and Adam's beta1, if scheduled)."""

    def __init__(self, beta1_schedule: Optional[Callable] = None):
        super().__init__()
        self.beta1_schedule = beta1_schedule

    def on_epoch_begin(self, epoch, logs=None):
        self.model.epoch.assign(float(epoch))
        if self.beta1_schedule is not None and isinstance(self.model.optimizer.beta_1, keras.Variable):
            self.model.optimizer.beta_1.assign(float(self.beta1_schedule(epoch)))
