"""The base of every trainer in the package: a `keras.Model` that wraps a plain classifier.

The trainer is scaffolding: `call` delegates to the classifier, and the classifier (not the trainer) is
what gets saved, exported and reused. The base also carries what `fit` needs to run under
`MultiWorkerMirroredStrategy` on this Keras version (docs/traps.md, keras-team/keras#20585):

* `_maybe_symbolic_build` (private Keras API, pinned by the tests) only builds the optimizer when the
  classifier is already built, instead of pulling a batch outside `strategy.run`;
* logs are returned as rank-1 tensors under multi-worker strategies, whose MEAN reduction needs an axis.

`CrossEntropyTrainer` is the supervised member (Stage-1 pre-training and the `ce` baseline).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


def global_sum(value):
    """Sum of `value` over all replicas (itself without a strategy)."""
    return tf.distribute.get_replica_context().all_reduce("sum", value)


class ClassifierTrainer(keras.Model):
    """Wraps `classifier` (images -> class probabilities); subclasses write `train_step`."""

    def __init__(self, classifier: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def test_step(self, data):
        """Evaluates the classifier on `(images, labels)` batches: cross-entropy and accuracy."""
        images, labels = data[0], data[1]
        predictions = self.classifier(images, training=False)
        self.cross_entropy_tracker.update_state(keras.losses.sparse_categorical_crossentropy(labels, predictions))
        self.accuracy_tracker.update_state(correct_predictions(labels, predictions))
        return self.logs({"loss": self.cross_entropy_tracker, "accuracy": self.accuracy_tracker})

    def logs(self, trackers: dict) -> dict:
        """`fit`'s logs: each tracker's result (a `keras.metrics.Metric`; a `StepMeans` gives several) or
        the value given."""
        results = {}
        for name, tracker in trackers.items():
            value = tracker.result() if isinstance(tracker, keras.metrics.Metric) else tracker
            results.update(value if isinstance(value, dict) else {name: value})
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            results = {name: ops.reshape(value, (1,)) for name, value in results.items()}
        return results

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self.classifier.built and self._distribute_strategy is not None:
            with self.distribute_strategy.scope():
                if not self.optimizer.built:
                    self.optimizer.build(self.classifier.trainable_variables)
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


class CrossEntropyTrainer(ClassifierTrainer):
    """Cross-entropy on `(images, labels)` batches, normalized by the global batch size.

    `loss`: another `keras.losses.Loss` on (sparse labels, probabilities), e.g. a loss-correction or
    bootstrapping baseline; its per-example values (`loss.call`) replace the cross-entropy.
    """

    def __init__(self, classifier: keras.Model, loss=None, **kwargs):
        super().__init__(classifier, **kwargs)
        self.per_example_loss = loss.call if loss is not None else keras.losses.sparse_categorical_crossentropy
        self.cross_entropy_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    @property
    def metrics(self):
        return [self.cross_entropy_tracker, self.accuracy_tracker]

    def train_step(self, data):
        images, labels = data[0], data[1]
        global_batch = global_sum(ops.cast(ops.shape(labels)[0], "float32"))
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            predictions = self.classifier(images, training=True)
            cross_entropy = self.per_example_loss(labels, predictions)
            loss = ops.sum(cross_entropy) / global_batch
            if self.classifier.losses:  # weight decay: each replica carries 1/R of it
                loss += ops.sum(self.classifier.losses) / num_replicas
        variables = self.classifier.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.cross_entropy_tracker.update_state(cross_entropy)
        self.accuracy_tracker.update_state(correct_predictions(labels, predictions))
        return self.logs({"loss": self.cross_entropy_tracker, "accuracy": self.accuracy_tracker})


class StepMeans(keras.metrics.Metric):
    """Running means of several scalars, one value each per step, in one pair of variables.

    Equal to one `keras.metrics.Mean` per scalar (`result()` is a dict of the means), at one update per
    step instead of one per scalar: on a small model the trackers' ops were a measurable share of a
    step (benchmarks/speed.py). Under a strategy each replica's values are its own, as with `Mean`.
    """

    def __init__(self, names, name="step_means"):
        super().__init__(name=name)
        self.names = tuple(names)
        self.total = self.add_variable(shape=(len(self.names),), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, values: dict):
        missing = set(self.names) - set(values)
        if missing:
            raise ValueError(f"StepMeans.update_state needs {', '.join(sorted(missing))} (tracks {self.names})")
        self.total.assign_add(ops.stack([ops.cast(values[name], self.dtype) for name in self.names]))
        self.count.assign_add(ops.cast(1, self.dtype))

    def result(self):
        means = ops.divide_no_nan(self.total, self.count)
        return {name: means[i] for i, name in enumerate(self.names)}

    def reset_state(self):
        self.total.assign(ops.zeros_like(self.total))
        self.count.assign(ops.zeros_like(self.count))

    def get_config(self):
        return {"names": list(self.names), "name": self.name}


def correct_predictions(labels, predictions):
    """1.0 where the argmax of `predictions` equals the label, else 0.0."""
    return ops.cast(ops.equal(ops.argmax(predictions, axis=-1), ops.cast(labels, "int64")), "float32")
