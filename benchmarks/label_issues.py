#!/usr/bin/env python3
"""Finding label issues: our rules versus cleanlab 2.9 on the same out-of-sample predictions; memory at scale.

  python benchmarks/label_issues.py [--cache=/tmp/tf_twostage_label_issues] [--seeds=0,1,2] \
      [--noise=symmetric:0.2,symmetric:0.5,asymmetric:0.2,asymmetric:0.6,own:pair:0.4,own:symmetric:0.5,\
      own:instance:0.3] [--folds=5] [--own_epochs=20] [--scale]

1. Predictions: per noise setting and seed, K-fold out-of-sample probabilities of the mnist5k preset's
   MLP (`tf_twostage.runs.label_issues.kfold_pred_probs`, the program's own code) on the 4,000 noisy
   training images of mnist5k (train + validation), cached under `--cache` (a rerun reuses them).
   The `own:*` settings are benchmarks/own_data.py's: the same 4,000 images as 32x32 RGB digits on varied
   backgrounds, under its pair flips 0.4, symmetric 0.5 and instance-dependent 0.3 noise, with K-fold
   probabilities of the plain Keras CNN of its `keras` row (`--own_epochs`).
2. Comparison: on those same `pred_probs`, each of our rules (`find_label_issues(..., rule=R)`) and
   cleanlab 2.9's `cleanlab.filter.find_label_issues` (its default `prune_by_noise_rate` and
   `prune_by_class`): precision, recall and F1 of the flagged examples against the known noise (the given
   label differs from the true one), and the seconds each call takes. Mean +- std over seeds.
3. `--scale`: `find_label_issues` and `label_health` on 1,000,000 x 1,000 random float32 probabilities in
   a fresh process, with the peak traced memory (tracemalloc) and the peak resident set size, both
   against the size of `pred_probs`.

Writes benchmarks/results/label_issues.json and prints the Markdown table of the README. cleanlab is
the `benchmark` extra of setup.cfg, never a runtime dependency. Never part of the test suite.
"""

import datetime
import os
import resource
import shlex
import subprocess
import sys
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from tf_twostage.stage1 import label_issues as issues_lib  # noqa: E402
from tf_twostage.utils import io_utils  # noqa: E402
from child_env import child_env  # noqa: E402  (benchmarks/)

OWN_DATA = ["own:pair:0.4", "own:symmetric:0.5", "own:instance:0.3"]  # benchmarks/own_data.py's settings
_CACHE = flags.DEFINE_string("cache", "/tmp/tf_twostage_label_issues", "Folder of the cached K-fold predictions.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (noise draw, folds, training).")
_NOISE = flags.DEFINE_list("noise", ["symmetric:0.2", "symmetric:0.5", "asymmetric:0.2", "asymmetric:0.6", *OWN_DATA],
                           "Noise settings TYPE:RATE (mnist5k), or own:TYPE:RATE (the own-data benchmark's images "
                           "and noise: TYPE pair, symmetric or instance).")
_FOLDS = flags.DEFINE_integer("folds", 5, "K of the K-fold predictions (the program's default, label_issues.folds).")
_OWN_EPOCHS = flags.DEFINE_integer("own_epochs", 20, "Training epochs per fold of the own-data settings' CNN.")
_EPOCHS = flags.DEFINE_integer("epochs", 0, "Training epochs per fold (0: the preset's stage1.epochs, 40).")
_PREDICTIONS = flags.DEFINE_enum("predictions", "lean", ["lean", "program"],
                                  "K-fold predictions by `lean_kfold_pred_probs` or the program's own code.")
_SCALE = flags.DEFINE_bool("scale", False, "Also run the 1,000,000 x 1,000 memory benchmark.")
_SCALE_ONLY = flags.DEFINE_bool("scale_only", False, "Run only the memory benchmark (keeps the comparison rows).")
_SCALE_SHAPE = flags.DEFINE_list("scale_shape", ["1000000", "1000"], "N,C of the memory benchmark.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "label_issues.json"),
                              "Results file.")

CLEANLAB_METHODS = ("prune_by_noise_rate", "prune_by_class")  # the default first
NOISE_ESTIMATES = []  # label_health's estimated noise rate per setting and seed


def setting_name(noise: str, seed: int) -> str:
    *kind, rate = noise.split(":")
    return f"{'_'.join(kind)}{float(rate):g}_seed{seed}"


