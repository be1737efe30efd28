"""The base of every trainer in the package: a `keras.Model` that wraps a plain classifier.

The trainer is scaffolding: `call` delegates to the classifier, and the classifier (not the trainer) is
what gets saved, exported and reused. `ClassifierTrainer.train_step` is the one training step of the
package (the pattern of tensorflow/models `official/core/base_task.py` and keras-cv's
`ContrastiveTrainer`): it opens the tape, adds the classifier's regularization (weight decay), scales
the loss for float16 (`optimizer.scale_loss`: a `keras.optimizers.LossScaleOptimizer` under
`mixed_float16`, the identity otherwise), applies the gradients, advances the trainer's step counter
and logs. A subclass only says what its loss is (`compute_step_loss`).

Micro-batches (`compile(micro_batches=k)`, `config.train.micro_batches`): the step splits each replica's
batch into k consecutive slices (the streams interleave labeled and unlabeled examples, so each slice
holds both; per-example state, as the temporal ensemble's, is recorded in batch order as without
slices) and differentiates them one after the other, each slice's loss normalized by
the whole batch's counts (`batch_totals`), so the summed gradient is the whole batch's and one update is
applied: the same training at the activation memory of one slice (batch statistics, as batch
normalization's, are per slice). ResNet-50 at 224x224 trained at batch 64 peaked at 7 GB resident on CPU.

Distribution: Keras runs `train_step` once per replica and SUM-reduces the gradients, so each replica
differentiates its share of the *global* loss: sums over its examples divided by global counts
(`global_sum`), never a per-replica mean. The logs are MEAN-reduced over replicas, so
the base multiplies each replica's share by the number of replicas.

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
    """Wraps `classifier` (images -> class probabilities); subclasses write `compute_step_loss`.

    `TRAIN_LOGS` names what `compute_step_loss` logs besides `loss`: `fit`'s history holds their epoch
    means. Validation (`test_step`) reports the classifier's cross-entropy and accuracy.
    """

    TRAIN_LOGS: tuple = ("accuracy",)

    def __init__(self, classifier: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.micro_batches = 1
        # Training steps taken (also those a float16 loss scale skips): the state of the trainer's schedules.
        # A weight, so checkpoints carry it.
        self.train_steps = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False,
                                           name="train_steps", aggregation="only_first_replica")
        # The step's logs, epoch means: one tracker for all (see StepMeans).
        self.train_means = StepMeans(("loss",) + tuple(self.TRAIN_LOGS), name="train_means")
        # Named apart from the training logs: Keras' `get_metrics_result` merges metrics by name.
        self.val_loss_tracker = keras.metrics.Mean(name="evaluation_loss")
        self.val_accuracy_tracker = keras.metrics.Mean(name="evaluation_accuracy")

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def build(self, input_shape=None):
        """Builds the classifier (a functional one already is): the trainer has no weights of its own
        that depend on the input."""
        if not self.classifier.built:
            self.classifier.build(input_shape)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, micro_batches: int = 1, **kwargs):
        """Keras' `compile`, refusing `loss` / `metrics` (and their weighted forms): the trainer computes
        its own (a different loss goes to the constructor, e.g. `CrossEntropyTrainer(loss=...)`).

        `micro_batches`: slices each replica's batch is differentiated in (see the module docstring)."""
        if isinstance(micro_batches, bool) or not isinstance(micro_batches, int) or micro_batches < 1:
            raise ValueError(f"micro_batches must be an integer >= 1, got {micro_batches!r}")
        self.micro_batches = micro_batches
        given = {"loss": loss, "metrics": metrics, "loss_weights": kwargs.get("loss_weights"),
                 "weighted_metrics": kwargs.get("weighted_metrics")}
        unused = [name for name, value in given.items() if value is not None]
        if unused:
            raise ValueError(
                f"{type(self).__name__}.compile does not use {', '.join(unused)}: the trainer computes its "
                f"own loss and logs ({', '.join(('loss',) + tuple(self.TRAIN_LOGS))}); pass a different "
                "loss to the trainer's constructor instead")
        super().compile(optimizer=optimizer, **kwargs)
        if not self.built:  # `fit` runs the classifier, never the trainer: build it so Keras saves it
            self.build(getattr(self.classifier, "input_shape", None))

    @property
    def metrics(self):
        # Keras 3 already lists metrics held as attributes in `super().metrics`; add ours only once.
        metrics = super().metrics
        return metrics + [metric for metric in (self.train_means, self.val_loss_tracker, self.val_accuracy_tracker)
                          if not any(metric is known for known in metrics)]

    # The one hook a trainer implements (and `batch_totals`, for micro-batches).
    def compute_step_loss(self, data, totals=None) -> tuple:
        """Returns `(loss, logs)` for one training batch, computed inside the gradient tape.

        `loss` is this replica's share of the global loss, without regularization (the base adds the
        classifier's losses). `logs` maps each name of `TRAIN_LOGS` to this replica's share of its
        global value (sums over the replica's examples divided by global counts): `fit` logs its epoch
        mean. Any other entry (e.g. a schedule's value, the same on every replica) is logged as it is
        at the epoch's last step. `totals`: the global counts to divide by (`batch_totals` of the whole
        batch when `data` is one of its micro-batches; None: those of `data`).
        """
        raise NotImplementedError

    def batch_totals(self, data):
        """The global counts `compute_step_loss` divides its sums by, as one float32 vector."""
        raise NotImplementedError(f"{type(self).__name__} does not say what its loss divides by "
                                  "(batch_totals), so it cannot train in micro-batches")

    def train_step(self, data):
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.classifier.trainable_variables
        slices = self.micro_batches
        totals, size = None, None
        if slices > 1:
            totals = self.batch_totals(data)
            size = tf.shape(tf.nest.flatten(data)[0])[0]
            tf.debugging.assert_greater_equal(size, slices, message=(
                f"compile(micro_batches={slices}) (train.micro_batches) needs at least {slices} examples "
                "in every replica's batch"))
        gradients, loss, logs, done = None, 0.0, {}, []
        for part in range(slices):
            with tf.control_dependencies(done):  # one slice after the other: one slice's activations at a time
                piece = data if slices == 1 else tf.nest.map_structure(
                    lambda t, i=part: tf.identity(t[size * i // slices:size * (i + 1) // slices]), data)
            with tf.GradientTape() as tape:
                piece_loss, piece_logs = (self.compute_step_loss(piece) if totals is None
                                          else self.compute_step_loss(piece, totals))
                if self.classifier.losses:  # weight decay: each replica (and slice) carries its share
                    piece_loss += ops.sum(self.classifier.losses) / (num_replicas * slices)
                scaled_loss = self.optimizer.scale_loss(piece_loss)
            piece_gradients = tape.gradient(scaled_loss, variables)
            gradients = piece_gradients if gradients is None else [
                b if a is None else a if b is None else a + b for a, b in zip(gradients, piece_gradients)]
            done = [g for g in gradients if g is not None]
            loss += piece_loss
            for name, value in piece_logs.items():  # shares add up; other entries: the last slice's
                logs[name] = logs[name] + value if name in self.train_means.names and name in logs else value
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.train_steps.assign_add(1)
        logs = {"loss": loss, **logs}
        self.train_means.update_state({name: logs[name] * num_replicas for name in self.train_means.names})
        return self.logs(self.train_means, {name: value for name, value in logs.items()
                                            if name not in self.train_means.names})

    def test_step(self, data):
        """Evaluates the classifier on `(images, labels)` batches: cross-entropy and accuracy."""
        images, labels = data[0], data[1]
        predictions = self.classifier(images, training=False)
        self.val_loss_tracker.update_state(keras.losses.sparse_categorical_crossentropy(labels, predictions))
        self.val_accuracy_tracker.update_state(correct_predictions(labels, predictions))
        return self.logs({"loss": self.val_loss_tracker.result(), "accuracy": self.val_accuracy_tracker.result()})

    def logs(self, *parts) -> dict:
        """`fit`'s logs from dicts of values or `keras.metrics.Metric`s (a `StepMeans` gives a dict).

        Rank-1 under `MultiWorkerMirroredStrategy`, whose MEAN reduction of the logs needs an axis
        (keras-team/keras#20585); scalars otherwise.
        """
        results = {}
        for part in parts:
            value = part.result() if isinstance(part, keras.metrics.Metric) else part
            results.update(value)
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            results = {name: ops.reshape(value, (1,)) for name, value in results.items()}
        return results

    # Private Keras API, kept here only (tests/training/test_trainer.py fails if Keras stops calling it;
    # setup.cfg bounds the Keras version): under `MultiWorkerMirroredStrategy`, `fit` fails in this hook
    # (keras-team/keras#20585: it pulls a batch outside `strategy.run` and MEAN-reduces PerReplica
    # values). The classifier is built already, so only the optimizer needs building; nothing public
    # replaces the hook.
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

    def batch_totals(self, data):
        return global_sum(ops.cast(ops.shape(data[1])[:1], "float32"))  # [global batch size]

    def compute_step_loss(self, data, totals=None):
        images, labels = data[0], data[1]
        global_batch = (self.batch_totals(data) if totals is None else totals)[0]
        predictions = self.classifier(images, training=True)
        loss = ops.sum(self.per_example_loss(labels, predictions)) / global_batch
        accuracy = ops.sum(correct_predictions(labels, predictions)) / global_batch
        return loss, {"accuracy": accuracy}


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
