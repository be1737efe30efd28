#!/usr/bin/env python3
"""Acceptance of issue 19: a folder with 1% of its JPEGs damaged mid-file, through the real runner.

  nice -n 10 python benchmarks/bad_files.py [--per_class=250] [--classes=4] [--damaged_percent=1] \
      [--workdir=/tmp/bad_files] [--output=benchmarks/results/bad_files.json]

Writes an image-folder dataset (train/<class>/*.jpg, test/<class>/*.jpg; 32x32 JPEGs, class = colour) and
overwrites four bytes in the middle of --damaged_percent of the training JPEGs (their scan data, so the
header/end check passes them and only a decode fails). Then runs `bin/run_experiment.py` twice with the
smoke preset on it:

  data.on_bad_file=error   must stop before training (exit 2, no results.json), naming the damaged files;
  data.on_bad_file=skip    must train to the end, with the skipped count in results.json's data_checks.

Records exit codes, wall seconds, the error line and the recorded count as JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf
from PIL import Image
from child_env import child_env  # noqa: E402  (benchmarks/)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _jpeg(rng, class_id: int, classes: int) -> bytes:
    base = np.array([255 * class_id / max(classes - 1, 1), 128, 255 - 255 * class_id / max(classes - 1, 1)])
    pixels = np.clip(base + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def damage(data: bytes, rng) -> bytes:
    """Four bytes of the scan data overwritten (an invalid marker) at a place that makes the decode fail."""
    for _ in range(100):
        position = int(rng.randint(len(data) // 3, 2 * len(data) // 3))
        damaged = data[:position] + b"\xff\x31\x32\x33" + data[position + 4:]
        try:
            tf.io.decode_jpeg(damaged, channels=3)
        except tf.errors.InvalidArgumentError:
            return damaged
    raise RuntimeError("could not damage the file so that it fails to decode")


def make_data(root: str, per_class: int, classes: int, damaged_percent: float) -> list:
    rng = np.random.RandomState(0)
    damaged = []
    for split, count in (("train", per_class), ("test", max(per_class // 5, 2))):
        for class_id in range(classes):
            folder = os.path.join(root, split, f"class{class_id}")
            os.makedirs(folder, exist_ok=True)
            for number in range(count):
                path = os.path.join(folder, f"{number:05d}.jpg")
                with open(path, "wb") as file:
                    file.write(_jpeg(rng, class_id, classes))
    train = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "train")) for f in fs)
    chosen = rng.choice(len(train), size=max(1, int(round(len(train) * damaged_percent / 100))), replace=False)
    for position in sorted(chosen):
        with open(train[position], "rb") as file:
            data = file.read()
        with open(train[position], "wb") as file:
            file.write(damage(data, rng))
        damaged.append(train[position])
    return damaged


def run(root: str, workdir: str, policy: str) -> dict:
    command = [sys.executable, os.path.join(ROOT, "bin", "run_experiment.py"), "--config=configs/smoke.py",
               f"--workdir={workdir}", "--config.data.name=folder", f"--config.data.dir={root}",
               "--config.data.train=train", "--config.data.test=test", "--config.data.image_size=(32, 32)",
               "--config.noise.type=none", "--config.noise.rate=0", f"--config.data.on_bad_file={policy}"]
    started = time.time()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            env=child_env(TF_CPP_MIN_LOG_LEVEL="3"), check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    outcome = {"policy": policy, "exit_code": result.returncode, "wall_seconds": round(time.time() - started, 1),
               "error_line": errors[0] if errors else None, "traceback": "Traceback" in result.stderr,
               "results_json": os.path.exists(os.path.join(workdir, "results.json")), "command": " ".join(command)}
    if outcome["results_json"]:
        with open(os.path.join(workdir, "results.json"), encoding="utf-8") as file:
            results = json.load(file)
        outcome["data_checks"] = [{k: v for k, v in c.items() if k != "examples"} for c in results["data_checks"]]
        outcome["test_accuracy"] = results["test_accuracy"]
        outcome["num_train"], outcome["num_validation"] = results["num_train"], results["num_validation"]
    return outcome


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per_class", type=int, default=250)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--damaged_percent", type=float, default=1.0)
    parser.add_argument("--workdir", default="/tmp/bad_files")
    parser.add_argument("--output", default=os.path.join(ROOT, "benchmarks", "results", "bad_files.json"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    root = os.path.join(args.workdir, "data")
    damaged = make_data(root, args.per_class, args.classes, args.damaged_percent)
    outcomes = [run(root, os.path.join(args.workdir, f"run_{policy}"), policy) for policy in ("error", "skip")]
    named = outcomes[0]["error_line"] or ""
    report = {
        "command": "python benchmarks/bad_files.py " + " ".join(
            f"--{key}={value}" for key, value in vars(args).items() if key != "output"),
        "train_files": args.per_class * args.classes, "damaged_files": len(damaged),
        "damaged_named_in_error": sum(os.path.realpath(path) in named for path in damaged[:10]),
        "outcomes": outcomes,
    }
    print(json.dumps(report, indent=2))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
        file.write("\n")


if __name__ == "__main__":
    main()
