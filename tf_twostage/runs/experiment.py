"""The one place that wires a config into a run: strategy, data, model, method, artifacts.

`run_experiment(config, workdir)` leaves in `workdir` (docs/protocol.md section 7):
  config.json   the resolved config
  results.json  method, dataset, seed, noise {type, rate, realized_rate, ...}, test_accuracy,
                stage1, wall_seconds, ...
  logs/         TensorBoard logs of every stage
  report.md, plots/  the run's tables and figures (`tf_twostage.reporting.run_report.write_report`)
  final/classifier.weights.h5, export/<dataset>/<version>/ (SavedModel for TF Serving)
  manifest.json the finished stages, each with the hash of the config it ran under
Every artifact is written atomically. Rerunning the same command resumes: finished stages are
skipped (`manifest.RunManifest`), a training stage in progress continues from its last epoch
checkpoint (`resume.resume_fit`), and a finished run returns its results. A workdir reused with a
different config is refused (`manifest.check_workdir`) unless `restart=True`.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_twostage.utils import io_utils, workdir_lock
from tf_twostage.utils.memory import release_memory
from tf_twostage.runs.baselines import LOSS_METHODS, run_loss_baseline
from tf_twostage.config.base import eval_batch_size
from tf_twostage.config.checks import validate_config
from tf_twostage.data.image_check import bad_files_named
from tf_twostage.data.prepare import PreparedData, prepare_data
from tf_twostage.training.distribution import check_global_batch_size, make_strategy, worker_workdir
from tf_twostage.training.metrics import evaluate_classifier
from tf_twostage.serving.export import ENCODED_IMAGE_DATASETS, export_classifier
from tf_twostage.utils.artifacts import EXPORT_DIR, FINAL_OUTCOME, FINAL_WEIGHTS
from tf_twostage.runs.manifest import RunManifest, check_workdir
from tf_twostage.models import build_classifier
from tf_twostage.models.ensemble import average_ensemble
from tf_twostage.training.precision import set_dtype_policy
from tf_twostage.training.resume import remove_checkpoints
from tf_twostage.reporting.run_report import write_report
from tf_twostage.runs.pretrain import train_cross_entropy
from tf_twostage.runs.heavy_noise import selection_config, settings, switch_reason, training_config
from tf_twostage.runs.propagation import check_propagation_size
from tf_twostage.runs.stage1 import (
    PREDICTIONS_FILE,
    WEIGHTS_FILE,
    fallback_record,
    load_refined_validation,
    load_selection,
    select_labels,
    stage1_dir,
    train_stage1,
    weights_path,
)
from tf_twostage.runs.reselection import reselect_labels
from tf_twostage.runs.stage2 import build_semi_supervised_classifier, train_stage2
from tf_twostage.runs.validation import plan_validation, resolve_source, validation_report
from tf_twostage.stage1.selection import check_every_class_kept

SEMI_SUPERVISED_METHODS = ("two_stage", "stage2_all_labels")  # their classifier has the Stage-2 noise layers
SELECTING_METHODS = ("two_stage", "stage1_only", "improved_baseline")  # they run Stage 1's selection (run_stage1)


def run_cross_entropy(config, data: PreparedData, strategy, workdir: str) -> dict:
    """`method=ce`: plain cross-entropy on the noisy labels, final weights (the baseline row).

    Always unbalanced, whatever `stage1.balance_classes` says (that is `improved_baseline`).
    """
    plain = _with_balance(config, False)
    plan = plan_validation(config, data)
    with strategy.scope():
        classifier = build_classifier(config.model, data.image_shape, data.num_classes, config.seed)
        history = train_cross_entropy(classifier, data, plain, workdir, [plan.keeper],
                                      validation_split=plan.split)
    return {"classifier": classifier, "history": {"stage1": io_utils.history_json(history)},
            "validation": validation_report(config, data, classifier, plan, "ce")}


def _with_balance(config, balance: bool):
    """A copy of `config` whose pre-training is (or is not) class-balanced."""
    copy = config.copy_and_resolve_references()
    copy.stage1.balance_classes = balance
    return copy


def run_two_stage(config, data: PreparedData, strategy, workdir: str) -> dict:
    """`method=two_stage`: Stage 1 (pre-train, select labels), then Stage 2 (semi-supervised)."""
    stats = run_stage1(config, data, strategy, workdir)
    selecting, (training, overrides) = selection_config(config, stats), training_config(config, stats)
    kept, outcome, histories = load_selection(workdir, data), {"fallbacks": []}, {}
    if overrides:  # tf_twostage.runs.heavy_noise: Stage 2 as regularized as the pre-training, from a fresh start
        stats["heavy_noise"]["stage2_overrides"] = overrides
        outcome["fallbacks"].append(fallback_record(
            "stage2", settings("stage2", {key: config.stage2[key] for key in overrides}) + " under the heavy-noise "
            "switch", settings("stage2", overrides), switch_reason(stats["heavy_noise"])))
    config = training
    plan = plan_validation(config, data, load_refined_validation(workdir, data), anneals=True)
    if int(config.stage2.rounds) == 2:  # tf_twostage.runs.reselection
        first, histories = train_stage2(config, data, kept, strategy, workdir, weights_path(workdir),
                                        validation_positions=plan.positions, validation_split=plan.split,
                                        stage_name="stage2_round1", finetune=False)
        kept, outcome["stage2_reselection"] = reselect_labels(selecting, data, first, kept, workdir)
        outcome["fallbacks"] += outcome["stage2_reselection"]["fallbacks"]
        del first
        release_memory()
    members = int(config.stage2.ensemble_size)
    keepers = plan.member_keepers(members)
    classifier, last_round = train_stage2(
        config, data, kept, strategy, workdir, weights_path(workdir),
        validation_positions=plan.positions, validation_split=plan.split, members=members,
        extra_callbacks=[[keeper] for keeper in keepers],
    )
    histories.update(last_round)
    histories["stage1"] = io_utils.read_json(os.path.join(workdir, "stage1", "history.json"))
    return {"classifier": classifier, "stage1": stats, "history": histories, **outcome, "ensemble_size": members,
            "validation": _report_after_training(config, data, classifier, plan, "stage2")}


def _report_after_training(config, data: PreparedData, classifier, plan, stage: str) -> dict:
    """The validation report of a method with Stage 2 or Stage 1 behind it (and what fine-tuning did after)."""
    report = validation_report(config, data, classifier, plan, stage)
    if stage == "stage2" and int(config.stage2.finetune_epochs) > 0:
        report["used_for"] += (f"; then fine-tuned on the clean subset for {config.stage2.finetune_epochs} "
                               "epochs, last epoch kept (the value is the score before fine-tuning)")
    return report


def run_stage1(config, data: PreparedData, strategy, workdir: str) -> dict:
    """Stage 1 as the two-stage method runs it: pre-train, select; returns the selection statistics.

    Each step runs once per workdir and config: a rerun reads the selection exactly as it was saved.
    """
    ensure_stage1_trained(config, data, strategy, workdir)
    manifest = RunManifest(workdir, config)
    stats_path = os.path.join(stage1_dir(workdir), "selection_stats.json")
    if manifest.done("selection") and os.path.exists(stats_path):
        return io_utils.read_json(stats_path)
    return select_and_record(config, data, workdir)


def select_and_record(config, data: PreparedData, workdir: str) -> dict:
    """Applies the Stage-1 rule (`select_labels`) and records the selection as finished."""
    stats = select_labels(config, data, workdir)
    RunManifest(workdir, config).mark_done("selection", [
        "stage1/selection.npz", "stage1/refined_validation.npz", "stage1/selection_stats.json",
        "stage1/dropped_labels.csv"])
    return stats


def ensure_stage1_trained(config, data: PreparedData, strategy, workdir: str) -> bool:
    """Runs the Stage-1 pre-training unless the manifest says it is done; True if it ran."""
    manifest = RunManifest(workdir, config)
    if manifest.done("stage1") and os.path.exists(os.path.join(stage1_dir(workdir), PREDICTIONS_FILE)):
        logging.info("stage 1 already finished in %s: skipped", workdir)
        return False
    with bad_files_named(_splits(data)):
        train_stage1(config, data, strategy, workdir)
    release_memory()  # the Stage-1 network and its buffers are done with
    manifest.mark_done("stage1", [f"stage1/{PREDICTIONS_FILE}", f"stage1/{WEIGHTS_FILE}", "stage1/history.json"])
    return True


def _splits(data: PreparedData) -> list:
    return [data.train, data.validation, data.test, data.clean]


def run_stage1_only(config, data: PreparedData, strategy, workdir: str) -> dict:
    """`method=stage1_only` (ablation): cross-entropy on the kept labels alone, classes balanced."""
    stats = run_stage1(config, data, strategy, workdir)
    kept = np.flatnonzero(load_selection(workdir, data))
    plan = plan_validation(config, data, load_refined_validation(workdir, data))
    with strategy.scope():
        classifier = build_classifier(config.model, data.image_shape, data.num_classes, config.seed)
        history = train_cross_entropy(classifier, data, config, workdir, [plan.keeper], stage_name="stage1_only",
                                      positions=kept, validation_positions=plan.positions,
                                      validation_split=plan.split)
    return {"classifier": classifier, "stage1": stats, "history": {"stage1_only": io_utils.history_json(history)},
            "validation": _report_after_training(config, data, classifier, plan, "stage1_only")}


def run_improved_baseline(config, data: PreparedData, strategy, workdir: str) -> dict:
    """`method=improved_baseline`: cross-entropy on all noisy labels with class balancing, monitored
    (learning-rate plateaus, kept epoch) on the validation set of `validation.source` (the paper's:
    `refined`, Stage 1's refined validation set)."""
    stats = run_stage1(config, data, strategy, workdir)
    balanced = _with_balance(config, True)
    plan = plan_validation(config, data, load_refined_validation(workdir, data))
    with strategy.scope():
        classifier = build_classifier(config.model, data.image_shape, data.num_classes, config.seed)
        history = train_cross_entropy(classifier, data, balanced, workdir, [plan.keeper],
                                      stage_name="improved_baseline", validation_positions=plan.positions,
                                      validation_split=plan.split)
    return {"classifier": classifier, "stage1": stats,
            "history": {"improved_baseline": io_utils.history_json(history)},
            "validation": _report_after_training(config, data, classifier, plan, "improved_baseline")}


def run_stage2_all_labels(config, data: PreparedData, strategy, workdir: str) -> dict:
    """`method=stage2_all_labels` (ablation): Stage 2 from the pre-trained weights with every noisy label."""
    ensure_stage1_trained(config, data, strategy, workdir)
    plan = plan_validation(config, data, anneals=True)
    members = int(config.stage2.ensemble_size)
    keepers = plan.member_keepers(members)
    classifier, histories = train_stage2(config, data, np.ones(len(data.train), bool), strategy, workdir,
                                         weights_path(workdir), validation_split=plan.split, members=members,
                                         extra_callbacks=[[keeper] for keeper in keepers])
    return {"classifier": classifier, "history": histories, "ensemble_size": members,
            "validation": _report_after_training(config, data, classifier, plan, "stage2")}


METHODS: Dict[str, Callable] = {
    "ce": run_cross_entropy,
    "two_stage": run_two_stage,
    "improved_baseline": run_improved_baseline,
    **{method: run_loss_baseline for method in LOSS_METHODS},
    "stage1_only": run_stage1_only,
    "stage2_all_labels": run_stage2_all_labels,
}


def start_run(config, workdir: str, restart: bool = False, remedy: Optional[str] = None):
    """Checks the config and the workdir, picks the strategy, records the config, prepares the data.

    Every program (the runner and the per-stage scripts) starts here, so they all see the same data.
    The workdir is locked first (`utils.workdir_lock`: a second run on it stops at once) and cleared of
    `.tmp-*` leftovers of a killed write. A workdir holding a run with another config is refused, naming
    the differing keys; `restart` deletes that run's artifacts first. Returns (strategy, data, workdir): under a multi-worker
    strategy, workers other than the chief write into a private sub-folder of `workdir`.
    """
    validate_config(config, methods=tuple(METHODS))
    set_dtype_policy(config.train.dtype_policy)  # before any model is built (one run per process)
    strategy = make_strategy(config.distribution.strategy)  # first: multi-worker wants no op before it
    slices = int(config.train.micro_batches)
    check_global_batch_size(int(config.batch_size), strategy, micro_batches=slices)
    if config.method in SEMI_SUPERVISED_METHODS:
        check_global_batch_size(int(config.stage2.batch_size), strategy, halves=True, key="stage2.batch_size",
                                micro_batches=slices)
    workdir = worker_workdir(workdir, strategy)
    workdir_lock.acquire(workdir)  # a second run on this workdir stops here, at once
    try:
        workdir_lock.remove_temporaries(workdir)  # left by a killed write; the lock says no one writes now
        check_workdir(workdir, config, restart, **({"remedy": remedy} if remedy else {}))
        keras.utils.set_random_seed(int(config.seed))
        data = prepare_data(config)  # before writing anything: bad data leaves no trace in the workdir
        check_preconditions(config, data)
        io_utils.write_json(os.path.join(workdir, "config.json"), config.to_dict())
    except BaseException:
        workdir_lock.release(workdir, remove_if_empty=True)
        raise
    logging.info("strategy %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy, data, workdir


def check_preconditions(config, data: PreparedData) -> None:
    """Refuses, before any training, what a later stage would refuse after hours of it."""
    if config.method in SEMI_SUPERVISED_METHODS + ("stage1_only",):
        # Stage 2 (and stage1_only) learns a class only from its kept labels: a class with no training
        # label at all can never be learned (a class whose labels Stage 1 drops gets a fallback instead).
        check_every_class_kept(np.ones(len(data.train), bool), data.train.labels, data.num_classes,
                               data.dataset.class_names)
    if config.method in SEMI_SUPERVISED_METHODS and int(config.stage2.finetune_epochs) > 0 and (
            data.clean is None or not len(data.clean)):
        raise ValueError(f"stage2.finetune_epochs={config.stage2.finetune_epochs} needs a clean subset to "
                         f"fine-tune on, but dataset {data.dataset.name!r} has none (set data.clean, or "
                         "stage2.finetune_epochs=0)")
    resolve_source(config, data, refined_available=True)  # validation.source=clean needs a clean subset
    if config.method in SELECTING_METHODS:
        check_propagation_size(config, data)  # stage1.propagation: a graph over every pair of images


def run_experiment(config, workdir: str, restart: bool = False) -> dict:
    """Runs the experiment `config` describes and writes its artifacts into `workdir`; returns results.

    Resumes an interrupted run of the same config in `workdir` (see the module docstring).
    """
    started = time.time()
    strategy, data, workdir = start_run(config, workdir, restart)
    try:
        with bad_files_named(_splits(data)):
            return _run_locked(config, data, strategy, workdir, started)
    finally:
        workdir_lock.release(workdir)


def _run_locked(config, data: PreparedData, strategy, workdir: str, started: float) -> dict:
    manifest = RunManifest(workdir, config)
    results_path = os.path.join(workdir, "results.json")
    if manifest.done("results") and os.path.exists(results_path):
        logging.info("%s already holds the finished run: nothing to do", workdir)
        return io_utils.read_json(results_path)
    classifier, outcome = _trained_classifier(config, data, strategy, workdir, manifest)
    if manifest.done("export"):
        export_dir = manifest.data["stages"]["export"]["artifacts"][0]
    else:
        export_dir = export_classifier(
            classifier, data.preprocessor, data.raw_image_shape, data.dataset.class_names,
            os.path.join(workdir, EXPORT_DIR), config.data.name,
            encoded_images=config.data.name in ENCODED_IMAGE_DATASETS,
        )
        manifest.mark_done("export", [export_dir])
    test_metrics = evaluate_classifier(classifier, data.test, data.preprocessor, eval_batch_size(config))
    results = {
        "method": config.method,
        "dataset": data.dataset.name,
        "seed": int(config.seed),
        "noise": _noise_json(config, data),
        "num_train": len(data.train),
        "num_validation": len(data.validation),
        "num_test": len(data.test),
        "data_checks": list(data.dataset.checks),  # skipped bad files, duplicates (tf_twostage.data.hygiene)
        "test_accuracy": test_metrics["accuracy"],
        "test_per_class_accuracy": test_metrics["per_class_accuracy"],
        "test_confusion_matrix": test_metrics["confusion_matrix"],
        "stage1": outcome.get("stage1"),
        "stage2_reselection": outcome.get("stage2_reselection"),
        "ensemble_size": int(outcome.get("ensemble_size", 1)),  # networks averaged (stage2.ensemble_size)
        "baseline": outcome.get("baseline"),
        # What an option could not do on these data and what ran instead (a warning was logged for each).
        "fallbacks": [*(outcome.get("stage1") or {}).get("fallbacks", []),
                      *(outcome.get("validation") or {}).get("fallbacks", []), *outcome.get("fallbacks", [])],
        "validation": _validation_json(outcome.get("validation"), test_metrics["accuracy"]),
        "export_dir": export_dir,
        "history": outcome.get("history", {}),
        "num_replicas": strategy.num_replicas_in_sync,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        # This call's wall time, which contains the training: adding the training time to it counted that
        # twice. `training_seconds`: the method's own time, as recorded when it finished (by an earlier
        # process when this call resumed a finished training).
        "wall_seconds": round(time.time() - started, 3),
        "training_seconds": round(float(outcome.get("wall_seconds", 0.0)), 3),
    }
    io_utils.write_json(results_path, results)
    report_path = write_report([workdir], workdir, prepared={workdir: data})
    results["wall_seconds"] = round(time.time() - started, 3)  # the report (plots) takes seconds too
    io_utils.write_json(results_path, results)
    manifest.mark_done("results", ["results.json", os.path.relpath(report_path, workdir)])
    remove_checkpoints(workdir)  # only a resume needs them
    return results


def _trained_classifier(config, data: PreparedData, strategy, workdir: str, manifest: RunManifest):
    """(classifier, outcome): runs the method, or reloads what a finished training left in final/."""
    weights = os.path.join(workdir, FINAL_WEIGHTS)
    if manifest.done("training") and os.path.exists(weights):
        outcome = io_utils.read_json(os.path.join(workdir, FINAL_OUTCOME))
        with strategy.scope():
            classifier = final_classifier(config, data, int(outcome.get("ensemble_size", 1)))
        classifier.load_weights(weights)
        return classifier, outcome
    started = time.time()
    outcome = METHODS[config.method](config, data, strategy, workdir)
    classifier = outcome.pop("classifier")
    outcome["wall_seconds"] = time.time() - started
    with io_utils.atomic_path(weights, suffix=".weights.h5") as temporary:
        classifier.save_weights(temporary)
    io_utils.write_json(os.path.join(workdir, FINAL_OUTCOME), outcome)
    manifest.mark_done("training", [FINAL_WEIGHTS, FINAL_OUTCOME])
    return classifier, outcome


def final_classifier(config, data: PreparedData, members: int = 1) -> keras.Model:
    """An untrained classifier of the architecture `config.method` trains (to load final weights into);
    `members` > 1: the average of that many (`recorded_ensemble_size` says how many a run trained)."""
    if config.method in SEMI_SUPERVISED_METHODS:
        return average_ensemble([build_semi_supervised_classifier(config, data) for _ in range(int(members))])
    return build_classifier(config.model, data.image_shape, data.num_classes, config.seed)


def _validation_json(report, test_accuracy: float):
    """The validation report with the test accuracy of the last epoch filled in when it was kept."""
    if report is None:
        return None
    report = dict(report)
    report.setdefault("test_accuracy_last_epoch", test_accuracy)
    return report


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

