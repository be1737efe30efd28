"""A second selection round (`stage2.rounds=2`; not in the paper): the Stage-2 model re-selects the labels.

Stage 1 ranks the noisy labels with a network trained on all of them; the Stage-2 model, trained on the
kept labels and every image, predicts better, so it ranks the labels better too. On the mnist5k preset
(temporal ensembling, seeds 0-2, README "A second selection round") the second round kept 73.4% of the
training set at 99.89% precision at symmetric 0.2 where Stage 1 kept 58.6% at 99.87% (test accuracy 94.8 ->
95.7); without noise the threshold alone dropped labels Stage 1 had kept (94.3% -> 91.3%, accuracy 96.1 ->
95.6). Topped up per class to Stage 1's count (`at_least_first`) it keeps 94.1% there, and 71.0% at 99.67%
precision at asymmetric 0.6 (Stage 1: 68.4% at 99.49%; accuracy 95.2 -> 95.5 with oneDNN on, 95.0 with it
off). The mnist5k preset turns it on since 2026-11-29, with Stage 1 ranked by its last 20 epochs (README "The
`mnist5k` preset since 2026-11-29": 95.6 at asymmetric 0.6, 0.2 points apart with oneDNN on vs off); it
doubles Stage 2's time.

The rule (`tf_twostage.stage1.selection.reselect_labels_second_round`) is the confidence rule without a
floor: a label is kept when the prediction is that label with P >= `stage2.reselect_threshold`; with
`stage2.reselect_keep=at_least_first` each class is then topped up, with the labels the model predicts most
confidently, to as many as Stage 1 kept in it (without noise the threshold alone dropped correct labels).
A class it leaves without any label keeps its Stage-1 labels (listed in `fallbacks`). The mask is written to
`stage2/reselection.npz` (`index`, `kept`, `kept_label`), the first round's P(c|x) over the training images
to `stage2/round1_predictions.npz` (`index`, `probabilities`), its statistics (and, when clean labels are known,
its quality) go to `results.json["stage2_reselection"]`, with the first round's own test accuracy
(`first_round_test_accuracy`: what one round would have scored, for benchmarks; nothing reads it).
"""

from __future__ import annotations

import os

import numpy as np

from tf_twostage.config.base import eval_batch_size
from tf_twostage.data.prepare import PreparedData
from tf_twostage.runs.propagation import propagate_split
from tf_twostage.runs.stage1 import fallback_record
from tf_twostage.stage1.quality import selection_quality
from tf_twostage.stage1.selection import fill_empty_classes, reselect_labels_second_round, selection_statistics
from tf_twostage.training.metrics import evaluate_classifier, predict_probabilities
from tf_twostage.utils import io_utils
from tf_twostage.utils.artifacts import write_kept

RESELECTION_FILE = os.path.join("stage2", "reselection.npz")
ROUND1_PREDICTIONS_FILE = os.path.join("stage2", "round1_predictions.npz")  # the first round model's P(c|x)


def reselect_labels(config, data: PreparedData, classifier, first_kept, workdir: str) -> tuple:
    """(kept mask, statistics) of the second round: the labels `classifier` (the first round's Stage-2
    model) agrees with at P(label|x) >= `stage2.reselect_threshold`, over `data.train`."""
    threshold = float(config.stage2.reselect_threshold)
    labels = data.train.labels
    predicted = predict_probabilities(classifier, data.train, data.preprocessor, eval_batch_size(config))
    probabilities = propagate_split(config, data, data.train, predicted)  # what ranks: stage1.propagation
    first_kept = np.asarray(first_kept, bool)
    selected = reselect_labels_second_round(probabilities, labels, first_kept, threshold,
                                            keep=str(config.stage2.reselect_keep))
    kept, filled = fill_empty_classes(selected, first_kept, labels, data.num_classes)
    fallbacks = []
    if filled:
        names = data.dataset.class_names
        classes = ", ".join(f"{c} ({names[c]!r})" for c in filled)
        fallbacks.append(fallback_record(
            "stage2_reselection", "stage2.rounds=2", f"the Stage-1 labels of classes {classes}",
            f"the Stage-2 model agreed with no label of {len(filled)} of {data.num_classes} classes at P >= "
            f"{threshold:g}"))
    clean = data.train.clean_labels if data.train.has_clean_labels else None
    stats = selection_statistics(kept, labels, clean, data.num_classes)
    if clean is not None:  # evaluation only: nothing else reads the true labels
        stats["quality"] = selection_quality(kept, labels, clean, data.num_classes,
                                             probabilities[np.arange(len(labels)), labels])
    stats.update(threshold=threshold, keep=str(config.stage2.reselect_keep), propagation=config.stage1.propagation,
                 first_round_kept_fraction=float(first_kept.mean()),
                 added=int(np.sum(kept & ~first_kept)), removed=int(np.sum(first_kept & ~kept)), fallbacks=fallbacks)
    if config.stage1.propagation != "none":
        stats["propagation_alpha"] = float(config.stage1.propagation_alpha)
    if data.test is not None and len(data.test):  # for benchmarks only (never used to choose): round 1 alone
        stats["first_round_test_accuracy"] = evaluate_classifier(classifier, data.test, data.preprocessor,
                                                                 eval_batch_size(config))["accuracy"]
    os.makedirs(os.path.join(workdir, "stage2"), exist_ok=True)
    write_kept(os.path.join(workdir, RESELECTION_FILE), data.train, kept)
    io_utils.write_npz(os.path.join(workdir, ROUND1_PREDICTIONS_FILE), index=data.train.index,
                       probabilities=predicted.astype(np.float32))
    io_utils.write_json(os.path.join(workdir, "stage2", "reselection_stats.json"), stats)
    return kept, stats
