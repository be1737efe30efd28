"""Exports a run's classifier as a SavedModel for TF Serving, pre-processing inside.

  python bin/export.py --config=configs/mnist5k.py --workdir=runs/mnist5k \
      [--weights=PATH] [--model_name=NAME]

Writes DIR/export/<model_name or data.name>/<next version>/ (docs/protocol.md section 7). The weights default to
DIR/final/classifier.weights.h5 if it exists, else DIR/stage1/classifier.weights.h5. Use the config the
run was trained with: the mean image is re-derived from its data.
"""


import os

from absl import flags
from ml_collections import config_flags

from tf_twostage.programs import cli
from tf_twostage.serving.evaluation import check_run_workdir, default_weights
from tf_twostage.serving.export import export_from_workdir

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the run whose classifier to export.")
_WEIGHTS = flags.DEFINE_string("weights", None, "Classifier weights (.weights.h5); default: see above.")
_MODEL_NAME = flags.DEFINE_string("model_name", None, "Model folder under DIR/export (default: data.name).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    cli.check_no_arguments(argv)
    check_run_workdir(_WORKDIR.value)
    weights = _WEIGHTS.value or default_weights(_WORKDIR.value)
    version_dir = export_from_workdir(_CONFIG.value, _WORKDIR.value, weights, _MODEL_NAME.value)
    print(f"exported {weights} to {os.path.abspath(version_dir)}")
    return 0


def run():
    """Entry point of `bin/export.py` and the console script."""
    cli.run_program(main)
