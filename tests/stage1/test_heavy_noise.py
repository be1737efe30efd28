"""The heavy-noise switch (`stage1.heavy_noise_rate`): the estimated noise rate, the decision, the selection."""

import numpy as np
import pytest

from tf_twostage.config.checks import validate_config
from tf_twostage.runs.experiment import METHODS, check_preconditions
from tf_twostage.runs.heavy_noise import (cluster_transition, heavy_noise_decision, heavy_noise_overrides,
                                          selection_config, settings, stage2_overrides,
                                          training_config)
from tf_twostage.runs.propagation import propagate_split
from tf_twostage.runs.stage1 import load_selection, select_labels
from tf_twostage.stage1.clusters import estimated_noise_rate
from tf_twostage.stage1.propagation import one_hot_labels
from tf_twostage.stage1.selection import select_confident_labels
from tests.conftest import smoke_config
from tests.stage1.conftest import confidence_config


def _symmetric(num_classes, rate):
    off = rate / (num_classes - 1)
    return np.full((num_classes, num_classes), off) + np.eye(num_classes) * (1.0 - rate - off)


def test_the_noise_rate_of_a_transition_matrix_weights_its_diagonal_by_the_label_shares():
    assert estimated_noise_rate(np.eye(3), [0, 1, 2, 2]) == pytest.approx(0.0)
    assert estimated_noise_rate(_symmetric(10, 0.8), np.repeat(np.arange(10), 3)) == pytest.approx(0.8)
    # 3 of 4 labels say class 0 (kept whole), 1 of 4 class 1 (half of its labels right): 1 - (0.75 + 0.125)
    assert estimated_noise_rate([[1.0, 0.0], [0.5, 0.5]], [0, 0, 0, 1]) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="square"):
        estimated_noise_rate(np.ones((2, 3)), [0, 1])
    with pytest.raises(ValueError, match=r"labels in \[0, 2\)"):
        estimated_noise_rate(np.eye(2), [0, 2])


def test_the_switch_floor_is_three_quarters_of_the_labels_estimated_right_never_below_the_configured_one():
    config = smoke_config(**{"stage1.floor_fraction": 0.05})
    assert heavy_noise_overrides(config, 0.8) == {"posterior": "noisy", "propagation": "pixels",
                                                  "floor_fraction": 0.15, "propagation_alpha": 0.99,
                                                  "propagation_input": "labels"}
    # To the nearest 5%: estimates a little apart (float rounding moved one by 0.014) give the same floor.
    assert {heavy_noise_overrides(config, rate)["floor_fraction"] for rate in (0.775, 0.789, 0.805, 0.82)} == {0.15}
    assert heavy_noise_overrides(config, 0.6)["floor_fraction"] == 0.3
    assert heavy_noise_overrides(config, 0.99)["floor_fraction"] == 0.05


def test_the_switch_spreads_what_heavy_noise_input_says_as_far_as_heavy_noise_alpha_says():
    assert heavy_noise_overrides(smoke_config(), 0.8)["propagation_alpha"] == 0.99
    assert heavy_noise_overrides(smoke_config(**{"stage1.heavy_noise_alpha": 0.9}), 0.8)["propagation_alpha"] == 0.9
    assert heavy_noise_overrides(smoke_config(), 0.8)["propagation_input"] == "labels"
    assert heavy_noise_overrides(smoke_config(**{"stage1.heavy_noise_input": "posterior"}),
                                 0.8)["propagation_input"] == "posterior"


def test_the_switch_decides_from_the_cluster_estimate_of_the_posteriors_alone():
    # Posteriors at the rows of a 4-class transition matrix with 60% of the labels wrong (symmetric).
    rng = np.random.default_rng(0)
    transition = _symmetric(4, 0.6)
    clean = np.repeat(np.arange(4), 50)
    probabilities = transition[clean] + rng.normal(0.0, 0.005, (200, 4))
    probabilities = np.clip(probabilities, 1e-3, None)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    noisy = np.array([rng.choice(4, p=transition[c]) for c in clean])
    estimate = cluster_transition(smoke_config(), probabilities)
    assert heavy_noise_decision(smoke_config(**{"stage1.heavy_noise_rate": 0.0}), estimate, noisy) is None
    decision = heavy_noise_decision(smoke_config(**{"stage1.heavy_noise_rate": 0.5}), estimate, noisy)
    assert decision["estimated_noise_rate"] == pytest.approx(0.6, abs=0.03)
    assert decision["switched"] and decision["overrides"]["propagation"] == "pixels"
    decision = heavy_noise_decision(smoke_config(**{"stage1.heavy_noise_rate": 0.7}), estimate, noisy)
    assert not decision["switched"] and decision["overrides"] == {}


def test_the_second_round_takes_the_switchs_overrides_but_the_graphs_spread_only_when_stage1_switched():
    config = smoke_config()
    assert selection_config(config, {}) is config
    assert selection_config(config, {"heavy_noise": {"switched": False, "overrides": {}}}) is config
    switched = selection_config(config, {"heavy_noise": {"switched": True, "overrides": {
        "posterior": "noisy", "propagation": "pixels", "floor_fraction": 0.15, "propagation_alpha": 0.99,
        "propagation_input": "labels"}}})
    assert (switched.stage1.propagation, switched.stage1.floor_fraction) == ("pixels", 0.15)
    # Stage 1's alone: the second round spreads its own model's posterior, at the configured alpha.
    assert switched.stage1.propagation_alpha == config.stage1.propagation_alpha == 0.9
    assert switched.stage1.propagation_input == "posterior"
    assert config.stage1.propagation == "none"  # the run's own config is not touched


