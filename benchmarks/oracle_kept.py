#!/usr/bin/env python3
"""How much Stage 2 depends on the purity of the kept set: two-stage runs whose Stage-1 selection is replaced by
an oracle's, on MNIST-5k.

  python benchmarks/oracle_kept.py [--workdir=runs/oracle] [--seeds=0] [--shares=0.02,0.05,0.15] \
      [--purities=1.0,0.95] [--noise=symmetric:0.8] [--overrides=--config.stage1.loss=gce,...]

Each cell is `bin/run_experiment.py --config=configs/mnist5k.py` (method two_stage, one round, the overrides)
with Stage 1 pre-trained as usual, but the kept set drawn from the true labels by `benchmarks/oracle_rule.py`:
in every class, `share` of its noisy-labelled training images, of which `purity` carry their true label and
the rest a wrong one (drawn at random among each kind, seeded). Nothing a user runs can do this: it is a
diagnostic of what a selection rule is worth at a given size and purity. Writes benchmarks/results/oracle_kept.json and prints a Markdown
table. Never part of the test suite.
"""

import datetime
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tf_twostage.utils import io_utils  # noqa: E402
from child_env import child_env  # noqa: E402  (benchmarks/)

_WORKDIR = flags.DEFINE_string("workdir", os.path.join(ROOT, "runs", "oracle"), "Folder of the cells' runs.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds.")
_SHARES = flags.DEFINE_list("shares", ["0.02", "0.05", "0.15"], "Kept share of each class.")
_PURITIES = flags.DEFINE_list("purities", ["1.0", "0.95"], "Share of the kept labels that are right.")
_NOISE = flags.DEFINE_string("noise", "symmetric:0.8", "Noise setting TYPE:RATE.")
_OVERRIDES = flags.DEFINE_list("overrides", ["--config.stage1.loss=gce", "--config.stage1.posterior=noisy"],
                               "Config flags every cell adds.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Cells run at once.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "oracle_kept.json"),
                              "Results JSON.")


def _cell_dir(seed, share, purity):
    return os.path.join(_WORKDIR.value, f"share{share:g}_purity{purity:g}_seed{seed}")


def _run_cell(cell):
    seed, share, purity = cell
    folder = _cell_dir(*cell)
    if not os.path.exists(os.path.join(folder, "results.json")):
        kind, rate = _NOISE.value.split(":")
        command = [sys.executable, os.path.join(ROOT, "benchmarks", "oracle_rule.py"), f"{share:g}", f"{purity:g}",
                   "--config=configs/mnist5k.py", f"--workdir={folder}", "--config.method=two_stage",
                   f"--config.noise.type={kind}", f"--config.noise.rate={rate}", f"--config.seed={seed}",
                   "--config.verbose=0", *_OVERRIDES.value]
        done = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{folder}: failed:\n{done.stderr[-2000:]}")
    results = io_utils.read_json(os.path.join(folder, "results.json"))
    stage1 = results["stage1"]
    return {"seed": seed, "share": share, "purity": purity, "test_accuracy": results["test_accuracy"],
            "kept_fraction": stage1["kept_fraction"], "precision": stage1["quality"]["precision"]}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    cells = [(int(s), float(share), float(p)) for share in _SHARES.value for p in _PURITIES.value
             for s in _SEEDS.value]
    with ThreadPoolExecutor(_PARALLEL.value) as pool:
        rows = list(pool.map(_run_cell, cells))
    output = {"dataset": "mnist5k", "noise": _NOISE.value, "overrides": _OVERRIDES.value,
              "date": datetime.date.today().isoformat(),
              "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/oracle_kept.py", *sys.argv[1:]]),
              "rows": rows}
    io_utils.write_json(_OUTPUT.value, output)  # atomic
    print("| kept share | purity | seed | kept % (precision %) | test accuracy % |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['share']:g} | {row['purity']:g} | {row['seed']} | {100 * row['kept_fraction']:.2f} "
              f"({100 * row['precision']:.2f}) | {100 * row['test_accuracy']:.1f} |")


if __name__ == "__main__":
    app.run(main)
