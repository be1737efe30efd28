"""Evaluates a trained classifier on a split: accuracy, per-class accuracy, confusion matrix.

  python bin/evaluate.py --workdir=runs/mnist5k [--split=test|validation|train] [--weights=PATH]
  python bin/evaluate.py --saved_model=runs/mnist5k/export/mnist5k [--workdir=DIR | --config=configs/X.py]

With --workdir alone, the run's classifier (DIR/final/classifier.weights.h5, else the Stage-1 weights) is
evaluated on the run's data (DIR/config.json). With --saved_model (a version folder, or a model folder: its
highest version), the SavedModel is evaluated through its own serving signature, pre-processing inside, on
the data of --config or of the run in --workdir; its numbers should equal those of the run's weights.
--config, when given, says which data (overrides allowed: --config.data.dir=...).

Train and validation are the run's (same noisy labels and hold-out): accuracy is reported against the noisy
labels and, where the true labels are known, against the clean ones. Prints a table and writes the report
as JSON to --output, by default DIR/evaluation/<split>.json (<split>.saved_model.json for a SavedModel)
when --workdir is given; without --workdir, only with --output.
"""


from absl import flags
from ml_collections import config_flags

from tf_twostage.programs import cli
from tf_twostage.serving.evaluation import evaluate_model, format_evaluation

_WORKDIR = flags.DEFINE_string("workdir", None, "A run's folder: its data and (without --saved_model) its classifier.")
_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "A SavedModel version folder, or a model folder of versions.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "Config of the data (configs/*.py); default: the run's.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate: test, validation or train.")
_WEIGHTS = flags.DEFINE_string("weights", None, "Classifier weights (.weights.h5) instead of the run's own.")
_OUTPUT = flags.DEFINE_string("output", None, "JSON report file; default: see above.")


def main(argv):
    cli.check_no_arguments(argv)
    report = evaluate_model(
        _SPLIT.value,
        workdir=_WORKDIR.value,
        config=_CONFIG.value,
        saved_model=_SAVED_MODEL.value,
        weights=_WEIGHTS.value,
        output=_OUTPUT.value,
    )
    print(format_evaluation(report))
    if report["output"]:
        print(f"report: {report['output']}")
    return 0


def run():
    """Entry point of `bin/evaluate.py` and the console script."""
    cli.run_program(main)
