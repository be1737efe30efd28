"""Stage 1, step 2: keep the labels that are very likely correct (after bin/train_stage1.py).

  python bin/select_labels.py --config=configs/mnist5k.py --workdir=runs/mnist5k

Writes DIR/stage1/selection.npz, selection_stats.json, refined_validation.npz and dropped_labels.csv
(the dropped labels with the model's suggested class, most confident first, for a person to review).
"""


import json

from absl import flags
from ml_collections import config_flags

from tf_twostage.programs import cli
from tf_twostage.runs.experiment import select_and_record, start_run
from tf_twostage.stage1.quality import format_quality, format_per_class

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the run (the one bin/train_stage1.py used).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    cli.check_no_arguments(argv)
    _, data, workdir = start_run(_CONFIG.value, _WORKDIR.value, remedy=(
        "Keys that Stage 1 reads changed, so its predictions no longer fit: retrain it with bin/train_stage1.py "
        "--restart (same --config and --workdir), or use another --workdir. (Selection keys such as "
        "stage1.threshold or stage1.floor_fraction may change freely: the Stage-1 predictions are reused)"))
    stats = select_and_record(_CONFIG.value, data, workdir)
    summary = {key: value for key, value in stats.items() if key not in ("per_class", "quality")}
    print(json.dumps(summary, indent=2))
    if stats.get("quality"):  # the true training labels are known: how good the selection is
        quality = stats["quality"]
        print(f"selection quality: {format_quality(quality)}")
        print(f"per class (noisy label): {format_per_class(quality)}")
    return 0


def run():
    """Entry point of `bin/select_labels.py` and the console script."""
    cli.run_program(main)
