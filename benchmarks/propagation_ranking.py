#!/usr/bin/env python3
"""Stage 1's ranking with and without label propagation, recomputed on finished runs (no training).

  python benchmarks/propagation_ranking.py --workdirs=DIR,DIR,... [--neighbours=10] [--alpha=0.9] \
      [--input=posterior] [--blur=0] [--shares=0.05,0.1,0.15] [--output=benchmarks/results/propagation_ranking.json]

Each workdir is a finished run on data whose clean labels are known (mnist5k with synthetic noise). From its
Stage-1 predictions (`stage1/predictions.npz`: the pre-trained network's own P(c|x), as recorded), it ranks
the training labels by P(label|x) three ways: as recorded, propagated over the images' pixel-space neighbour
graph (`stage1.propagation=pixels`: `tf_twostage.runs.propagation`), and propagated over the same network's
penultimate features (its Stage-1 weights rebuilt). `--input=labels` spreads the noisy labels one-hot over both
graphs instead (`stage1.propagation_input=labels`); `--blur` is the pixel graph's `stage1.propagation_blur` (0,
the raw pixels, is what `results/propagation_ranking*.json` of before 2026-11-30's blur measured). Per way: the ROC
AUC of the ranking against correctness and the precision of the top `share` of each class, per run and the mean
over runs. Never part of the test suite.
"""

import datetime
import json
import os
import shlex
import sys

import keras
import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tf_twostage.config.base import eval_batch_size, load_run_config  # noqa: E402
from tf_twostage.data.pipelines import evaluation_dataset  # noqa: E402
from tf_twostage.data.prepare import prepare_data  # noqa: E402
from tf_twostage.models import build_classifier  # noqa: E402
from tf_twostage.runs.propagation import pixel_features  # noqa: E402
from tf_twostage.stage1.propagation import PROPAGATION_INPUTS, one_hot_labels, propagated_posterior  # noqa: E402
from tf_twostage.stage1.quality import roc_auc  # noqa: E402
from tf_twostage.utils import io_utils  # noqa: E402

_WORKDIRS = flags.DEFINE_list("workdirs", [], "Finished runs (clean training labels known).")
_NEIGHBOURS = flags.DEFINE_integer("neighbours", 10, "k of the graph.")
_ALPHA = flags.DEFINE_float("alpha", 0.9, "Propagation alpha.")
_INPUT = flags.DEFINE_enum("input", "posterior", PROPAGATION_INPUTS, "What spreads over the graphs: the recorded "
                           "posterior, or the noisy labels one-hot.")
_BLUR = flags.DEFINE_float("blur", 0.0, "Gaussian blur (sigma, pixels) of the images the pixel graph compares.")
_SHARES = flags.DEFINE_list("shares", ["0.05", "0.1", "0.15"], "Top shares of each class whose precision is given.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "propagation_ranking.json"),
                              "JSON file.")
WAYS = ("recorded", "pixels", "penultimate")


def top_share_precision(score, labels, correct, num_classes: int, share: float) -> float:
    """Precision of the best-scored `share` of each noisy-label class."""
    kept = np.zeros(len(labels), bool)
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        kept[members[np.argsort(-score[members], kind="stable")[:int(round(share * len(members)))]]] = True
    return float(correct[kept].mean())


def penultimate_features(config, data, workdir: str) -> np.ndarray:
    """The Stage-1 network's input to its output layer, over the training images in order."""
    classifier = build_classifier(config.model, data.train.image_shape, data.num_classes, seed=int(config.seed))
    classifier.load_weights(os.path.join(workdir, "stage1", "classifier.weights.h5"))
    layer = next(l for l in classifier.layers if l.name == "logits")
    features = keras.Model(classifier.inputs, layer.input)
    return np.concatenate([np.asarray(features(batch["image"], training=False))
                           for batch in evaluation_dataset(data.train, data.preprocessor, eval_batch_size(config))])


def measure_run(workdir: str, shares: list) -> dict:
    config = load_run_config(workdir)
    data = prepare_data(config)
    if not data.train.has_clean_labels:
        raise ValueError(f"{workdir}: its training images have no clean labels to measure against")
    predictions = io_utils.read_npz(os.path.join(workdir, "stage1", "predictions.npz"))
    if not np.array_equal(predictions["train_index"], data.train.index):
        raise ValueError(f"{workdir}: stage1/predictions.npz belongs to other training images than its config gives")
    recorded = predictions["train_probabilities"]
    labels = data.train.labels
    correct = labels == data.train.clean_labels
    k, alpha = _NEIGHBOURS.value, _ALPHA.value
    spread = one_hot_labels(labels, data.num_classes) if _INPUT.value == "labels" else recorded
    posteriors = {
        "recorded": recorded,
        "pixels": propagated_posterior(spread, pixel_features(data.train, data.preprocessor, 256, _BLUR.value), k,
                                       alpha),
        "penultimate": propagated_posterior(spread, penultimate_features(config, data, workdir), k, alpha)}
    row = {"workdir": workdir, "seed": int(config.seed), "noise": f"{config.noise.type}:{config.noise.rate:g}"}
    for way, posterior in posteriors.items():
        score = posterior[np.arange(len(labels)), labels]
        row[way] = {"auc": roc_auc(score, correct),
                    "train_accuracy": float(np.mean(posterior.argmax(1) == data.train.clean_labels)),
                    **{f"top_{share:g}": top_share_precision(score, labels, correct, data.num_classes, share)
                       for share in shares}}
    return row


def main(argv):
    del argv
    if not _WORKDIRS.value:
        raise app.UsageError("--workdirs is required")
    shares = [float(s) for s in _SHARES.value]
    rows = [measure_run(workdir, shares) for workdir in _WORKDIRS.value]
    keys = ["auc", "train_accuracy", *[f"top_{s:g}" for s in shares]]
    means = {way: {key: float(np.mean([r[way][key] for r in rows])) for key in keys} for way in WAYS}
    io_utils.write_json(_OUTPUT.value, {
        "what": "Stage 1's ranking as recorded and propagated over pixel / penultimate-feature neighbour graphs "
                "(no training); mean over the runs",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/propagation_ranking.py", *sys.argv[1:]]),
        "neighbours": _NEIGHBOURS.value, "alpha": _ALPHA.value, "input": _INPUT.value, "blur": _BLUR.value,
        "means": means, "rows": rows})
    print("| ranking | ROC AUC | right on the training images % | "
          + " | ".join(f"top {s:g} of each class: precision %" for s in shares) + " |")
    print("|---" * (3 + len(shares)) + "|")
    for way in WAYS:
        m = means[way]
        print(f"| {way} | {m['auc']:.3f} | {100 * m['train_accuracy']:.1f} | "
              + " | ".join(f"{100 * m[f'top_{s:g}']:.1f}" for s in shares) + " |")
    print(json.dumps({"output": _OUTPUT.value}))


if __name__ == "__main__":
    app.run(main)
