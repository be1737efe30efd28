"""Stage 1 end to end: noisy pre-training, the predictions to rank with, the selection and its artifacts.

Two steps, each also a program (`bin/train_stage1.py`, `bin/select_labels.py`) and both called by the
runner for `method=two_stage`:

1. `train_stage1` pre-trains with cross-entropy under a `PredictionRecorder` and writes
   `stage1/predictions.npz` (ranking probabilities of the training and validation sets, and, with a
   clean set, the one-vs-rest scores) and `stage1/classifier.weights.h5` (the best-validation weights, or
   with `stage1.ranking=average` the last epoch's, which Stage 2 starts from).
2. `select_labels` applies the rule of the config (to the model's posteriors, or with
   `stage1.posterior=corrected` to the clean posteriors that the estimated transition matrix gives) and writes `stage1/selection.npz`,
   `stage1/selection_stats.json`, `stage1/refined_validation.npz` and `stage1/dropped_labels.csv`.
"""

from __future__ import annotations

import csv
import dataclasses
import os

import keras
import numpy as np

from tf_twostage.utils import io_utils
from tf_twostage.config.base import eval_batch_size
from tf_twostage.training.precision import compile_options
from tf_twostage.data.pipelines import evaluation_dataset, stratified_holdout
from tf_twostage.data.prepare import PreparedData
from tf_twostage.models.inference import inference_function
from tf_twostage.training.metrics import predict_probabilities
from tf_twostage.models import build_classifier
from tf_twostage.stage1.callback import RANKINGS, PredictionRecorder
from tf_twostage.runs.pretrain import stage1_epochs, train_cross_entropy
from tf_twostage.baselines.losses import GeneralizedCrossEntropy
from tf_twostage.baselines.transition import estimate_transition_matrix
from tf_twostage.stage1.quality import selection_quality
from tf_twostage.stage1.propagation import one_hot_labels
from tf_twostage.stage1.small_loss import select_small_loss
from tf_twostage.runs.heavy_noise import cluster_transition, heavy_noise_decision, switch_reason, with_overrides
from tf_twostage.runs.propagation import propagate_split
from absl import logging

from tf_twostage.stage1.selection import (
    corrected_posteriors,
    fill_empty_classes,
    select_confident_labels,
    select_with_clean_classifiers,
    selection_statistics,
    transition_problem,
)

from tf_twostage.utils.artifacts import (
    PREDICTIONS_FILE,
    STAGE1_WEIGHTS_FILE as WEIGHTS_FILE,
    load_refined_validation,
    load_selection,
    stage1_dir,
    write_kept,
)

RULES = ("auto", "confidence", "clean_set", "small_loss", "confident_or_small_loss")
# Rules that read the (optionally corrected, `stage1.posterior`) posterior with the confidence rule.
CONFIDENCE_RULES = ("confidence", "confident_or_small_loss")
# The floor of the fallback that gives a class its most plausible labels when the configured rule kept none.
FALLBACK_FLOOR = 0.1


def fallback_record(stage: str, option: str, used: str, reason: str) -> dict:
    """One entry of `results.json["fallbacks"]`, also logged as a warning: what was asked, what ran, why."""
    logging.warning("%s: %s did not work on these data (%s); used %s instead", stage, option, reason, used)
    return {"stage": stage, "option": option, "used": used, "reason": reason}


def effective_rule(config, data: PreparedData) -> str:
    """`auto` means the clean-set rule when the dataset has a clean subset, else the confidence rule."""
    rule = config.stage1.rule
    if rule not in RULES:
        raise ValueError(f"stage1.rule must be one of {', '.join(RULES)}; got {rule!r}")
    if rule == "auto":
        return "clean_set" if data.clean is not None and len(data.clean) else "confidence"
    if rule == "clean_set" and (data.clean is None or not len(data.clean)):
        raise ValueError(
            f"stage1.rule=clean_set needs a clean subset, but dataset {data.dataset.name!r} has none "
            "(folder/csv data: set data.clean)"
        )
    return rule


