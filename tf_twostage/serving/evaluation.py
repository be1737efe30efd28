"""Evaluating a finished run or an exported SavedModel on one split (`bin/evaluate.py`).

`evaluate_model` evaluates a finished run's weights or an exported SavedModel (through its own
signature) on the test, validation or train split for `bin/evaluate.py`, against the noisy and, where
known, the clean labels.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from tf_twostage.config.compare import check_run_config
from tf_twostage.utils import io_utils
from tf_twostage.utils.artifacts import EVALUATION_DIR, FINAL_WEIGHTS, STAGE1_DIR, STAGE1_WEIGHTS_FILE
from tf_twostage.config.base import eval_batch_size
from tf_twostage.data.pipelines import gather_batches
from tf_twostage.data.source import UNKNOWN_LABEL, ImageSplit
from tf_twostage.training.metrics import classification_metrics, predict_probabilities


# --- Evaluating a trained run or an exported SavedModel on one split (bin/evaluate.py) ---

EVALUATION_SPLITS = ("test", "validation", "train")
_MODEL_KEYS = ("model.", "method", "data.image_size", "data.channels")  # what the run's weights were built for
WEIGHTS_CANDIDATES = (FINAL_WEIGHTS, os.path.join(STAGE1_DIR, STAGE1_WEIGHTS_FILE))  # under a run's workdir


def default_weights(workdir: str) -> str:
    """The classifier weights a run ended with: the first of DIR/final/classifier.weights.h5 and
    DIR/stage1/classifier.weights.h5 that exists."""
    candidates = [os.path.join(workdir, path) for path in WEIGHTS_CANDIDATES]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"no classifier weights in {workdir}: looked for {' and '.join(candidates)}; "
        "train first (bin/run_experiment.py or bin/train_stage1.py) or pass --weights"
    )


def check_run_workdir(workdir) -> str:
    """A run's folder: a non-empty name of an existing folder (what it holds is checked by its readers)."""
    workdir = "" if workdir is None else os.fspath(workdir)
    if not workdir.strip():
        raise ValueError(f"workdir must name a run's folder, got {workdir!r}")
    if not os.path.isdir(workdir):
        what = "an existing file" if os.path.exists(workdir) else "no folder"
        raise ValueError(f"workdir {workdir!r} is {what}; give the folder of a run (bin/run_experiment.py --workdir)")
    return workdir


def check_output_file(output: str) -> str:
    """An output file path that can be created: not an existing folder, its folder creatable."""
    output = os.fspath(output)
    if not output.strip():
        raise ValueError(f"output must name a file, got {output!r}")
    if os.path.isdir(output):
        raise ValueError(f"output {output!r} is an existing folder; name a file (e.g. {os.path.join(output, 'x.json')!r})")
    folder = os.path.dirname(os.path.abspath(output))
    parent = folder
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"output {output!r} cannot be created: {parent!r} is not a writable folder")
    return output


def check_split_name(split_name: str) -> str:
    if split_name not in EVALUATION_SPLITS:
        raise ValueError(f"split must be one of {', '.join(EVALUATION_SPLITS)}; got {split_name!r}")
    return split_name


def label_metrics(predictions, split: ImageSplit, split_name: str) -> dict:
    """`classification_metrics` of `predictions` against the split's labels, each with `num_examples`.

    Returns `{"noisy": ..., "clean": ...}`. The test split's labels are the clean ones (its clean
    labels where all are known, as `evaluate_classifier` does), so its `noisy` is None. Train and
    validation carry noisy labels: `noisy` compares with them, `clean` with the true labels of the
    examples whose true label is known (None when none is).
    """
    predictions = np.asarray(predictions, np.int64)

    def metrics(labels, predicted):
        return dict(classification_metrics(labels, predicted, split.num_classes), num_examples=int(len(labels)))

    if check_split_name(split_name) == "test":
        reference = split.clean_labels if split.has_clean_labels else split.labels
        return {"noisy": None, "clean": metrics(reference, predictions)}
    clean = None
    if split.clean_labels is not None:
        known = split.clean_labels != UNKNOWN_LABEL
        if np.any(known):
            clean = metrics(split.clean_labels[known], predictions[known])
    return {"noisy": metrics(split.labels, predictions), "clean": clean}


