#!/usr/bin/env python3
"""Accuracy on data nobody tuned on: MNIST-5k written out as a folder of 32x32 RGB PNGs, through the own-data preset.

  nice -n 10 python benchmarks/own_data.py [--workdir=runs/own_data] [--seeds=0,1,2] \
      [--noise=pair:0.4,symmetric:0.5,instance:0.3] [--methods=keras,ce,improved_baseline,two_stage_pi,...] \
      [--overrides=--config.stage1.target_steps=500,...] [--clean_per_class=20] [--norun]
  python benchmarks/own_data.py --merge=benchmarks/results/own_data.json,other_machine.json  # combine, run nothing

The images: each digit of the embedded MNIST-5k (28x28 gray) is padded to 32x32, colored with a random
color and laid on a random two-color gradient background with pixel noise (seeded; the same images for
every cell). The test folder is mnist5k's fixed clean test split (100 per class); the training folder holds
the other 4,000 images under their *noisy* labels, as a user's web-crawled folder would (the runs use
`noise.type=none`: the noise is in the folder). With `--clean_per_class=N`, N training images of each class
(seeded) leave the noisy folder for a `clean/` folder under their true labels, the runs get
`--config.data.clean=clean` (the preset then scores on it and screens with the clean-set rule), and data and
runs go to `*_cleanN` folders. Noise settings, none of which any preset was tuned on:

- `pair:P`: pair flips 0->6, 1->7, 4->9, 8->3, 9->4 (not the paper's 2->7, 3->8, 5->6, 7->1), each with P.
- `symmetric:P`: to one of the 9 other classes, uniformly, with P.
- `instance:P`: instance-dependent (`tf_twostage.data.noise.instance_dependent_noise`): each image flips to the
  class a logistic-regression model (trained on the clean training images) finds most similar, with a
  per-image probability that averages P and grows with the model's doubt about the true class.

Rows: `keras` (the ~10-line Keras CNN a user would write, on the same folders, its last epoch), and `ce`,
`improved_baseline`, `two_stage_pi`, `two_stage_temporal_ensembling`, each one `bin/run_experiment.py` run with
`configs/folder.py`. Per cell: test accuracy, the reported validation score (`results.json["validation"]
["value"]`), the selected epoch, the last epoch's test accuracy and any fallbacks. Writes
benchmarks/results/own_data.json (with issue 13's acceptance lines under "acceptance") and prints the Markdown
tables. A cell whose results exist is not rerun; `--norun` runs none and summarizes the finished ones; `--merge` takes
the cells of earlier outputs of this program (cells run on other machines, or in a workdir since deleted)
instead of a workdir's, a finished cell of a later file replacing the same cell of an earlier one.
Never part of the test suite.
"""

import datetime
import json
import os
import shlex
import subprocess
import sys

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tf_twostage.utils import io_utils  # noqa: E402
from own_data_images import PAIRS, colored_digits, noisy_labels  # noqa: E402,F401  (benchmarks/)
from child_env import child_env  # noqa: E402  (benchmarks/)

METHOD_ARGS = {
    "ce": ["--config.method=ce"],
    "improved_baseline": ["--config.method=improved_baseline"],
    "two_stage_pi": ["--config.method=two_stage", "--config.stage2.algorithm=pi"],
    "two_stage_temporal_ensembling": ["--config.method=two_stage", "--config.stage2.algorithm=temporal_ensembling"],
}
_WORKDIR = flags.DEFINE_string("workdir", os.path.join(ROOT, "runs", "own_data"), "Folder of the data and runs.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (noise draw and training).")
_NOISE = flags.DEFINE_list("noise", ["pair:0.4", "symmetric:0.5", "instance:0.3"], "Noise settings TYPE:RATE.")
_METHODS = flags.DEFINE_list("methods", ["keras", *METHOD_ARGS], "Rows.")
_OVERRIDES = flags.DEFINE_list("overrides", [], "Extra --config.KEY=VALUE arguments for every preset run "
                               "(recorded in the JSON), e.g. shorter schedules on a slow machine.")
