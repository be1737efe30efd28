"""stage2.rounds=2: the Stage-2 model re-selects the labels and Stage 2 runs again on them."""

import json
import os

import numpy as np
import pytest

from tf_twostage.config.checks import validate_config
from tf_twostage.runs import experiment
from tf_twostage.runs.experiment import METHODS, run_experiment
from tf_twostage.runs.reselection import RESELECTION_FILE, ROUND1_PREDICTIONS_FILE
from tf_twostage.data.prepare import prepare_data
from tf_twostage.runs.propagation import propagate_split
from tf_twostage.stage1.selection import fill_empty_classes, reselect_labels_second_round, select_confident_labels
from tests.conftest import smoke_config


def test_the_second_round_rule_keeps_agreeing_labels_above_the_threshold_without_a_floor():
    probabilities = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])
    labels = np.array([0, 0, 0, 1, 1])
    kept = select_confident_labels(probabilities, labels, 0.7, 0.0, top_up="agreeing")
    np.testing.assert_array_equal(kept, [True, False, False, False, True])


def test_the_second_round_can_keep_at_least_as_many_labels_per_class_as_stage1():
    probabilities = np.array([[0.8, 0.2], [0.6, 0.4], [0.55, 0.45], [0.3, 0.7], [0.9, 0.1], [0.45, 0.55],
                              [0.4, 0.6], [0.1, 0.9]])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    first = np.array([False, True, True, True, True, True, False, False])
    # Threshold alone: rows 0 and 7. Class 0: Stage 1 kept 3, the threshold 1, so the two most confident
    # agreeing labels are added (rows 1, 2; row 3 is predicted 1, never kept). Class 1: Stage 1 kept 2,
    # the threshold 1: row 6 (0.6) is added before row 5 (0.55), whether Stage 1 kept it or not; row 4 is
    # predicted 0.
    np.testing.assert_array_equal(reselect_labels_second_round(probabilities, labels, first, 0.7),
                                  [True, False, False, False, False, False, False, True])
    np.testing.assert_array_equal(
        reselect_labels_second_round(probabilities, labels, first, 0.7, keep="at_least_first"),
        [True, True, True, False, False, False, True, True])
    # Where the threshold already keeps more than Stage 1 did, nothing is added.
    none_first = np.zeros(8, bool)
    np.testing.assert_array_equal(
        reselect_labels_second_round(probabilities, labels, none_first, 0.7, keep="at_least_first"),
        reselect_labels_second_round(probabilities, labels, none_first, 0.7))


def test_the_second_round_rule_refuses_an_unknown_keep_and_a_mask_of_another_length():
    probabilities, labels = np.eye(2)[[0, 1, 1]], np.array([0, 1, 1])
    with pytest.raises(ValueError, match="keep must be one of threshold, at_least_first; got 'union'"):
        reselect_labels_second_round(probabilities, labels, np.ones(3, bool), keep="union")
    with pytest.raises(ValueError, match=r"first_kept must be a boolean array of shape \(3,\), got \(2,\) bool"):
        reselect_labels_second_round(probabilities, labels, np.ones(2, bool))


