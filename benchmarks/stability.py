#!/usr/bin/env python3
"""Whole runs under float-rounding variants: how far the kept set and the test accuracy move.

  python benchmarks/stability.py [--workdir=runs/stability] [--seeds=0,1,2] \
      [--variants=default,onednn_off] [--config=configs/mnist5k.py] [--overrides=--config.noise.rate=0.6,...]

Each (variant, seed) cell is the README's main command with `--config.seed=S` (`bin/run_experiment.py`, its
own workdir `<workdir>/<variant>_s<S>`, skipped when its results.json exists) under one variant of
`float_variants` (oneDNN off, op determinism). Per seed: the kept share, the kept set's precision (when the
true labels are known) and the test accuracy of every variant, and the largest difference between
variants; the issue-15 bar (oneDNN on vs off, `acceptance`) is 0.5 points of test accuracy and 1 point of
kept share.

Writes benchmarks/results/stability.json and prints a Markdown table. Never part of the test suite.
"""

import datetime
import os
import shlex
import subprocess
import sys

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tf_twostage.utils import io_utils  # noqa: E402
from float_variants import VARIANTS, variant_command  # noqa: E402  (benchmarks/)

_WORKDIR = flags.DEFINE_string("workdir", os.path.join(ROOT, "runs", "stability"), "Folder of the cells' runs.")
_CONFIG = flags.DEFINE_string("config", os.path.join(ROOT, "configs", "mnist5k.py"), "Preset the cells run.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_VARIANTS = flags.DEFINE_list("variants", ["default", "onednn_off"], f"Variants, of: {', '.join(VARIANTS)}.")
_OVERRIDES = flags.DEFINE_list("overrides", [], "Config flags every cell adds (e.g. --config.noise.rate=0.2).")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "stability.json"),
                              "Results JSON.")

MAX_ACCURACY_SPREAD = 0.005  # issue 15: test accuracy within 0.5 points ...
MAX_KEPT_SPREAD = 0.01  # ... and kept share within 1 point, between variants of one seed
ONEDNN_PAIR = {"default", "onednn_off"}  # the pair the bar is about


def run_cell(variant: str, seed: int) -> dict:
    """The cell's results.json, running it first when it has none."""
    workdir = os.path.join(_WORKDIR.value, f"{variant}_s{seed}")
    results = os.path.join(workdir, "results.json")
    if not os.path.exists(results):
        command, env = variant_command(variant, [
            os.path.join(ROOT, "bin", "run_experiment.py"), f"--config={_CONFIG.value}", f"--workdir={workdir}",
            f"--config.seed={seed}", "--config.verbose=0", *_OVERRIDES.value])
        done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{workdir}: bin/run_experiment.py failed:\n{done.stderr[-2000:]}")
    return io_utils.read_json(results)


def cell_summary(results: dict) -> dict:
    """Test accuracy, Stage 1's kept share and precision, and with two rounds the second round's."""
    stage1 = results.get("stage1", {})
    quality = stage1.get("quality") or {}
    summary = {"test_accuracy": results["test_accuracy"], "kept_fraction": stage1.get("kept_fraction"),
               "precision": quality.get("precision")}
    second = results.get("stage2_reselection")
    if second:
        summary["round2_kept_fraction"] = second.get("kept_fraction")
        summary["round2_precision"] = (second.get("quality") or {}).get("precision")
    return summary


def seed_spread(cells: dict, variants) -> dict:
    """Largest difference between `variants` of one seed, per measure (None when a value is missing)."""
    spread = {}
    for key in ("test_accuracy", "kept_fraction", "precision", "round2_kept_fraction", "round2_precision"):
        if not all(key in cells[variant] for variant in variants):
            continue
        values = [cells[variant][key] for variant in variants]
        spread[key] = None if any(v is None for v in values) else float(max(values) - min(values))
    return spread


def main(argv):
    del argv
    bad = sorted(set(_VARIANTS.value) - set(VARIANTS))
    if bad:
        raise SystemExit(f"--variants: unknown {', '.join(bad)}; allowed: {', '.join(VARIANTS)}")
    if len(_VARIANTS.value) < 2:
        raise SystemExit(f"--variants: a spread needs two or more variants, got {','.join(_VARIANTS.value)}")
    seeds = [int(seed) for seed in _SEEDS.value]
    rows = []
    for seed in seeds:
        cells = {variant: cell_summary(run_cell(variant, seed)) for variant in _VARIANTS.value}
        row = {"seed": seed, "variants": cells, "spread": seed_spread(cells, cells)}
        if ONEDNN_PAIR <= set(cells):
            row["onednn_spread"] = seed_spread(cells, ONEDNN_PAIR)
        rows.append(row)
    accuracy_spreads = [row["spread"]["test_accuracy"] for row in rows]
    kept_spreads = [row["spread"]["kept_fraction"] for row in rows]
    acceptance = {"bar": "oneDNN on vs off, per seed: test accuracy within 0.5 points, kept share within 1 point",
                  "met": None}
    if all("onednn_spread" in row for row in rows):
        pair = [row["onednn_spread"] for row in rows]
        # The kept share is every round's (Stage 1's, and the second round's where one ran).
        acceptance["met"] = bool(max(p["test_accuracy"] for p in pair) <= MAX_ACCURACY_SPREAD + 1e-9 and all(
            p[key] is not None and p[key] <= MAX_KEPT_SPREAD + 1e-9
            for p in pair for key in ("kept_fraction", "round2_kept_fraction") if key in p))
    payload = {
        "date": datetime.date.today().isoformat(),
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
        "config": os.path.relpath(_CONFIG.value, ROOT),
        "overrides": list(_OVERRIDES.value),
        "rows": rows,
        "max_test_accuracy_spread": max(accuracy_spreads),
        "max_kept_fraction_spread": None if None in kept_spreads else max(kept_spreads),
        "acceptance": acceptance,
    }
    io_utils.write_json(_OUTPUT.value, payload)
    print("| seed | " + " | ".join(f"{v}: test % / kept % (precision)" for v in _VARIANTS.value)
          + " | spread: test / kept (points) |")
    print("|---" * (len(_VARIANTS.value) + 2) + "|")
    for row in rows:
        cells = [f"{c['test_accuracy']:.1%} / {c['kept_fraction']:.2%}"
                 + (f" ({c['precision']:.2%})" if c["precision"] is not None else "")
                 for c in row["variants"].values()]
        spread = row["spread"]
        kept = "n/a" if spread["kept_fraction"] is None else f"{100 * spread['kept_fraction']:.2f}"
        if spread.get("round2_kept_fraction") is not None:
            kept += f" (round 2: {100 * spread['round2_kept_fraction']:.2f})"
        print(f"| {row['seed']} | " + " | ".join(cells).replace("%", "") + f" | {100 * spread['test_accuracy']:.1f} / "
              f"{kept} |")
    print(f"oneDNN on vs off within the bar: {acceptance['met']}")


if __name__ == "__main__":
    app.run(main)