def cached_predictions(noise: str, seed: int) -> dict:
    """{labels, clean_labels, pred_probs, seconds} of one setting, computed once (K-fold MLP)."""
    path = os.path.join(_CACHE.value, f"{setting_name(noise, seed)}_k{_FOLDS.value}_e{_EPOCHS.value}_"
                                      f"{_PREDICTIONS.value}.npz")
    if os.path.exists(path):
        return io_utils.read_npz(path)
    if noise.startswith("own:"):
        arrays = own_data_predictions(noise, seed)
        io_utils.write_npz(path, **arrays)
        return arrays
    from tf_twostage.config import base_config  # noqa: F401  (the preset imports it)
    from tf_twostage.data.prepare import prepare_data
    from tf_twostage.runs import label_issues as run_lib
    from tf_twostage.training.distribution import make_strategy
    sys.path.insert(0, os.path.join(ROOT, "configs"))
    import mnist5k  # pylint: disable=import-outside-toplevel

    config = mnist5k.get_config()
    kind, rate = noise.split(":")
    config.noise.type, config.noise.rate = kind, float(rate)
    config.seed, config.verbose = seed, 0
    config.label_issues.folds = _FOLDS.value
    if _EPOCHS.value:
        config.stage1.epochs = _EPOCHS.value
    started = time.time()
    data = prepare_data(config)
    examples = run_lib.reviewed_examples(data)
    workdir = os.path.join(_CACHE.value, "runs", setting_name(noise, seed))
    progress = lambda line: print(f"{setting_name(noise, seed)}: {line}", flush=True)  # noqa: E731
    if _PREDICTIONS.value == "program":
        pred_probs = run_lib.kfold_pred_probs(config, data, examples, make_strategy("none"), workdir, progress)
    else:
        pred_probs = lean_kfold_pred_probs(config, data, examples, progress)
    arrays = {"labels": examples.labels, "clean_labels": examples.clean_labels, "pred_probs": pred_probs,
              "seconds": np.float64(time.time() - started)}
    io_utils.write_npz(path, **arrays)
    return arrays


