"""The one place that wires a config into a run: strategy, data, model, method, artifacts.

`run_experiment(config, workdir)` leaves in `workdir` (PROTOCOL section 7):
  config.json   the resolved config
  results.json  method, dataset, seed, noise {type, rate, realized_rate, ...}, test_accuracy,
                stage1, wall_seconds, ...
  logs/         TensorBoard logs of every stage
  final/classifier.weights.h5, export/<dataset>/<version>/ (SavedModel for TF Serving)
Every artifact is written atomically.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_twostage import io_utils
from tf_twostage.baselines.methods import LOSS_METHODS, run_loss_baseline
from tf_twostage.config_checks import validate_config
from tf_twostage.data.prepare import PreparedData, prepare_data
from tf_twostage.distribution import check_global_batch_size, make_strategy, worker_workdir
from tf_twostage.evaluation import evaluate_classifier
from tf_twostage.export import ENCODED_IMAGE_DATASETS, EXPORT_DIR, export_classifier
from tf_twostage.models import build_classifier
from tf_twostage.stage1.pretrain import train_cross_entropy
from tf_twostage.stage1.run import (
    load_refined_validation,
    load_selection,
    select_labels,
    train_stage1,
    weights_path,
)
from tf_twostage.stage2.run import train_stage2


def run_cross_entropy(config, data: PreparedData, strategy, workdir: str) -> dict:
    """`method=ce`: plain cross-entropy on the noisy labels, final weights (the baseline row).

    Always unbalanced, whatever `stage1.balance_classes` says (that is `improved_baseline`).
    """
    plain = _with_balance(config, False)
    with strategy.scope():
        classifier = build_classifier(config.model, data.image_shape, data.num_classes, config.seed)
        history = train_cross_entropy(classifier, data, plain, workdir)
    return {"classifier": classifier, "history": {"stage1": io_utils.history_json(history)}}


def _with_balance(config, balance: bool):
    """A copy of `config` whose pre-training is (or is not) class-balanced."""
    copy = config.copy_and_resolve_references()
    copy.stage1.balance_classes = balance
    return copy


def run_two_stage(config, data: PreparedData, strategy, workdir: str) -> dict:
    """`method=two_stage`: Stage 1 (pre-train, select labels), then Stage 2 (semi-supervised)."""
    stats = run_stage1(config, data, strategy, workdir)
    classifier, histories = train_stage2(
        config, data, load_selection(workdir, data), strategy, workdir, weights_path(workdir),
        validation_positions=load_refined_validation(workdir, data),
    )
    histories["stage1"] = io_utils.read_json(os.path.join(workdir, "stage1", "history.json"))
    return {"classifier": classifier, "stage1": stats, "history": histories}


def run_stage1(config, data: PreparedData, strategy, workdir: str) -> dict:
    """Stage 1 as the two-stage method runs it: pre-train, select; returns the selection statistics."""
    train_stage1(config, data, strategy, workdir)
    return select_labels(config, data, workdir)


def run_stage1_only(config, data: PreparedData, strategy, workdir: str) -> dict:
    """`method=stage1_only` (ablation): cross-entropy on the kept labels alone, classes balanced."""
    stats = run_stage1(config, data, strategy, workdir)
    kept = np.flatnonzero(load_selection(workdir, data))
    with strategy.scope():
        classifier = build_classifier(config.model, data.image_shape, data.num_classes, config.seed)
        history = train_cross_entropy(classifier, data, config, workdir, stage_name="stage1_only",
                                      positions=kept, validation_positions=load_refined_validation(workdir, data))
    return {"classifier": classifier, "stage1": stats, "history": {"stage1_only": io_utils.history_json(history)}}


def run_improved_baseline(config, data: PreparedData, strategy, workdir: str) -> dict:
    """`method=improved_baseline`: cross-entropy on all noisy labels with class balancing, monitored
    (learning-rate plateaus) on Stage 1's refined validation set."""
    stats = run_stage1(config, data, strategy, workdir)
    balanced = _with_balance(config, True)
    with strategy.scope():
        classifier = build_classifier(config.model, data.image_shape, data.num_classes, config.seed)
        history = train_cross_entropy(classifier, data, balanced, workdir, stage_name="improved_baseline",
                                      validation_positions=load_refined_validation(workdir, data))
    return {"classifier": classifier, "stage1": stats,
            "history": {"improved_baseline": io_utils.history_json(history)}}


