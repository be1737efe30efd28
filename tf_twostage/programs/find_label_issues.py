"""Which labels of a dataset are likely wrong, and what should they be? A label-health report.

  python bin/find_label_issues.py --config=configs/mnist5k.py --workdir=runs/labels \\
      [--config.label_issues.folds=5] [--config.label_issues.rule=posterior] [--pred_probs=FILE.npy]

Reviews every noisily labeled example of the config's dataset (the training images, validation included)
with out-of-sample predicted probabilities: K-fold training of the config's model (K =
label_issues.folds; finished folds are not redone on a rerun, one line per fold is printed), or the
user's own `--pred_probs` (a float [N, C] .npy, rows in the order of the example ids: for folder/CSV
data the sorted image paths). Writes DIR/label_issues/: issues.csv (most suspicious first), kept.csv
(the examples not flagged, a `path,label` CSV for data.train of a later run with data.name=csv),
label_health.json, label_health.md with plots/, pred_probs.npy. Prints a JSON summary.
"""

import json

from absl import flags
from ml_collections import config_flags

from tf_twostage.programs import cli
from tf_twostage.runs.label_issues import find_label_issues_run

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py) or preset name.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the artifacts (label_issues/ inside it).")
_PRED_PROBS = flags.DEFINE_string("pred_probs", "", "Own out-of-sample probabilities [N, C] (.npy) instead "
                                  "of K-fold training.")
_RESTART = flags.DEFINE_bool("restart", False, "Delete the workdir's run artifacts first and start over.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    cli.check_no_arguments(argv)
    summary = find_label_issues_run(_CONFIG.value, _WORKDIR.value, _PRED_PROBS.value, _RESTART.value,
                                    progress=lambda line: print(line, flush=True))
    print(json.dumps(summary, indent=2))
    return 0


def run():
    """Entry point of `bin/find_label_issues.py` and the console script."""
    cli.run_program(main)
