"""Classifies image files with an exported SavedModel and writes one CSV row per image.

  python bin/predict.py --saved_model=runs/mnist5k/export/mnist5k photos/ extra.png [--output=pred.csv]
  python bin/predict.py --workdir=runs/mnist5k --images=photos --images=extra.png --top_k=3

Inputs (positional arguments and/or repeated --images) are files or folders; folders are walked recursively
for .jpg .jpeg .png .gif .bmp files, in sorted order. --saved_model is a version folder or a model folder
(its highest version); --workdir means the run's newest export. Images are classified by the SavedModel's own
signatures (encoded bytes to serving_bytes when it has one, else decoded, converted to the model's channels
and resized here as the export does, then serving_default).

The CSV (columns path, class_id, class_name, probability; with --top_k=K also class_id_k, class_name_k,
probability_k for k = 2..K) goes to --output, written atomically, or to standard output when --output is
not given. Files that cannot be read or decoded are skipped and counted on standard error, or, with
--on_bad_file=error, stop the program (exit 2) before anything is written.
"""


import sys

from absl import flags

from tf_twostage.programs import cli
from tf_twostage.serving.prediction import classify_images

_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "A SavedModel version folder, or a model folder of versions.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Instead of --saved_model: a run's folder (its newest export).")
_IMAGES = flags.DEFINE_multi_string("images", [], "An image file or folder (repeatable); or give them as arguments.")
_OUTPUT = flags.DEFINE_string("output", None, "CSV file to write; default: standard output.")
_TOP_K = flags.DEFINE_integer("top_k", 1, "Classes per image, most probable first.")
_ON_BAD_FILE = flags.DEFINE_string("on_bad_file", "skip", "Unreadable or non-image files: skip or error.")


def main(argv):
    summary = classify_images(
        [*_IMAGES.value, *argv[1:]],
        saved_model=_SAVED_MODEL.value,
        workdir=_WORKDIR.value,
        output=_OUTPUT.value,
        top_k=_TOP_K.value,
        on_bad_file=_ON_BAD_FILE.value,
    )
    for path, problem in summary["skipped"]:
        print(f"skipped {path}: {problem}", file=sys.stderr)
    written = f"; wrote {summary['output']}" if summary["output"] else ""
    print(f"classified {summary['num_classified']} images with {summary['version_dir']} "
          f"({', '.join(summary['endpoints'])}); skipped {len(summary['skipped'])} files not readable as images"
          f"{written}", file=sys.stderr)
    return 0


def run():
    """Entry point of `bin/predict.py` and the console script."""
    cli.run_program(main)
