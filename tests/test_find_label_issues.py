"""bin/find_label_issues.py end to end on a tiny image folder: K-fold, outputs, resume, kept.csv, bad inputs."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tf_twostage.runs.experiment import run_experiment
from tests.conftest import ROOT, smoke_config as _smoke_config

CLASSES = ("blue", "green", "red")
PER_CLASS = 10
SIZE = 8
# (true color, folder it is filed under): two mislabeled images.
MISLABELED = (("red", "blue"), ("green", "red"))


def _image(path: pathlib.Path, color: int, seed: int) -> None:
    rng = np.random.RandomState(seed)
    pixels = rng.randint(0, 60, (SIZE, SIZE, 3))
    pixels[..., 2 - color] += 180  # blue, green, red in channel 2, 1, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def folder_data(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("labels_data")
    seed = 0
    for split, count in (("train", PER_CLASS), ("test", 2)):
        for color, name in enumerate(CLASSES):
            for number in range(count):
                seed += 1
                _image(root / split / name / f"{name}{number:02d}.png", color, seed)
    for number, (true, filed) in enumerate(MISLABELED):
        _image(root / "train" / filed / f"zz_wrong{number}.png", CLASSES.index(true), 1000 + number)
    return root


def _program(name, *args):
    return [sys.executable, os.path.join(ROOT, "bin", name), *args]


def _overrides(root: pathlib.Path) -> list:
    return ["--config=" + os.path.join(ROOT, "configs", "smoke.py"), "--config.data.name=folder",
            f"--config.data.dir={root}", "--config.data.train=train", "--config.data.test=test",
            f"--config.data.image_size=({SIZE}, {SIZE})", "--config.noise.type=none", "--config.noise.rate=0.0",
            "--config.label_issues.folds=2", "--config.stage1.epochs=8", "--config.stage1.optimizer=adam",
            "--config.stage1.learning_rate=0.01", "--config.model.dropout=0.0", "--config.data.val_fraction=0.2"]


@pytest.fixture(scope="module")
def kfold_run(folder_data, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("labels_run")
    first = subprocess.run(_program("find_label_issues.py", *_overrides(folder_data), f"--workdir={workdir}"),
                           capture_output=True, text=True, cwd=ROOT)
    again = subprocess.run(_program("find_label_issues.py", *_overrides(folder_data), f"--workdir={workdir}"),
                           capture_output=True, text=True, cwd=ROOT)
    return workdir, first, again


def test_program_writes_issues_kept_health_and_pred_probs(kfold_run, folder_data):
    workdir, first, _ = kfold_run
    assert first.returncode == 0, first.stderr[-2000:]
    assert "fold 1/2: trained on" in first.stdout and "fold 2/2: trained on" in first.stdout
    folder = workdir / "label_issues"
    num_examples = len(CLASSES) * PER_CLASS + len(MISLABELED)
    pred_probs = np.load(folder / "pred_probs.npy")
    assert pred_probs.shape == (num_examples, len(CLASSES))
    np.testing.assert_allclose(pred_probs.sum(axis=1), 1.0, atol=1e-4)

    with open(folder / "issues.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == num_examples
    assert list(rows[0]) == ["index", "path", "given_label", "given_class", "suggested_label", "suggested_class",
                             "label_quality", "is_issue"]
    flagged = [row for row in rows if row["is_issue"] == "1"]
    assert rows[:len(flagged)] == flagged  # flagged first, then the rest
    qualities = [float(row["label_quality"]) for row in flagged]
    assert qualities == sorted(qualities)
    # The two mislabeled images are the top suspects; the flagged ones get their true color suggested.
    wrong = {os.path.basename(row["path"]): row for row in rows[:2]}
    assert sorted(wrong) == ["zz_wrong0.png", "zz_wrong1.png"], [row["path"] for row in rows[:4]]
    assert flagged and all(row["suggested_class"] != row["given_class"] for row in flagged)
    true_colors = {"zz_wrong0.png": "red", "zz_wrong1.png": "green"}
    assert all(row["suggested_class"] == true_colors[name] for name, row in wrong.items() if row["is_issue"] == "1")

    with open(folder / "kept.csv", newline="") as file:
        kept = list(csv.reader(file))
    assert kept[0] == ["path", "label"] and len(kept) - 1 == num_examples - len(flagged)
    assert all(os.path.isfile(path) and label in CLASSES for path, label in kept[1:])

    health = json.loads((folder / "label_health.json").read_text())
    assert health["num_examples"] == num_examples and len(health["per_class"]) == len(CLASSES)
    assert health["summary"]["num_issues"] == len(flagged)
    report = (folder / "label_health.md").read_text()
    for plot in ("label_quality_per_class.png", "confused_pairs.png", "top_suspects.png"):
        assert (folder / "plots" / plot).stat().st_size > 1000 and f"plots/{plot}" in report
    summary = json.loads(first.stdout[first.stdout.index("{"):])
    assert summary["num_issues"] == len(flagged)


def test_rerun_reuses_the_finished_folds(kfold_run):
    workdir, first, again = kfold_run
    assert again.returncode == 0, again.stderr[-2000:]
    assert "fold 1/2: already done" in again.stdout and "fold 2/2: already done" in again.stdout
    assert "trained on" not in again.stdout
    assert json.loads(again.stdout[again.stdout.index("{"):]) == json.loads(first.stdout[first.stdout.index("{"):])


def test_kept_csv_trains_a_follow_up_run(kfold_run, folder_data, tmp_path):
    workdir, _, _ = kfold_run
    kept_source = folder_data / "kept_from_label_issues.csv"  # a CSV source must lie under data.dir
    kept_source.write_text((workdir / "label_issues" / "kept.csv").read_text())
    kept_rows = len(kept_source.read_text().strip().splitlines()) - 1
    config = _smoke_config(**{"data.name": "csv", "data.dir": str(folder_data), "data.train": kept_source.name,
                              "data.test": "test_list.csv", "data.image_size": (SIZE, SIZE),
                              "noise.type": "none", "noise.rate": 0.0})
    (folder_data / "test_list.csv").write_text("".join(
        f"{path},{path.parent.name}\n" for path in sorted((folder_data / "test").glob("*/*.png"))))
    results = run_experiment(config, str(tmp_path / "follow_up"))
    assert results["num_train"] + results["num_validation"] == kept_rows
    assert 0.0 <= results["test_accuracy"] <= 1.0


def test_bad_pred_probs_files_get_one_line_errors(kfold_run, folder_data, tmp_path):
    workdir, _, _ = kfold_run
    good = np.load(workdir / "label_issues" / "pred_probs.npy")
    not_summing = good.copy()
    not_summing[3] *= 0.5
    with_nan = good.copy()
    with_nan[5, 1] = np.nan
    cases = {
        "not_summing": (not_summing, "row 3 sums to"),
        "wrong_shape": (good[:, :2], f"has shape ({len(good)}, 2); expected ({len(good)}, 3)"),
        "nan": (with_nan, "must be finite, got nan at row 5, column 1"),
        "labels_as_probs": (np.zeros(len(good), np.int64), f"has shape ({len(good)},)"),
    }
    processes = {}
    for name, (array, _) in cases.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, array)
        processes[name] = subprocess.Popen(
            _program("find_label_issues.py", *_overrides(folder_data), f"--workdir={tmp_path / name}",
                     f"--pred_probs={path}"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert process.returncode == 2, (name, stderr[-2000:])
        assert len(errors) == 1 and cases[name][1] in errors[0], (name, errors)
        assert not (tmp_path / name / "label_issues").exists()