def test_under_the_switch_stage2_trains_with_the_pretrainings_dropout_when_its_own_is_lower():
    own_start = {"stage2.heavy_noise_init_from_stage1": True, "stage2.heavy_noise_ensemble_size": 1}  # dropout alone
    assert stage2_overrides(smoke_config(**{"model.dropout": 0.5, "stage2.dropout": 0.2}, **own_start)) == {
        "dropout": 0.5}
    assert stage2_overrides(smoke_config(**{"model.dropout": 0.5}, **own_start)) == {}  # unset: the model's
    assert stage2_overrides(smoke_config(**{"model.dropout": 0.2, "stage2.dropout": 0.5}, **own_start)) == {}
    config = smoke_config(**{"model.dropout": 0.5, "stage2.dropout": 0.2}, **own_start)
    assert training_config(config, {}) == (config, {})
    assert training_config(config, {"heavy_noise": {"switched": False, "overrides": {}}}) == (config, {})
    switched, overrides = training_config(config, {"heavy_noise": {"switched": True, "overrides": {}}})
    assert overrides == {"dropout": 0.5} and (switched.stage2.dropout, config.stage2.dropout) == (0.5, 0.2)
    # Read off the config as it is now: a Stage-2 dropout above the pre-training's, given after the selection
    # was recorded, is left alone.
    higher = smoke_config(**{"model.dropout": 0.5, "stage2.dropout": 0.7}, **own_start)
    assert training_config(higher, {"heavy_noise": {"switched": True, "overrides": {}}}) == (higher, {})


def test_under_the_switch_stage2_starts_from_a_fresh_network_unless_told_otherwise():
    config = smoke_config(**{"model.dropout": 0.5, "stage2.dropout": 0.5, "stage2.heavy_noise_ensemble_size": 1})
    assert config.stage2.init_from_stage1 and not config.stage2.heavy_noise_init_from_stage1  # the defaults
    switched, overrides = training_config(config, {"heavy_noise": {"switched": True, "overrides": {}}})
    assert overrides == {"init_from_stage1": False} and not switched.stage2.init_from_stage1
    assert config.stage2.init_from_stage1  # the run's own config is not touched
    assert training_config(config, {"heavy_noise": {"switched": False, "overrides": {}}}) == (config, {})
    fresh = smoke_config(**{"stage2.init_from_stage1": False, "stage2.heavy_noise_ensemble_size": 1})  # already fresh
    assert stage2_overrides(fresh) == {}
    assert settings("stage2", {"dropout": 0.5, "init_from_stage1": False}) == (
        "stage2.dropout=0.5, stage2.init_from_stage1=False")


def test_a_switched_selection_is_the_noisy_posterior_propagated_with_the_scaled_floor(stage1_run):
    config, data, workdir, probabilities = stage1_run
    # heavy_noise_rate: any estimate above it switches
    config = confidence_config(config, posterior="corrected", heavy_noise_rate=1e-6)
    stats = select_labels(config, data, workdir)
    heavy = stats["heavy_noise"]
    assert heavy["switched"] and stats["posterior"] == "noisy" and stats["propagation"] == "pixels"
    assert [entry["option"] for entry in stats["fallbacks"]][:1] == [
        "the selection for lower noise (stage1.heavy_noise_rate=1e-06)"]
    switched = config.copy_and_resolve_references()
    switched.stage1.propagation = "pixels"
    switched.stage1.propagation_alpha = 0.99  # spread further than the configured 0.9 ...
    assert heavy["overrides"]["propagation_alpha"] == 0.99 and heavy["overrides"]["propagation_input"] == "labels"
    labels = one_hot_labels(data.train.labels, data.num_classes)  # ... and the noisy labels, not the posterior
    expected = select_confident_labels(propagate_split(switched, data, data.train, labels), data.train.labels,
                                       float(config.stage1.threshold), heavy["overrides"]["floor_fraction"],
                                       top_up=config.stage1.top_up)
    np.testing.assert_array_equal(load_selection(workdir, data), expected)

    config.stage1.heavy_noise_rate = 1.0  # never above: the selection of the configured keys
    stats = select_labels(config, data, workdir)
    assert not stats["heavy_noise"]["switched"] and stats["propagation"] == "none"
    config.stage1.heavy_noise_rate = 0.0
    unswitched = load_selection(workdir, data)
    stats = select_labels(config, data, workdir)
    assert "heavy_noise" not in stats
    np.testing.assert_array_equal(load_selection(workdir, data), unswitched)


def test_the_switch_is_refused_before_training_on_data_over_the_graphs_limit(stage1_run, monkeypatch):
    config, data, _, _ = stage1_run
    config = config.copy_and_resolve_references()
    config.method = "two_stage"
    config.stage1.heavy_noise_rate = 0.65
    monkeypatch.setattr("tf_twostage.runs.propagation.MAX_EXAMPLES", len(data.train) - 1)
    with pytest.raises(ValueError, match=r"stage1.heavy_noise_rate=0.65 may switch on stage1.propagation=pixels, "
                                         r"which compares every pair of images .* set stage1.heavy_noise_rate=0"):
        check_preconditions(config, data)
    config.stage1.heavy_noise_rate = 0.0
    check_preconditions(config, data)


def test_config_checks_name_a_bad_heavy_noise_rate():
    with pytest.raises(ValueError, match=r"stage1.heavy_noise_rate"):
        validate_config(smoke_config(**{"stage1.heavy_noise_rate": 1.5}), METHODS)