def run_stage2_all_labels(config, data: PreparedData, strategy, workdir: str) -> dict:
    """`method=stage2_all_labels` (ablation): Stage 2 from the pre-trained weights with every noisy label."""
    train_stage1(config, data, strategy, workdir)
    classifier, histories = train_stage2(config, data, np.ones(len(data.train), bool), strategy, workdir,
                                         weights_path(workdir))
    return {"classifier": classifier, "history": histories}


METHODS: Dict[str, Callable] = {
    "ce": run_cross_entropy,
    "two_stage": run_two_stage,
    "improved_baseline": run_improved_baseline,
    **{method: run_loss_baseline for method in LOSS_METHODS},
    "stage1_only": run_stage1_only,
    "stage2_all_labels": run_stage2_all_labels,
}


def start_run(config, workdir: str):
    """Checks the config, picks the strategy, records the config, seeds and prepares the data.

    Every program (the runner and the per-stage scripts) starts here, so they all see the same data.
    Returns (strategy, data, workdir): under a multi-worker strategy, workers other than the chief
    write into a private sub-folder of `workdir`.
    """
    validate_config(config, methods=tuple(METHODS))
    strategy = make_strategy(config.distribution.strategy)  # first: multi-worker wants no op before it
    check_global_batch_size(int(config.batch_size), strategy)
    workdir = worker_workdir(workdir, strategy)
    os.makedirs(workdir, exist_ok=True)
    io_utils.write_json(os.path.join(workdir, "config.json"), config.to_dict())
    keras.utils.set_random_seed(int(config.seed))
    logging.info("strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy, prepare_data(config), workdir


def run_experiment(config, workdir: str) -> dict:
    """Runs the experiment `config` describes and writes its artifacts into `workdir`; returns results."""
    started = time.time()
    strategy, data, workdir = start_run(config, workdir)
    outcome = METHODS[config.method](config, data, strategy, workdir)
    classifier = outcome["classifier"]
    test_metrics = evaluate_classifier(classifier, data.test, data.preprocessor, config.batch_size)
    final_weights = os.path.join(workdir, "final", "classifier.weights.h5")
    with io_utils.atomic_path(final_weights, suffix=".weights.h5") as temporary:
        classifier.save_weights(temporary)
    export_dir = export_classifier(
        classifier, data.preprocessor, data.image_shape, data.dataset.class_names,
        os.path.join(workdir, EXPORT_DIR), config.data.name,
        encoded_images=config.data.name in ENCODED_IMAGE_DATASETS,
    )
    results = {
        "method": config.method,
        "dataset": data.dataset.name,
        "seed": int(config.seed),
        "noise": _noise_json(config, data),
        "num_train": len(data.train),
        "num_validation": len(data.validation),
        "num_test": len(data.test),
        "test_accuracy": test_metrics["accuracy"],
        "test_per_class_accuracy": test_metrics["per_class_accuracy"],
        "test_confusion_matrix": test_metrics["confusion_matrix"],
        "stage1": outcome.get("stage1"),
        "baseline": outcome.get("baseline"),
        "export_dir": export_dir,
        "history": outcome.get("history", {}),
        "num_replicas": strategy.num_replicas_in_sync,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "wall_seconds": round(time.time() - started, 3),
    }
    io_utils.write_json(os.path.join(workdir, "results.json"), results)
    return results


def _noise_json(config, data: PreparedData) -> dict:
    report = data.noise.to_json()
    known = data.train.has_clean_labels
    return {
        "type": config.noise.type,
        "rate": float(config.noise.rate),
        "realized_rate": report["realized_rate"] if known else None,
        "target_matrix": report["target_matrix"],
        "realized_matrix": report["realized_matrix"] if known else None,
    }

