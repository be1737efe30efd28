#!/usr/bin/env python3
"""Stage 1, step 2: keep the labels that are very likely correct (after bin/train_stage1.py).

  python bin/select_labels.py --config=configs/mnist5k.py --workdir=runs/mnist5k

Writes DIR/stage1/selection.npz, selection_stats.json, refined_validation.npz and dropped_labels.csv
(the dropped labels with the model's suggested class, most confident first, for a person to review).
"""

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from tf_twostage.programs.flags import parse_flags
from tf_twostage.runs.experiment import select_and_record, start_run

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the run (the one bin/train_stage1.py used).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        _, data, workdir = start_run(_CONFIG.value, _WORKDIR.value)
        stats = select_and_record(_CONFIG.value, data, workdir)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = {key: value for key, value in stats.items() if key != "per_class"}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