def test_a_second_round_that_keeps_at_least_stage1s_count_never_shrinks_a_class(tmp_path):
    config = smoke_config(**{"method": "two_stage", "stage2.rounds": 2, "stage2.reselect_keep": "at_least_first"})
    run_experiment(config, str(tmp_path))
    stats = json.loads((tmp_path / "results.json").read_text())["stage2_reselection"]
    assert stats["keep"] == "at_least_first"
    assert "at least Stage 1's count per class" in (tmp_path / "report.md").read_text()
    predictions = np.load(tmp_path / ROUND1_PREDICTIONS_FILE)["probabilities"]
    first = np.load(tmp_path / "stage1" / "selection.npz")
    second = np.load(tmp_path / RESELECTION_FILE)
    predicted = np.argmax(predictions, axis=1)
    for c in np.unique(first["kept_label"][first["kept"]]):
        # At least as many as Stage 1 kept, or every label of the class the model predicts is kept
        # (among them the Stage-1 labels it still predicts).
        still_predicted = (first["kept_label"] == c) & (predicted == c)
        assert np.count_nonzero(second["kept_label"] == c) >= min(np.count_nonzero(first["kept_label"] == c),
                                                                  np.count_nonzero(still_predicted))
    # Every label the second round keeps is one the first round's model predicts, except in a class the
    # model predicts no label of (it keeps its Stage-1 labels: the fallback).
    for c in np.unique(second["kept_label"][second["kept"]]):
        in_class = second["kept_label"] == c
        assert np.all(predicted[in_class] == c) or np.array_equal(in_class, first["kept_label"] == c)


