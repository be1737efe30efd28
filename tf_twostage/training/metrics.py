"""Predictions and classification metrics of a classifier on a split (used while training and by reports)."""

from __future__ import annotations

import numpy as np

from tf_twostage.data.pipelines import evaluation_dataset
from tf_twostage.data.preprocess import Preprocessor
from tf_twostage.data.source import ImageSplit
from tf_twostage.models.inference import inference_function


def predict_probabilities(classifier, split: ImageSplit, preprocessor: Preprocessor, batch_size: int = 256):
    """Class probabilities `[N, C]` for every example of `split`, in order, `batch_size` at a time (the runs
    pass `train.eval_batch_size`, so a prediction's memory is what the config chose; 256 for notebooks)."""
    outputs = []
    predict = inference_function(classifier)
    for batch in evaluation_dataset(split, preprocessor, batch_size):
        outputs.append(np.asarray(predict(batch["image"])))
    return np.concatenate(outputs) if outputs else np.zeros((0, split.num_classes), np.float32)


def classification_metrics(labels, predictions, num_classes: int) -> dict:
    """Accuracy, per-class accuracy (None for an absent class) and the confusion matrix [true, pred]."""
    labels = np.asarray(labels, np.int64)
    predictions = np.asarray(predictions, np.int64)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    support = confusion.sum(axis=1)
    per_class = [float(confusion[c, c] / support[c]) if support[c] else None for c in range(num_classes)]
    accuracy = float(np.trace(confusion) / max(len(labels), 1))
    return {"accuracy": accuracy, "per_class_accuracy": per_class, "confusion_matrix": confusion.tolist()}


def evaluate_classifier(classifier, split: ImageSplit, preprocessor: Preprocessor, batch_size: int = 256):
    """Metrics of `classifier` on `split` against its clean labels (or its labels if none are known)."""
    probabilities = predict_probabilities(classifier, split, preprocessor, batch_size)
    reference = split.clean_labels if split.has_clean_labels else split.labels
    return classification_metrics(reference, probabilities.argmax(axis=1), split.num_classes)
