"""Stage 1 on real (tiny) training: the recorder callback, the artifacts and the two programs."""

import csv
import dataclasses
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tf_twostage.utils import io_utils
from tf_twostage.data.pipelines import supervised_dataset
from tf_twostage.data.preprocess import Preprocessor
from tf_twostage.runs.experiment import start_run
from tf_twostage.stage1.callback import PredictionRecorder
from tf_twostage.runs import stage1 as stage1_runs
from tf_twostage.runs.stage1 import load_selection, pretrain_with_recorder, select_labels, train_stage1
from tf_twostage.stage1.selection import corrected_posteriors, select_confident_labels
from tf_twostage.training.metrics import predict_probabilities
from tests.conftest import make_split
from tests.conftest import ROOT, smoke_config as _smoke_config


def _tiny_model(metrics=()):
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(4),
                              keras.layers.Softmax()])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy", metrics=list(metrics))
    return model


def test_recorder_keeps_the_best_validation_epoch_and_predicts_with_its_weights():
    train, validation = make_split(40, 4, shape=(4, 4, 1)), make_split(12, 4, shape=(4, 4, 1), seed=1)
    model = _tiny_model([keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    recorder = PredictionRecorder(train, validation, Preprocessor(), total_epochs=4)
    snapshots = []
    snapshot = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, l: snapshots.append(model.get_weights()))
    history = model.fit(
        supervised_dataset(train, Preprocessor(), 8, training=True),
        validation_data=supervised_dataset(validation, Preprocessor(), 8, training=False),
        steps_per_epoch=5, epochs=4, verbose=0, callbacks=[snapshot, recorder],
    )
    best = int(np.argmax(history.history["val_accuracy"]))
    assert recorder.best_epoch == best
    for restored, saved in zip(model.get_weights(), snapshots[best]):
        np.testing.assert_array_equal(restored, saved)
    np.testing.assert_allclose(recorder.best_probabilities, predict_probabilities(model, train, Preprocessor(), 64),
                               atol=1e-6)
    assert recorder.best_validation_probabilities.shape == (12, 4)
    assert recorder.epoch_probabilities == {} and recorder.averaged_probabilities() is None


def test_recorder_averaging_the_last_epochs_copies_no_weights_and_leaves_the_last_ones():
    train, validation = make_split(40, 4, shape=(4, 4, 1)), make_split(12, 4, shape=(4, 4, 1), seed=1)
    model = _tiny_model()
    snapshots = []

    def peak_first(epoch, logs):  # validation accuracy peaks at epoch 0, then only falls
        logs["val_accuracy"] = 1.0 - 0.1 * epoch
        snapshots.append(model.get_weights())

    recorder = PredictionRecorder(train, validation, Preprocessor(), total_epochs=4, average_last=2)
    model.fit(supervised_dataset(train, Preprocessor(), 8, training=True), steps_per_epoch=5, epochs=4, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=peak_first), recorder])
    assert recorder.best_epoch == 0  # reported, but nothing is taken from it
    assert recorder.best_weights is None and recorder.best_probabilities is None
    for kept, last in zip(model.get_weights(), snapshots[-1]):
        np.testing.assert_array_equal(kept, last)
    assert sorted(recorder.epoch_probabilities) == sorted(recorder.epoch_validation_probabilities) == [2, 3]
    np.testing.assert_allclose(recorder.epoch_probabilities[3], predict_probabilities(model, train, Preprocessor(), 64),
                               atol=1e-6)
    np.testing.assert_allclose(
        recorder.averaged_probabilities(),
        (recorder.epoch_probabilities[2] + recorder.epoch_probabilities[3]) / 2, rtol=1e-6)
    np.testing.assert_allclose(
        recorder.averaged_validation_probabilities(),
        (recorder.epoch_validation_probabilities[2] + recorder.epoch_validation_probabilities[3]) / 2, rtol=1e-6)
    assert recorder.averaged_validation_probabilities().shape == (12, 4)
    scalars, arrays = recorder.checkpoint_state()  # a resumed run averages the same epochs
    resumed = PredictionRecorder(train, validation, Preprocessor(), total_epochs=4, average_last=2)
    resumed.restore_state(scalars, arrays)
    assert resumed.best_epoch == 0
    np.testing.assert_array_equal(resumed.averaged_probabilities(), recorder.averaged_probabilities())
    np.testing.assert_array_equal(resumed.averaged_validation_probabilities(),
                                  recorder.averaged_validation_probabilities())