def pretrain_with_recorder(config, data: PreparedData, strategy, workdir: str, stage_name: str = "stage1"):
    """Builds a classifier under `strategy`, fits it on the noisy labels; returns (classifier, recorder, Keras history)."""
    with strategy.scope():
        classifier = build_classifier(config.model, data.image_shape, data.num_classes, config.seed)
    recorder = PredictionRecorder(
        data.train,
        data.validation,
        data.preprocessor,
        total_epochs=stage1_epochs(config, len(data.train)),
        # ranking=average chooses no epoch: Stage 2 continues from the last one, not the argmax of a noisy curve
        average_last=int(config.stage1.average_last) if config.stage1.ranking == "average" else 0,
        batch_size=eval_batch_size(config),
    )
    with strategy.scope():
        history = train_cross_entropy(classifier, data, config, workdir, [recorder], stage_name,
                                      loss=pretraining_loss(config))
    return classifier, recorder, history


def pretraining_loss(config):
    """The loss `stage1.loss` names: None (cross-entropy) or generalized cross-entropy with `stage1.gce_q`."""
    if config.stage1.loss == "gce":
        return GeneralizedCrossEntropy(float(config.stage1.gce_q))
    if config.stage1.loss != "cross_entropy":
        raise ValueError(f"stage1.loss must be one of cross_entropy, gce; got {config.stage1.loss!r}")
    return None


def kfold_probabilities(config, data: PreparedData, strategy, workdir: str) -> np.ndarray:
    """Out-of-sample predictions: K models, each trained without one fold, predict that fold."""
    folds = int(config.stage1.kfold)
    if folds < 2:
        raise ValueError(f"stage1.kfold must be >= 2, got {folds}")
    probabilities = np.zeros((len(data.train), data.num_classes), np.float32)
    remaining = np.arange(len(data.train))
    for fold in range(folds):
        # Peel off 1/(folds - fold) of what remains, stratified by noisy label: K disjoint folds.
        fraction = 1.0 / (folds - fold)
        if fold < folds - 1:
            keep, held = stratified_holdout(data.train.labels[remaining], fraction, config.seed + fold)
            held_positions, remaining = remaining[held], remaining[keep]
        else:
            held_positions = remaining
        train_positions = np.setdiff1d(np.arange(len(data.train)), held_positions)
        fold_data = dataclasses.replace(data, train=data.train.subset(train_positions))
        keras.utils.set_random_seed(int(config.seed) * 1000 + fold + 1)
        _, recorder, _ = pretrain_with_recorder(config, fold_data, strategy, workdir, f"stage1_fold{fold}")
        probabilities[held_positions] = predict_probabilities(
            recorder.model, data.train.subset(held_positions), data.preprocessor, eval_batch_size(config)
        )
    return probabilities


def fit_one_vs_rest(features: np.ndarray, labels: np.ndarray, num_classes: int, epochs: int,
                    batch_size: int, seed: int = 0, **compile_kwargs) -> keras.Model:
    """C logistic classifiers on shared features, as one `Dense(C, sigmoid)` layer: output c is trained
    with binary cross-entropy, the examples of class c positive and all others negative.

    `batch_size` is the heads' own (`stage1.clean_batch_size`), not the evaluation batch: a clean subset
    of 200 images in batches of 256 gave the heads 20 steps in 20 epochs, and on the own-data benchmark's
    folder (pair flips 0.4, 20 clean images per class) they then kept no label of 2 of 10 classes and
    42% of the labels at 89.5% precision; in batches of 32 (140 steps) every class, 78% at 95.2%.
    """
    head = keras.Sequential(
        [keras.Input((features.shape[1],)),
         keras.layers.Dense(num_classes, activation="sigmoid", dtype="float32",
                            kernel_initializer=keras.initializers.GlorotUniform(seed))],
        name="one_vs_rest",
    )
    head.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.BinaryCrossentropy(), **compile_kwargs)
    head.fit(features, keras.utils.to_categorical(labels, num_classes), batch_size=batch_size, epochs=epochs,
             verbose=0, shuffle=True)
    return head


