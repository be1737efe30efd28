"""End to end: the real runner on the smoke preset (MNIST-5k, one tiny epoch), in process and as a program."""

import json
import os
import subprocess
import sys

import pytest

from tf_twostage.runs.experiment import run_experiment

from tests.conftest import ROOT, smoke_config as _smoke_config


def test_cross_entropy_run_leaves_config_and_results_with_the_contract_keys(tmp_path):
    results = run_experiment(_smoke_config(), str(tmp_path))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["test_accuracy"] == pytest.approx(results["test_accuracy"])
    for key in ("method", "dataset", "seed", "noise", "test_accuracy", "stage1", "wall_seconds"):
        assert key in on_disk
    assert on_disk["method"] == "ce" and on_disk["dataset"] == "mnist5k"
    assert on_disk["noise"]["type"] == "asymmetric" and on_disk["noise"]["rate"] == 0.6
    # 4 of 10 classes flip with probability 0.6: about 24% of the labels change.
    assert 0.2 < on_disk["noise"]["realized_rate"] < 0.28
    assert on_disk["num_train"] == 3600 and on_disk["num_validation"] == 400 and on_disk["num_test"] == 1000
    assert on_disk["test_accuracy"] > 0.3  # one tiny epoch already learns something
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["noise"]["rate"] == 0.6 and config["data"]["name"] == "mnist5k"
    assert os.listdir(tmp_path / "logs" / "stage1")
    assert (tmp_path / "final" / "classifier.weights.h5").exists()
    assert on_disk["export_dir"] == str(tmp_path / "export" / "mnist5k" / "1")
    assert (tmp_path / "export" / "mnist5k" / "1" / "saved_model.pb").exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]


def test_same_seed_gives_the_same_result(tmp_path):
    first = run_experiment(_smoke_config(), str(tmp_path / "a"))
    second = run_experiment(_smoke_config(), str(tmp_path / "b"))
    assert first["test_accuracy"] == second["test_accuracy"]
    assert first["noise"]["realized_rate"] == second["noise"]["realized_rate"]


def test_bad_config_fails_before_writing_results(tmp_path):
    with pytest.raises(ValueError, match="noise.rate"):
        run_experiment(_smoke_config(**{"noise.rate": 2.0}), str(tmp_path))
    assert not (tmp_path / "results.json").exists()


def _run_program(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "run_experiment.py"), *args],
        capture_output=True, text=True, cwd=ROOT,
    )


def test_program_prints_the_result_table_and_accepts_overrides(tmp_path):
    done = _run_program("--config=configs/smoke.py", f"--workdir={tmp_path}", "--config.noise.type=symmetric",
                        "--config.noise.rate=0.2", "--config.seed=1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| method" in done.stdout and "symmetric 0.2" in done.stdout
    assert json.loads((tmp_path / "results.json").read_text())["seed"] == 1


def test_program_refuses_an_out_of_range_value_with_a_clear_message(tmp_path):
    done = _run_program("--config=configs/smoke.py", f"--workdir={tmp_path}", "--config.noise.rate=1.5")
    assert done.returncode != 0
    assert "noise.rate must be in [0, 1], got 1.5" in done.stderr
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("algorithm", ["pi", "temporal_ensembling"])
def test_two_stage_run_selects_labels_trains_stage2_and_reports_the_selection(tmp_path, algorithm):
    config = _smoke_config(**{"method": "two_stage", "stage2.algorithm": algorithm, "stage2.epochs": 2})
    results = run_experiment(config, str(tmp_path))
    stage1 = results["stage1"]
    assert 0.0 < stage1["kept_fraction"] < 1.0  # some labels kept, some dropped
    assert stage1["unlabeled_fraction"] == pytest.approx(1.0 - stage1["kept_fraction"])
    assert stage1["kept_fraction"] == pytest.approx(stage1["kept_correct_fraction"]
                                                    + stage1["kept_incorrect_fraction"])
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["stage1"]["kept_fraction"] == stage1["kept_fraction"]
    assert len(on_disk["history"]["stage2"]["loss/consistency"]) == 2
    assert on_disk["history"]["stage2"]["monitor/consistency_weight"][0] == 0.0
    assert (tmp_path / "stage1" / "selection.npz").exists()
    assert os.listdir(tmp_path / "logs" / "stage2")
    assert results["test_accuracy"] > 0.2


def test_wall_seconds_is_the_measured_run_time(tmp_path):
    """results.json["wall_seconds"] is the run's wall time (once), not the training time added on top of it."""
    import time

    started = time.time()
    results = run_experiment(_smoke_config(), str(tmp_path))
    measured = time.time() - started
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["wall_seconds"] == pytest.approx(measured, rel=0.05)
    assert 0 < on_disk["training_seconds"] <= on_disk["wall_seconds"]
    assert results["wall_seconds"] == on_disk["wall_seconds"]
