"""The semi-supervised trainer that Stage 2's algorithms share: one `train_step`, one hook per algorithm.

`SemiSupervisedTrainer` wraps a plain classifier (the product: that is what gets exported) and trains it
on the Stage-2 stream (`semi_supervised_stream`: dicts with `image`, `label`, `labeled`, `index`):

    loss = CE over the labeled examples + weight(epoch) x consistency over the whole batch

(weight(epoch) is evaluated once per epoch by `set_epoch`, which `EpochTracker` calls)

where consistency is the squared difference between the softmax outputs and the algorithm's targets,
averaged over batch and classes. Subclasses implement `consistency_targets` (Pi: a second stochastic
pass; temporal ensembling: the per-example ensemble).

Distribution: Keras runs `train_step` once per replica and SUM-reduces the gradients, so each replica
differentiates its share of the *global* loss: sums over its examples divided by global counts
(labeled examples and batch size summed over replicas), never a per-replica mean (docs/traps.md).
"""

from __future__ import annotations

from typing import Callable, Optional

import keras
import tensorflow as tf
from keras import ops

from tf_twostage.training.trainer import ClassifierTrainer, StepMeans, correct_predictions, global_sum

# What `train_step` logs (epoch means), besides `monitor/consistency_weight`.
TRAIN_LOGS = ("loss", "loss/supervised", "loss/consistency", "accuracy")


class SemiSupervisedTrainer(ClassifierTrainer):
    """Trains `classifier` (softmax outputs) with a supervised + consistency loss.

    Args:
      classifier: a `keras.Model` mapping images to class probabilities.
      stop_gradient_targets: treat the consistency targets as constants.
    """

    def __init__(self, classifier: keras.Model, stop_gradient_targets: bool = True, **kwargs):
        super().__init__(classifier, **kwargs)
        self.stop_gradient_targets = bool(stop_gradient_targets)
        # The epoch drives the consistency ramp. Both are variables, so checkpoints carry them; the weight
        # is evaluated once per epoch (`set_epoch`), not in every step: the ramp is a function of the
        # epoch alone, and a dozen scalar ops per step were a measurable share of a small model's step.
        common = {"shape": (), "initializer": "zeros", "trainable": False, "dtype": "float32",
                  "aggregation": "only_first_replica"}
        self.epoch = self.add_weight(name="epoch", **common)
        self.consistency_weight = self.add_weight(name="consistency_weight", **common)
        self.consistency_weight_fn: Callable = lambda epoch: 0.0
        # The step's logs, epoch means: one tracker for all (see StepMeans).
        self.step_means = StepMeans(TRAIN_LOGS)
        # Validation (`test_step`): cross-entropy and accuracy of the classifier.
        self.cross_entropy_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    def compile(self, optimizer, consistency_weight: Optional[Callable] = None, **kwargs):
        """`consistency_weight(epoch)` gives the weight of the consistency term (a schedule)."""
        super().compile(optimizer=optimizer, **kwargs)
        if consistency_weight is not None:
            self.consistency_weight_fn = consistency_weight
            self.set_epoch(float(self.epoch.numpy()))

    def set_epoch(self, epoch: float) -> None:
        """Sets the epoch and the consistency weight of the steps that follow (`EpochTracker` calls it)."""
        self.epoch.assign(float(epoch))
        self.consistency_weight.assign(float(self.consistency_weight_fn(float(epoch))))

    @property
    def metrics(self):
        return [self.step_means, self.cross_entropy_tracker, self.accuracy_tracker]

    # The one hook an algorithm implements.
    def consistency_targets(self, batch: dict, predictions: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def after_step(self, batch: dict, predictions: tf.Tensor) -> None:
        """Optional: state an algorithm keeps per step (temporal ensembling records predictions)."""

    def train_step(self, batch):
        labeled = ops.cast(batch["labeled"], "float32")
        labels = batch["label"]
        counts = global_sum(ops.stack([ops.sum(labeled), ops.cast(ops.shape(labeled)[0], "float32")]))
        global_labeled, global_batch = counts[0], counts[1]
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        weight = ops.convert_to_tensor(self.consistency_weight)

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
        accuracy = ops.sum(correct * labeled) / ops.maximum(global_labeled, 1.0)
        self.step_means.update_state({"loss": loss * num_replicas, "loss/supervised": supervised * num_replicas,
                                      "loss/consistency": consistency * num_replicas,
                                      "accuracy": accuracy * num_replicas})
        return self.logs({"step_means": self.step_means, "monitor/consistency_weight": weight})


class EpochTracker(keras.callbacks.Callback):
    """Sets the trainer's epoch (`set_epoch`: the epoch and consistency weight variables) at the start of
    every epoch, and Adam's beta1 if scheduled."""

    def __init__(self, beta1_schedule: Optional[Callable] = None):
        super().__init__()
        self.beta1_schedule = beta1_schedule

    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_epoch(epoch)
        if self.beta1_schedule is not None and isinstance(self.model.optimizer.beta_1, keras.Variable):
            self.model.optimizer.beta_1.assign(float(self.beta1_schedule(epoch)))
