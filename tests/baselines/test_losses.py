"""Forward / backward correction, bootstrapping and generalized cross-entropy: hand-computed values, fit,
MirroredStrategy."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_twostage.baselines.losses import (
    BackwardCorrectedCrossEntropy,
    ForwardCorrectedCrossEntropy,
    GeneralizedCrossEntropy,
    HardBootstrapping,
    SoftBootstrapping,
)

T2 = np.array([[0.8, 0.2], [0.3, 0.7]])  # T^{-1} = [[1.4, -0.4], [-0.6, 1.6]]
P2 = np.array([[0.9, 0.1], [0.9, 0.1]], dtype=np.float32)
Y2 = np.array([1, 0], dtype=np.int64)

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25], [0.05, 0.05, 0.9]], dtype=np.float32)
LABELS = np.array([0, 2, 0, 1], dtype=np.int64)


def _per_example(loss, y_true, y_pred):
    return loss.call(tf.constant(y_true), tf.constant(y_pred)).numpy()


def _sparse_ce(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(tf.constant(y_true), tf.constant(y_pred)).numpy()


def _all_losses(num_classes=3):
    eye = np.eye(num_classes)
    return [ForwardCorrectedCrossEntropy(eye), BackwardCorrectedCrossEntropy(eye), SoftBootstrapping(),
            HardBootstrapping(), GeneralizedCrossEntropy()]


# --- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_class", [ForwardCorrectedCrossEntropy, BackwardCorrectedCrossEntropy])
def test_identity_transition_equals_sparse_cross_entropy_eagerly_and_in_tf_function(loss_class):
    loss = loss_class(np.eye(3))
    want = _sparse_ce(LABELS, PROBS)
    np.testing.assert_allclose(_per_example(loss, LABELS, PROBS), want, rtol=1e-6)
    np.testing.assert_allclose(loss(LABELS, PROBS).numpy(), want.mean(), rtol=1e-6)
    graph = tf.function(lambda y, p: loss(y, p))
    np.testing.assert_allclose(graph(tf.constant(LABELS), tf.constant(PROBS)).numpy(), want.mean(), rtol=1e-6)


def test_forward_correction_on_a_hand_computed_two_class_example():
    # p @ T = [0.9 * 0.8 + 0.1 * 0.3, 0.9 * 0.2 + 0.1 * 0.7] = [0.75, 0.25]
    got = _per_example(ForwardCorrectedCrossEntropy(T2), Y2, P2)
    np.testing.assert_allclose(got, [-math.log(0.25), -math.log(0.75)], rtol=1e-6)


def test_backward_correction_on_a_hand_computed_two_class_example():
    l0, l1 = -math.log(0.9), -math.log(0.1)
    got = _per_example(BackwardCorrectedCrossEntropy(T2), Y2, P2)
    np.testing.assert_allclose(got, [-0.6 * l0 + 1.6 * l1, 1.4 * l0 - 0.4 * l1], rtol=1e-5)
    assert got[1] < 0  # unbiased, not non-negative


def test_labels_shaped_b_by_1_are_accepted():
    loss = ForwardCorrectedCrossEntropy(T2)
    np.testing.assert_allclose(_per_example(loss, Y2[:, None], P2), _per_example(loss, Y2, P2))


def test_forward_clips_probabilities_so_the_loss_stays_finite():
    loss = ForwardCorrectedCrossEntropy(np.eye(2))
    value = _per_example(loss, np.array([1]), np.array([[1.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(value, [-math.log(keras.config.epsilon())], rtol=1e-5)


def test_soft_bootstrapping_on_hand_computed_values():
    # y = 1: target = [0.05 * 0.9, 0.95 + 0.05 * 0.1];  y = 0: target = [0.95 + 0.045, 0.005]
    lp = np.log([0.9, 0.1])
    want = [-(0.045 * lp[0] + 0.955 * lp[1]), -(0.995 * lp[0] + 0.005 * lp[1])]
    np.testing.assert_allclose(_per_example(SoftBootstrapping(0.95), Y2, P2), want, rtol=1e-5)


def test_hard_bootstrapping_on_hand_computed_values():
    # argmax p = 0 for both rows. y = 1: target [0.2, 0.8]; y = 0: target [1, 0]
    lp = np.log([0.9, 0.1])
    want = [-(0.2 * lp[0] + 0.8 * lp[1]), -lp[0]]
    np.testing.assert_allclose(_per_example(HardBootstrapping(0.8), Y2, P2), want, rtol=1e-5)


@pytest.mark.parametrize("loss_class", [SoftBootstrapping, HardBootstrapping])
def test_bootstrapping_with_beta_one_is_cross_entropy(loss_class):
    np.testing.assert_allclose(_per_example(loss_class(beta=1.0), LABELS, PROBS), _sparse_ce(LABELS, PROBS),
                               rtol=1e-6)


def test_soft_bootstrapping_treats_the_prediction_target_as_constant():
    p = tf.Variable(P2[:1])
    with tf.GradientTape() as tape:
        value = SoftBootstrapping(0.95)(Y2[:1], p)
    target = np.array([0.045, 0.955])
    np.testing.assert_allclose(tape.gradient(value, p).numpy()[0], -target / P2[0], rtol=1e-5)


# --- validation and serialization -----------------------------------------------------------------


def test_backward_correction_refuses_a_singular_matrix_naming_its_condition_number():
    with pytest.raises(ValueError, match="singular.*condition number"):
        BackwardCorrectedCrossEntropy([[0.5, 0.5], [0.5, 0.5]])


@pytest.mark.parametrize("loss_class", [ForwardCorrectedCrossEntropy, BackwardCorrectedCrossEntropy])
def test_transition_losses_reject_a_matrix_that_is_not_row_stochastic(loss_class):
    with pytest.raises(ValueError, match="row 0 summing to 1.1"):
        loss_class([[0.9, 0.2], [0.3, 0.7]])
    with pytest.raises(ValueError, match="square"):
        loss_class([[1.0, 0.0]])


def test_transition_losses_reject_predictions_with_another_class_count():
    with pytest.raises(ValueError, match="3 classes but the transition matrix is 2 x 2"):
        ForwardCorrectedCrossEntropy(T2)(LABELS, PROBS)


def test_generalized_cross_entropy_on_hand_computed_values():
    # (1 - p_y^q) / q with p_y = 0.7, 0.6, 0.25, 0.05
    want = [(1 - p ** 0.5) / 0.5 for p in (0.7, 0.6, 0.25, 0.05)]
    np.testing.assert_allclose(_per_example(GeneralizedCrossEntropy(0.5), LABELS, PROBS), want, rtol=1e-6)


def test_generalized_cross_entropy_spans_cross_entropy_and_mean_absolute_error():
    np.testing.assert_allclose(_per_example(GeneralizedCrossEntropy(1e-4), LABELS, PROBS),
                               _sparse_ce(LABELS, PROBS), rtol=1e-3)
    np.testing.assert_allclose(_per_example(GeneralizedCrossEntropy(1.0), LABELS, PROBS),
                               [0.3, 0.4, 0.75, 0.95], rtol=1e-6)


def _label_gradient(per_example_loss):
    y_pred = tf.Variable(PROBS)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(per_example_loss(tf.constant(LABELS), y_pred))
    return tape.gradient(value, y_pred).numpy()[np.arange(len(LABELS)), LABELS]


def test_generalized_cross_entropy_pulls_less_on_an_unlikely_label_than_cross_entropy():
    gce = _label_gradient(GeneralizedCrossEntropy(0.7).call)
    ce = _label_gradient(lambda y, p: -tf.math.log(tf.gather(p, y[:, None], batch_dims=1)))
    # GCE's gradient is cross-entropy's times p_y^q: the 0.05 label gets 0.05^0.7 = 12% of its pull
    np.testing.assert_allclose(gce / ce, PROBS[np.arange(len(LABELS)), LABELS] ** 0.7, rtol=1e-5)


@pytest.mark.parametrize("q, message", [(0.0, "in \\(0, 1\\], got 0.0"), (1.5, "got 1.5"), ("x", "number in")])
def test_generalized_cross_entropy_rejects_q_outside_zero_one(q, message):
    with pytest.raises(ValueError, match=message):
        GeneralizedCrossEntropy(q)


@pytest.mark.parametrize("loss_class", [SoftBootstrapping, HardBootstrapping])
@pytest.mark.parametrize("beta, message", [(1.5, "in \\[0, 1\\], got 1.5"), (-0.1, "got -0.1"),
                                           ("x", "number in")])
def test_bootstrapping_rejects_beta_outside_zero_one(loss_class, beta, message):
    with pytest.raises(ValueError, match=message):
        loss_class(beta=beta)


@pytest.mark.parametrize("loss", [ForwardCorrectedCrossEntropy(T2), BackwardCorrectedCrossEntropy(T2),
                                  SoftBootstrapping(0.9), HardBootstrapping(0.7), GeneralizedCrossEntropy(0.4)],
                         ids=lambda x: x.name)
def test_losses_round_trip_through_keras_serialization(loss):
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    np.testing.assert_allclose(_per_example(restored, Y2, P2), _per_example(loss, Y2, P2))


# --- training -------------------------------------------------------------------------------------


def _data(num_examples=32, features=5, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, features)).astype(np.float32)
    y = (np.arange(num_examples) % num_classes).astype(np.int64)
    return x, y


def _model(features=5, num_classes=3):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((features,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(num_classes, activation="softmax")])


@pytest.mark.parametrize("loss", _all_losses(), ids=lambda x: x.name)
def test_losses_compile_and_take_a_fit_step(loss):
    x, y = _data(8)
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    before = model.get_weights()
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert any(not np.allclose(a, b) for a, b in zip(model.get_weights(), before))


def _fit_one_epoch(loss_factory, strategy, initial):
    x, y = _data()
    with strategy.scope():
        model = _model()
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss_factory())
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # global batch, fixed order
    history = model.fit(dataset, epochs=1, shuffle=False, verbose=0).history
    return model.get_weights(), history["loss"]


LOSS_FACTORIES = {
    "forward": lambda: ForwardCorrectedCrossEntropy([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]),
    "backward": lambda: BackwardCorrectedCrossEntropy([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]),
    "soft_bootstrapping": lambda: SoftBootstrapping(0.95),
    "hard_bootstrapping": lambda: HardBootstrapping(0.8),
    "generalized_cross_entropy": lambda: GeneralizedCrossEntropy(0.7),
}


@pytest.mark.parametrize("name", sorted(LOSS_FACTORIES))
def test_mirrored_strategy_on_two_replicas_matches_a_run_without_strategy(name, mirrored_strategy):
    assert mirrored_strategy.num_replicas_in_sync == 2
    initial = _model().get_weights()
    single_weights, single_loss = _fit_one_epoch(LOSS_FACTORIES[name], tf.distribute.get_strategy(), initial)
    mirrored_weights, mirrored_loss = _fit_one_epoch(LOSS_FACTORIES[name], mirrored_strategy, initial)
    np.testing.assert_allclose(mirrored_loss, single_loss, rtol=1e-5)
    for got, want, start in zip(mirrored_weights, single_weights, initial):
        assert not np.allclose(want, start)  # training really moved every weight
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
