"""Finding label issues in a dataset: out-of-sample predictions, the issue ranking and its report.

`find_label_issues_run(config, workdir)` (behind `bin/find_label_issues.py`) reviews every noisily
labeled example of the config's dataset (the training split and the validation examples held out of it)
and writes, under `workdir/label_issues/`:

  pred_probs.npy     out-of-sample class probabilities `[N, C]` (K-fold, or the user's own file)
  examples.npz       the reviewed examples' ids (`index`) and given labels, in the order of pred_probs
  issues.csv         every example, most suspicious first: index, path, given / suggested label, score,
                     is_issue (and the true label when the data knows it, e.g. synthetic noise)
  kept.csv           the examples not flagged, `path,label` rows: `data.train` of a later run with
                     data.name=csv (path-based data; in-memory datasets get `index,label` rows)
  label_health.json  `tf_twostage.stage1.label_issues.label_health` of the predictions
  label_health.md    the same for people, with plots/ (per-class quality, confused pairs, top suspects)

K-fold predictions: the examples are split into K folds stratified by given label; for each fold the
preset's model is trained (as Stage 1 pre-trains: the best epoch on a validation set held out of the
other folds) on the other K-1 folds and predicts the held-out one. Each finished fold is saved
(`label_issues/folds/fold-K.npz`), so a rerun does not redo it, and an interrupted fold continues from
its last epoch checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from typing import Callable, Optional

import keras
import numpy as np

import tensorflow as tf

from tf_twostage.config.base import eval_batch_size
from tf_twostage.data.pipelines import stratified_holdout
from tf_twostage.data.prepare import PreparedData
from tf_twostage.data.source import UNKNOWN_LABEL, ImageSplit, decode_image_file
from tf_twostage.reporting.label_health import write_label_health_report
from tf_twostage.runs.experiment import start_run
from tf_twostage.runs.stage1 import pretrain_with_recorder
from tf_twostage.stage1.label_issues import check_labels, check_pred_probs, find_label_issues, label_health
from tf_twostage.training.metrics import predict_probabilities
from tf_twostage.utils import io_utils

LABEL_ISSUES_DIR = "label_issues"
FOLDS_DIR = "folds"


def reviewed_examples(data: PreparedData) -> ImageSplit:
    """The examples whose labels are reviewed: the training split plus the validation examples held out of
    it (a dataset's own validation split, e.g. Clothing1M's clean one, is not reviewed)."""
    if data.dataset.validation is not None or not len(data.validation):
        return data.train
    return concatenate_splits(data.train, data.validation)


def concatenate_splits(first: ImageSplit, second: ImageSplit) -> ImageSplit:
    """One split holding the examples of `first` then those of `second` (same kind: images or paths)."""

    def join(a, b):
        return None if a is None or b is None else np.concatenate([a, b])

    if (first.images is None) != (second.images is None):
        raise ValueError("cannot join an in-memory split with an on-disk one")
    clean = None
    if first.clean_labels is not None or second.clean_labels is not None:
        clean = np.concatenate([
            split.clean_labels if split.clean_labels is not None else np.full(len(split), UNKNOWN_LABEL)
            for split in (first, second)
        ])
    return ImageSplit(
        labels=np.concatenate([first.labels, second.labels]),
        index=np.concatenate([first.index, second.index]),
        num_classes=first.num_classes,
        image_shape=first.image_shape,
        images=join(first.images, second.images),
        paths=join(first.paths, second.paths),
        clean_labels=clean,
    )


def fold_assignment(labels, folds: int, seed: int) -> np.ndarray:
    """`[N]` fold ids in [0, folds): each class spread evenly over the folds, deterministic given seed."""
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"label_issues.folds must be >= 2, got {folds}")
    if len(labels) < folds:
        raise ValueError(f"label_issues.folds={folds} needs at least {folds} examples, got {len(labels)}")
    assignment = np.empty(len(labels), np.int64)
    rng = np.random.RandomState(seed)
    offset = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        # Continue the round-robin across classes so small classes do not all land in fold 0.
        assignment[members] = (offset + np.arange(len(members))) % folds
        offset += len(members)
    return assignment


def kfold_pred_probs(config, data: PreparedData, examples: ImageSplit, strategy, workdir: str,
                     progress: Optional[Callable[[str], None]] = None) -> np.ndarray:
    """Out-of-sample probabilities `[N, C]` of `examples` by K-fold training of the config's model.

    Finished folds are read back from `label_issues/folds/`, not trained again. `progress` gets one line
    per fold.
    """
    folds = int(config.label_issues.folds)
    assignment = fold_assignment(examples.labels, folds, int(config.seed))
    folder = os.path.join(workdir, LABEL_ISSUES_DIR, FOLDS_DIR)
    pred_probs = np.zeros((len(examples), data.num_classes), np.float32)
    val_fraction = float(config.data.val_fraction)
    for fold in range(folds):
        held = np.flatnonzero(assignment == fold)
        path = os.path.join(folder, f"fold-{fold}.npz")
        started = time.time()
        if os.path.exists(path):
            saved = io_utils.read_npz(path)
            if not np.array_equal(saved["index"], examples.index[held]):
                raise ValueError(f"{path} holds other examples than fold {fold} of this config; rerun with "
                                 "--restart")
            pred_probs[held] = saved["pred_probs"]
            if progress:
                progress(f"fold {fold + 1}/{folds}: already done ({len(held)} examples)")
            continue
        rest = np.flatnonzero(assignment != fold)
        if val_fraction > 0:
            train_part, val_part = stratified_holdout(examples.labels[rest], val_fraction, int(config.seed) + fold)
            train_positions, val_positions = rest[train_part], rest[val_part]
        else:
            train_positions, val_positions = rest, rest[:0]
        fold_data = dataclasses.replace(data, train=examples.subset(train_positions),
                                        validation=examples.subset(val_positions))
        keras.utils.set_random_seed(int(config.seed) * 1000 + fold + 1)
        classifier, _, _ = pretrain_with_recorder(config, fold_data, strategy, workdir,
                                                  f"label_issues_fold{fold}")
        probabilities = predict_probabilities(classifier, examples.subset(held), data.preprocessor,
                                              eval_batch_size(config))
        io_utils.write_npz(path, index=examples.index[held], pred_probs=probabilities.astype(np.float32))
        pred_probs[held] = probabilities
        if progress:
            progress(f"fold {fold + 1}/{folds}: trained on {len(train_positions)}, predicted {len(held)} "
                     f"examples ({time.time() - started:.1f} s)")
    return pred_probs


def program_rule(config) -> str:
    """The rule the program applies: `auto` is `adaptive`; `clean_set` is the library's (it needs scores)."""
    rule = config.label_issues.rule
    if rule == "clean_set":
        raise ValueError("label_issues.rule=clean_set needs one-vs-rest clean-set scores, which this program does "
                         "not compute; use tf_twostage.find_label_issues(..., rule='clean_set', clean_scores=...) "
                         "or another rule (adaptive, posterior, prune_by_class, prune_by_noise_rate, confidence, agreement)")
    return "adaptive" if rule == "auto" else rule


