"""No dead ends: what Stage 1 does when an option it was given cannot work on the data, on tiny data."""

import dataclasses

import numpy as np
import pytest

from tf_twostage.utils import io_utils
from tf_twostage.runs import stage1 as stage1_run
from tf_twostage.runs.experiment import run_experiment, start_run
from tf_twostage.runs.stage1 import load_selection, select_labels
from tf_twostage.stage1.selection import fill_empty_classes, transition_problem
from tests.conftest import smoke_config as _smoke_config


def test_transition_problem_names_a_singular_and_an_ill_conditioned_matrix():
    assert transition_problem(np.eye(3)) is None
    assert "singular (rank 1 of 2)" in transition_problem(np.full((2, 2), 0.5))
    nearly = np.array([[0.5, 0.5], [0.4999, 0.5001]])
    assert "ill-conditioned (condition number" in transition_problem(nearly)
    assert transition_problem(nearly, max_condition=1e5) is None


def test_fill_empty_classes_takes_the_fallback_only_where_a_class_kept_nothing():
    labels = np.array([0, 0, 1, 1, 2, 2])
    kept = np.array([True, False, False, False, False, False])
    fallback = np.array([False, True, True, False, False, False])
    filled_kept, filled = fill_empty_classes(kept, fallback, labels, 4)  # class 3 has no label: stays empty
    assert filled == [1, 2]
    np.testing.assert_array_equal(filled_kept, [True, False, True, False, False, False])
    assert not kept[2]  # the input is not modified


def _write_predictions(workdir, data, train_probabilities, validation_probabilities, **extra):
    folder = stage1_run.stage1_dir(str(workdir))
    io_utils.write_npz(f"{folder}/predictions.npz", train_index=data.train.index,
                       validation_index=data.validation.index, best_epoch=np.int64(0),
                       train_probabilities=train_probabilities.astype(np.float32),
                       validation_probabilities=validation_probabilities.astype(np.float32), **extra)


def _one_hot_of_labels(labels, num_classes, confidence=0.95):
    probabilities = np.full((len(labels), num_classes), (1 - confidence) / (num_classes - 1))
    probabilities[np.arange(len(labels)), labels] = confidence
    return probabilities


def test_singular_transition_matrix_falls_back_to_the_noisy_posterior(tmp_path):
    config = _smoke_config(**{"stage1.posterior": "corrected"})
    _, data, _ = start_run(config, str(tmp_path))
    # Every example predicts classes 0 and 1 alike: the anchors of classes 0 and 1 are the same row.
    train = _one_hot_of_labels(data.train.labels, 10)
    train[:, :2] = train[:, :2].sum(axis=1, keepdims=True) / 2
    _write_predictions(tmp_path, data, train, _one_hot_of_labels(data.validation.labels, 10))
    stats = select_labels(config, data, str(tmp_path))
    assert stats["posterior"] == "noisy"
    [fallback] = stats["fallbacks"]
    assert fallback["option"] == "stage1.posterior=corrected" and fallback["used"] == "stage1.posterior=noisy"
    assert "singular" in fallback["reason"]
    expected = stage1_run.select_confident_labels(train, data.train.labels, 0.9, config.stage1.floor_fraction)
    np.testing.assert_array_equal(load_selection(str(tmp_path), data), expected)


def test_clean_set_rule_that_keeps_no_label_of_a_class_falls_back_to_the_confidence_rule(tmp_path):
    config = _smoke_config(**{"stage1.rule": "clean_set"})
    _, data, _ = start_run(config, str(tmp_path))
    data = dataclasses.replace(data, clean=data.test.subset(np.arange(0, 1000, 10)))
    scores = np.ones((len(data.train), 10), np.float32)
    scores[:, 3] = 0.0  # the one-vs-rest classifier of class 3 rejects every example
    train = _one_hot_of_labels(data.train.labels, 10)
    _write_predictions(tmp_path, data, train, _one_hot_of_labels(data.validation.labels, 10),
                       train_scores=scores, validation_scores=np.zeros((len(data.validation), 10), np.float32))
    stats = select_labels(config, data, str(tmp_path))
    [fallback] = stats["fallbacks"]
    assert fallback["option"] == "stage1.rule=clean_set" and "classes 3 ('3')" in fallback["used"]
    kept = load_selection(str(tmp_path), data)
    assert kept[data.train.labels != 3].all()  # the other classes keep what the clean-set rule kept
    in_three = data.train.labels == 3
    assert kept[in_three].all()  # the confidence rule keeps all of class 3 (every one agrees at 0.95)
    assert all(row["kept"] > 0 for row in stats["per_class"])
    assert stats["refined_validation_size"] > 0  # the validation split took the same fallback


def test_two_stage_run_finishes_with_the_fallback_listed_in_results(tmp_path, monkeypatch):
    monkeypatch.setattr(stage1_run, "estimate_transition_matrix", lambda *args: np.full((10, 10), 0.1))
    results = run_experiment(_smoke_config(**{"method": "two_stage", "stage1.posterior": "corrected"}),
                             str(tmp_path))
    assert results["test_accuracy"] > 0.2
    [fallback] = results["fallbacks"]
    assert fallback["stage"] == "stage1" and fallback["used"] == "stage1.posterior=noisy"
    assert io_utils.read_json(str(tmp_path / "results.json"))["fallbacks"] == results["fallbacks"]


def test_fine_tuning_without_a_clean_subset_is_refused_before_any_training(tmp_path):
    with pytest.raises(ValueError, match="stage2.finetune_epochs=2 needs a clean subset"):
        run_experiment(_smoke_config(**{"method": "two_stage", "stage2.finetune_epochs": 2}), str(tmp_path))
    assert not (tmp_path / "stage1").exists() and not (tmp_path / "checkpoints").exists()