def clean_set_scores(classifier: keras.Model, data: PreparedData, config) -> dict:
    """One-vs-rest scores from per-class binary classifiers trained on the clean subset.

    The C binary classifiers share the pre-trained network as a frozen feature extractor (the input
    of its `logits` layer) and differ only in their sigmoid output (`fit_one_vs_rest`): exactly C
    independent logistic classifiers on shared features, at the cost of one.
    """
    feature_model = keras.Model(classifier.inputs, classifier.get_layer("logits").input)
    features = inference_function(feature_model)  # which holds it weakly: feature_model keeps it alive
    batch_size = eval_batch_size(config)

    def batches(split):
        return evaluation_dataset(split, data.preprocessor, batch_size)

    clean_features = np.concatenate([np.asarray(features(batch["image"])) for batch in batches(data.clean)])
    head = fit_one_vs_rest(clean_features, data.clean.labels, data.num_classes, int(config.stage1.clean_epochs),
                           int(config.stage1.clean_batch_size), int(config.seed), **compile_options(config.train))
    score = inference_function(head)

    def scores_of(split):  # batch by batch: the features of all N images are never held at once
        return np.concatenate([np.asarray(score(features(batch["image"]))) for batch in batches(split)])

    scores = {"train_scores": scores_of(data.train)}
    if len(data.validation):
        scores["validation_scores"] = scores_of(data.validation)
    return scores


def train_stage1(config, data: PreparedData, strategy, workdir: str) -> keras.Model:
    """Pre-trains, writes `stage1/predictions.npz` and the best weights; returns the classifier."""
    ranking = config.stage1.ranking
    if ranking not in RANKINGS:
        raise ValueError(f"stage1.ranking must be one of {', '.join(RANKINGS)}; got {ranking!r}")
    rule = effective_rule(config, data)
    classifier, recorder, history = pretrain_with_recorder(config, data, strategy, workdir)
    arrays = {
        "train_index": data.train.index,
        "validation_index": data.validation.index,
        "best_epoch": np.int64(recorder.best_epoch),
    }
    if ranking == "best":
        arrays["train_probabilities"] = recorder.best_probabilities
    elif ranking == "average":
        arrays["train_probabilities"] = recorder.averaged_probabilities()
    else:
        arrays["train_probabilities"] = kfold_probabilities(config, data, strategy, workdir)
    validation = (recorder.averaged_validation_probabilities() if ranking == "average"
                  else recorder.best_validation_probabilities)
    if validation is not None:
        arrays["validation_probabilities"] = validation
    if rule == "clean_set":
        arrays.update(clean_set_scores(classifier, data, config))
    folder = stage1_dir(workdir)
    os.makedirs(folder, exist_ok=True)
    with io_utils.atomic_path(os.path.join(folder, WEIGHTS_FILE), suffix=".weights.h5") as temporary:
        classifier.save_weights(temporary)
    io_utils.write_json(os.path.join(folder, "history.json"), io_utils.history_json(history))
    io_utils.write_npz(os.path.join(folder, PREDICTIONS_FILE), **arrays)
    return classifier


def load_stage1_predictions(workdir: str, data: PreparedData) -> dict:
    """Reads `stage1/predictions.npz` and checks it belongs to these data (same examples, same order)."""
    path = os.path.join(stage1_dir(workdir), PREDICTIONS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} does not exist: run bin/train_stage1.py with the same --config and --workdir first"
        )
    arrays = io_utils.read_npz(path)
    if not np.array_equal(arrays["train_index"], data.train.index) or not np.array_equal(
        arrays["validation_index"], data.validation.index
    ):
        raise ValueError(
            f"{path} was made for other training examples than this config gives (a different seed, "
            "dataset or validation split?); rerun bin/train_stage1.py"
        )
    return arrays


def apply_rule(config, data: PreparedData, rule: str, probabilities, labels, scores=None,
               noisy_probabilities=None) -> np.ndarray:
    """The kept mask of one split under `rule` (`noisy_probabilities`: the model's uncorrected posterior,
    which the small-loss rules read; default `probabilities`)."""
    if rule == "clean_set":
        return select_with_clean_classifiers(scores, labels, float(config.stage1.clean_threshold))
    noisy_probabilities = probabilities if noisy_probabilities is None else noisy_probabilities
    if rule == "small_loss":
        return select_small_loss(noisy_probabilities, labels, float(config.stage1.small_loss_probability))
    kept = select_confident_labels(
        probabilities, labels, float(config.stage1.threshold), float(config.stage1.floor_fraction),
        top_up=config.stage1.top_up,
    )
    if rule == "confident_or_small_loss":
        kept |= select_small_loss(noisy_probabilities, labels, float(config.stage1.small_loss_probability))
    return kept


