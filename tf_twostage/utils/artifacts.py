"""Where a run keeps what: the artifact file names of a workdir, and the Stage-1 selection files.

Every module that reads or writes a run's files takes the names from here, so the layout of a workdir is
written down once. This module sits at the bottom of the package: it imports nothing of it but `io_utils`.
"""

from __future__ import annotations

import os

import numpy as np

from tf_twostage.utils import io_utils

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
STAGE1_DIR = "stage1"
PREDICTIONS_FILE = "predictions.npz"
STAGE1_WEIGHTS_FILE = "classifier.weights.h5"
SELECTION_FILE = "selection.npz"
REFINED_VALIDATION_FILE = "refined_validation.npz"
SELECTION_STATS_FILE = "selection_stats.json"
DROPPED_LABELS_FILE = "dropped_labels.csv"
FINAL_DIR = "final"
FINAL_WEIGHTS = os.path.join(FINAL_DIR, "classifier.weights.h5")
FINAL_OUTCOME = os.path.join(FINAL_DIR, "outcome.json")  # what the method returned besides the classifier
EXPORT_DIR = "export"
EVALUATION_DIR = "evaluation"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"


def stage1_dir(workdir: str) -> str:
    return os.path.join(workdir, STAGE1_DIR)


def write_kept(path: str, split, kept) -> None:
    """`index`, `kept` mask and `kept_label` (-1 where dropped) of one split, as .npz (no pickles)."""
    io_utils.write_npz(path, index=split.index, kept=kept, kept_label=np.where(kept, split.labels, -1))


def _read_kept(name: str, workdir: str, split, what: str) -> np.ndarray:
    """The kept mask of `stage1/<name>`, checked to belong to the examples of `split`."""
    path = os.path.join(stage1_dir(workdir), name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: run bin/select_labels.py first")
    arrays = io_utils.read_npz(path)
    if not np.array_equal(arrays["index"], split.index):
        raise ValueError(f"{path} was made for other {what} examples than this config gives")
    return arrays["kept"].astype(bool)


def load_selection(workdir: str, data) -> np.ndarray:
    """The kept mask of `stage1/selection.npz`, checked against these training examples."""
    return _read_kept(SELECTION_FILE, workdir, data.train, "training")


def load_refined_validation(workdir: str, data) -> np.ndarray:
    """Positions in `data.validation` whose labels passed the Stage-1 rule (the refined validation set)."""
    return np.flatnonzero(_read_kept(REFINED_VALIDATION_FILE, workdir, data.validation, "validation"))
