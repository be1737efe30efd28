"""The validation score: the epoch it keeps (also across a resume), its value, and the report in results.json."""

import json

import keras
import numpy as np
import pytest

from tf_twostage.baselines.transition import estimated_accuracy_standard_error, estimated_clean_accuracy
from tf_twostage.data.pipelines import supervised_dataset
from tf_twostage.data.preprocess import Preprocessor
from tf_twostage.runs.experiment import run_experiment
from tf_twostage.runs.validation import MAX_STANDARD_ERROR, corrected_value_doubt
from tf_twostage.training.best_epoch import BestEpochKeeper, best_beats_last
from tf_twostage.training.resume import resume_fit
from tests.conftest import make_split
from tests.conftest import smoke_config as _smoke_config


def test_estimated_clean_accuracy_is_exact_with_the_true_matrix_and_plain_without_noise():
    clean = np.repeat(np.arange(3), 300)
    predictions = clean.copy()
    predictions[:90] = 1  # 90 of the 300 images of class 0 predicted wrongly: clean accuracy 0.9
    transition = np.array([[0.6, 0.4, 0.0], [0.0, 0.8, 0.2], [0.1, 0.1, 0.8]])
    # Noisy labels whose joint frequencies with the predictions are exactly C T (per clean class and
    # prediction, the noisy labels are split in T's proportions).
    noisy = clean.copy()
    for y in range(3):
        for k in range(3):
            group = np.flatnonzero((clean == y) & (predictions == k))
            counts = np.round(transition[y] * len(group)).astype(int)
            noisy[group] = np.repeat(np.arange(3), counts)[:len(group)]
    assert np.mean(predictions == noisy) < 0.8  # the plain noisy accuracy is far off
    assert estimated_clean_accuracy(predictions, noisy, transition) == pytest.approx(0.9, abs=1e-9)
    assert estimated_clean_accuracy(predictions, clean, np.eye(3)) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="row-stochastic"):
        estimated_clean_accuracy(predictions, noisy, np.ones((3, 3)))


def test_standard_error_of_the_estimate_is_deterministic_and_shrinks_with_more_examples():
    rng = np.random.default_rng(0)
    transition = np.full((10, 10), 0.5 / 9)
    np.fill_diagonal(transition, 0.5)

    def error(count):
        clean = rng.integers(0, 10, count)
        predictions = np.where(rng.random(count) < 0.9, clean, (clean + 1) % 10)
        noisy = np.where(rng.random(count) < 0.5, (clean + rng.integers(1, 10, count)) % 10, clean)
        first = estimated_accuracy_standard_error(predictions, noisy, transition, seed=3)
        assert first == estimated_accuracy_standard_error(predictions, noisy, transition, seed=3)
        return first

    small, large = error(400), error(6400)
    assert 0.035 < small < 0.07  # ~2.25 x the noisy accuracy's binomial error at symmetric 0.5
    assert large < small / 3


def test_an_over_correcting_matrix_shows_above_100_percent_unclipped_and_is_not_certain():
    # Predictions that agree with 90% of the noisy labels, corrected as if 20% of them had flipped:
    # the estimate exceeds 1 (clipped to 1 by default) and its bootstrap error is not zero.
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 2, 400)
    predictions = np.where(rng.random(400) < 0.9, noisy, 1 - noisy)
    transition = np.array([[0.8, 0.2], [0.2, 0.8]])
    unclipped = estimated_clean_accuracy(predictions, noisy, transition, clip=False)
    assert unclipped == pytest.approx((np.mean(predictions == noisy) - 0.2) / 0.6)
    assert unclipped > 1.1 and estimated_clean_accuracy(predictions, noisy, transition) == 1.0
    assert estimated_accuracy_standard_error(predictions, noisy, transition, seed=0) > 0.02


def test_a_corrected_score_is_doubted_when_above_100_percent_or_too_uncertain():
    assert corrected_value_doubt(0.93, 0.03, 400) is None
    assert corrected_value_doubt(1.04, 0.03, 400) is None  # within two standard errors of 100%
    assert "came out at 110.0%" in corrected_value_doubt(1.10, 0.03, 400)
    uncertain = corrected_value_doubt(0.70, MAX_STANDARD_ERROR + 0.01, 400)
    assert "standard error is 6.0%" in uncertain and "400 noisy validation images" in uncertain
    assert "data.clean" in uncertain


def _fit(keeper, directory, epochs):
    train, validation = make_split(40, 4, shape=(4, 4, 1)), make_split(12, 4, shape=(4, 4, 1), seed=1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(4),
                              keras.layers.Softmax()])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy",
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    history = resume_fit(model, supervised_dataset(train, Preprocessor(), 8, training=True), epochs=epochs,
                         steps_per_epoch=5, directory=str(directory), verbose=0, callbacks=[keeper],
                         validation_data=supervised_dataset(validation, Preprocessor(), 8, training=False))
    return model, history


def test_keeper_leaves_the_best_epoch_and_a_resumed_run_ends_on_the_same_one(tmp_path):
    keeper = BestEpochKeeper()
    model, history = _fit(keeper, tmp_path / "whole", 6)
    scores = history.history["val_accuracy"]
    assert keeper.best_epoch == int(np.argmax(scores))
    assert keeper.kept_epoch == (keeper.best_epoch if max(scores) > scores[-1] else 5)  # a tie keeps the last
    assert keeper.last_epoch == 5 and keeper.best_value == pytest.approx(max(scores))
    kept = model.get_weights()

    first = BestEpochKeeper()
    _fit(first, tmp_path / "split", 3)  # stopped after 3 epochs ...
    resumed = BestEpochKeeper()
    model, _ = _fit(resumed, tmp_path / "split", 6)  # ... and rerun: continues from the checkpoint
    assert resumed.best_epoch == keeper.best_epoch and resumed.kept_epoch == keeper.kept_epoch
    for mine, theirs in zip(model.get_weights(), kept):
        np.testing.assert_allclose(mine, theirs, atol=1e-6)


