"""stage2.ensemble_size: the last Stage-2 round trains several networks and the run's classifier averages
them; the average trains, saves, reloads, evaluates and exports like one network."""

import json
import shutil

import keras
import ml_collections
import numpy as np
import pytest

from tests.conftest import smoke_config
from tf_twostage.config.checks import validate_config
from tf_twostage.data.prepare import prepare_data
from tf_twostage.models import build_classifier
from tf_twostage.models.ensemble import MAX_MEMBERS, average_ensemble, ensemble_members
from tf_twostage.runs.experiment import METHODS, run_experiment
from tf_twostage.runs.heavy_noise import stage2_overrides
from tf_twostage.serving.evaluation import evaluate_model, saved_model_probabilities
from tf_twostage.serving.export import recorded_ensemble_size, stored_ensemble_size
from tf_twostage.serving.prediction import load_export
from tf_twostage.training.metrics import predict_probabilities

MLP = ml_collections.ConfigDict({"name": "mlp", "hidden_units": (8,), "dropout": 0.0})


def _networks(count, seed=0, shape=(6, 6, 1)):
    return [build_classifier(MLP, shape, 3, seed=seed + k) for k in range(count)]


def test_the_ensemble_outputs_the_mean_of_its_networks_probabilities():
    networks = _networks(3)
    ensemble = average_ensemble(networks)
    images = np.random.RandomState(0).rand(5, 6, 6, 1).astype(np.float32)
    expected = np.mean([network.predict(images, verbose=0) for network in networks], axis=0)
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert [member.name for member in ensemble_members(ensemble)] == ["member_0", "member_1", "member_2"]
    # The members share the networks' weights: training a network trains the ensemble.
    networks[1].layers[-2].kernel.assign(np.zeros_like(networks[1].layers[-2].kernel))
    moved = np.mean([network.predict(images, verbose=0) for network in networks], axis=0)
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), moved, rtol=1e-5, atol=1e-6)


def test_one_network_is_returned_as_it_is_and_bad_members_are_refused():
    network = _networks(1)[0]
    assert average_ensemble([network]) is network and ensemble_members(network) == [network]
    with pytest.raises(ValueError, match="at least one member; got none"):
        average_ensemble([])
    with pytest.raises(ValueError, match="images of one shape"):
        average_ensemble([_networks(1)[0], _networks(1, shape=(8, 8, 1))[0]])


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras, loading into the single network
def test_the_ensemble_weights_load_into_a_freshly_built_ensemble(tmp_path):
    ensemble = average_ensemble(_networks(2))
    path = str(tmp_path / "ensemble.weights.h5")
    ensemble.save_weights(path)
    fresh = average_ensemble(_networks(2, seed=10))
    images = np.random.RandomState(1).rand(4, 6, 6, 1).astype(np.float32)
    assert not np.allclose(fresh.predict(images, verbose=0), ensemble.predict(images, verbose=0))
    fresh.load_weights(path)
    np.testing.assert_array_equal(fresh.predict(images, verbose=0), ensemble.predict(images, verbose=0))
    with pytest.raises(ValueError):  # a single network cannot take an ensemble's weights
        _networks(1)[0].load_weights(path)


@pytest.mark.parametrize("value", [0, -1, MAX_MEMBERS + 1])
def test_bad_ensemble_sizes_are_refused_before_training(value):
    for key in ("ensemble_size", "heavy_noise_ensemble_size"):
        with pytest.raises(ValueError, match=f"stage2.{key} must be"):
            validate_config(smoke_config(**{"method": "two_stage", f"stage2.{key}": value}), tuple(METHODS))


def test_the_heavy_noise_switch_asks_for_at_least_its_ensemble_size():
    config = smoke_config(**{"stage2.init_from_stage1": False})
    assert config.stage2.ensemble_size == 1 and config.stage2.heavy_noise_ensemble_size == 3  # the defaults
    assert stage2_overrides(config) == {"ensemble_size": 3}
    config.stage2.ensemble_size = 5  # already larger: kept
    assert stage2_overrides(config) == {}
    config.stage2.heavy_noise_ensemble_size = 1
    config.stage2.ensemble_size = 1
    assert stage2_overrides(config) == {}


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ensemble")
    config = smoke_config(**{"method": "two_stage", "stage2.ensemble_size": 2, "stage2.init_from_stage1": False})
    results = run_experiment(config, str(workdir))
    return config, workdir, results


