#!/usr/bin/env python3
"""What the load-time screening of image files costs per 1,000 files (issue 19).

  nice -n 10 python benchmarks/decode_check.py [--files=2000] [--repeats=3] [--sizes=224x224,500x375] \
      [--output=benchmarks/results/decode_check.json]

Writes --files JPEGs of each size (smooth gradients plus noise, quality 90, like web photos in size) into a
temporary folder, then times, per repeat and on warm page cache:

  header      `files.image_file_problems`: magic bytes and end marker (first and last 4 KiB of each file)
  screening   `image_check.screen_image_files`: the header check, then every file read and decoded in one
              parallel tf.data pass with its content fingerprint: what the loaders run
  full        a bare tf.data pass decoding every file (`source.decode_pixels`), for comparison

and reports seconds per 1,000 files (min, median and mean +- std over repeats: on a shared machine the
min is the cost without interference), the CPU cores used, and the median extrapolated to 1M files. The pass is parallel over the machine's cores (tf.data AUTOTUNE).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf
from PIL import Image

from tf_twostage.data import image_check
from tf_twostage.data.files import image_file_problems
from tf_twostage.data.source import decode_pixels


def _write_jpegs(folder: str, count: int, size) -> list:
    width, height = size
    paths = []
    for number in range(count):
        rng = np.random.RandomState(number)
        ramp = np.linspace(0, 200, width)[None, :, None]
        pixels = np.clip(rng.rand(height, width, 3) * 40 + ramp, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        path = os.path.join(folder, f"{number:06d}.jpg")
        with open(path, "wb") as file:
            file.write(buffer.getvalue())
        paths.append(path)
    return paths


def _full_pass(paths) -> int:
    dataset = tf.data.Dataset.from_tensor_slices(np.array(paths, dtype=object)).map(
        lambda path: tf.reduce_max(decode_pixels(tf.io.read_file(path), 3)), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=False).batch(4096)
    return sum(len(batch) for batch in dataset.as_numpy_iterator())


def _timed(function, paths, repeats):
    function(paths)  # warm-up: page cache, tracing
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(paths)
        seconds.append(time.perf_counter() - started)
    per_1000 = np.array(seconds) / len(paths) * 1000
    return {"seconds_per_1000_files_min": round(float(per_1000.min()), 4),
            "seconds_per_1000_files_median": round(float(np.median(per_1000)), 4),
            "seconds_per_1000_files_mean": round(float(per_1000.mean()), 4),
            "seconds_per_1000_files_std": round(float(per_1000.std()), 4),
            "minutes_per_1M_files_median": round(float(np.median(per_1000)) * 1000 / 60, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="224x224,500x375")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "decode_check.json"))
    args = parser.parse_args()
    rows = []
    for size_text in args.sizes.split(","):
        size = tuple(int(v) for v in size_text.split("x"))
        with tempfile.TemporaryDirectory() as folder:
            paths = _write_jpegs(folder, args.files, size)
            mean_bytes = float(np.mean([os.path.getsize(p) for p in paths]))
            row = {"image_size": size_text, "files": args.files, "mean_file_bytes": round(mean_bytes),
                   "cpu_cores": os.cpu_count()}
            row["header"] = _timed(image_file_problems, paths, args.repeats)
            row["screening"] = _timed(lambda p: image_check.screen_image_files(p, 3), paths, args.repeats)
            row["full"] = _timed(_full_pass, paths, args.repeats)
            rows.append(row)
            print(json.dumps(row))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as file:
        json.dump({"command": "python benchmarks/decode_check.py " + " ".join(
            f"--{key}={value}" for key, value in vars(args).items() if key != "output"),
            "tensorflow_version": tf.__version__, "rows": rows}, file, indent=2)
        file.write("\n")


if __name__ == "__main__":
    main()