def test_best_epoch_is_kept_only_when_it_beats_the_last_by_more_than_two_standard_errors():
    # 400 examples at 0.9: one standard error is 1.5 points.
    assert best_beats_last(0.935, 0.9, 400) and not best_beats_last(0.925, 0.9, 400)
    assert best_beats_last(0.91, 0.9, 0)  # size unknown: any gain counts
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    for num_examples, kept_epoch in ((400, 0), (10, 1)):  # 0.9 vs 0.85: 3.3 SE on 400 examples, 0.5 on 10
        keeper = BestEpochKeeper(num_examples=num_examples)
        keeper.set_model(model)
        model.set_weights([np.ones((2, 1)), np.ones(1)])
        keeper.on_epoch_end(0, {"val_accuracy": 0.9})
        model.set_weights([np.zeros((2, 1)), np.zeros(1)])
        keeper.on_epoch_end(1, {"val_accuracy": 0.85})
        keeper.on_train_end()
        assert keeper.kept_epoch == kept_epoch and keeper.best_epoch == 0
        assert float(model.get_weights()[1][0]) == (1.0 if kept_epoch == 0 else 0.0)


def test_keep_last_keeps_the_last_epoch_and_still_names_the_best(tmp_path):
    keeper = BestEpochKeeper(keep="last")
    model, _ = _fit(keeper, tmp_path, 4)
    assert keeper.kept_epoch == 3
    for mine, last in zip(model.get_weights(), keeper.last_weights):
        np.testing.assert_array_equal(mine, last)
    with pytest.raises(ValueError, match="keep must be one of best, last; got 'first'"):
        BestEpochKeeper(keep="first")


def test_ce_run_reports_its_noisy_validation_corrected_and_the_epoch_it_kept(tmp_path):
    results = run_experiment(_smoke_config(**{"stage1.epochs": 2}), str(tmp_path))
    validation = json.loads((tmp_path / "results.json").read_text())["validation"]
    assert validation == results["validation"]
    assert validation["source"] == "noisy" and validation["num_examples"] == 400
    assert "corrected with the transition matrix estimated by confident learning" in validation["measured"]
    matrix = np.asarray(validation["transition_matrix"])
    assert matrix.shape == (10, 10) and np.allclose(matrix.sum(axis=1), 1.0)
    assert 0.0 <= validation["value"] <= 1.0 and validation["noisy_accuracy"] == pytest.approx(
        validation["val_accuracy_at_selected_epoch"], abs=1e-6)
    history = results["history"]["stage1"]["val_accuracy"]
    assert validation["selected_epoch"] == int(np.argmax(history)) + 1
    # Cross-entropy keeps its best epoch outright (a tie with the last keeps the last).
    assert validation["kept_epoch"] == (validation["selected_epoch"] if max(history) > history[-1] else 2)
    assert validation["last_epoch"] == 2 and "test_accuracy_last_epoch" in validation
    assert validation["standard_error"] > 0.0  # large here: a two-epoch model gives a poorly estimated matrix
    assert validation["value"] == pytest.approx(min(max(validation["unclipped_value"], 0.0), 1.0))
    assert validation["reliable"] == ("warning" not in validation)
    assert validation["reliable"] == (corrected_value_doubt(validation["unclipped_value"],
                                                            validation["standard_error"], 400) is None)


def test_two_stage_refined_source_scores_the_kept_validation_labels(tmp_path):
    results = run_experiment(_smoke_config(**{"method": "two_stage", "validation.source": "refined"}),
                             str(tmp_path))
    validation = results["validation"]
    assert validation["stage"] == "stage2" and validation["source"] == "refined"
    refined = results["stage1"]["refined_validation_size"]
    assert validation["num_examples"] == refined and f"the {refined} of 400" in validation["examples"]
    assert validation["value"] == pytest.approx(validation["val_accuracy_at_selected_epoch"], abs=1e-6)


def test_a_clean_validation_set_given_by_the_dataset_is_scored_clean_not_corrected():
    # Clothing1M fine-tuned on its clean subset: auto resolves to `noisy`, but the release's validation list is
    # clean (labels == clean labels): it is scored as it is. A held-out noisy split stays `noisy`.
    import types

    from tf_twostage.runs.validation import plan_validation

    config = _smoke_config(**{"method": "two_stage", "stage2.finetune_epochs": 2})
    given = make_split(30, 4)
    given = given.with_labels(given.labels, clean_labels=given.labels)
    data = types.SimpleNamespace(dataset=types.SimpleNamespace(name="clothing1m", validation=given),
                                 validation=given, clean=make_split(12, 4, index_offset=100))
    plan = plan_validation(config, data)
    assert plan.source == "clean" and plan.split is given
    assert plan.examples == "the 30 images of the dataset's own clean validation set, with their clean labels"
    held_out = given.with_labels((given.labels + 1) % 4, clean_labels=given.labels)
    data.dataset.validation, data.validation = None, held_out
    assert plan_validation(config, data).source == "noisy"


def test_clean_source_without_a_clean_subset_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="validation.source=clean needs a clean subset"):
        run_experiment(_smoke_config(**{"validation.source": "clean"}), str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()
