#!/usr/bin/env python3
"""Stage-1 selection rules compared on the same pre-trained models, and their stability, on MNIST-5k.

  python benchmarks/selection.py [--workdir=runs/selection] [--seeds=0,1,2] \
      [--noise=none:0,symmetric:0.2,asymmetric:0.2,asymmetric:0.6,symmetric:0.5,symmetric:0.8] \
      [--variants=default] [--rules=paper,preset_anchors,small_loss,clusters,clusters_or_small_loss] \
      [--overrides=--config.stage1.ranking=best,...]

Each (variant, noise setting, seed) cell runs Stage 1 once (`bin/train_stage1.py --config=configs/mnist5k.py`,
skipped when its predictions exist) and every rule then selects from the same saved predictions, through
`tf_twostage.runs.stage1.apply_rule` with the rule's config overrides (the flags a user would pass). The true
training labels only score the selections (`tf_twostage.stage1.quality`): precision, recall, kept share,
the lowest per-class precision, ROC AUC of the rule's ranking; mean +- std over seeds.

`--overrides` are config flags every cell's Stage 1 runs with (e.g. `--config.stage1.ranking=best`: rank with
the best noisy-validation epoch's weights, the preset's before 2026-11-29). Cells are reused by name, so give each
set of overrides its own `--workdir`.

Variants measure stability: `default`; `onednn_off` (`TF_ENABLE_ONEDNN_OPTS=0`); `deterministic`
(`tf.config.experimental.enable_op_determinism()` before the program). The stability table lists, per
rule, the kept share and precision of each variant at each (setting, seed) that ran under more than one.

Writes benchmarks/results/selection.json and prints Markdown tables. Never part of the test suite.
"""

import datetime
import os
import shlex
import subprocess
import sys

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tf_twostage.config import load_run_config  # noqa: E402
from tf_twostage.data.prepare import prepare_data  # noqa: E402
from tf_twostage.runs.stage1 import CONFIDENCE_RULES, apply_rule, estimate_transition, ranking_score  # noqa: E402
from tf_twostage.stage1.quality import selection_quality  # noqa: E402
from tf_twostage.stage1.selection import corrected_posteriors  # noqa: E402
from tf_twostage.utils import io_utils  # noqa: E402
from float_variants import VARIANTS, variant_command  # noqa: E402  (benchmarks/)

# Each rule: the config overrides that select with it (on top of configs/mnist5k.py as the cell ran it).
RULES = {
    # The paper's rule: P(c|x) >= 0.9 of the pre-trained model, floor 10% of each class.
    "paper": {"stage1.rule": "confidence", "stage1.posterior": "noisy", "stage1.floor_fraction": 0.1},
    # The mnist5k preset before issue 15: anchor-point corrected posterior, floor 50%.
    "preset_anchors": {"stage1.rule": "confidence", "stage1.posterior": "corrected",
                       "stage1.transition": "anchors", "stage1.floor_fraction": 0.5},
    # Class-wise small loss (two-Gaussian mixture on -log P(label|x)) plus agreement.
    "small_loss": {"stage1.rule": "small_loss", "stage1.small_loss_probability": 0.5},
    # Confidence 0.9 on the posterior corrected by the anchor-free (cluster) transition estimate, floor 5%.
    "clusters": {"stage1.rule": "confidence", "stage1.posterior": "corrected", "stage1.transition": "clusters",
                 "stage1.floor_fraction": 0.05},
    # The union of the last two.
    "clusters_or_small_loss": {"stage1.rule": "confident_or_small_loss", "stage1.posterior": "corrected",
                               "stage1.transition": "clusters", "stage1.floor_fraction": 0.05,
                               "stage1.small_loss_probability": 0.5},
}
SETTINGS = ["none:0", "symmetric:0.2", "asymmetric:0.2", "asymmetric:0.6", "symmetric:0.5", "symmetric:0.8"]

