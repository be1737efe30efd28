"""The trainer base: one train_step (regularization, apply, logs), compile and metrics as Keras expects,
the schedules' state in variables, and the one private Keras hook it keeps."""

import configparser
import inspect
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tf_twostage.training import schedules
from tf_twostage.training.optimizers import RampedAdam
from tf_twostage.training.trainer import ClassifierTrainer, CrossEntropyTrainer, correct_predictions, global_sum

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _classifier(l2=0.0):
    keras.utils.set_random_seed(0)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu", kernel_regularizer=regularizer),
                             keras.layers.Dense(3, kernel_regularizer=regularizer),
                             keras.layers.Softmax(dtype="float32")])


def _data(n=24):
    rng = np.random.RandomState(0)
    return rng.randn(n, 5).astype(np.float32), (np.arange(n) % 3).astype(np.int32)


def _dataset(batch=8):
    images, labels = _data()
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch)


class SquaredError(ClassifierTrainer):
    """A trainer written the way the package's are: only the loss."""

    TRAIN_LOGS = ("accuracy",)

    def compute_step_loss(self, data):
        images, labels = data
        predictions = self.classifier(images, training=True)
        global_batch = global_sum(ops.cast(ops.shape(labels)[0], "float32"))
        loss = ops.sum(ops.square(predictions - ops.one_hot(labels, 3))) / global_batch
        return loss, {"accuracy": ops.sum(correct_predictions(labels, predictions)) / global_batch}


def test_micro_batches_apply_the_whole_batch_update_with_its_weight_decay():
    images, labels = _data()
    runs = []
    for slices in (1, 3):
        trainer = CrossEntropyTrainer(_classifier(l2=0.01))
        trainer.compile(optimizer=keras.optimizers.SGD(0.5), micro_batches=slices)
        history = trainer.fit(_dataset(batch=8), epochs=2, verbose=0).history
        runs.append((trainer.classifier.get_weights(), history))
    (whole, whole_history), (sliced, sliced_history) = runs
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(sliced_history[key], whole_history[key], rtol=1e-5, atol=1e-6)
    for got, want in zip(sliced, whole):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_micro_batches_need_a_trainer_that_says_what_its_loss_divides_by_and_enough_examples():
    trainer = SquaredError(_classifier())
    trainer.compile(optimizer="sgd", micro_batches=2)
    with pytest.raises(NotImplementedError, match="SquaredError does not say what its loss divides by"):
        trainer.fit(_dataset(), epochs=1, verbose=0)
    trainer = CrossEntropyTrainer(_classifier())
    trainer.compile(optimizer="sgd", micro_batches=4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"micro_batches=4\) \(train.micro_batches\) needs at least 4"):
        trainer.fit(_dataset(batch=3), epochs=1, verbose=0)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="micro_batches must be an integer >= 1"):
            CrossEntropyTrainer(_classifier()).compile(optimizer="sgd", micro_batches=bad)


@pytest.mark.parametrize("argument", [{"loss": "mse"}, {"metrics": ["accuracy"]}, {"weighted_metrics": ["mae"]}])
def test_compile_refuses_a_loss_or_metrics_it_would_not_use(argument):
    trainer = CrossEntropyTrainer(_classifier())
    with pytest.raises(ValueError, match=f"CrossEntropyTrainer.compile does not use {next(iter(argument))}"):
        trainer.compile(optimizer="sgd", **argument)


def test_metrics_extend_the_keras_metrics_once_each_and_are_reset():
    trainer = CrossEntropyTrainer(_classifier())
    trainer.compile(optimizer="sgd")
    keras_metrics = keras.Model.metrics.fget(trainer)
    assert all(any(metric is ours for ours in trainer.metrics) for metric in keras_metrics)
    for ours in (trainer.train_means, trainer.val_loss_tracker, trainer.val_accuracy_tracker):
        assert sum(metric is ours for metric in trainer.metrics) == 1
    trainer.fit(_dataset(), epochs=1, verbose=0)
    assert float(trainer.train_means.count.numpy()) == 3
    trainer.reset_metrics()
    assert float(trainer.train_means.count.numpy()) == 0