_KERAS_EPOCHS = flags.DEFINE_integer("keras_epochs", 20, "Epochs of the plain Keras baseline.")
_RUN = flags.DEFINE_bool("run", True, "Run the cells that have no results yet; --norun summarizes the finished "
                         "ones and lists the rest as not run.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "own_data.json"), "JSON file.")
_MERGE = flags.DEFINE_list("merge", [], "Earlier outputs of this program (JSON) whose cells to summarize instead of "
                           "running or reading a workdir; a later file's finished cells replace an earlier file's.")
_CLEAN = flags.DEFINE_integer("clean_per_class", 0, "When > 0, this many training images per class (seeded) "
                              "leave the noisy folder for a clean/ folder under their true labels, and the preset "
                              "runs get --config.data.clean=clean (a user who labelled a few images by hand).")


def write_folder(root: str, images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
    import tensorflow as tf

    for c in range(10):
        os.makedirs(os.path.join(root, str(c)), exist_ok=True)
    for image, label, example in zip(images, labels, ids):
        path = os.path.join(root, str(int(label)), f"{int(example):05d}.png")
        tf.io.write_file(path, tf.io.encode_png(image))


def clean_positions(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted positions of `per_class` images of each class (by true label), drawn with `seed`."""
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(chosen)) if per_class else np.zeros(0, np.int64)


def clean_suffix(clean_per_class: int) -> str:
    """What a clean subset adds to the names of the data and runs folders."""
    return f"_clean{clean_per_class}" if clean_per_class else ""


def setting_name(setting: str, seed: int, clean_per_class: int) -> str:
    return f"{setting.replace(':', '_')}_seed{seed}" + clean_suffix(clean_per_class)


def prepare(workdir: str, setting: str, seed: int, clean_per_class: int = 0) -> str:
    """Writes the test folder (once) and this setting's noisy training folder (and, with `clean_per_class`,
    its clean folder: those images leave the training folder); returns the data root."""
    from tf_twostage.data.datasets import load_mnist5k

    data = load_mnist5k()
    root = os.path.join(workdir, "data", setting_name(setting, seed, clean_per_class))
    if os.path.exists(os.path.join(root, "done.json")):
        return root
    train_rgb = colored_digits(data.train.images, seed=1)
    test_rgb = colored_digits(data.test.images, seed=2)
    kind, rate = setting.split(":")
    noisy = noisy_labels(kind, float(rate), data.train.labels, data.train.index, data.train.images, seed)
    clean = clean_positions(data.train.labels, clean_per_class, seed)
    train = np.setdiff1d(np.arange(len(noisy)), clean)
    write_folder(os.path.join(root, "train"), train_rgb[train], noisy[train], data.train.index[train])
    if clean_per_class:
        write_folder(os.path.join(root, "clean"), train_rgb[clean], data.train.labels[clean], data.train.index[clean])
    write_folder(os.path.join(root, "test"), test_rgb, data.test.labels, data.test.index)
    io_utils.write_json(os.path.join(root, "done.json"), {
        "noise": setting, "seed": seed, "clean_per_class": clean_per_class,
        "realized_rate": float(np.mean(noisy[train] != data.train.labels[train]))})
    return root


KERAS_BASELINE = '''
import keras, sys
train, val = keras.utils.image_dataset_from_directory(sys.argv[1] + "/train", image_size=(32, 32), seed=SEED,
                                                      validation_split=0.1, subset="both")
test = keras.utils.image_dataset_from_directory(sys.argv[1] + "/test", image_size=(32, 32), shuffle=False)
keras.utils.set_random_seed(SEED)
model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
    keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
    keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
    keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0)
print(model.evaluate(test, verbose=0)[1], history.history["val_accuracy"][-1])
'''


def run_cell(method: str, root: str, seed: int, workdir: str) -> dict:
    results_path = os.path.join(workdir, "results.json")
    if not _RUN.value and not os.path.exists(results_path):
        return {"not_run": True}
    os.makedirs(workdir, exist_ok=True)
    if method == "keras":
        if os.path.exists(results_path):
            return io_utils.read_json(results_path)
        code = KERAS_BASELINE.replace("SEED", str(seed)).replace("EPOCHS", str(_KERAS_EPOCHS.value))
        command = [sys.executable, "-c", code, root]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=child_env())
        if done.returncode:
            return {"error": done.stderr[-1000:]}
        test, val = (float(v) for v in done.stdout.split()[-2:])
        result = {"test_accuracy": test, "validation": {"value": val, "source": "noisy (uncorrected)",
                                                        "selected_epoch": _KERAS_EPOCHS.value},
                  "command": "python -c KERAS_BASELINE " + root}
        io_utils.write_json(results_path, result)
        return result
    command = [sys.executable, os.path.join(ROOT, "bin", "run_experiment.py"), "--config=configs/folder.py",
               f"--workdir={workdir}", f"--config.data.dir={root}", "--config.data.train=train",
               "--config.data.test=test", "--config.noise.type=none", "--config.noise.rate=0",
               f"--config.seed={seed}", "--config.verbose=0", *METHOD_ARGS[method],
               *(["--config.data.clean=clean"] if os.path.isdir(os.path.join(root, "clean")) else []),
               *_OVERRIDES.value]
    if not os.path.exists(results_path):
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=child_env())
        if done.returncode:
            return {"error": done.stderr[-1000:], "command": shlex.join(command)}
    results = io_utils.read_json(results_path)
    validation = results.get("validation") or {}
    return {"test_accuracy": results["test_accuracy"], "validation": {
        key: validation.get(key) for key in ("value", "source", "selected_epoch", "last_epoch", "noisy_accuracy",
                                             "test_accuracy_last_epoch")},
            "fallbacks": results.get("fallbacks", []), "wall_seconds": results.get("wall_seconds"),
            "command": shlex.join(command)}


def summarize(cells: list) -> list:
    rows = {}
    for cell in cells:
        rows.setdefault((cell["method"], cell["noise"]), []).append(cell)
    table = []
    for (method, setting), group in rows.items():
        ok = [c for c in group if "test_accuracy" in c]
        if not ok and not any("error" in c for c in group):
            continue  # not run (--norun)
        tests = np.array([c["test_accuracy"] for c in ok]) * 100
        values = np.array([c["validation"]["value"] for c in ok if c["validation"].get("value") is not None]) * 100
        gaps = [abs(c["validation"]["value"] - c["test_accuracy"]) * 100 for c in ok
                if c["validation"].get("value") is not None]
        drops = [(c["validation"].get("test_accuracy_last_epoch", c["test_accuracy"]) - c["test_accuracy"]) * 100
                 for c in ok if c["validation"].get("test_accuracy_last_epoch") is not None]
        table.append({
            "method": method, "noise": setting, "seeds": [c["seed"] for c in ok],
            "errors": [c["seed"] for c in group if "error" in c],
            "test_accuracy_mean": round(float(tests.mean()), 2) if len(tests) else None,
            "test_accuracy_std": round(float(tests.std()), 2) if len(tests) else None,
            "validation_mean": round(float(values.mean()), 2) if len(values) else None,
            "validation_gap_mean": round(float(np.mean(gaps)), 2) if gaps else None,
            "last_minus_selected_max": round(float(max(drops)), 2) if drops else None,
            "fallbacks": sorted({f["option"] for c in ok for f in c.get("fallbacks", [])}),
        })
    return table


PRESET_ROWS = tuple(METHOD_ARGS)
TWO_STAGE_ROWS = ("two_stage_pi", "two_stage_temporal_ensembling")
MARGIN_SETTINGS = ("pair", "symmetric")  # two-stage must beat ce by >= 5 points here (issue 13), elsewhere >= 0


def acceptance(cells: list) -> dict:
    """Issue 13's acceptance lines over the finished cells: which hold, with the figures behind them."""
    done = [c for c in cells if "test_accuracy" in c]

    def mean(method, setting):
        values = [c["test_accuracy"] * 100 for c in done if c["method"] == method and c["noise"] == setting]
        return float(np.mean(values)) if values else None

    settings = sorted({c["noise"] for c in cells})
    per_setting = {}
    for setting in settings:
        keras_mean, ce_mean = mean("keras", setting), mean("ce", setting)
        row = {"keras": keras_mean, "ce": ce_mean}
        if keras_mean is not None and ce_mean is not None:
            row["ce_minus_keras"] = ce_mean - keras_mean
            row["ce_at_least_keras_minus_1"] = ce_mean >= keras_mean - 1
        needed = 5.0 if setting.split(":")[0] in MARGIN_SETTINGS else 0.0
        for method in TWO_STAGE_ROWS:
            two_stage = mean(method, setting)
            if two_stage is not None and ce_mean is not None:
                row[f"{method}_minus_ce"] = two_stage - ce_mean
                row[f"{method}_beats_ce_by_{needed:g}"] = two_stage - ce_mean >= needed
        per_setting[setting] = row
    scored = [c for c in done if c["method"] in PRESET_ROWS and c["validation"].get("value") is not None]
    gaps = [abs(c["validation"]["value"] - c["test_accuracy"]) * 100 for c in scored]
    drops = [(c["validation"]["test_accuracy_last_epoch"] - c["test_accuracy"]) * 100 for c in scored
             if c["validation"].get("test_accuracy_last_epoch") is not None]
    return {
        "cells": len(cells), "finished": len(done),
        "crashed": [f"{c['method']} {c['noise']} seed {c['seed']}" for c in cells if "error" in c],
        "not_run": [f"{c['method']} {c['noise']} seed {c['seed']}" for c in cells if c.get("not_run")],
        "per_setting": per_setting,
        "validation_gap_mean": float(np.mean(gaps)) if gaps else None,
        "validation_gap_mean_at_most_3": bool(gaps) and float(np.mean(gaps)) <= 3.0,
        "last_minus_selected_max": float(max(drops)) if drops else None,
        "selected_never_0_5_below_last": bool(drops) and max(drops) <= 0.5,
        "fallbacks": sorted({f"{c['method']} {c['noise']} seed {c['seed']}: {f['option']}" for c in done
                             for f in c.get("fallbacks", [])}),
    }


def markdown(table: list) -> str:
    lines = ["| method | noise | test accuracy % | validation score % | mean abs gap | last - selected (max) | "
             "seeds | fallbacks |", "|---|---|---|---|---|---|---|---|"]
    for row in table:
        lines.append(f"| {row['method']} | {row['noise']} | {row['test_accuracy_mean']} +- {row['test_accuracy_std']} "
                     f"| {row['validation_mean']} | {row['validation_gap_mean']} | {row['last_minus_selected_max']} | "
                     f"{','.join(map(str, row['seeds']))} | {', '.join(row['fallbacks']) or '-'} |")
    return "\n".join(lines)


def pivot_markdown(table: list) -> str:
    """Methods x noise settings: test accuracy mean (+- std over seeds) / reported validation score."""
    settings = list(dict.fromkeys(row["noise"] for row in table))
    methods = list(dict.fromkeys(row["method"] for row in table))
    cells = {(row["method"], row["noise"]): row for row in table}
    lines = ["| method | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for method in methods:
        texts = []
        for setting in settings:
            row = cells.get((method, setting))
            if row is None or row["test_accuracy_mean"] is None:
                texts.append("n/a")
                continue
            spread = f" +- {row['test_accuracy_std']:.1f}" if len(row["seeds"]) > 1 else ""
            texts.append(f"{row['test_accuracy_mean']:.1f}{spread} / {row['validation_mean']:.1f}")
        lines.append(f"| {method} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def merged_cells(outputs: list) -> list:
    """The cells of earlier outputs, in first-seen order; a finished cell replaces an unfinished or older one."""
    cells = {}
    for output in outputs:
        for cell in output["cells"]:
            key = (cell["method"], cell["noise"], cell["seed"])
            if key not in cells or "test_accuracy" in cell or "test_accuracy" not in cells[key]:
                cells[key] = cell
    return list(cells.values())


def main(argv):
    del argv
    earlier = [io_utils.read_json(path) for path in _MERGE.value]
    cells = merged_cells(earlier)
    for setting in [] if _MERGE.value else _NOISE.value:
        for seed in (int(s) for s in _SEEDS.value):
            root = prepare(_WORKDIR.value, setting, seed, _CLEAN.value)
            runs = setting.replace(":", "_") + clean_suffix(_CLEAN.value)
            for method in _METHODS.value:
                workdir = os.path.join(_WORKDIR.value, "runs", runs, method, f"seed{seed}")
                cell = {"method": method, "noise": setting, "seed": seed,
                        "realized_rate": io_utils.read_json(os.path.join(root, "done.json"))["realized_rate"],
                        **run_cell(method, root, seed, workdir)}
                cells.append(cell)
                print(json.dumps({k: cell.get(k) for k in ("method", "noise", "seed", "test_accuracy")}), flush=True)
    table = summarize(cells)
    lines = acceptance(cells)
    io_utils.write_json(_OUTPUT.value, {
        "dataset": "mnist5k as 32x32 RGB PNG folders (benchmarks/own_data.py)", "preset": "configs/folder.py",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/own_data.py", *sys.argv[1:]]),
        "overrides": _OVERRIDES.value, "clean_per_class": _CLEAN.value, "rows": table, "acceptance": lines,
        **({"merged_from": [{"path": path, "command": output.get("command"), "merged_from": output.get("merged_from", [])}
                            for path, output in zip(_MERGE.value, earlier)]} if earlier else {}),
        "cells": cells})
    print(markdown(table))
    print(pivot_markdown(table))
    print(json.dumps(lines, indent=1))


if __name__ == "__main__":
    app.run(main)
