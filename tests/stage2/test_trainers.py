"""Pi model and temporal ensembling: the losses, the ensemble buffer, and equality under MirroredStrategy."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_twostage.training.trainer import StepMeans
from tf_twostage.data.augment import build_augmenter
from tf_twostage.data.pipelines import semi_supervised_stream
from tf_twostage.data.preprocess import Preprocessor
from tf_twostage.models import build_mlp
from tf_twostage.stage2.pi_model import PiModel
from tf_twostage.stage2.temporal_ensembling import EnsembleUpdate, TemporalEnsembling
from tf_twostage.training.schedules import PerEpoch, consistency_weight
from tests.conftest import make_split

SHAPE, CLASSES = (6, 6, 1), 4
STEPS_PER_EPOCH = 4  # _fixed_batches


def _classifier(noise=0.0, dropout=0.0):
    keras.utils.set_random_seed(0)
    return build_mlp(SHAPE, CLASSES, hidden_units=(16,), dropout=dropout, input_noise=noise)


def _fixed_batches(views=2):
    """Materialized Stage-2 batches, so every run sees exactly the same data in the same order."""
    return tf.data.Dataset.from_tensor_slices(_materialized_batches(views))


@functools.lru_cache(maxsize=None)
def _materialized_batches(views, num_batches=4, batch_size=16):
    split = make_split(48, CLASSES, shape=SHAPE)
    augment = build_augmenter(SHAPE, translate_px=1, seed=0)
    stream = semi_supervised_stream(split, np.arange(0, 48, 2), split.labels, Preprocessor(), batch_size,
                                    augmenter=augment, num_views=views)
    batches = list(stream.take(num_batches).as_numpy_iterator())
    return {key: np.stack([b[key] for b in batches]) for key in batches[0]}


def _make(algorithm, classifier):
    if algorithm == "pi":
        return PiModel(classifier)
    if algorithm == "pi_stopgrad":
        return PiModel(classifier, stop_gradient_targets=True)
    return TemporalEnsembling(classifier, num_examples=48, num_classes=CLASSES)


def _train(algorithm, strategy, epochs=2, weights=None, micro_batches=1):
    with strategy.scope():
        classifier = _classifier()
        if weights is not None:
            classifier.set_weights(weights)
        trainer = _make(algorithm, classifier)
        trainer.compile(keras.optimizers.SGD(0.5),
                        consistency_weight=PerEpoch(lambda epoch: 3.0 * (epoch + 1.0), STEPS_PER_EPOCH),
                        micro_batches=micro_batches)
    callbacks = [EnsembleUpdate()] if algorithm == "temporal_ensembling" else []
    history = trainer.fit(_fixed_batches(views=1 if algorithm == "temporal_ensembling" else 2), epochs=epochs,
                          verbose=0, callbacks=callbacks)
    return trainer, history.history


@pytest.mark.parametrize("algorithm", ["pi", "pi_stopgrad", "temporal_ensembling"])
def test_mirrored_strategy_on_two_replicas_matches_a_run_without_strategy(algorithm, mirrored_strategy):
    initial = _classifier().get_weights()
    single, single_history = _train(algorithm, tf.distribute.get_strategy(), weights=initial)
    mirrored = mirrored_strategy
    assert mirrored.num_replicas_in_sync == 2
    distributed, distributed_history = _train(algorithm, mirrored, weights=initial)
    for key in ("loss", "loss/supervised", "loss/consistency"):
        np.testing.assert_allclose(distributed_history[key], single_history[key], rtol=1e-4, atol=1e-6)
    assert single_history["loss/consistency"][1] > 0  # the consistency term really took part
    for got, want in zip(distributed.classifier.get_weights(), single.classifier.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    if algorithm == "temporal_ensembling":
        copies = distributed.ensemble.value.values if hasattr(distributed.ensemble.value, "values") else None
        if copies is not None:
            for copy in copies:
                np.testing.assert_array_equal(copy.numpy(), copies[0].numpy())
        np.testing.assert_allclose(np.asarray(distributed.ensemble), np.asarray(single.ensemble), atol=1e-5)


@pytest.mark.parametrize("algorithm", ["pi", "temporal_ensembling"])
def test_micro_batches_train_exactly_like_the_whole_batch(algorithm):
    # 16 examples in 3 slices (5, 5, 6), with unequal labeled counts: each slice's sums are divided by
    # the whole batch's counts, so the summed gradient, the update and the logs are the whole batch's.
    initial = _classifier().get_weights()
    whole, whole_history = _train(algorithm, tf.distribute.get_strategy(), weights=initial)
    sliced, sliced_history = _train(algorithm, tf.distribute.get_strategy(), weights=initial, micro_batches=3)
    for key in ("loss", "loss/supervised", "loss/consistency", "accuracy/labeled_augmented"):
        np.testing.assert_allclose(sliced_history[key], whole_history[key], rtol=1e-5, atol=1e-6)
    assert whole_history["loss/consistency"][1] > 0
    for got, want in zip(sliced.classifier.get_weights(), whole.classifier.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if algorithm == "temporal_ensembling":
        np.testing.assert_allclose(np.asarray(sliced.ensemble), np.asarray(whole.ensemble), atol=1e-6)


def test_temporal_ensemble_accumulates_predictions_with_bias_correction():
    trainer, _ = _train("temporal_ensembling", tf.distribute.get_strategy(), epochs=1)
    assert float(trainer.ensemble_updates) == 1.0
    ensemble = np.asarray(trainer.ensemble)
    seen = np.abs(ensemble).sum(axis=1) > 0
    np.testing.assert_allclose(ensemble[seen].sum(axis=1), 0.4, rtol=1e-5)  # (1 - a) x a softmax row
    batch = next(iter(_fixed_batches(views=1)))
    predictions = trainer.classifier(batch["image"], training=False)
    targets = np.asarray(trainer.consistency_targets(batch, predictions))
    np.testing.assert_allclose(targets, ensemble[batch["index"].numpy()] / 0.4, rtol=1e-5)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-5)


def test_consistency_weight_is_zero_in_the_first_epoch_and_logged():
    trainer = PiModel(_classifier(noise=0.2, dropout=0.3))
    trainer.compile(keras.optimizers.Adam(1e-3),
                    consistency_weight=PerEpoch(lambda e: consistency_weight(e, 10.0, 2), STEPS_PER_EPOCH))
    history = trainer.fit(_fixed_batches(), epochs=3, verbose=0).history  # no callback drives the weight
    assert history["monitor/consistency_weight"][0] == 0.0
    assert history["monitor/consistency_weight"][2] == pytest.approx(10.0)
    assert history["loss/consistency"][0] > 0  # two noisy passes disagree


def test_consistency_weight_follows_the_step_counter_across_fits_and_checkpoints(tmp_path):
    """The weight is a function of `train_steps`, a trainer weight: a second `fit` (as after a resume)
    and a trainer restored from saved weights continue the schedule instead of keeping an old value."""
    trainer = PiModel(_classifier())
    trainer.compile(keras.optimizers.SGD(0.1), consistency_weight=PerEpoch(lambda epoch: 2.0 * epoch, STEPS_PER_EPOCH))
    assert trainer.fit(_fixed_batches(), epochs=1, verbose=0).history["monitor/consistency_weight"] == [0.0]
    assert trainer.fit(_fixed_batches(), epochs=1, verbose=0).history["monitor/consistency_weight"] == [2.0]
    assert int(trainer.train_steps.numpy()) == 2 * STEPS_PER_EPOCH
    assert any(weight is trainer.train_steps for weight in trainer.non_trainable_weights)
    trainer.save_weights(str(tmp_path / "trainer.weights.h5"))
    restored = PiModel(_classifier())
    restored.compile(keras.optimizers.SGD(0.1), consistency_weight=PerEpoch(lambda epoch: 2.0 * epoch, STEPS_PER_EPOCH))
    restored.load_weights(str(tmp_path / "trainer.weights.h5"))
    assert float(restored.current_consistency_weight()) == 4.0  # epoch 2 of the schedule
    assert restored.fit(_fixed_batches(), epochs=1, verbose=0).history["monitor/consistency_weight"] == [4.0]


def test_a_fixed_consistency_weight_is_a_number():
    trainer = PiModel(_classifier())
    trainer.compile(keras.optimizers.SGD(0.1), consistency_weight=3.5)
    assert trainer.fit(_fixed_batches(), epochs=1, verbose=0).history["monitor/consistency_weight"] == [3.5]


def test_pi_model_refuses_a_batch_without_a_second_view():
    trainer = PiModel(_classifier())
    trainer.compile(keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="image_2"):
        trainer.fit(_fixed_batches(views=1), epochs=1, verbose=0)


def test_step_means_equal_one_keras_mean_per_scalar_and_reset():
    means = StepMeans(("a", "b"))
    reference = {name: keras.metrics.Mean() for name in ("a", "b")}
    for a, b in ((1.0, 10.0), (2.0, -4.0), (6.0, 0.5)):
        means.update_state({"a": a, "b": b})
        reference["a"].update_state(a)
        reference["b"].update_state(b)
    for name, result in means.result().items():
        assert float(result) == pytest.approx(float(reference[name].result()))
    means.reset_state()
    assert {name: float(value) for name, value in means.result().items()} == {"a": 0.0, "b": 0.0}
    with pytest.raises(ValueError, match="needs b"):
        means.update_state({"a": 1.0})


def test_pi_stop_gradient_blocks_the_gradient_through_the_second_pass():
    """One real `train_step` each way equals SGD on the Pi loss written out here, with the second pass
    a constant (stop_gradient_targets=True) or differentiated (False), and the two updates differ."""
    batch = {key: tf.constant(value[0]) for key, value in _materialized_batches(2).items()}
    labeled = batch["labeled"]
    updates = {}
    for stop in (False, True):
        reference = _classifier()
        with tf.GradientTape() as tape:
            first, second = reference(batch["image"]), reference(batch["image_2"])
            if stop:
                second = tf.stop_gradient(second)
            cross_entropy = keras.losses.sparse_categorical_crossentropy(batch["label"], first)
            loss = (tf.reduce_sum(cross_entropy * labeled) / tf.reduce_sum(labeled)
                    + 5.0 * tf.reduce_mean(tf.square(first - second)))
        expected = [-g.numpy() for g in tape.gradient(loss, reference.trainable_weights)]
        trainer = PiModel(_classifier(), stop_gradient_targets=stop)
        trainer.compile(keras.optimizers.SGD(1.0), consistency_weight=5.0)
        before = [np.array(w) for w in trainer.classifier.trainable_weights]
        trainer.train_step(batch)
        updates[stop] = [w.numpy() - b for w, b in zip(trainer.classifier.trainable_weights, before)]
        for got, want in zip(updates[stop], expected):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in zip(updates[False], updates[True])) > 1e-4


def test_the_trainer_is_scaffolding_the_classifier_is_what_predicts():
    classifier = _classifier()
    trainer = PiModel(classifier)
    images = np.zeros((2, *SHAPE), np.float32)
    np.testing.assert_allclose(trainer(images), classifier(images))
    with pytest.raises(ValueError, match="ensemble_momentum"):
        TemporalEnsembling(classifier, 10, CLASSES, momentum=1.0)


@pytest.mark.parametrize("algorithm", ["pi", "temporal_ensembling"])
def test_weight_ema_ends_stage2_with_each_weights_moving_average(algorithm):
    from tf_twostage.config import base_config
    from tf_twostage.runs.stage2 import stage2_optimizer

    config = base_config()
    config.stage2.epochs, config.stage2.rampup_epochs, config.stage2.rampdown_epochs = 3, 1, 1
    finals = {}
    for momentum in (0.0, 0.5):
        config.stage2.weight_ema = momentum
        classifier = _classifier()
        trainer = _make(algorithm, classifier)
        optimizer = stage2_optimizer(config, STEPS_PER_EPOCH)
        trainer.compile(optimizer, consistency_weight=PerEpoch(lambda epoch: 1.0 + epoch, STEPS_PER_EPOCH))
        callbacks = [EnsembleUpdate()] if algorithm == "temporal_ensembling" else []
        trainer.fit(_fixed_batches(views=1 if algorithm == "temporal_ensembling" else 2), epochs=3, verbose=0,
                    callbacks=callbacks)
        finals[momentum] = [np.array(weight) for weight in classifier.get_weights()]
        assert optimizer.use_ema == (momentum > 0)
        if momentum:
            # Keras writes the averages into the trainer's weights when fit ends: each classifier variable
            # must get its own average (the optimizer was built on the classifier's variables, in order).
            averages = optimizer._model_variables_moving_average
            for variable in classifier.trainable_variables:
                np.testing.assert_array_equal(variable.numpy(),
                                              averages[optimizer._get_variable_index(variable)].numpy())
    assert any(not np.allclose(a, b) for a, b in zip(finals[0.0], finals[0.5]))


def test_weight_ema_averages_travel_in_the_epoch_checkpoint(tmp_path):
    from tf_twostage.config import base_config
    from tf_twostage.runs.stage2 import stage2_optimizer
    from tf_twostage.training.resume import EpochCheckpoint, restore_checkpoint

    config = base_config()
    config.stage2.epochs, config.stage2.rampup_epochs, config.stage2.rampdown_epochs = 3, 1, 1
    config.stage2.weight_ema = 0.5
    trainers = []
    for _ in range(2):
        classifier = _classifier()
        trainer = _make("pi", classifier)
        trainer.compile(stage2_optimizer(config, STEPS_PER_EPOCH),
                        consistency_weight=PerEpoch(lambda epoch: 1.0 + epoch, STEPS_PER_EPOCH))
        trainers.append(trainer)
    trainers[0].fit(_fixed_batches(), epochs=1, verbose=0,
                    callbacks=[EpochCheckpoint(str(tmp_path))])
    restore_checkpoint(str(tmp_path), trainers[1])
    saved, restored = (trainer.optimizer._model_variables_moving_average for trainer in trainers)
    assert len(saved) == len(restored) > 0
    for a, b in zip(saved, restored):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