def test_two_rounds_train_stage2_twice_and_record_the_second_selection(tmp_path):
    config = smoke_config(**{"method": "two_stage", "stage2.rounds": 2, "stage2.reselect_threshold": 0.5})
    results = run_experiment(config, str(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    stats = saved["stage2_reselection"]
    assert stats == json.loads((tmp_path / "stage2" / "reselection_stats.json").read_text())
    assert set(results["history"]) >= {"stage1", "stage2_round1", "stage2"}
    arrays = np.load(tmp_path / RESELECTION_FILE)
    assert arrays["kept"].dtype == bool and arrays["kept"].mean() == pytest.approx(stats["kept_fraction"])
    assert stats["first_round_kept_fraction"] == pytest.approx(saved["stage1"]["kept_fraction"])
    assert stats["threshold"] == 0.5 and "precision" in stats["quality"]
    assert 0.0 <= stats["first_round_test_accuracy"] <= 1.0
    # Every class Stage 1 kept labels of keeps some (a class the Stage-2 model rejects keeps its Stage-1 labels).
    first = np.load(tmp_path / "stage1" / "selection.npz")
    assert set(arrays["kept_label"][arrays["kept"]]) == set(first["kept_label"][first["kept"]])
    assert os.path.exists(tmp_path / "report.md")
    assert "Second selection round" in (tmp_path / "report.md").read_text()


def test_bad_round_keys_are_refused_before_training():
    # A preset with two rounds (mnist5k) still runs the methods without a Stage 2, which do not read stage2.*.
    for method in ("ce", "improved_baseline", "stage1_only"):
        validate_config(smoke_config(**{"method": method, "stage2.rounds": 2}), tuple(METHODS))
    with pytest.raises(ValueError, match="stage2.rounds must be one of 1, 2; got 3"):
        validate_config(smoke_config(**{"method": "two_stage", "stage2.rounds": 3}), tuple(METHODS))
    with pytest.raises(ValueError, match="stage2.reselect_keep must be one of threshold, at_least_first; got 'all'"):
        validate_config(smoke_config(**{"method": "two_stage", "stage2.reselect_keep": "all"}), tuple(METHODS))


def test_every_prediction_of_a_run_uses_the_configured_evaluation_batch_size(tmp_path, monkeypatch):
    from tf_twostage.training import metrics

    sizes = []
    original = metrics.evaluation_dataset

    def spy(split, preprocessor, batch_size, *args, **kwargs):
        sizes.append(batch_size)
        return original(split, preprocessor, batch_size, *args, **kwargs)

    monkeypatch.setattr(metrics, "evaluation_dataset", spy)
    run_experiment(smoke_config(**{"method": "two_stage", "stage2.rounds": 2, "train.eval_batch_size": 37}),
                   str(tmp_path))
    # Stage-1 predictions, the re-selection, the validation report's matrix, the round-1 and final test scores.
    assert len(sizes) >= 5 and set(sizes) == {37}


def test_the_second_round_ranks_with_the_propagated_posterior_when_stage1_does(tmp_path):
    config = smoke_config(**{"method": "two_stage", "stage2.rounds": 2, "stage2.reselect_threshold": 0.5,
                             "stage1.propagation": "pixels", "stage1.propagation_neighbours": 5})
    results = run_experiment(config, str(tmp_path))
    stats = results["stage2_reselection"]
    assert stats["propagation"] == "pixels" and results["stage1"]["propagation"] == "pixels"
    data = prepare_data(config)
    # The first round's own P(c|x) is what the file keeps; the round ranks with its propagation.
    predicted = np.load(tmp_path / ROUND1_PREDICTIONS_FILE)["probabilities"]
    propagated = propagate_split(config, data, data.train, predicted)
    first = np.load(tmp_path / "stage1" / "selection.npz")["kept"]
    expected = reselect_labels_second_round(propagated, data.train.labels, first, 0.5)
    expected, _ = fill_empty_classes(expected, first, data.train.labels, data.num_classes)
    np.testing.assert_array_equal(np.load(tmp_path / RESELECTION_FILE)["kept"], expected)
    report = (tmp_path / "report.md").read_text()
    assert report.count("(ranked with the posterior propagated over pixels, alpha 0.9)") == 2  # Stage 1, round 2


def test_the_second_round_ranks_like_stage1_after_the_heavy_noise_switch(tmp_path, monkeypatch):
    config = smoke_config(**{"method": "two_stage", "stage2.rounds": 2, "stage2.reselect_threshold": 0.5,
                             "stage1.propagation_neighbours": 5, "stage1.heavy_noise_rate": 1e-6,
                             "model.dropout": 0.5, "stage2.dropout": 0.2, "stage2.heavy_noise_ensemble_size": 2})
    dropouts, starts, members, train_stage2 = [], [], [], experiment.train_stage2

    def recording(config, *args, **kwargs):
        dropouts.append(config.stage2.dropout)
        starts.append(config.stage2.init_from_stage1)
        members.append(kwargs.get("members", 1))
        return train_stage2(config, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_stage2", recording)
    results = run_experiment(config, str(tmp_path))
    assert results["stage1"]["heavy_noise"]["switched"] and results["stage1"]["propagation"] == "pixels"
    # Both Stage-2 rounds train with the pre-training's dropout, not the lower one the config gives Stage 2, and
    # from a fresh network, not the weights pre-trained on the mostly wrong labels.
    # The last round averages two networks (stage2.heavy_noise_ensemble_size; the config's own size is 1).
    assert dropouts == [0.5, 0.5] and starts == [False, False] and members == [1, 2]
    assert results["stage1"]["heavy_noise"]["stage2_overrides"] == {"dropout": 0.5, "init_from_stage1": False,
                                                                   "ensemble_size": 2}
    assert results["ensemble_size"] == 2 and len(results["validation"]["members"]) == 2
    assert results["stage2_reselection"]["propagation"] == "pixels"  # the run's own config says none
    assert any(entry["option"].startswith("the selection for lower noise") for entry in results["fallbacks"])
    report = (tmp_path / "report.md").read_text()
    # Stage 1 spreads its posterior further over the graph than the second round (tf_twostage.runs.heavy_noise).
    assert "(ranked with the noisy labels propagated over pixels, alpha 0.99)" in report
    assert "(ranked with the posterior propagated over pixels, alpha 0.9)" in report
    assert results["stage1"]["propagation_alpha"] == 0.99 and results["stage2_reselection"]["propagation_alpha"] == 0.9
    assert results["stage1"]["propagation_input"] == "labels"
    assert "the selection for lower noise (stage1.heavy_noise_rate=1e-06): used stage1.posterior=noisy" in report
    assert ("stage2.dropout=0.2, stage2.init_from_stage1=True, stage2.ensemble_size=1 under the heavy-noise switch: "
            "used stage2.dropout=0.5, stage2.init_from_stage1=False, stage2.ensemble_size=2") in report
