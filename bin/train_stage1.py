#!/usr/bin/env python3
"""Stage 1, step 1: pre-train on the noisy labels and record the predictions to rank them with.

  python bin/train_stage1.py --config=configs/mnist5k.py --workdir=runs/mnist5k

Writes DIR/stage1/predictions.npz and DIR/stage1/classifier.weights.h5 (best validation epoch).
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from tf_twostage.experiment import start_run
from tf_twostage.stage1.run import train_stage1

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the run's artifacts.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        strategy, data, workdir = start_run(_CONFIG.value, _WORKDIR.value)
        train_stage1(_CONFIG.value, data, strategy, workdir)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"stage 1 predictions written to {_WORKDIR.value}/stage1/")
    return 0


if __name__ == "__main__":
    app.run(main)
