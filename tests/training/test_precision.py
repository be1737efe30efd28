"""Mixed precision (`train.dtype_policy`) in every trainer, on CPU.

Tolerances: a mixed policy computes the layers in 16 bits (float32 variables, float32 softmax and
losses). One rounding costs at most the unit roundoff u: 2**-11 = 4.9e-4 for float16, 2**-8 = 3.9e-3
for bfloat16. A weight update passes through a few dozen roundings (inputs, two matmuls forward and
back, the cast of the gradient) and ReLUs whose inputs sit near 0 can switch, so three steps may
differ from float32 by some u in relative terms. We allow 40 u (2.0e-2 float16, 0.16 bfloat16).
Measured (relative error of the weight change after 3 SGD steps, this CPU): float16 2.3e-4..5.5e-4,
bfloat16 1.8e-3..6.1e-2. A float16 run without loss scaling lands outside: the small loss's gradients
underflow and its update is 1.1e-1 off (`test_float16_without_loss_scaling_fails_the_check`).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_twostage.data.preprocess import Preprocessor
from tf_twostage.models import build_mlp
from tf_twostage.serving.export import export_classifier
from tf_twostage.serving.prediction import load_export
from tf_twostage.stage2.pi_model import PiModel
from tf_twostage.stage2.temporal_ensembling import EnsembleUpdate, TemporalEnsembling
from tf_twostage.training.precision import dtype_policy
from tf_twostage.training.trainer import CrossEntropyTrainer

SHAPE, CLASSES, BATCH = (6, 6, 1), 4, 16
TOLERANCE = {"mixed_float16": 40 * 2.0**-11, "mixed_bfloat16": 40 * 2.0**-8}


class _SmallCrossEntropy(keras.losses.Loss):
    """Cross-entropy x 1e-5: a loss term with a small weight, whose gradients (1e-9..1e-7 per
    activation) are below float16's normal range (6.1e-5) and partly below its smallest subnormal."""

    def call(self, y_true, y_pred):
        return SMALL * keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


SMALL = 1e-5


def _classifier():
    keras.utils.set_random_seed(0)
    return build_mlp(SHAPE, CLASSES, hidden_units=(16,), dropout=0.0)


def _batch():
    rng = np.random.RandomState(0)
    images = rng.uniform(0, 1, size=(BATCH, *SHAPE)).astype(np.float32)
    return {"image": images, "image_2": images[:, ::-1].copy(), "label": (np.arange(BATCH) % CLASSES).astype(np.int32),
            "labeled": (np.arange(BATCH) % 2).astype(np.float32), "index": np.arange(BATCH, dtype=np.int32)}


def _make(kind, classifier):
    if kind in ("ce", "small_ce"):
        return CrossEntropyTrainer(classifier, loss=_SmallCrossEntropy() if kind == "small_ce" else None)
    if kind == "pi":
        return PiModel(classifier)
    return TemporalEnsembling(classifier, num_examples=BATCH, num_classes=CLASSES)


def _update(kind, policy, steps=3, auto_scale_loss=True):
    """The classifier's weight change after `steps` SGD steps of `kind` under `policy`, and the trainer."""
    initial = _classifier().get_weights()
    batch = _batch()
    data = (batch["image"], batch["label"]) if kind.endswith("ce") else batch
    learning_rate = 0.1 / SMALL if kind == "small_ce" else 0.1  # the same step size for the small loss
    with dtype_policy(policy):
        classifier = _classifier()
        classifier.set_weights(initial)
        trainer = _make(kind, classifier)
        extra = {} if kind.endswith("ce") else {"consistency_weight": 2.0}
        trainer.compile(optimizer=keras.optimizers.SGD(learning_rate), auto_scale_loss=auto_scale_loss, **extra)
        trainer.fit(tf.data.Dataset.from_tensors(data).repeat(), steps_per_epoch=steps, epochs=1, verbose=0,
                    callbacks=[EnsembleUpdate()] if kind == "te" else [])
    final = trainer.classifier.get_weights()
    return np.concatenate([(f - i).ravel() for f, i in zip(final, initial)]), trainer


def _relative_error(update, reference):
    return float(np.linalg.norm(update - reference) / np.linalg.norm(reference))


@pytest.fixture(scope="module")
def float32_updates():
    return {kind: _update(kind, "float32")[0] for kind in ("ce", "small_ce", "pi", "te")}


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("kind", ["ce", "small_ce", "pi", "te"])
def test_a_few_mixed_precision_steps_match_float32(kind, policy, float32_updates):
    update, trainer = _update(kind, policy)
    reference = float32_updates[kind]
    assert np.linalg.norm(reference) > 0
    assert _relative_error(update, reference) < TOLERANCE[policy]
    assert trainer.classifier.layers[-1].compute_dtype == "float32"  # softmax, hence losses, in float32
    assert trainer.classifier.get_layer("logits").compute_dtype == policy.split("_")[1]
    scaled = isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")  # bfloat16 has float32's range: no scaling
    if kind == "te":
        assert trainer.ensemble.dtype == "float32" and float(trainer.ensemble_updates) == 1.0


def test_float16_without_loss_scaling_fails_the_check(float32_updates):
    """The check above is not blind: without loss scaling the small loss's gradients underflow."""
    update, trainer = _update("small_ce", "mixed_float16", auto_scale_loss=False)
    assert not isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert _relative_error(update, float32_updates["small_ce"]) > 2 * TOLERANCE["mixed_float16"]


def test_the_loss_scale_moves_down_on_overflow_and_up_after_finite_steps():
    batch = _batch()
    dataset = tf.data.Dataset.from_tensors((batch["image"], batch["label"])).repeat()
    with dtype_policy("mixed_float16"):
        for start, growth, expect_lower in ((2.0**40, 1000, True), (2.0**4, 2, False)):
            trainer = CrossEntropyTrainer(_classifier())
            optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=start,
                                                            dynamic_growth_steps=growth)
            trainer.compile(optimizer=optimizer)
            trainer.fit(dataset, steps_per_epoch=4, epochs=1, verbose=0)
            scale = float(optimizer.dynamic_scale.numpy())
            # 2**40 overflows float16 gradients: the scale halves and those steps are skipped.
            assert (scale < start) if expect_lower else (scale == start * 4)
            assert all(np.isfinite(w).all() for w in trainer.classifier.get_weights())


def test_an_export_of_a_mixed_precision_classifier_keeps_the_uint8_in_float32_out_interface(tmp_path):
    with dtype_policy("mixed_float16"):
        classifier = _classifier()
        images = np.random.RandomState(2).randint(0, 256, size=(5, *SHAPE)).astype(np.uint8)
        expected = np.asarray(classifier(images.astype(np.float32) / 255.0))
        version_dir = export_classifier(classifier, Preprocessor(), SHAPE, ("a", "b", "c", "d"),
                                        str(tmp_path / "models"), "tiny")
    signature = tf.saved_model.load(version_dir).signatures["serving_default"]
    assert signature.structured_input_signature[1]["image"].dtype == tf.uint8
    assert signature.structured_outputs["probabilities"].dtype == tf.float32
    served = load_export(version_dir).predict_images(images, batch_size=2)
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, expected, atol=2e-3)  # float16 layers: ~u per logit