def test_average_ranking_chooses_no_epoch_and_leaves_the_last_weights(tmp_path, monkeypatch):
    config, strategy, data = _stage1(tmp_path / "a", **{"stage1.epochs": 3, "stage1.ranking": "average",
                                                        "stage1.average_last": 2})
    seen = []

    def pretrain(*args, **kwargs):
        seen.append(pretrain_with_recorder(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(stage1_runs, "pretrain_with_recorder", pretrain)
    train_stage1(config, data, strategy, str(tmp_path / "a"))
    classifier, recorder, _ = seen[0]
    assert recorder.average_last == 2  # see the unit test above for what it does
    # Stage 2 continues from the last epoch (2), whatever epoch the noisy validation accuracy peaked at.
    np.testing.assert_allclose(predict_probabilities(classifier, data.validation, data.preprocessor, 64),
                               recorder.epoch_validation_probabilities[2], atol=1e-6)
    arrays = io_utils.read_npz(str(tmp_path / "a" / "stage1" / "predictions.npz"))
    # Both sets are ranked with the mean over epochs 1 and 2 (the refined validation set too).
    np.testing.assert_allclose(arrays["validation_probabilities"], recorder.averaged_validation_probabilities(),
                               atol=1e-6)
    np.testing.assert_allclose(arrays["train_probabilities"], recorder.averaged_probabilities(), atol=1e-6)
    assert not np.allclose(recorder.epoch_validation_probabilities[1], recorder.epoch_validation_probabilities[2],
                           atol=1e-4)

    config.stage1.ranking = "best"  # the best epoch's weights stay with the model
    classifier, recorder, _ = pretrain_with_recorder(config, data, strategy, str(tmp_path / "c"))
    assert recorder.average_last == 0
    np.testing.assert_allclose(predict_probabilities(classifier, data.validation, data.preprocessor, 64),
                               recorder.best_validation_probabilities, atol=1e-6)


def _stage1(tmp_path, **overrides):
    config = _smoke_config(**overrides)
    strategy, data, _ = start_run(config, str(tmp_path))
    return config, strategy, data


def test_stage1_writes_predictions_weights_and_a_selection_without_pickles(tmp_path):
    config, strategy, data = _stage1(tmp_path, **{"stage1.epochs": 2})
    train_stage1(config, data, strategy, str(tmp_path))
    stats = select_labels(config, data, str(tmp_path))
    folder = tmp_path / "stage1"
    for name in ("predictions.npz", "classifier.weights.h5", "selection.npz", "selection_stats.json",
                 "refined_validation.npz", "dropped_labels.csv"):
        assert (folder / name).exists(), name
    selection = io_utils.read_npz(str(folder / "selection.npz"))  # allow_pickle=False
    assert np.array_equal(selection["index"], data.train.index)
    kept = selection["kept"]
    assert np.array_equal(selection["kept_label"][kept], data.train.labels[kept])
    assert np.all(selection["kept_label"][~kept] == -1)
    assert np.array_equal(load_selection(str(tmp_path), data), kept)
    for key in ("kept_fraction", "kept_correct_fraction", "kept_incorrect_fraction", "unlabeled_fraction",
                "per_class"):
        assert key in stats
    assert stats["kept_fraction"] == pytest.approx(kept.mean())
    assert stats["kept_fraction"] >= 0.05 * 0.99  # the per-class floor
    with open(folder / "dropped_labels.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == int((~kept).sum())
    confidences = [float(r["confidence"]) for r in rows]
    assert confidences == sorted(confidences, reverse=True)
    assert io_utils.read_json(str(folder / "selection_stats.json"))["kept_fraction"] == stats["kept_fraction"]


def test_corrected_posterior_selection_uses_the_estimated_transition_matrix(tmp_path):
    config, strategy, data = _stage1(tmp_path, **{"stage1.epochs": 2, "stage1.posterior": "corrected"})
    train_stage1(config, data, strategy, str(tmp_path))
    stats = select_labels(config, data, str(tmp_path))
    assert stats["posterior"] == "corrected"
    matrix = np.asarray(stats["estimated_transition_matrix"])
    assert matrix.shape == (10, 10)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
    arrays = io_utils.read_npz(str(tmp_path / "stage1" / "predictions.npz"))  # the model's own, unchanged
    expected = select_confident_labels(corrected_posteriors(arrays["train_probabilities"], matrix),
                                       data.train.labels, 0.9, config.stage1.floor_fraction)
    np.testing.assert_array_equal(load_selection(str(tmp_path), data), expected)


def test_stage1_pretrains_with_generalized_cross_entropy_when_asked(tmp_path):
    losses, probabilities = {}, {}
    for loss in ("cross_entropy", "gce"):
        config, strategy, data = _stage1(tmp_path / loss, **{"stage1.epochs": 2, "stage1.loss": loss})
        train_stage1(config, data, strategy, str(tmp_path / loss))
        losses[loss] = io_utils.read_json(str(tmp_path / loss / "stage1" / "history.json"))["loss"]
        probabilities[loss] = io_utils.read_npz(str(tmp_path / loss / "stage1" / "predictions.npz"))[
            "train_probabilities"]
    assert max(losses["gce"]) <= 1 / 0.7  # (1 - p^q) / q is bounded by 1/q; cross-entropy on 10 classes starts at ~2.3
    assert min(losses["cross_entropy"]) > max(losses["gce"])
    assert not np.allclose(probabilities["gce"], probabilities["cross_entropy"])


def test_kfold_ranking_predicts_every_training_example_out_of_sample(tmp_path):
    config, strategy, data = _stage1(tmp_path, **{"stage1.ranking": "kfold", "stage1.kfold": 2})
    train_stage1(config, data, strategy, str(tmp_path))
    probabilities = io_utils.read_npz(str(tmp_path / "stage1" / "predictions.npz"))["train_probabilities"]
    assert probabilities.shape == (len(data.train), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_clean_set_rule_screens_labels_with_one_vs_rest_classifiers(tmp_path):
    config, strategy, data = _stage1(tmp_path, **{"stage1.rule": "clean_set", "stage1.clean_epochs": 3})
    data = dataclasses.replace(data, clean=data.test.subset(np.arange(0, 1000, 2)))
    train_stage1(config, data, strategy, str(tmp_path))
    arrays = io_utils.read_npz(str(tmp_path / "stage1" / "predictions.npz"))
    assert arrays["train_scores"].shape == (len(data.train), 10)
    stats = select_labels(config, data, str(tmp_path))
    assert stats["rule"] == "clean_set"
    scores = arrays["train_scores"][np.arange(len(data.train)), data.train.labels]
    kept = load_selection(str(tmp_path), data)
    by_rule = scores >= 0.5
    for c in range(10):  # a class the rule left empty takes the confidence rule's labels (test_fallbacks)
        in_class = data.train.labels == c
        if by_rule[in_class].any():
            np.testing.assert_array_equal(kept[in_class], by_rule[in_class])
        else:
            assert kept[in_class].any() and any(f"{c} ('{c}')" in f["used"] for f in stats["fallbacks"])


def test_clean_set_rule_without_a_clean_subset_is_refused(tmp_path):
    config, strategy, data = _stage1(tmp_path, **{"stage1.rule": "clean_set"})
    with pytest.raises(ValueError, match="needs a clean subset"):
        train_stage1(config, data, strategy, str(tmp_path))


def test_programs_run_stage1_in_two_steps_and_explain_a_missing_first_step(tmp_path):
    def program(name, workdir):
        return subprocess.run([sys.executable, os.path.join(ROOT, "bin", name), "--config=configs/smoke.py",
                               f"--workdir={workdir}"], capture_output=True, text=True, cwd=ROOT)

    early = program("select_labels.py", tmp_path / "empty")
    assert early.returncode == 2 and "run bin/train_stage1.py" in early.stderr
    assert program("train_stage1.py", tmp_path / "run").returncode == 0
    done = program("select_labels.py", tmp_path / "run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"kept_fraction"' in done.stdout
    assert "selection quality: precision" in done.stdout and "per class (noisy label): 0:" in done.stdout


def test_one_vs_rest_heads_fit_a_clean_subset_of_twenty_images_per_class():
    # 200 clean images in batches of 256 were 20 steps in 20 epochs: the heads then scored 5% of these
    # examples below 0.5 for their own class (up to 15% of a class); in the preset's batches every one fits.
    from tf_twostage.config.base import base_config
    from tf_twostage.runs.stage1 import fit_one_vs_rest

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    features = (rng.normal(0, 1, (10, 64))[labels] + rng.normal(0, 1, (200, 64))).astype(np.float32)
    config = base_config()
    head = fit_one_vs_rest(features, labels, 10, int(config.stage1.clean_epochs),
                           int(config.stage1.clean_batch_size), seed=0)
    scores = head.predict(features, verbose=0)
    assert scores.shape == (200, 10)
    assert (scores[np.arange(200), labels] >= 0.5).all()
    assert (np.where(np.eye(10, dtype=bool)[labels], 0.0, scores) < 0.5).mean() > 0.99  # other classes: rejected