def test_a_run_trains_its_networks_from_their_own_seeds_and_averages_them(ensemble_run):
    config, workdir, results = ensemble_run
    assert results["ensemble_size"] == 2
    assert json.loads((workdir / "final" / "outcome.json").read_text())["ensemble_size"] == 2
    assert {"stage2", "stage2_member1"} <= set(results["history"])
    members = results["validation"]["members"]
    assert len(members) == 2 and all(member["kept_epoch"] >= 1 for member in members)
    assert "each of the 2 networks of the ensemble keeps its own epoch" in results["validation"]["used_for"]
    assert recorded_ensemble_size(str(workdir), str(workdir / "final" / "classifier.weights.h5")) == 2
    assert "the classifier averages 2 networks of the last Stage-2 round, trained from seeds 0 to 1" in (
        workdir / "report.md").read_text()
    assert recorded_ensemble_size(str(workdir), str(workdir / "stage1" / "classifier.weights.h5")) == 1
    # The two networks differ (seed, seed + 1), and the run's test accuracy is their average's.
    data = prepare_data(config)
    ensemble = average_ensemble([build_classifier(config.model, data.image_shape, data.num_classes)
                                 for _ in range(2)])
    ensemble.load_weights(str(workdir / "final" / "classifier.weights.h5"))
    first, second = ensemble_members(ensemble)
    assert any(not np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    probabilities = predict_probabilities(ensemble, data.test, data.preprocessor)
    assert results["test_accuracy"] == pytest.approx(float(np.mean(probabilities.argmax(1) == data.test.clean_labels)))


def test_evaluate_and_the_export_score_the_average(ensemble_run):
    config, workdir, results = ensemble_run
    report = evaluate_model("test", workdir=str(workdir))
    assert report["accuracy"] == pytest.approx(results["test_accuracy"])
    export = load_export(results["export_dir"])
    data = prepare_data(config)
    served = saved_model_probabilities(export, data.test)
    assert float(np.mean(served.argmax(1) == data.test.clean_labels)) == pytest.approx(results["test_accuracy"])


def test_moved_ensemble_weights_are_recognized_from_the_file_itself(ensemble_run, tmp_path):
    # --weights naming a copy of the final weights (no outcome.json beside it): the file says how many networks.
    config, workdir, results = ensemble_run
    moved = tmp_path / "elsewhere.weights.h5"
    shutil.copyfile(workdir / "final" / "classifier.weights.h5", moved)
    assert stored_ensemble_size(str(moved)) == 2 and recorded_ensemble_size(str(workdir), str(moved)) == 2
    assert stored_ensemble_size(str(workdir / "stage1" / "classifier.weights.h5")) == 1
    (tmp_path / "not_weights.h5").write_text("not an HDF5 file")
    assert stored_ensemble_size(str(tmp_path / "not_weights.h5")) == 1  # loading it then says what is wrong
    report = evaluate_model("test", workdir=str(workdir), weights=str(moved), output=str(tmp_path / "report.json"))
    assert report["accuracy"] == pytest.approx(results["test_accuracy"])


def test_a_rerun_reloads_the_average_from_the_final_weights(ensemble_run):
    config, workdir, results = ensemble_run
    path = workdir / "manifest.json"
    manifest = json.loads(path.read_text())
    for stage in ("export", "results"):  # the training stays finished: the classifier comes from final/
        manifest["stages"].pop(stage)
    path.write_text(json.dumps(manifest))
    again = run_experiment(config, str(workdir))
    assert again["test_accuracy"] == pytest.approx(results["test_accuracy"]) and again["ensemble_size"] == 2


def test_each_network_is_its_seeds_whatever_ran_before_it_in_the_process(ensemble_run, tmp_path):
    # Resumed after Stage 1 (a fresh process would be the same: nothing was built before Stage 2 here), the
    # networks start from the same initialization as in the run that went straight through Stage 1 first.
    config, workdir, results = ensemble_run
    for name in ("config.json", "manifest.json"):
        shutil.copy(workdir / name, tmp_path / name)
    shutil.copytree(workdir / "stage1", tmp_path / "stage1")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["stages"] = {stage: entry for stage, entry in manifest["stages"].items()
                          if stage in ("stage1", "selection")}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    resumed = run_experiment(config, str(tmp_path))
    assert resumed["test_accuracy"] == pytest.approx(results["test_accuracy"])
    data = prepare_data(config)
    weights = []
    for folder in (workdir, tmp_path):
        ensemble = average_ensemble([build_classifier(config.model, data.image_shape, data.num_classes)
                                     for _ in range(2)])
        ensemble.load_weights(str(folder / "final" / "classifier.weights.h5"))
        weights.append(ensemble.get_weights())
    for straight, again in zip(*weights):
        np.testing.assert_allclose(again, straight, atol=1e-5)