def estimate_transition(config, probabilities) -> np.ndarray:
    """The transition matrix `stage1.posterior=corrected` inverts: anchor points (Patrini et al.) or, with
    `stage1.transition=clusters`, cluster means of the posteriors (no anchors; survives flips above 0.5)."""
    if config.stage1.transition == "clusters":
        return cluster_transition(config, probabilities)
    return estimate_transition_matrix(probabilities, float(config.baselines.filter_percentile))


def ranking_score(rule: str, probabilities, labels, scores=None) -> np.ndarray:
    """Each example's score for its own noisy label under `rule` (what the ROC AUC of the quality ranks)."""
    values = scores if rule == "clean_set" else probabilities
    return np.asarray(values)[np.arange(len(labels)), labels]


def select_with_fallback(config, data: PreparedData, rule: str, probabilities, labels, scores=None,
                         noisy_probabilities=None):
    """(kept, filled classes): `rule`'s mask, where a class the rule left without any label gets the
    confidence rule's labels instead (its top `max(floor_fraction, FALLBACK_FLOOR)` by P(c|x)), so
    Stage 2 can still learn it."""
    kept = apply_rule(config, data, rule, probabilities, labels, scores, noisy_probabilities)
    floor = max(float(config.stage1.floor_fraction), FALLBACK_FLOOR)
    fallback = select_confident_labels(probabilities, labels, float(config.stage1.threshold), floor, top_up="class")
    return fill_empty_classes(kept, fallback, labels, data.num_classes)


