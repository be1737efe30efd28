#!/usr/bin/env python3
"""Writes a synthetic Clothing1M release tree (JPEGs + list files) for tests and scale benchmarks.

  python benchmarks/make_release_tree.py --out_dir=/tmp/clothing1m_synthetic \
      [--num_files=20000] [--num_train=1000000] [--num_clean_train=2000] [--num_val=1000] [--num_test=1000] \
      [--image_size=256,256] [--noise_rate=0.38] [--seed=0] [--keep_existing_images]

See `tf_twostage.data.release_tree` for what is written. With --keep_existing_images only missing images
are drawn: rewriting the lists for another --num_train over the same files takes seconds. Prints a JSON
summary (files, bytes, list entries, realized noise rate). Then e.g.
  python bin/run_experiment.py --config=configs/clothing1m.py --config.data.dir=/tmp/clothing1m_synthetic
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_twostage.data.release_tree import ReleaseTreeSpec, write_release_tree  # noqa: E402

_DEFAULTS = ReleaseTreeSpec()
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Folder to write the tree into (created).", required=True)
_NUM_FILES = flags.DEFINE_integer("num_files", _DEFAULTS.num_files, "Distinct JPEG files.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", _DEFAULTS.num_train, "Entries of noisy_train_key_list.txt "
                                  "(files repeat when they outnumber the usable files).")
_NUM_CLEAN_TRAIN = flags.DEFINE_integer("num_clean_train", _DEFAULTS.num_clean_train, "Clean training subset.")
_NUM_VAL = flags.DEFINE_integer("num_val", _DEFAULTS.num_val, "Clean validation list.")
_NUM_TEST = flags.DEFINE_integer("num_test", _DEFAULTS.num_test, "Clean test list.")
_IMAGE_SIZE = flags.DEFINE_list("image_size", ["256", "256"], "Height,width of the JPEGs.")
_NOISE_RATE = flags.DEFINE_float("noise_rate", _DEFAULTS.noise_rate, "Share of noisy labels moved to a "
                                 "neighbouring class.")
_QUALITY = flags.DEFINE_integer("quality", _DEFAULTS.quality, "JPEG quality 1..100.")
_SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of classes, splits, noise and pixels.")
_KEEP = flags.DEFINE_bool("keep_existing_images", False, "Do not rewrite image files already present.")


def main(argv):
    del argv
    try:
        size = tuple(int(d) for d in _IMAGE_SIZE.value)
    except ValueError:
        size = tuple(_IMAGE_SIZE.value)
    try:
        spec = ReleaseTreeSpec(
            num_files=_NUM_FILES.value, num_train=_NUM_TRAIN.value, num_clean_train=_NUM_CLEAN_TRAIN.value,
            num_val=_NUM_VAL.value, num_test=_NUM_TEST.value, image_size=size, noise_rate=_NOISE_RATE.value,
            quality=_QUALITY.value, seed=_SEED.value,
        )
    except ValueError as error:
        print(f"make_release_tree: {error}", file=sys.stderr)
        return 2
    summary = write_release_tree(_OUT_DIR.value, spec, keep_existing_images=_KEEP.value)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    app.run(main)
