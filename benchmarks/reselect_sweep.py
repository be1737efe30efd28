#!/usr/bin/env python3
"""The second selection round's threshold, swept on finished runs: kept share and precision per threshold.

  python benchmarks/reselect_sweep.py --workdirs=/tmp/s11/gce/two_stage_temporal_ensembling_gce_rounds2_symmetric0.2_seed0,... \
      [--thresholds=0.3,0.4,0.5,0.6,0.7,0.8,0.9] [--output=benchmarks/results/reselect_sweep.json]

Each workdir is a finished run with `stage2.rounds=2` on data whose clean labels are known (mnist5k with
synthetic noise). From the first round's P(c|x) over the training images (`stage2/round1_predictions.npz`) and
Stage 1's kept mask (`stage1/selection.npz`), the predictions propagated as the run's `stage1.propagation`
says, it recomputes the second round's kept set
(`tf_twostage.stage1.selection.reselect_labels_second_round`, both `keep` modes) at each threshold, without
training anything, and reports the kept share of the training set, its precision and the lowest per-class
precision (`tf_twostage.stage1.quality.selection_quality`): per run, and the mean over the runs. The run's own
threshold reproduces its `results.json["stage2_reselection"]` (checked). Never part of the test suite.
"""

import datetime
import json
import os
import shlex
import sys

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tf_twostage.config.base import load_run_config  # noqa: E402
from tf_twostage.data.prepare import prepare_data  # noqa: E402
from tf_twostage.runs.propagation import propagate_split  # noqa: E402
from tf_twostage.runs.reselection import ROUND1_PREDICTIONS_FILE  # noqa: E402
from tf_twostage.stage1.quality import selection_quality  # noqa: E402
from tf_twostage.stage1.selection import RESELECT_KEEP, fill_empty_classes, reselect_labels_second_round  # noqa: E402
from tf_twostage.utils import io_utils  # noqa: E402
from tf_twostage.utils.artifacts import load_selection  # noqa: E402

_WORKDIRS = flags.DEFINE_list("workdirs", [], "Finished runs with stage2.rounds=2 (clean labels known).")
_THRESHOLDS = flags.DEFINE_list("thresholds", ["0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"], "Thresholds.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "reselect_sweep.json"),
                              "JSON file.")


def sweep_run(workdir: str, thresholds: list) -> list:
    config = load_run_config(workdir)
    data = prepare_data(config)
    if not data.train.has_clean_labels:
        raise ValueError(f"{workdir}: its training images have no clean labels to measure precision against")
    predictions = io_utils.read_npz(os.path.join(workdir, ROUND1_PREDICTIONS_FILE))
    if not np.array_equal(predictions["index"], data.train.index):
        raise ValueError(f"{workdir}: {ROUND1_PREDICTIONS_FILE} belongs to other training images than its config gives")
    # The round ranks with what stage1.propagation makes of the first round's P(c|x) (the file keeps it raw).
    probabilities = propagate_split(config, data, data.train, predictions["probabilities"])
    labels, clean = data.train.labels, data.train.clean_labels
    first = load_selection(workdir, data)
    rows = []
    for keep in RESELECT_KEEP:
        for threshold in thresholds:
            kept = reselect_labels_second_round(probabilities, labels, first, threshold, keep=keep)
            kept, _ = fill_empty_classes(kept, first, labels, data.num_classes)
            quality = selection_quality(kept, labels, clean, data.num_classes)
            per_class = [c["precision"] for c in quality["per_class"] if c.get("precision") is not None]
            rows.append({"workdir": workdir, "seed": int(config.seed), "keep": keep, "threshold": threshold,
                         "kept_fraction": float(kept.mean()), "precision": quality["precision"],
                         "lowest_class_precision": float(min(per_class)),
                         "own_setting": keep == str(config.stage2.reselect_keep)
                         and threshold == float(config.stage2.reselect_threshold)})
    own = [r for r in rows if r["own_setting"]]
    recorded = io_utils.read_json(os.path.join(workdir, "results.json")).get("stage2_reselection", {})
    if own and "kept_fraction" in recorded and abs(own[0]["kept_fraction"] - recorded["kept_fraction"]) > 1e-9:
        raise ValueError(f"{workdir}: the recomputed kept share {own[0]['kept_fraction']} differs from the run's "
                         f"{recorded['kept_fraction']}")
    return rows


def main(argv):
    del argv
    if not _WORKDIRS.value:
        raise app.UsageError("--workdirs is required")
    thresholds = [float(t) for t in _THRESHOLDS.value]
    rows = [row for workdir in _WORKDIRS.value for row in sweep_run(workdir, thresholds)]
    means = []
    for keep in RESELECT_KEEP:
        for threshold in thresholds:
            group = [r for r in rows if r["keep"] == keep and r["threshold"] == threshold]
            means.append({"keep": keep, "threshold": threshold, "runs": len(group),
                          **{key: float(np.mean([r[key] for r in group]))
                             for key in ("kept_fraction", "precision", "lowest_class_precision")},
                          "precision_min_over_runs": float(min(r["precision"] for r in group))})
    io_utils.write_json(_OUTPUT.value, {
        "what": "the second selection round's kept set recomputed at each threshold from the first round's "
                "predictions (no training); mean over the runs",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/reselect_sweep.py", *sys.argv[1:]]),
        "means": means, "rows": rows})
    print("| keep | threshold | kept % | precision % | lowest class % | lowest run precision % |")
    print("|---|---|---|---|---|---|")
    for m in means:
        print(f"| {m['keep']} | {m['threshold']:g} | {m['kept_fraction'] * 100:.2f} | {m['precision'] * 100:.3f} | "
              f"{m['lowest_class_precision'] * 100:.2f} | {m['precision_min_over_runs'] * 100:.3f} |")
    print(json.dumps({"output": _OUTPUT.value}))


if __name__ == "__main__":
    app.run(main)