_WORKDIR = flags.DEFINE_string("workdir", os.path.join(ROOT, "runs", "selection"), "Folder of the Stage-1 cells.")
_CONFIG = flags.DEFINE_string("config", os.path.join(ROOT, "configs", "mnist5k.py"), "Preset the cells run.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_NOISE = flags.DEFINE_list("noise", SETTINGS, "Noise settings TYPE:RATE.")
_VARIANTS = flags.DEFINE_list("variants", ["default"], f"Variants, of: {', '.join(VARIANTS)}.")
_RULES = flags.DEFINE_list("rules", list(RULES), f"Rules, of: {', '.join(RULES)}.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "selection.json"),
                              "Results JSON.")
_TRAIN = flags.DEFINE_bool("train", True, "Run Stage 1 for cells without predictions (else skip them).")
_OVERRIDES = flags.DEFINE_list("overrides", [], "Config flags Stage 1 runs with in every cell (e.g. "
                               "--config.stage1.ranking=average); the rules select from what it records.")

def cell_dir(variant, kind, rate, seed):
    name = f"{kind}{rate}_s{seed}"
    return os.path.join(_WORKDIR.value, name if variant == "default" else f"{variant}_{name}")


def train_cell(variant, kind, rate, seed, workdir):
    """Runs bin/train_stage1.py for one cell unless its predictions exist; True if they exist after."""
    if os.path.exists(os.path.join(workdir, "stage1", "predictions.npz")):
        return True
    if not _TRAIN.value:
        return False
    command = [os.path.join(ROOT, "bin", "train_stage1.py"), f"--config={_CONFIG.value}", f"--workdir={workdir}",
               f"--config.noise.type={kind}", f"--config.noise.rate={rate}", f"--config.seed={seed}",
               "--config.verbose=0", *_OVERRIDES.value]
    command, env = variant_command(variant, command)
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        print(f"{workdir}: bin/train_stage1.py failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return False
    return True


def evaluate_cell(workdir):
    """{rule: quality of its selection} from one cell's saved predictions."""
    base = load_run_config(workdir)
    data = prepare_data(base)
    arrays = io_utils.read_npz(os.path.join(workdir, "stage1", "predictions.npz"))
    noisy = arrays["train_probabilities"]
    labels = data.train.labels
    results = {}
    for name in _RULES.value:
        config = base.copy_and_resolve_references()
        for key, value in RULES[name].items():
            section, field = key.split(".")
            setattr(config[section], field, value)
        rule = config.stage1.rule
        probabilities = noisy
        if config.stage1.posterior == "corrected" and rule in CONFIDENCE_RULES:
            probabilities = corrected_posteriors(noisy, estimate_transition(config, noisy))
        kept = apply_rule(config, data, rule, probabilities, labels, None, noisy)
        quality = selection_quality(kept, labels, data.train.clean_labels, data.num_classes,
                                    ranking_score(rule, probabilities, labels))
        precisions = [row["precision"] for row in quality["per_class"] if row["precision"] is not None]
        quality["min_class_precision"] = min(precisions) if precisions else None
        results[name] = quality
    return results


def _stat(values):
    values = [v for v in values if v is not None]
    return None if not values else {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def _show(stat, scale=100.0, digits=2):
    if stat is None:
        return "n/a"
    text = f"{scale * stat['mean']:.{digits}f}"
    return text + (f" +- {scale * stat['std']:.{digits}f}" if stat["n"] > 1 else "")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name, allowed, flag in ((_VARIANTS.value, VARIANTS, "variants"), (_RULES.value, RULES, "rules")):
        for item in name:
            if item not in allowed:
                raise app.UsageError(f"--{flag}: {item!r} is not one of {', '.join(allowed)}")
    settings = []
    for item in _NOISE.value:
        kind, _, rate = item.partition(":")
        try:
            settings.append((kind, float(rate)))
        except ValueError:
            raise app.UsageError(f"--noise: {item!r} is not TYPE:RATE (e.g. asymmetric:0.6)") from None
    cells = {}
    for variant in _VARIANTS.value:
        for kind, rate in settings:
            for seed in (int(s) for s in _SEEDS.value):
                workdir = cell_dir(variant, kind, rate, seed)
                if train_cell(variant, kind, rate, seed, workdir):
                    cells[(variant, kind, rate, seed)] = evaluate_cell(workdir)
    rows = []
    for kind, rate in settings:
        for rule in _RULES.value:
            qualities = [cells[key][rule] for key in cells if key[0] == "default" and key[1:3] == (kind, rate)]
            if not qualities:
                continue
            row = {"noise_type": kind, "noise_rate": rate, "rule": rule,
                   "seeds": sorted(key[3] for key in cells if key[0] == "default" and key[1:3] == (kind, rate))}
            for part in ("precision", "recall", "kept_fraction", "min_class_precision", "auc"):
                row[part] = _stat([quality[part] for quality in qualities])
            rows.append(row)
    stability = []
    for (variant, kind, rate, seed), per_rule in sorted(cells.items()):
        if sum(key[1:] == (kind, rate, seed) for key in cells) > 1:
            for rule, quality in per_rule.items():
                stability.append({"variant": variant, "noise_type": kind, "noise_rate": rate, "seed": seed,
                                  "rule": rule, "kept_fraction": quality["kept_fraction"],
                                  "precision": quality["precision"]})
    spreads = []  # per setting and rule: the largest kept-share and precision difference between variants of a seed
    for kind, rate in settings:
        for rule in _RULES.value:
            by_seed = {}
            for row in stability:
                if (row["noise_type"], row["noise_rate"], row["rule"]) == (kind, rate, rule):
                    by_seed.setdefault(row["seed"], []).append(row)
            if by_seed:
                kept = {seed: max(r["kept_fraction"] for r in rows) - min(r["kept_fraction"] for r in rows)
                        for seed, rows in sorted(by_seed.items())}
                precision = {seed: max(r["precision"] or 0 for r in rows) - min(r["precision"] or 0 for r in rows)
                             for seed, rows in sorted(by_seed.items())}
                spreads.append({"noise_type": kind, "noise_rate": rate, "rule": rule, "kept_fraction": kept,
                                "precision": precision, "max_kept_fraction": max(kept.values())})
    output = {"dataset": "mnist5k", "date": datetime.date.today().isoformat(),
              "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/selection.py", *sys.argv[1:]]),
              "overrides": list(_OVERRIDES.value), "rules": RULES, "rows": rows, "stability": stability,
              "spreads": spreads}
    io_utils.write_json(_OUTPUT.value, output)
    print("| noise | rule | precision | recall | kept | lowest class precision | ROC AUC | seeds |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['noise_type']} {row['noise_rate']:g} | {row['rule']} | {_show(row['precision'])} | "
              f"{_show(row['recall'])} | {_show(row['kept_fraction'], digits=1)} | "
              f"{_show(row['min_class_precision'])} | {_show(row['auc'], 1.0, 4)} | {len(row['seeds'])} |")
    if spreads:
        print("\n| noise | rule | kept-share spread between variants, per seed (points) |\n|---|---|---|")
        for row in spreads:
            print(f"| {row['noise_type']} {row['noise_rate']:g} | {row['rule']} | "
                  + " / ".join(f"{100 * value:.2f}" for value in row["kept_fraction"].values()) + " |")
    if stability:
        print("\n| noise | seed | rule | variant | kept | precision |\n|---|---|---|---|---|---|")
        for row in sorted(stability, key=lambda r: (r["noise_type"], r["noise_rate"], r["seed"], r["rule"])):
            print(f"| {row['noise_type']} {row['noise_rate']:g} | {row['seed']} | {row['rule']} | {row['variant']} | "
                  f"{100 * row['kept_fraction']:.2f} | {100 * (row['precision'] or 0):.2f} |")


if __name__ == "__main__":
    app.run(main)