def saved_model_probabilities(export, split: ImageSplit, batch_size: int = 256) -> np.ndarray:
    """Probabilities `[N, C]` of `split`'s raw uint8 images through a loaded export's `serving_default`
    (`tf_twostage.serving.prediction.LoadedExport`): the pre-processing is the one inside the SavedModel."""
    if tuple(export.image_shape) != tuple(split.image_shape) or export.num_classes != split.num_classes:
        raise ValueError(
            f"the SavedModel {export.version_dir} takes images of shape {export.image_shape} with "
            f"{export.num_classes} classes, but the data has images of shape {split.image_shape} with "
            f"{split.num_classes} classes: give the config of the data it was trained on"
        )
    outputs = [
        export.predict_images(batch["image"].numpy(), batch_size)
        for batch in gather_batches(split, tf.data.Dataset.range(len(split)), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.zeros((0, split.num_classes), np.float32)


def default_evaluation_path(workdir: str, split_name: str, saved_model: bool) -> str:
    """DIR/evaluation/<split>.json for the run's weights, <split>.saved_model.json for a SavedModel."""
    name = f"{split_name}.saved_model.json" if saved_model else f"{split_name}.json"
    return os.path.join(workdir, EVALUATION_DIR, name)


def evaluate_model(split_name: str = "test", *, workdir: Optional[str] = None, config=None,
                   saved_model: Optional[str] = None, weights: Optional[str] = None,
                   output: Optional[str] = None) -> dict:
    """Evaluates a run's classifier or an exported SavedModel on one split; writes the report as JSON.

    Args:
      split_name: one of `EVALUATION_SPLITS`; train and validation are those of the run (same noisy
        labels and hold-out, re-derived from the config and seed).
      workdir: a run's workdir: its data (config.json) unless `config` is given, and its classifier
        (`weights`, default `default_weights(workdir)`) unless `saved_model` is given.
      config: the config saying which data (needed without `workdir`).
      saved_model: a SavedModel version or model folder, evaluated through its own `serving_default`.
      weights: classifier weights instead of the run's own (not with `saved_model`).
      output: the JSON file; default `default_evaluation_path` with a workdir, none without.

    Returns the report: `split`, `dataset`, `num_examples`, `class_names`, `model` (the weights file or
    SavedModel folder), `model_kind`, `workdir`, `accuracy` (against `reference`: "clean" when true
    labels are known, else "noisy"), `clean` and `noisy` (see `label_metrics`), `output`.

    Raises:
      ValueError, FileNotFoundError: bad arguments, naming the value; nothing is written then.
    """
    from tf_twostage.config import load_run_config  # pylint: disable=import-outside-toplevel
    from tf_twostage.data.prepare import prepare_data  # pylint: disable=import-outside-toplevel
    from tf_twostage.serving.export import run_classifier  # pylint: disable=import-outside-toplevel
    from tf_twostage.serving.prediction import load_export  # pylint: disable=import-outside-toplevel

    check_split_name(split_name)
    if workdir is not None:
        check_run_workdir(workdir)
    if saved_model is None and workdir is None:
        raise ValueError("give a run's workdir or a saved_model (with a config or workdir for its data)")
    if saved_model is not None and weights is not None:
        raise ValueError(f"give weights or saved_model, not both: got weights={weights!r}, saved_model={saved_model!r}")
    if config is None and workdir is None:
        raise ValueError(f"to evaluate the SavedModel {saved_model!r}, give the config or the run's workdir "
                         "that says which data it was trained on")
    if config is None:
        config = load_run_config(workdir)
    elif workdir is not None and saved_model is None:
        check_run_config(config, workdir, only=_MODEL_KEYS, remedy=(
            "The run's weights need its model config: give the run's config (other data may differ: "
            "--config.data.dir=...)"))
    if output is not None:
        check_output_file(output)
    if saved_model is None:
        weights = os.fspath(weights) if weights is not None else default_weights(workdir)
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"classifier weights {weights!r} do not exist")
        model = None
    else:
        model = load_export(saved_model)
    data = prepare_data(config)
    split = {"test": data.test, "validation": data.validation, "train": data.train}[split_name]
    batch_size = eval_batch_size(config)
    if model is None:
        classifier = run_classifier(config, data, workdir, weights)
        probabilities = predict_probabilities(classifier, split, data.preprocessor, batch_size)
    else:
        if tuple(model.class_names) != tuple(data.dataset.class_names):
            raise ValueError(f"the SavedModel {model.version_dir} has classes {list(model.class_names)}, "
                             f"the data {list(data.dataset.class_names)}: give the config it was trained on")
        probabilities = saved_model_probabilities(model, split, batch_size)
    by_labels = label_metrics(probabilities.argmax(axis=1), split, split_name)
    reference = "clean" if by_labels["clean"] is not None else "noisy"
    if output is None and workdir is not None:
        output = default_evaluation_path(workdir, split_name, saved_model=model is not None)
    report = {
        "split": split_name,
        "dataset": data.dataset.name,
        "num_examples": len(split),
        "class_names": list(data.dataset.class_names),
        "model": os.path.abspath(weights if model is None else model.version_dir),
        "model_kind": "weights" if model is None else "saved_model",
        "workdir": None if workdir is None else os.path.abspath(workdir),
        "accuracy": by_labels[reference]["accuracy"],
        "reference": reference,
        "clean": by_labels["clean"],
        "noisy": by_labels["noisy"],
        "output": None if output is None else os.path.abspath(output),
    }
    if output is not None:
        io_utils.write_json(output, report)
    return report


def format_evaluation(report: dict) -> str:
    """The report as text: a headline, a Markdown table per class and the confusion matrix."""
    kinds = [kind for kind in ("clean", "noisy") if report[kind] is not None]
    lines = [
        f"{report['dataset']} {report['split']} split, {report['num_examples']} images; "
        f"{report['model_kind'].replace('_', ' ')}: {report['model']}",
    ]
    for kind in kinds:
        metrics = report[kind]
        lines.append(f"accuracy against the {kind} labels: {100 * metrics['accuracy']:.2f}% "
                     f"({metrics['num_examples']} images)")
    header = ["class", "name"]
    for kind in kinds:
        header += [f"{kind} images", f"{kind} accuracy"]
    rows = []
    for class_id, name in enumerate(report["class_names"]):
        row = [str(class_id), name]
        for kind in kinds:
            accuracy = report[kind]["per_class_accuracy"][class_id]
            row += [str(sum(report[kind]["confusion_matrix"][class_id])),
                    "n/a" if accuracy is None else f"{100 * accuracy:.2f}%"]
        rows.append(row)
    lines += ["", _markdown_table(header, rows), ""]
    confusion = report[report["reference"]]["confusion_matrix"]
    lines.append(f"confusion matrix (rows: {report['reference']} label, columns: predicted class)")
    width = max(len(str(value)) for row in confusion for value in row + [len(confusion) - 1])
    lines.append(" " * (width + 1) + " ".join(str(c).rjust(width) for c in range(len(confusion))))
    lines += [str(c).rjust(width) + " " + " ".join(str(v).rjust(width) for v in row)
              for c, row in enumerate(confusion)]
    return "\n".join(lines)


def _markdown_table(header, rows) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)