def select_labels(config, data: PreparedData, workdir: str) -> dict:
    """Applies the Stage-1 rule to the recorded predictions; writes the selection artifacts.

    Returns the selection statistics (the paper's Table 2 numbers when clean labels are known), with
    `fallbacks`: what the rule could not do on these data and what ran instead (`fallback_record`):
    a singular or ill-conditioned estimated transition matrix turns `stage1.posterior=corrected` into
    the noisy posterior, and a class left without any kept label gets the confidence rule's labels.
    """
    arrays = load_stage1_predictions(workdir, data)
    rule = effective_rule(config, data)
    transition, fallbacks = None, []
    # The switch reads the cluster estimate; the corrected posterior below reuses it when it inverts the same one.
    clusters = (cluster_transition(config, arrays["train_probabilities"])
                if rule in CONFIDENCE_RULES and float(config.stage1.heavy_noise_rate) > 0 else None)
    heavy = heavy_noise_decision(config, clusters, data.train.labels) if clusters is not None else None
    if heavy and heavy["switched"]:  # tf_twostage.runs.heavy_noise
        config = with_overrides(config, heavy["overrides"])
        fallbacks.append(fallback_record(
            "stage1", f"the selection for lower noise (stage1.heavy_noise_rate={heavy['heavy_noise_rate']:g})",
            ", ".join(f"stage1.{key}={value}" for key, value in heavy["overrides"].items()),
            switch_reason(heavy)))
    noisy = {split: arrays.get(f"{split}_probabilities") for split in ("train", "validation")}
    posterior = config.stage1.posterior if rule in CONFIDENCE_RULES else "scores"
    if config.stage1.posterior == "corrected" and rule in CONFIDENCE_RULES:
        transition = (clusters if clusters is not None and config.stage1.transition == "clusters"
                      else estimate_transition(config, arrays["train_probabilities"]))
        problem = transition_problem(transition)
        if problem is None:
            for split in ("train", "validation"):
                if f"{split}_probabilities" in arrays:
                    arrays[f"{split}_probabilities"] = corrected_posteriors(arrays[f"{split}_probabilities"],
                                                                            transition)
        else:
            posterior = "noisy"
            fallbacks.append(fallback_record("stage1", "stage1.posterior=corrected", "stage1.posterior=noisy",
                                             f"{problem}: the clean posterior cannot be recovered reliably"))
    if rule in CONFIDENCE_RULES and config.stage1.propagation != "none":
        for split in ("train", "validation"):
            if f"{split}_probabilities" in arrays:
                spread = (one_hot_labels(getattr(data, split).labels, data.num_classes)
                          if config.stage1.propagation_input == "labels" else arrays[f"{split}_probabilities"])
                arrays[f"{split}_probabilities"] = propagate_split(config, data, getattr(data, split), spread)
    kept, filled = select_with_fallback(config, data, rule, arrays["train_probabilities"], data.train.labels,
                                        arrays.get("train_scores"), noisy["train"])
    if filled:
        names = data.dataset.class_names
        floor = max(float(config.stage1.floor_fraction), FALLBACK_FLOOR)
        classes = ", ".join(f"{c} ({names[c]!r})" for c in filled)
        fallbacks.append(fallback_record(
            "stage1", f"stage1.rule={rule}", f"the confidence rule (floor {floor:g}) for classes {classes}",
            f"the {rule} rule kept no label of {len(filled)} of {data.num_classes} classes"))
    clean = data.train.clean_labels if data.train.has_clean_labels else None
    stats = selection_statistics(kept, data.train.labels, clean, data.num_classes)
    if clean is not None:  # the true labels evaluate the selection here, and nothing else reads them
        stats["quality"] = selection_quality(kept, data.train.labels, clean, data.num_classes, ranking_score(
            rule, arrays["train_probabilities"], data.train.labels, arrays.get("train_scores")))
    stats.update(rule=rule, ranking=config.stage1.ranking, best_epoch=int(arrays["best_epoch"]),
                 posterior=posterior, fallbacks=fallbacks,
                 propagation=config.stage1.propagation if rule in CONFIDENCE_RULES else "none")
    if stats["propagation"] != "none":
        stats.update(propagation_alpha=float(config.stage1.propagation_alpha),
                     propagation_input=str(config.stage1.propagation_input))
    if transition is not None:
        stats["estimated_transition_matrix"] = transition.tolist()
    if heavy is not None:
        stats["heavy_noise"] = heavy
    folder = stage1_dir(workdir)

    validation_kept = np.zeros(len(data.validation), bool)
    if "validation_probabilities" in arrays and len(data.validation):
        validation_kept, _ = select_with_fallback(config, data, rule, arrays["validation_probabilities"],
                                                  data.validation.labels, arrays.get("validation_scores"),
                                                  noisy["validation"])
    stats["refined_validation_size"] = int(validation_kept.sum())

    write_kept(os.path.join(folder, "selection.npz"), data.train, kept)
    write_kept(os.path.join(folder, "refined_validation.npz"), data.validation, validation_kept)
    _write_dropped_csv(os.path.join(folder, "dropped_labels.csv"), data, kept, arrays["train_probabilities"])
    io_utils.write_json(os.path.join(folder, "selection_stats.json"), stats)
    return stats


def weights_path(workdir: str) -> str:
    """The Stage-1 classifier weights (best validation epoch) that Stage 2 starts from."""
    path = os.path.join(stage1_dir(workdir), WEIGHTS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: run bin/train_stage1.py first")
    return path


def _write_dropped_csv(path: str, data: PreparedData, kept, probabilities) -> None:
    """Dropped labels, most confidently contradicted first, for a person to review."""
    names = data.dataset.class_names
    dropped = np.flatnonzero(~kept)
    suggested = probabilities[dropped].argmax(axis=1)
    confidence = probabilities[dropped].max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    with io_utils.atomic_path(path) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["index", "path", "noisy_label", "noisy_class", "suggested_label", "suggested_class",
                             "confidence", "noisy_label_probability"])
            for row in order:
                position = dropped[row]
                label = int(data.train.labels[position])
                writer.writerow([
                    int(data.train.index[position]),
                    "" if data.train.paths is None else data.train.paths[position],
                    label, names[label], int(suggested[row]), names[int(suggested[row])],
                    f"{confidence[row]:.4f}", f"{probabilities[position, label]:.4f}",
                ])

