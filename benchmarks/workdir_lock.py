#!/usr/bin/env python3
"""Acceptance of issue 19: two identical runs started together on one workdir.

  nice -n 10 python benchmarks/workdir_lock.py [--workdir=/tmp/workdir_lock] [--config=configs/smoke.py] \
      [--output=benchmarks/results/workdir_lock.json]

Starts `bin/run_experiment.py --config=... --workdir=DIR/run` twice at the same moment and records, per
process, the exit code, the seconds until it exited and its `error:` line; then what the workdir holds (one
results.json, the export versions). Expected: one exits 0 after training, the other exits 2 within seconds
with "is in use by another run (pid ... on host ...)".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from child_env import child_env  # noqa: E402  (benchmarks/)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="/tmp/workdir_lock")
    parser.add_argument("--config", default="configs/smoke.py")
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results", "workdir_lock.json"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    run_dir = os.path.join(args.workdir, "run")
    command = [sys.executable, os.path.join(ROOT, "bin", "run_experiment.py"), f"--config={args.config}",
               f"--workdir={run_dir}"]
    env = child_env(TF_CPP_MIN_LOG_LEVEL="3")
    started = time.time()
    processes = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
    outcomes = [None, None]
    while any(outcome is None for outcome in outcomes):
        for number, process in enumerate(processes):
            if outcomes[number] is None and process.poll() is not None:
                stdout, stderr = process.communicate()
                errors = [line for line in stderr.splitlines() if line.startswith("error")]
                outcomes[number] = {"exit_code": process.returncode, "seconds": round(time.time() - started, 1),
                                    "error_line": errors[0] if errors else None, "traceback": "Traceback" in stderr}
        time.sleep(0.05)
    export = os.path.join(run_dir, "export", "mnist5k")
    report = {"command": " ".join(command) + "  (twice, at once)", "outcomes": outcomes,
              "results_json": os.path.exists(os.path.join(run_dir, "results.json")),
              "export_versions": sorted(os.listdir(export)) if os.path.isdir(export) else [],
              "lock_left": os.path.exists(os.path.join(run_dir, ".lock"))}
    print(json.dumps(report, indent=2))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
        file.write("\n")


if __name__ == "__main__":
    main()
