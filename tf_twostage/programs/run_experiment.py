"""Runs a whole experiment from a config and prints its result table.

  python bin/run_experiment.py --config=configs/mnist5k.py --workdir=runs/mnist5k \
      [--config.noise.rate=0.2 --config.seed=1 ...]

Leaves config.json, results.json and TensorBoard logs in --workdir (docs/protocol.md section 7). Running the
same command again after a crash resumes the run; a workdir made with another config is refused
unless --restart is given. Exit codes: 0 done, 2 bad input, 3 training diverged (NaN loss).
"""


import os

from absl import flags
from ml_collections import config_flags

from tf_twostage.programs import cli
from tf_twostage.runs.experiment import run_experiment
from tf_twostage.reporting.tables import format_results_table

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the run's artifacts.")
_RESTART = flags.DEFINE_bool("restart", False, "Delete the workdir's run artifacts first and start over "
                             "(needed to reuse a workdir with a different config).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    cli.check_no_arguments(argv)
    results = run_experiment(_CONFIG.value, _WORKDIR.value, restart=_RESTART.value)
    print(format_results_table([results]))
    for check in results.get("data_checks", []):
        print(f"data check: {check['message']}")
    print(f"artifacts: {os.path.abspath(_WORKDIR.value)}")
    return 0


def run():
    """Entry point of `bin/run_experiment.py` and the console script."""
    cli.run_program(main)
