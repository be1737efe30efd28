#!/usr/bin/env python3
"""How close can a validation score on noisy labels come to test accuracy? The sampling floor of issue 13's line.

  python benchmarks/validation_floor.py [--own_data=benchmarks/results/own_data.json] [--draws=500]

For every scored run of the own-data benchmark (`benchmarks/own_data.py`'s JSON: method, noise setting, seed,
test accuracy a), this simulates the best case of the score the preset reports on its noisy validation split:

- the same noisy training folder (the same noise draw, `own_data_images.noisy_labels`), a validation split held
  out the way `tf_twostage.data.pipelines.stratified_holdout` does (a fresh split per draw), of `data.val_fraction`
  0.1 (the preset: 400 images) and 0.2;
- a model right with probability a on each image, independently of its label noise, else predicting one of the
  other classes uniformly (no winner's curse, no errors that follow the flips as instance noise makes them);
- the noisy accuracy corrected with the *true* transition matrix (the noise process's own; for instance noise the
  realized one over the whole training folder): `tf_twostage.baselines.transition.estimated_clean_accuracy`,
  clipped at 100% as reported.

The mean |score - a| over draws is the gap an oracle transition matrix would leave from sampling alone, and the
share of draws in which the mean over all runs (one draw each, as one benchmark pass gives) is at most 3 points
says how often issue 13's line would hold even then; a clean
subset of n images scored against its clean labels (binomial) is shown beside it for n = 200 and 500. Writes
benchmarks/results/validation_floor.json and prints a Markdown table. Never part of the test suite.
"""

import datetime
import json
import os
import shlex
import sys

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tf_twostage.baselines.transition import estimated_clean_accuracy  # noqa: E402
from tf_twostage.data.pipelines import stratified_holdout  # noqa: E402
from tf_twostage.utils import io_utils  # noqa: E402
from own_data_images import class_conditional_matrix, noisy_labels  # noqa: E402  (benchmarks/)

_OWN_DATA = flags.DEFINE_string("own_data", os.path.join(ROOT, "benchmarks", "results", "own_data.json"),
                                "benchmarks/own_data.py's output: the runs whose test accuracies to simulate.")
_DRAWS = flags.DEFINE_integer("draws", 500, "Simulated validation splits (and model error draws) per run.")
_FRACTIONS = flags.DEFINE_list("val_fractions", ["0.1", "0.2"], "data.val_fraction values to simulate.")
_CLEAN_SIZES = flags.DEFINE_list("clean_sizes", ["200", "500"], "Clean-subset sizes to show beside them.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "validation_floor.json"),
                              "JSON file.")
NUM_CLASSES = 10
LINE = 3.0  # issue 13: the mean |validation score - test accuracy| over the runs, in points


def true_transition(kind: str, rate: float, clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    """The matrix of the noise process; for instance-dependent noise (no process matrix) the realized one."""
    if kind in ("pair", "symmetric"):
        return class_conditional_matrix(kind, rate)
    counts = np.zeros((NUM_CLASSES, NUM_CLASSES))
    np.add.at(counts, (clean, noisy), 1.0)
    return counts / counts.sum(axis=1, keepdims=True)


def simulated_predictions(clean: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """Right with probability `accuracy`, else a uniformly drawn other class."""
    wrong = rng.random(len(clean)) >= accuracy
    shift = rng.integers(1, NUM_CLASSES, len(clean))
    return np.where(wrong, (clean + shift) % NUM_CLASSES, clean)


def noisy_split_gaps(clean, noisy, matrix, accuracy: float, fraction: float, draws: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gaps = []
    for draw in range(draws):
        _, held_out = stratified_holdout(noisy, fraction, seed * 100_003 + draw)
        predictions = simulated_predictions(clean[held_out], accuracy, rng)
        gaps.append(abs(estimated_clean_accuracy(predictions, noisy[held_out], matrix) - accuracy))
    return np.asarray(gaps)


def clean_subset_gap(accuracy: float, size: int) -> float:
    """E|k/n - a| for k ~ Binomial(n, a), exactly."""
    from scipy import stats

    k = np.arange(size + 1)
    return float(np.sum(stats.binom.pmf(k, size, accuracy) * np.abs(k / size - accuracy)))


def main(argv):
    del argv
    from tf_twostage.data.datasets import load_mnist5k

    data = load_mnist5k()
    clean = np.asarray(data.train.labels)
    own = io_utils.read_json(_OWN_DATA.value)
    runs = [c for c in own["cells"] if c["method"] != "keras" and "test_accuracy" in c
            and (c.get("validation") or {}).get("value") is not None]
    fractions = [float(f) for f in _FRACTIONS.value]
    sizes = [int(n) for n in _CLEAN_SIZES.value]
    folders = {}
    rows, draws_by_fraction = [], {fraction: [] for fraction in fractions}
    for run in runs:
        key = (run["noise"], int(run["seed"]))
        if key not in folders:
            kind, rate = run["noise"].split(":")
            noisy = noisy_labels(kind, float(rate), clean, data.train.index, data.train.images, key[1])
            folders[key] = (noisy, true_transition(kind, float(rate), clean, noisy))
        noisy, matrix = folders[key]
        accuracy = float(run["test_accuracy"])
        row = {"method": run["method"], "noise": run["noise"], "seed": key[1], "test_accuracy": accuracy,
               "reported_gap": abs(run["validation"]["value"] - accuracy) * 100}
        for fraction in fractions:
            gaps = noisy_split_gaps(clean, noisy, matrix, accuracy, fraction, _DRAWS.value, seed=len(rows))
            row[f"floor_noisy_val_{fraction:g}"] = float(gaps.mean()) * 100
            draws_by_fraction[fraction].append(gaps * 100)
        for size in sizes:
            row[f"floor_clean_{size}"] = clean_subset_gap(accuracy, size) * 100
        rows.append(row)
        print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    columns = ["reported_gap", *(f"floor_noisy_val_{f:g}" for f in fractions), *(f"floor_clean_{n}" for n in sizes)]
    settings = list(dict.fromkeys(r["noise"] for r in rows))
    table = {setting: {c: float(np.mean([r[c] for r in rows if r["noise"] == setting])) for c in columns}
             for setting in settings}
    table["all"] = {c: float(np.mean([r[c] for r in rows])) for c in columns}
    # Issue 13's line is on one realization: the mean over the runs of one draw each. How often would it hold?
    chance = {f"{fraction:g}": float(np.mean(np.mean(draws_by_fraction[fraction], axis=0) <= LINE))
              for fraction in fractions}
    io_utils.write_json(_OUTPUT.value, {
        "what": "mean |validation score - test accuracy| (points) an oracle transition matrix would leave on the "
                "noisy validation split from sampling alone, per own-data run; clean subsets beside it",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/validation_floor.py", *sys.argv[1:]]),
        "own_data": os.path.relpath(_OWN_DATA.value, ROOT), "draws": _DRAWS.value, "runs": len(rows),
        "by_setting": table, "share_of_draws_whose_mean_gap_is_at_most_3": chance, "rows": rows})
    print("| noise | runs | reported gap | " + " | ".join(columns[1:]) + " |")
    print("|---|---|---|" + "---|" * (len(columns) - 1))
    for setting, values in table.items():
        count = len(rows) if setting == "all" else sum(r["noise"] == setting for r in rows)
        print(f"| {setting} | {count} | " + " | ".join(f"{values[c]:.2f}" for c in columns) + " |")
    print(json.dumps({"share_of_draws_whose_mean_gap_is_at_most_3": chance}))


if __name__ == "__main__":
    app.run(main)
