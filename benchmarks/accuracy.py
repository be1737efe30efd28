#!/usr/bin/env python3
"""Accuracy table on the embedded MNIST-5k: methods x noise settings x seeds, mean +- std (paper Table 3).

  python benchmarks/accuracy.py [--workdir=runs/benchmark] [--seeds=0,1,2] [--parallel=2] \
      [--methods=ce,two_stage_pi,two_stage_temporal_ensembling] [--noise=none:0,symmetric:0.2,...]

Each cell is one `bin/run_experiment.py` run in its own workdir; a cell whose results.json exists is
not run again (resume). Writes benchmarks/results/accuracy.json and prints a Markdown table.
Never part of the test suite.
"""

import datetime
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHOD_ARGS = {
    "ce": ["--config.method=ce"],
    "improved_baseline": ["--config.method=improved_baseline"],
    "forward": ["--config.method=forward"],
    "backward": ["--config.method=backward"],
    "bootstrap_soft": ["--config.method=bootstrap_soft"],
    "bootstrap_hard": ["--config.method=bootstrap_hard"],
    "two_stage_pi": ["--config.method=two_stage", "--config.stage2.algorithm=pi"],
    "two_stage_temporal_ensembling": ["--config.method=two_stage",
                                      "--config.stage2.algorithm=temporal_ensembling"],
}
_WORKDIR = flags.DEFINE_string("workdir", os.path.join(ROOT, "runs", "benchmark"), "Folder of the cells' runs.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_METHODS = flags.DEFINE_list("methods", ["ce", "two_stage_pi", "two_stage_temporal_ensembling"],
                             f"Methods (rows), of: {', '.join(METHOD_ARGS)}.")
_NOISE = flags.DEFINE_list("noise", ["none:0", "symmetric:0.2", "asymmetric:0.2", "asymmetric:0.6"],
                           "Noise settings TYPE:RATE.")
_PARALLEL = flags.DEFINE_integer("parallel", 2, "Cells run at once.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "accuracy.json"),
                              "JSON results file.")


def _cell_dir(method, noise_type, rate, seed):
    return os.path.join(_WORKDIR.value, f"{method}_{noise_type}{rate}_seed{seed}")


def _command(method, noise_type, rate, seed):
    return [sys.executable, os.path.join(ROOT, "bin", "run_experiment.py"), "--config=configs/mnist5k.py",
            f"--workdir={_cell_dir(method, noise_type, rate, seed)}", *METHOD_ARGS[method],
            f"--config.noise.type={noise_type}", f"--config.noise.rate={rate}", f"--config.seed={seed}",
            "--config.verbose=0"]


def _run_cell(cell):
    results_path = os.path.join(_cell_dir(*cell), "results.json")
    if not os.path.exists(results_path):
        done = subprocess.run(_command(*cell), cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            print(f"FAILED {cell}: {done.stderr[-1500:]}", file=sys.stderr)
            return cell, None
    with open(results_path, encoding="utf-8") as file:
        result = json.load(file)
    print(f"{cell}: {100 * result['test_accuracy']:.1f}%", flush=True)
    return cell, result


def main(argv):
    del argv
    for method in _METHODS.value:
        if method not in METHOD_ARGS:
            raise app.UsageError(f"--methods: {method!r} is not one of {', '.join(METHOD_ARGS)}")
    settings = [(kind, float(rate)) for kind, rate in (item.split(":") for item in _NOISE.value)]
    settings = [(kind, int(rate) if rate == int(rate) else rate) for kind, rate in settings]
    cells = [(m, kind, rate, int(s)) for m in _METHODS.value for kind, rate in settings for s in _SEEDS.value]
    with ThreadPoolExecutor(_PARALLEL.value) as pool:
        finished = dict(pool.map(_run_cell, cells))
    rows = []
    for method in _METHODS.value:
        for kind, rate in settings:
            results = [finished[(method, kind, rate, int(s))] for s in _SEEDS.value]
            accuracies = [r["test_accuracy"] for r in results if r is not None]
            stage1 = [r["stage1"] for r in results if r is not None and r.get("stage1")]
            rows.append({
                "method": method, "noise_type": kind, "noise_rate": rate,
                "seeds": [int(s) for s, r in zip(_SEEDS.value, results) if r is not None],
                "accuracies": accuracies,
                "mean": float(np.mean(accuracies)) if accuracies else None,
                "std": float(np.std(accuracies)) if accuracies else None,
                "kept_fraction": float(np.mean([s["kept_fraction"] for s in stage1])) if stage1 else None,
                "kept_incorrect_fraction": (float(np.mean([s["kept_incorrect_fraction"] for s in stage1]))
                                            if stage1 else None),
            })
    report = {"dataset": "mnist5k", "date": datetime.date.today().isoformat(),
              "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/accuracy.py", *sys.argv[1:]]),
              "rows": rows}
    os.makedirs(os.path.dirname(_OUTPUT.value), exist_ok=True)
    temporary = _OUTPUT.value + ".tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
    os.replace(temporary, _OUTPUT.value)
    print(markdown_table(rows, settings))


def markdown_table(rows, settings):
    header = "| method | " + " | ".join(f"{kind} {rate}" for kind, rate in settings) + " |"
    lines = [header, "|---" * (len(settings) + 1) + "|"]
    for method in dict.fromkeys(row["method"] for row in rows):
        cells = []
        for kind, rate in settings:
            row = next(r for r in rows if r["method"] == method and r["noise_type"] == kind
                       and r["noise_rate"] == rate)
            cells.append("n/a" if row["mean"] is None else f"{100 * row['mean']:.1f} +- {100 * row['std']:.1f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