def load_pred_probs_file(path: str, num_examples: int, num_classes: int) -> np.ndarray:
    """A user's `[N, C]` .npy of out-of-sample probabilities, checked (rows in the order of example ids)."""
    if not os.path.isfile(path):
        raise ValueError(f"--pred_probs {path!r} is not an existing .npy file")
    try:
        pred_probs = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise ValueError(f"--pred_probs {path!r} is not a readable .npy array ({error})") from None
    if pred_probs.shape != (num_examples, num_classes):
        raise ValueError(f"--pred_probs {path!r} has shape {tuple(pred_probs.shape)}; expected ({num_examples}, "
                         f"{num_classes}): one row per reviewed example, in the order of their ids, and one "
                         "column per class")
    try:
        check_pred_probs(pred_probs)
    except ValueError as error:
        raise ValueError(f"--pred_probs {path!r}: {error}") from None
    return pred_probs


def find_label_issues_run(config, workdir: str, pred_probs_file: str = "", restart: bool = False,
                          progress: Optional[Callable[[str], None]] = None) -> dict:
    """Reviews the labels of the config's dataset and writes `workdir/label_issues/` (module docstring).

    Returns a summary: rule, number of examples, of issues, the estimated noise rate, the output folder,
    and precision / recall / F1 of the flagged examples where the true labels are known.
    """
    rule = program_rule(config)
    strategy, data, workdir = start_run(config, workdir, restart)
    examples = reviewed_examples(data)
    by_id = np.argsort(examples.index, kind="stable")  # outputs list the examples in the order of their ids
    if pred_probs_file:
        pred_probs = np.asarray(load_pred_probs_file(pred_probs_file, len(examples), data.num_classes),
                                np.float32)
        source = f"--pred_probs {pred_probs_file}"
    else:
        pred_probs = kfold_pred_probs(config, data, examples, strategy, workdir, progress)[by_id]
        source = f"{int(config.label_issues.folds)}-fold out-of-sample predictions of model {config.model.name}"
    examples = examples.subset(by_id)
    labels = check_labels(examples.labels, len(examples), data.num_classes)
    issues = find_label_issues(labels, pred_probs, rule=rule, threshold=float(config.stage1.threshold)
                               if rule == "confidence" else None,
                               floor_fraction=float(config.stage1.floor_fraction), seed=int(config.seed))
    names = list(data.dataset.class_names)
    health = label_health(labels, pred_probs, names, seed=int(config.seed))
    true_labels = None
    if examples.clean_labels is not None and np.all(examples.clean_labels != UNKNOWN_LABEL):
        true_labels = examples.clean_labels

    folder = os.path.join(workdir, LABEL_ISSUES_DIR)
    os.makedirs(folder, exist_ok=True)
    with io_utils.atomic_path(os.path.join(folder, "pred_probs.npy")) as temporary:
        np.save(temporary, pred_probs)
    io_utils.write_npz(os.path.join(folder, "examples.npz"), index=examples.index, labels=labels)
    _write_issues_csv(os.path.join(folder, "issues.csv"), examples, issues, names, true_labels)
    _write_kept_csv(os.path.join(folder, "kept.csv"), examples, issues, names)
    summary = {"rule": issues.rule, "predictions": source, "num_examples": len(examples),
               "num_issues": issues.num_issues, "estimated_noise_rate": health["estimated_noise_rate"],
               "folder": folder}
    if issues.note:
        summary["note"] = issues.note
    if true_labels is not None:
        wrong = true_labels != labels
        hits = int(np.count_nonzero(issues.is_issue & wrong))
        precision, recall = hits / max(1, issues.num_issues), hits / max(1, int(wrong.sum()))
        summary.update(realized_noise_rate=float(wrong.mean()), precision=precision, recall=recall,
                       f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    io_utils.write_json(os.path.join(folder, "label_health.json"), {**health, "summary": summary})

    def image_of(position: int) -> np.ndarray:
        if examples.in_memory:
            return examples.images[position]
        return decode_image_file(tf.constant(str(examples.paths[position])), examples.image_shape).numpy()

    write_label_health_report(folder, health, issues, labels, names, image_of, true_labels,
                              summary={key: summary[key] for key in ("rule", "predictions", "note") if key in summary})
    return summary


def _write_issues_csv(path: str, examples: ImageSplit, issues, names, true_labels) -> None:
    """Every reviewed example, most suspicious first: flagged ones by label quality, then the rest."""
    order = np.lexsort((np.arange(len(examples)), issues.label_quality, ~issues.is_issue))
    with io_utils.atomic_path(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            header = ["index", "path", "given_label", "given_class", "suggested_label", "suggested_class",
                      "label_quality", "is_issue"]
            writer.writerow(header + (["true_label"] if true_labels is not None else []))
            for position in order:
                given, suggested = int(examples.labels[position]), int(issues.suggested_label[position])
                row = [int(examples.index[position]),
                       "" if examples.paths is None else examples.paths[position],
                       given, names[given], suggested, names[suggested],
                       f"{issues.label_quality[position]:.6f}", int(issues.is_issue[position])]
                writer.writerow(row + ([int(true_labels[position])] if true_labels is not None else []))


def _write_kept_csv(path: str, examples: ImageSplit, issues, names) -> None:
    """The examples not flagged: `path,label` (class names) rows, a CSV source for `data.train`;
    `index,label` rows for in-memory datasets (no file paths)."""
    kept = np.flatnonzero(~issues.is_issue)
    with io_utils.atomic_path(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            if examples.paths is not None:
                writer.writerow(["path", "label"])
                writer.writerows([examples.paths[p], names[int(examples.labels[p])]] for p in kept)
            else:
                writer.writerow(["index", "label"])
                writer.writerows([int(examples.index[p]), names[int(examples.labels[p])]] for p in kept)