def test_a_subclass_writes_only_its_loss_and_validates_with_the_base_trackers():
    trainer = SquaredError(_classifier())
    trainer.compile(optimizer=keras.optimizers.SGD(0.5))
    history = trainer.fit(_dataset(), validation_data=_dataset(), epochs=2, verbose=0).history
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history["loss"][1] < history["loss"][0]
    assert int(trainer.train_steps.numpy()) == 6
    images, labels = _data()
    probabilities = trainer.classifier.predict(images, verbose=0)
    expected = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
    result = trainer.evaluate(_dataset(), verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(float(np.mean(expected)), rel=1e-5)
    assert result["accuracy"] == pytest.approx(float(np.mean(probabilities.argmax(1) == labels)))


def test_the_base_step_adds_weight_decay_once_and_applies_the_gradient():
    images, labels = _data(8)
    trainer = CrossEntropyTrainer(_classifier(l2=0.01))
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    before = [np.array(w) for w in trainer.classifier.trainable_weights]
    reference = _classifier(l2=0.01)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, reference(images))) \
            + tf.add_n(reference.losses)
    gradients = tape.gradient(loss, reference.trainable_weights)
    logs = trainer.train_step((tf.constant(images), tf.constant(labels)))
    for weight, start, gradient in zip(trainer.classifier.trainable_weights, before, gradients):
        np.testing.assert_allclose(weight.numpy(), start - 0.1 * gradient.numpy(), rtol=1e-5, atol=1e-7)
    assert float(logs["loss"]) == pytest.approx(float(loss), rel=1e-5)  # the objective, decay included


def test_ramped_adam_sets_beta1_from_its_step_count_without_a_callback():
    optimizer = RampedAdam(0.01, steps_per_epoch=3, total_epochs=4, rampup_length=1, rampdown_length=2)
    trainer = CrossEntropyTrainer(_classifier())
    trainer.compile(optimizer=optimizer)
    trainer.fit(_dataset().repeat(), epochs=3, steps_per_epoch=3, verbose=0)
    # The last update ran at iteration 8, epoch 2 (the first of the ramp-down).
    assert float(optimizer.beta_1.numpy()) == pytest.approx(float(schedules.adam_beta1(2.0, 4, 2)))
    assert float(optimizer.beta_1.numpy()) < 0.9
    assert int(optimizer.iterations.numpy()) == 9


def test_the_private_keras_hook_is_still_called_by_fit_under_a_strategy(mirrored_strategy, monkeypatch):
    """`ClassifierTrainer._maybe_symbolic_build` overrides private Keras API (keras-team/keras#20585, the
    MultiWorkerMirroredStrategy fix). If Keras renames or stops calling it, the fix silently stops
    working: this test fails instead."""
    parameters = inspect.signature(keras.Model._maybe_symbolic_build).parameters
    assert {"iterator", "data_batch"} <= set(parameters)
    calls = []
    original = ClassifierTrainer._maybe_symbolic_build

    def spy(self, iterator=None, data_batch=None):
        calls.append(type(self).__name__)
        return original(self, iterator=iterator, data_batch=data_batch)

    monkeypatch.setattr(ClassifierTrainer, "_maybe_symbolic_build", spy)
    with mirrored_strategy.scope():
        trainer = CrossEntropyTrainer(_classifier())
        trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    trainer.fit(_dataset(), epochs=1, verbose=0)
    assert calls and trainer.optimizer.built


def test_the_installed_keras_is_within_the_tested_range_of_setup_cfg():
    """The private hook above is tested on the versions setup.cfg allows; a newer Keras needs a rerun."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"))
    requirement = next(line.strip() for line in parser["options"]["install_requires"].splitlines()
                       if line.strip().startswith("keras>"))
    lower, upper = re.fullmatch(r"keras>=([0-9.]+),<([0-9.]+)", requirement).groups()
    version = _version(keras.__version__)
    assert _version(lower) <= version < _version(upper), f"keras {keras.__version__} is outside {requirement}"


def _version(text):
    return tuple(int(part) for part in text.split(".")[:3])
