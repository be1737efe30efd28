#!/usr/bin/env python3
"""The heavy-noise switch (`stage1.heavy_noise_rate`) decided again on finished runs, without training.

  python benchmarks/heavy_noise_switch.py --workdirs=<run>,<run>,... [--rate=0.65] \
      [--output=benchmarks/results/heavy_noise_switch.json]

Each workdir is a finished run on data whose clean labels are known (mnist5k with synthetic noise). From its
recorded Stage-1 predictions it recomputes the noise rate the cluster transition estimate implies, whether a
switch at `--rate` would fire, and the selection that follows (`tf_twostage.runs.stage1.select_labels` with
`stage1.heavy_noise_rate=--rate`, in a scratch copy of the run's `stage1/`), and reports beside it the share
of labels that are actually wrong and whether the kept set equals the run's own. Prints a Markdown table.
Never part of the test suite.
"""

import datetime
import json
import os
import shlex
import shutil
import sys
import tempfile

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tf_twostage.config.base import load_run_config  # noqa: E402
from tf_twostage.data.prepare import prepare_data  # noqa: E402
from tf_twostage.runs.stage1 import load_selection, select_labels  # noqa: E402
from tf_twostage.utils import io_utils  # noqa: E402

_WORKDIRS = flags.DEFINE_list("workdirs", [], "Finished runs (clean labels known).")
_RATE = flags.DEFINE_float("rate", 0.65, "stage1.heavy_noise_rate to decide with.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "heavy_noise_switch.json"),
                              "JSON file.")


def decide_run(workdir: str, rate: float) -> dict:
    config = load_run_config(workdir)
    data = prepare_data(config)
    if not data.train.has_clean_labels:
        raise ValueError(f"{workdir}: its training images have no clean labels")
    own = load_selection(workdir, data)
    config.stage1.heavy_noise_rate = rate
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(os.path.join(workdir, "stage1"), os.path.join(scratch, "stage1"))
        stats = select_labels(config, data, scratch)
        kept = load_selection(scratch, data)
    decision = stats["heavy_noise"]
    return {"workdir": workdir, "seed": int(config.seed), "noise": f"{config.noise.type} {config.noise.rate:g}",
            "actually_wrong": float(np.mean(data.train.labels != data.train.clean_labels)),
            "estimated_noise_rate": decision["estimated_noise_rate"], "switched": decision["switched"],
            "kept_fraction": float(kept.mean()), "precision": stats["quality"]["precision"],
            "same_as_the_runs_own": bool(np.array_equal(kept, own))}


def main(argv):
    del argv
    if not _WORKDIRS.value:
        raise app.UsageError("--workdirs is required")
    rows = [decide_run(workdir, _RATE.value) for workdir in _WORKDIRS.value]
    io_utils.write_json(_OUTPUT.value, {
        "what": "the heavy-noise switch decided again on finished runs from their Stage-1 predictions",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/heavy_noise_switch.py", *sys.argv[1:]]),
        "rate": _RATE.value, "rows": rows})
    print("| noise | seed | actually wrong % | estimated noise rate % | switches | kept % (precision %) | "
          "the run's own kept set |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['noise']} | {row['seed']} | {row['actually_wrong'] * 100:.1f} | "
              f"{row['estimated_noise_rate'] * 100:.1f} | {'yes' if row['switched'] else 'no'} | "
              f"{row['kept_fraction'] * 100:.1f} ({row['precision'] * 100:.2f}) | "
              f"{'same' if row['same_as_the_runs_own'] else 'differs'} |")
    print(json.dumps({"output": _OUTPUT.value}))


if __name__ == "__main__":
    app.run(main)