def lean_kfold_pred_probs(config, data, examples, progress) -> np.ndarray:
    """The program's K-fold (same folds, model, optimizer, epochs, class balancing, validation held out of
    the training folds and its best epoch) as one plain in-memory Keras `fit` per fold, without the
    program's per-epoch checkpoints and tf.data pipeline: several times faster on a loaded 2-core machine."""
    import keras  # pylint: disable=import-outside-toplevel

    from tf_twostage.data.pipelines import stratified_holdout
    from tf_twostage.models import build_classifier
    from tf_twostage.runs.label_issues import fold_assignment
    from tf_twostage.training.optimizers import make_optimizer

    folds = int(config.label_issues.folds)
    assignment = fold_assignment(examples.labels, folds, int(config.seed))
    images = np.asarray(data.preprocessor(examples.images))
    labels = examples.labels
    pred_probs = np.zeros((len(labels), data.num_classes), np.float32)
    for fold in range(folds):
        started = time.time()
        held, rest = np.flatnonzero(assignment == fold), np.flatnonzero(assignment != fold)
        train_part, val_part = stratified_holdout(labels[rest], float(config.data.val_fraction), int(config.seed) + fold)
        train, val = rest[train_part], rest[val_part]
        keras.utils.set_random_seed(int(config.seed) * 1000 + fold + 1)
        model = build_classifier(config.model, data.image_shape, data.num_classes, int(config.seed))
        model.compile(optimizer=make_optimizer(config.stage1), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        counts = np.bincount(labels[train], minlength=data.num_classes)
        class_weight = ({c: len(train) / (data.num_classes * max(1, n)) for c, n in enumerate(counts)}
                        if config.stage1.balance_classes else None)
        best = keras.callbacks.ModelCheckpoint(os.path.join(_CACHE.value, f"best-{os.getpid()}.weights.h5"),
                                               monitor="val_accuracy",
                                               save_best_only=True, save_weights_only=True)
        model.fit(images[train], labels[train], batch_size=int(config.batch_size), epochs=int(config.stage1.epochs),
                  validation_data=(images[val], labels[val]), class_weight=class_weight, callbacks=[best], verbose=0)
        model.load_weights(best.filepath)
        pred_probs[held] = model.predict(images[held], batch_size=512, verbose=0)
        progress(f"fold {fold + 1}/{folds}: trained on {len(train)}, predicted {len(held)} "
                 f"({time.time() - started:.1f} s)")
    return pred_probs


def own_data_predictions(noise: str, seed: int) -> dict:
    """The own-data benchmark's 4,000 training images (32x32 RGB digits on varied backgrounds) under its noise,
    with K-fold out-of-sample probabilities of the plain Keras CNN a user would write (the `keras` row of
    benchmarks/own_data.py: Adam, its last epoch). The images and labels are those of own_data.py's folders."""
    import keras  # pylint: disable=import-outside-toplevel

    from own_data_images import colored_digits, noisy_labels  # benchmarks/  # pylint: disable=import-outside-toplevel
    from tf_twostage.data.datasets import load_mnist5k
    from tf_twostage.runs.label_issues import fold_assignment

    _, kind, rate = noise.split(":")
    train = load_mnist5k().train
    images = colored_digits(train.images, seed=1).astype(np.float32)
    labels = noisy_labels(kind, float(rate), train.labels, train.index, train.images, seed)
    folds = _FOLDS.value
    assignment = fold_assignment(labels, folds, seed)
    pred_probs = np.zeros((len(labels), 10), np.float32)
    started = time.time()
    for fold in range(folds):
        held, rest = np.flatnonzero(assignment == fold), np.flatnonzero(assignment != fold)
        keras.utils.set_random_seed(seed * 1000 + fold + 1)
        model = keras.Sequential([
            keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(images[rest], labels[rest], batch_size=32, epochs=_OWN_EPOCHS.value, verbose=0)
        pred_probs[held] = model.predict(images[held], batch_size=512, verbose=0)
        print(f"{setting_name(noise, seed)}: fold {fold + 1}/{folds} ({time.time() - started:.1f} s)", flush=True)
    return {"labels": labels, "clean_labels": train.labels, "pred_probs": pred_probs,
            "seconds": np.float64(time.time() - started)}


def scores(flagged, truth) -> dict:
    flagged, truth = np.asarray(flagged, bool), np.asarray(truth, bool)
    hits = int(np.count_nonzero(flagged & truth))
    precision = hits / max(1, int(flagged.sum()))
    recall = hits / max(1, int(truth.sum()))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "flagged": int(flagged.sum())}


def compare(noise: str, seeds) -> list:
    """Rows (one per method) of one noise setting: metrics per seed, and their mean and std."""
    import cleanlab  # pylint: disable=import-outside-toplevel
    from cleanlab.filter import find_label_issues as cleanlab_find  # pylint: disable=import-outside-toplevel

    per_method = {}
    for seed in seeds:
        arrays = cached_predictions(noise, seed)
        labels, pred_probs = arrays["labels"], arrays["pred_probs"].astype(np.float32)
        truth = labels != arrays["clean_labels"]
        health = issues_lib.label_health(labels, pred_probs)
        NOISE_ESTIMATES.append({"noise": noise, "seed": seed, "realized_noise_rate": float(truth.mean()),
                                "estimated_noise_rate": health["estimated_noise_rate"],
                                "estimator": health["estimator"]})
        methods = {f"ours:{rule}": (lambda rule=rule: issues_lib.find_label_issues(labels, pred_probs, rule=rule)
                                    .is_issue) for rule in issues_lib.RULES if rule != "clean_set"}
        for method in CLEANLAB_METHODS:
            methods[f"cleanlab {cleanlab.__version__}:{method}"] = (
                lambda method=method: cleanlab_find(labels, pred_probs, filter_by=method, n_jobs=1))
        for name, call in methods.items():
            started = time.perf_counter()
            flagged = call()
            seconds = time.perf_counter() - started
            row = scores(flagged, truth)
            row.update(seconds=seconds, seed=seed, realized_noise=float(truth.mean()))
            per_method.setdefault(name, []).append(row)
    rows = []
    for name, runs in per_method.items():
        summary = {"noise": noise, "method": name, "seeds": [run["seed"] for run in runs], "runs": runs}
        for key in ("precision", "recall", "f1", "seconds", "realized_noise"):
            values = np.array([run[key] for run in runs])
            summary[key] = {"mean": float(values.mean()), "std": float(values.std())}
        rows.append(summary)
    return rows


def scale_benchmark(num_examples: int, num_classes: int) -> dict:
    """Runs `_scale_child` in a fresh process (its peak RSS is its own) and returns what it reports."""
    command = [sys.executable, os.path.abspath(__file__), f"--scale_shape={num_examples},{num_classes}",
               "--_child"]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT,
                            env=child_env()).stdout
    print(output.strip().splitlines()[-2] if output.strip() else "", flush=True)
    return io_utils.read_json(output.strip().splitlines()[-1])


_CHILD = flags.DEFINE_bool("_child", False, "internal: the memory benchmark's own process")


def _scale_child(num_examples: int, num_classes: int) -> None:
    import tracemalloc  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(0)
    pred_probs = np.empty((num_examples, num_classes), np.float32)
    labels = rng.integers(0, num_classes, num_examples)
    for start in range(0, num_examples, 50_000):  # Dirichlet-like random rows, built in chunks
        block = rng.random((min(50_000, num_examples - start), num_classes), dtype=np.float32) ** 4
        block /= block.sum(axis=1, keepdims=True)
        pred_probs[start:start + len(block)] = block
    size = pred_probs.nbytes
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    started = time.perf_counter()
    result = issues_lib.find_label_issues(labels, pred_probs)
    issues_seconds = time.perf_counter() - started
    _, issues_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    health = issues_lib.label_health(labels, pred_probs)
    health_seconds = time.perf_counter() - started
    _, health_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report = {
        "num_examples": num_examples, "num_classes": num_classes, "pred_probs_bytes": size,
        "find_label_issues_seconds": issues_seconds, "label_health_seconds": health_seconds,
        "traced_peak_bytes_find_label_issues": issues_peak, "traced_peak_bytes_label_health": health_peak,
        "process_peak_rss_bytes": rss_peak, "rss_before_calls_bytes": rss_before,
        "traced_peak_over_pred_probs": max(issues_peak, health_peak) / size,
        "process_peak_rss_over_pred_probs": rss_peak / size,
        "num_issues": int(result.is_issue.sum()), "estimated_noise_rate": health["estimated_noise_rate"],
    }
    path = os.path.join("/tmp", f"label_issues_scale_{os.getpid()}.json")
    io_utils.write_json(path, report)
    print(f"{num_examples} x {num_classes} float32 pred_probs ({size / 2**30:.2f} GiB): find_label_issues "
          f"{issues_seconds:.1f} s, label_health {health_seconds:.1f} s; peak traced memory of the calls "
          f"{max(issues_peak, health_peak) / 2**30:.2f} GiB ({report['traced_peak_over_pred_probs']:.2f}x "
          f"pred_probs); peak RSS of the process, pred_probs included, {rss_peak / 2**30:.2f} GiB "
          f"({report['process_peak_rss_over_pred_probs']:.2f}x)")
    print(path)


def markdown(rows) -> str:
    settings = list(dict.fromkeys(row["noise"] for row in rows))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    lines = ["| method | " + " | ".join(f"{s} F1 (P / R)" for s in settings) + " | seconds (4,000 x 10) |",
             "|---|" + "---|" * (len(settings) + 1)]
    by_key = {(row["noise"], row["method"]): row for row in rows}
    for method in methods:
        cells = []
        for setting in settings:
            row = by_key.get((setting, method))
            cells.append("" if row is None else f"{row['f1']['mean']:.3f} +- {row['f1']['std']:.3f} "
                                                f"({row['precision']['mean']:.2f} / {row['recall']['mean']:.2f})")
        times = [by_key[(s, method)]["seconds"]["mean"] for s in settings if (s, method) in by_key]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {np.mean(times):.4f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    if _CHILD.value:
        _scale_child(int(_SCALE_SHAPE.value[0]), int(_SCALE_SHAPE.value[1]))
        return
    seeds = [int(seed) for seed in _SEEDS.value]
    previous = io_utils.read_json(_OUTPUT.value) if os.path.exists(_OUTPUT.value) else {}
    command = "python benchmarks/label_issues.py " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    results = {"dataset": "mnist5k (4,000 noisy training images, train + validation); own:* settings: the same "
                          "images as benchmarks/own_data.py's 32x32 RGB folders, under its noise",
               "preset": f"configs/mnist5k.py (MLP), {_FOLDS.value}-fold out-of-sample pred_probs "
                         f"({_PREDICTIONS.value}), stage1.epochs={_EPOCHS.value or 40}; own:* settings: the plain "
                         f"Keras CNN of own_data.py, {_FOLDS.value} folds, {_OWN_EPOCHS.value} epochs",
               "folds": _FOLDS.value, "date": datetime.date.today().isoformat(), "command": command,
               "rows": previous.get("rows", []), "scale": previous.get("scale"),
               "noise_rate_estimates": previous.get("noise_rate_estimates", [])}
    if not _SCALE_ONLY.value:
        rows = []
        for noise in _NOISE.value:
            rows.extend(compare(noise, seeds))
        results["rows"] = rows
        results["noise_rate_estimates"] = NOISE_ESTIMATES
        print(markdown(rows))
    if _SCALE.value or _SCALE_ONLY.value:
        results["scale"] = scale_benchmark(int(_SCALE_SHAPE.value[0]), int(_SCALE_SHAPE.value[1]))
        results["scale"]["command"] = command
    io_utils.write_json(_OUTPUT.value, results)


if __name__ == "__main__":
    app.run(main)
