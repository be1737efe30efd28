"""SIGKILL during Stage 1 and again during Stage 2, rerun the same command: the same final results as an
uninterrupted run of the same seed (the real program, the smoke preset, temporal ensembling)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--config=configs/smoke.py", "--config.method=two_stage", "--config.stage2.algorithm=temporal_ensembling",
        "--config.stage1.epochs=3", "--config.stage2.epochs=4"]


def _command(workdir, *extra):
    return [sys.executable, os.path.join(ROOT, "bin", "run_experiment.py"), *ARGS, f"--workdir={workdir}", *extra]


def _environment():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def _kill_when(workdir, marker: str, timeout: float = 300.0) -> None:
    """Starts the run and SIGKILLs it as soon as `workdir/marker` exists."""
    process = subprocess.Popen(_command(workdir), cwd=ROOT, env=_environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    try:
        while not os.path.exists(os.path.join(workdir, marker)):
            if process.poll() is not None:
                raise AssertionError(f"the run ended (rc {process.returncode}) before {marker} appeared: "
                                     f"{process.stderr.read()[-2000:]}")
            if time.time() > deadline:
                raise AssertionError(f"{marker} did not appear within {timeout} s")
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


def _run(workdir, *extra):
    done = subprocess.run(_command(workdir, *extra), cwd=ROOT, env=_environment(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _read(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def test_killed_twice_then_rerun_equals_an_uninterrupted_run(tmp_path):
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    _run(reference)

    _kill_when(crashed, os.path.join("checkpoints", "stage1", "epoch-00001"))
    assert not (crashed / "results.json").exists()
    assert not RunStages(crashed).done("stage1")
    _kill_when(crashed, os.path.join("checkpoints", "stage2", "epoch-00002"))
    assert RunStages(crashed).done("stage1") and RunStages(crashed).done("selection")
    assert not RunStages(crashed).done("training")
    stage1_finished = RunStages(crashed).finished("stage1")
    _run(crashed)

    expected, actual = _read(reference / "results.json"), _read(crashed / "results.json")
    assert actual["test_accuracy"] == expected["test_accuracy"]
    assert actual["test_confusion_matrix"] == expected["test_confusion_matrix"]
    assert actual["history"] == expected["history"]  # every epoch of both stages, the resumed ones too
    assert actual["stage1"] == expected["stage1"]
    for name in ("selection.npz", "predictions.npz"):
        with np.load(reference / "stage1" / name) as want, np.load(crashed / "stage1" / name) as got:
            for key in want.files:
                np.testing.assert_array_equal(want[key], got[key])
    assert RunStages(crashed).finished("stage1") == stage1_finished  # Stage 1 was not run again
    assert sorted(os.listdir(crashed / "export" / "mnist5k")) == ["1"]
    assert not (crashed / "checkpoints").exists()  # a finished run drops its resume checkpoints

    again = _run(crashed)  # a finished run: nothing to do, same results
    assert "test accuracy" in again.stdout
    assert _read(crashed / "results.json") == actual


def test_reusing_a_workdir_with_another_config_is_refused_then_restarted(tmp_path):
    workdir = tmp_path / "run"
    _kill_when(workdir, os.path.join("checkpoints", "stage1", "epoch-00001"))
    refused = subprocess.run(_command(workdir, "--config.noise.rate=0.2"), cwd=ROOT, env=_environment(),
                             capture_output=True, text=True)
    assert refused.returncode == 2
    assert "noise.rate: 0.6 in the workdir, 0.2 now" in refused.stderr and "--restart" in refused.stderr
    assert not (workdir / "results.json").exists()
    _run(workdir, "--config.noise.rate=0.2", "--config.stage2.epochs=1", "--restart")
    assert _read(workdir / "results.json")["noise"]["rate"] == 0.2


class RunStages:
    """The manifest of a workdir, read fresh."""

    def __init__(self, workdir):
        path = os.path.join(workdir, "manifest.json")
        self.stages = _read(path)["stages"] if os.path.exists(path) else {}

    def done(self, stage):
        return stage in self.stages

    def finished(self, stage):
        return self.stages[stage]["finished"]
