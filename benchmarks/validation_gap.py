#!/usr/bin/env python3
"""How far the reported validation score is from test accuracy, by the matrix that corrects it (issue 13).

  python benchmarks/validation_gap.py --runs=DIR[,DIR...] [--output=benchmarks/results/validation_gap.json]

Each DIR is a benchmark's folder of finished runs (e.g. `benchmarks/accuracy.py --workdir=...`): every
sub-folder with `results.json`, `config.json` and `final/classifier.weights.h5` whose validation was the noisy
split and whose training labels are synthetic noise (clean labels known). Per run, the run's final classifier
is reloaded and its noisy validation accuracy corrected (`estimated_clean_accuracy`) with each matrix:

  confident   what `validation_report` uses now: `confident_transition` (confident learning's calibrated
              confident joint) from the classifier's predictions on the training images
  anchors     the earlier default: anchor points (`estimate_transition_matrix`, filter percentile of the
              run's config) from the same predictions
  clusters    `estimate_transition` (k-means on the same predictions, classes by assignment)
  true        the true matrix of the synthetic noise (what no user has: the floor of this correction)

plus the plain noisy accuracy and the accuracy against the clean labels of the same validation images (what a
clean subset of that size would give). The gap is |value - test accuracy| in points; a matrix that cannot be
inverted counts as the plain noisy accuracy (the fallback the report takes). Writes the JSON and prints the
Markdown table of the README: mean gap (and the largest) per estimator, over all runs, per folder and per
method.
Never part of the test suite.
"""

import datetime
import glob
import os
import shlex
import sys

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

_RUNS = flags.DEFINE_list("runs", [], "Folders of finished benchmark runs.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "validation_gap.json"),
                              "JSON results file.")
ESTIMATORS = ("confident", "anchors", "clusters", "true", "noisy", "clean_labels")


def run_values(workdir: str) -> dict:
    """The validation values of one finished run under each estimator (fractions), or None if not scored."""
    import keras  # pylint: disable=import-outside-toplevel

    from tf_twostage.baselines.transition import estimate_transition_matrix, estimated_clean_accuracy  # noqa
    from tf_twostage.config.base import eval_batch_size, load_run_config  # pylint: disable=C0415
    from tf_twostage.data.prepare import prepare_data  # pylint: disable=import-outside-toplevel
    from tf_twostage.runs.experiment import final_classifier  # pylint: disable=import-outside-toplevel
    from tf_twostage.stage1.label_issues import confident_transition, estimate_transition  # noqa
    from tf_twostage.stage1.selection import transition_problem  # pylint: disable=import-outside-toplevel
    from tf_twostage.training.metrics import predict_probabilities  # pylint: disable=import-outside-toplevel
    from tf_twostage.utils import io_utils  # pylint: disable=import-outside-toplevel

    results = io_utils.read_json(os.path.join(workdir, "results.json"))
    if (results.get("validation") or {}).get("source") != "noisy":
        return None
    config = load_run_config(workdir)
    data = prepare_data(config)
    if not data.train.has_clean_labels:
        return None
    classifier = final_classifier(config, data, int(results.get("ensemble_size") or 1))
    classifier.load_weights(os.path.join(workdir, "final", "classifier.weights.h5"))
    batch = eval_batch_size(config)
    predictions = predict_probabilities(classifier, data.validation, data.preprocessor, batch).argmax(1)
    train_probabilities = predict_probabilities(classifier, data.train, data.preprocessor, batch)
    noisy = data.validation.labels
    plain = float(np.mean(predictions == noisy))

    def corrected(matrix):
        return plain if transition_problem(matrix) is not None else estimated_clean_accuracy(predictions, noisy,
                                                                                             matrix)

    values = {
        "confident": corrected(confident_transition(data.train.labels, train_probabilities)),
        "anchors": corrected(estimate_transition_matrix(train_probabilities,
                                                        float(config.baselines.filter_percentile))),
        "clusters": corrected(estimate_transition(train_probabilities, seed=int(config.seed))),
        "true": corrected(np.asarray(data.noise.target_matrix, np.float64)),
        "noisy": plain,
        "clean_labels": float(np.mean(predictions == data.validation.clean_labels)),
    }
    keras.backend.clear_session()
    return {"run": workdir, "method": results["method"],
            "noise": f"{config.noise.type}:{float(config.noise.rate):g}", "seed": int(config.seed),
            "test_accuracy": float(results["test_accuracy"]),
            "reported_by_the_run": results["validation"].get("value"), "values": values}


def summarize(runs: list) -> dict:
    def gaps(selected, estimator):
        return [100 * abs(run["values"][estimator] - run["test_accuracy"]) for run in selected]

    groups = {"all runs": runs}
    for run in runs:
        groups.setdefault(f"runs in {os.path.dirname(run['run'])}", []).append(run)
    for run in runs:
        groups.setdefault(run["method"], []).append(run)
    return {name: {"runs": len(selected),
                   **{estimator: {"mean_gap": float(np.mean(gaps(selected, estimator))),
                                  "max_gap": float(np.max(gaps(selected, estimator)))} for estimator in ESTIMATORS}}
            for name, selected in groups.items()}


def format_table(summary: dict) -> str:
    lines = ["| runs | " + " | ".join(ESTIMATORS) + " |", "|---|" + "---|" * len(ESTIMATORS)]
    for name, row in summary.items():
        cells = [f"{row[e]['mean_gap']:.2f} (max {row[e]['max_gap']:.1f})" for e in ESTIMATORS]
        lines.append(f"| {name} ({row['runs']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _RUNS.value:
        raise app.UsageError("--runs must name at least one folder of finished runs")
    from tf_twostage.utils import io_utils  # pylint: disable=import-outside-toplevel

    runs = []
    for folder in _RUNS.value:
        if not os.path.isdir(folder):
            raise app.UsageError(f"--runs: {folder!r} is not a folder")
        for results in sorted(glob.glob(os.path.join(folder, "*", "results.json"))):
            workdir = os.path.dirname(results)
            if os.path.exists(os.path.join(workdir, "final", "classifier.weights.h5")):
                measured = run_values(workdir)
                if measured is not None:
                    runs.append(measured)
                    print(f"{measured['run']}: test {measured['test_accuracy']:.3f} "
                          + " ".join(f"{k} {v:.3f}" for k, v in measured["values"].items()), flush=True)
    if not runs:
        raise app.UsageError("no finished run with a noisy validation split and synthetic noise under --runs")
    summary = summarize(runs)
    report = {"date": datetime.date.today().isoformat(),
              "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/validation_gap.py", *sys.argv[1:]]),
              "estimators": list(ESTIMATORS), "summary": summary, "runs": runs}
    io_utils.write_json(_OUTPUT.value, report)
    print(format_table(summary))
    print(f"wrote {_OUTPUT.value}")
    return 0


if __name__ == "__main__":
    app.run(main)
