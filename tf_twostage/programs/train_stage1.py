"""Stage 1, step 1: pre-train on the noisy labels and record the predictions to rank them with.

  python bin/train_stage1.py --config=configs/mnist5k.py --workdir=runs/mnist5k

Writes DIR/stage1/predictions.npz and DIR/stage1/classifier.weights.h5 (best validation epoch).
A finished Stage 1 is not run again; an interrupted one resumes from its last epoch.
"""


from absl import flags
from ml_collections import config_flags

from tf_twostage.programs import cli
from tf_twostage.runs.experiment import ensure_stage1_trained, start_run

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the run's artifacts.")
_RESTART = flags.DEFINE_bool("restart", False, "Delete the workdir's run artifacts first and start over.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    cli.check_no_arguments(argv)
    strategy, data, workdir = start_run(_CONFIG.value, _WORKDIR.value, restart=_RESTART.value)
    trained = ensure_stage1_trained(_CONFIG.value, data, strategy, workdir)
    done = "written to" if trained else "already finished in"
    print(f"stage 1 predictions {done} {_WORKDIR.value}/stage1/")
    return 0


def run():
    """Entry point of `bin/train_stage1.py` and the console script."""
    cli.run_program(main)
