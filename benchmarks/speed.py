#!/usr/bin/env python3
"""Training throughput of the trainers and the input pipeline on MNIST-5k (issue 7, speed part).

  nice -n 5 python benchmarks/speed.py [--models=mlp,resnet14] [--steps=0] [--repeats=5] \
      [--batch_size=128] [--output=benchmarks/results/speed.json] [--config=configs/mnist5k.py]

One process, one dataset (`prepare_data` on the config: MNIST-5k, asymmetric noise 0.6, 3,600 training
images of 28x28x1), one global batch size B and, per model, one architecture: every variant trains its
own copy of the *Stage-2* classifier of the config (`build_semi_supervised_classifier`: the MLP with its
input GaussianNoise, ResNet-14 with the config's dropout / top noise), all built with the same seed, so the
variants differ only in the trainer and in what feeds `fit`.

Variants (each a `fit` on batches of B images; a Pi step passes each image twice):

  ce                   `CrossEntropyTrainer` with Stage 1's optimizer (`make_optimizer(config.stage1)`),
                       on (image, label) batches of Stage 1's pipeline (`supervised_dataset`, training=True,
                       class balancing and augmentation as the config asks).
  ce_adam              the same `CrossEntropyTrainer` and batches with Stage 2's optimizer instead (a
                       diagnostic: it separates the cost of Adam + the ramped learning rate from the
                       trainers' own work).
  pi_stopgrad          `PiModel(stop_gradient_targets=True)`, Stage 2's optimizer (Adam, ramped learning
                       rate, beta1 variable, as `stage2.run.train_stage2`), on `semi_supervised_stream`
                       batches with two views (B/2 labeled class-balanced + B/2 unlabeled, translation 2 px).
  pi                   the same with the gradient through both passes (`stop_gradient_targets=False`).
  temporal_ensembling  `TemporalEnsembling` on one-view stream batches (plus the per-epoch `EnsembleUpdate`,
                       outside the timed steps).
  ce_pipeline, pi_pipeline, temporal_ensembling_pipeline
                       the same trainer objects as ce / pi / temporal_ensembling, fed by the full tf.data
                       pipeline (index shuffling, class-balanced oversampling, gathering, uint8 -> float,
                       augmentation, interleaving, views) instead of pre-built tensors. Label noise is
                       drawn once by `prepare_data` (per example, as in a real run), not per batch.

"Pre-built tensors": the first --tensor_batches batches of the variant's own pipeline, materialized once,
then `from_tensor_slices(...).unbatch().batch(B)`, shaped to the pipeline's element spec (unknown batch
dimension where the pipeline's is unknown), `.cache().repeat().prefetch(AUTOTUNE)`: a tensor-fed and a
pipeline-fed fit of the same trainer run the very same traced `train_step` graph.

Timing: per variant, one warm-up `fit` that traces the step (not timed); then --repeats rounds, each
running every variant once, in the order (ce, ce_adam, pi_stopgrad, pi, temporal_ensembling,
ce_pipeline, ...) in odd rounds and reversed in even ones, so load from other processes and slow drift
hit all variants alike. A round's `fit` runs
--warmup + steps steps; a callback times the last `steps` (from the end of step --warmup to the end of
the last step, syncing on the logs), so iterator start-up, prefetch fill and `fit`'s teardown are
excluded. Besides wall time it records the process CPU time over the same steps (all threads, tf.data's
included): on a shared machine the CPU-time ratios (`cpu_time_ratios`) are the steadier companion.

Reported, per model:
  examples_per_second[v] = B / median over rounds of v's time per step (images per second, each image of
                           the batch counted once, also for the two-pass Pi).
  ratios (step-time ratios at the same global batch of B images; > 1 means slower), each the median over
                           rounds of the ratio within the round:
    pi_stopgrad_over_ce          t(pi_stopgrad) / t(ce)           target <= 1.45
    pi_over_ce                   t(pi) / t(ce)                    target <= 2.1
    temporal_ensembling_over_ce  t(temporal_ensembling) / t(ce)   target <= 1.1
    pipeline_over_tensors_{ce,pi,temporal_ensembling}   t(v_pipeline) / t(v)
    pipeline_over_tensors        the largest of the three above   target <= 1.1
    {pi_stopgrad,pi,temporal_ensembling}_over_ce_adam   the same over ce_adam (diagnostic, no target)

On CPU the rows run under the config's `train.dtype_policy` and `train.jit_compile` (float32, no XLA by
default; `--config.train.dtype_policy=mixed_bfloat16` measures mixed precision). When a GPU is visible,
each model gets GPU rows too: the same variants on /GPU:0 under mixed_float16 (loss-scaled by the
trainers' base step, as in a run) with jit_compile=True; that path is untested here (no GPU on the
machine the results were made on). --rows replaces these rows (benchmarks/gpu_check.sh asks for float32
and mixed_float16 with XLA on and off). Writes --output atomically and prints a table;
the models that --models leaves out keep their entries of an existing --output (--nomerge: dropped),
each model with the `date` and `command` that measured it.
Never part of the test suite.
"""

import datetime
import math
import os
import platform
import shlex
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from tf_twostage.utils import io_utils  # noqa: E402
from tf_twostage.training.trainer import CrossEntropyTrainer  # noqa: E402
from tf_twostage.data.augment import build_augmenter  # noqa: E402
from tf_twostage.data.pipelines import semi_supervised_stream, supervised_dataset  # noqa: E402
from tf_twostage.data.prepare import prepare_data  # noqa: E402
from tf_twostage.runs.pretrain import build_stage_augmenter
from tf_twostage.training.optimizers import RampedAdam, make_optimizer  # noqa: E402
from tf_twostage.training.precision import compile_options, dtype_policy  # noqa: E402
from tf_twostage.stage2.pi_model import PiModel  # noqa: E402
from tf_twostage.runs.stage2 import build_semi_supervised_classifier, consistency_schedule  # noqa: E402
from tf_twostage.stage2.temporal_ensembling import EnsembleUpdate, TemporalEnsembling  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("mlp", "resnet14", "resnet50")  # resnet50 needs images of at least 32x32 (e.g. configs/clothing1m.py)
AUTO_STEPS = {"mlp": 300, "resnet14": 20, "resnet50": 10}  # timed steps per measurement when --steps=0
TRAINERS = ("ce", "ce_adam", "pi_stopgrad", "pi", "temporal_ensembling")
PIPELINE_OF = {"ce_pipeline": "ce", "pi_pipeline": "pi",
               "temporal_ensembling_pipeline": "temporal_ensembling"}
VARIANTS = TRAINERS + tuple(PIPELINE_OF)
TARGETS = {"pi_stopgrad_over_ce": 1.45, "pi_over_ce": 2.1, "temporal_ensembling_over_ce": 1.1,
           "pipeline_over_tensors": 1.1}

_CONFIG = config_flags.DEFINE_config_file("config", os.path.join(ROOT, "configs", "mnist5k.py"),
                                          "Experiment config (data, noise, models, optimizers).")
_MODELS = flags.DEFINE_list("models", list(MODELS), f"Models, of: {', '.join(MODELS)}.")
_STEPS = flags.DEFINE_integer("steps", 0, "Timed steps per measurement; 0: per model "
                              f"({', '.join(f'{m} {s}' for m, s in AUTO_STEPS.items())}).")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed steps at the start of every measured fit.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Rounds of all variants (medians over rounds).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Global batch size B (images per step; even).")
_TENSOR_BATCHES = flags.DEFINE_integer("tensor_batches", 8, "Batches materialized for the tensor-fed fits.")
_ROWS = flags.DEFINE_list("rows", [], "Rows per model instead of the default ones, each DEVICE:POLICY:JIT "
                          "(cpu|gpu : float32|mixed_float16|mixed_bfloat16 : jit|nojit), overriding train.dtype_policy "
                          "and train.jit_compile; the first is the model's entry, the others go under its 'rows'; gpu "
                          "rows are skipped when no GPU is visible.")
_MERGE = flags.DEFINE_bool("merge", True, "Keep the models of an existing --output that --models leaves out.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "speed.json"),
                              "JSON results file.")


class StepTimer(keras.callbacks.Callback):
    """Wall (and process CPU) time from the end of step `warmup` to the end of step `warmup + steps`."""

    def __init__(self, warmup: int, steps: int):
        super().__init__()
        self.first, self.last = warmup - 1, warmup + steps - 1
        self.start = self.end = self.cpu_start = self.cpu_end = None

    def on_train_batch_end(self, batch, logs=None):
        if batch in (self.first, self.last):
            if logs:  # the step's results are on the host: its work is done
                np.asarray(next(iter(logs.values())))
            if batch == self.first:
                self.start, self.cpu_start = time.perf_counter(), time.process_time()
            else:
                self.end, self.cpu_end = time.perf_counter(), time.process_time()


def model_config(config, name: str) -> ml_collections.ConfigDict:
    """`config` with `model.name` set (ResNet-14 without dropout, as the CIFAR-10 recipe)."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.model.name = name
    if name == "resnet14":
        config.model.dropout = 0.0
    return config


def tensor_dataset(stream: tf.data.Dataset, num_batches: int, batch_size: int) -> tf.data.Dataset:
    """The first `num_batches` batches of `stream`, materialized, repeated forever, with its element spec."""
    spec = stream.element_spec
    batches = list(stream.take(num_batches).as_numpy_iterator())
    stacked = tf.nest.map_structure(lambda *parts: np.stack(parts), *batches)

    def shaped_like_stream(*parts):
        element = parts[0] if len(parts) == 1 else parts
        return tf.nest.map_structure(lambda tensor, part: tf.ensure_shape(tensor, part.shape), element, spec)

    dataset = (tf.data.Dataset.from_tensor_slices(stacked).unbatch().batch(batch_size).map(shaped_like_stream)
               .cache().repeat().prefetch(tf.data.AUTOTUNE))
    if dataset.element_spec != spec:
        raise AssertionError(f"tensor-fed spec {dataset.element_spec} differs from the pipeline's {spec}")
    return dataset


def stage2_optimizer(config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Stage 2's optimizer, as `runs.stage2.train_stage2` builds it."""
    stage2 = config.stage2
    return RampedAdam(stage2.learning_rate, steps_per_epoch, int(stage2.epochs), stage2.rampup_epochs,
                      stage2.rampdown_epochs)


def build_variants(config, data, batch_size: int, num_tensor_batches: int) -> dict:
    """{variant: (trainer, dataset, callbacks)}; the *_pipeline variants share their trainer.

    Build under the config's dtype policy: `compile` then wraps the optimizer in a loss-scale optimizer
    for mixed_float16, as in a run."""
    seed = int(config.seed)
    compile_kwargs = compile_options(config.train)
    rng = np.random.RandomState(seed)
    labeled_positions = np.sort(rng.permutation(len(data.train))[: len(data.train) // 2])  # ~ Stage 1's half
    steps_per_epoch = math.ceil(len(data.train) / (batch_size // 2))
    stage2_augmenter = build_augmenter(data.image_shape, flip=bool(config.augment.flip),
                                       translate_px=int(config.stage2.translate_px), seed=seed)

    def classifier():
        keras.utils.set_random_seed(seed)
        return build_semi_supervised_classifier(config, data)

    def stream(views):
        return semi_supervised_stream(data.train, labeled_positions, data.train.labels, data.preprocessor,
                                      batch_size, seed=seed, augmenter=stage2_augmenter, num_views=views)

    def stage2_trainer(trainer):
        trainer.compile(stage2_optimizer(config, steps_per_epoch),
                        consistency_weight=consistency_schedule(config, len(labeled_positions),
                                                                len(data.train), steps_per_epoch),
                        **compile_kwargs)
        # Start where the consistency weight is full (the step counter is the weight's state).
        trainer.train_steps.assign(max(1, int(config.stage2.rampup_epochs)) * steps_per_epoch)
        return trainer

    ce = CrossEntropyTrainer(classifier())
    ce.compile(optimizer=make_optimizer(config.stage1), **compile_kwargs)
    ce_adam = CrossEntropyTrainer(classifier())
    ce_adam.compile(optimizer=stage2_optimizer(config, steps_per_epoch), **compile_kwargs)
    ce_stream = supervised_dataset(data.train, data.preprocessor, batch_size, training=True, seed=seed,
                                   augmenter=build_stage_augmenter(config, data),
                                   balance_classes=bool(config.stage1.balance_classes))
    pi_stopgrad = stage2_trainer(PiModel(classifier(), stop_gradient_targets=True))
    pi = stage2_trainer(PiModel(classifier(), stop_gradient_targets=False))
    te = stage2_trainer(TemporalEnsembling(classifier(), num_examples=int(data.train.index.max()) + 1,
                                           num_classes=data.num_classes,
                                           momentum=float(config.stage2.ensemble_momentum)))
    two_views, one_view = stream(2), stream(1)
    ce_tensors = tensor_dataset(ce_stream, num_tensor_batches, batch_size)
    return {
        "ce": (ce, ce_tensors, []),
        "ce_adam": (ce_adam, ce_tensors, []),
        "pi_stopgrad": (pi_stopgrad, tensor_dataset(two_views, num_tensor_batches, batch_size), []),
        "pi": (pi, tensor_dataset(two_views, num_tensor_batches, batch_size), []),
        "temporal_ensembling": (te, tensor_dataset(one_view, num_tensor_batches, batch_size),
                                [EnsembleUpdate()]),
        "ce_pipeline": (ce, ce_stream, []),
        "pi_pipeline": (pi, two_views, []),
        "temporal_ensembling_pipeline": (te, one_view, [EnsembleUpdate()]),
    }


def time_fit(trainer, dataset, callbacks, warmup: int, steps: int) -> tuple:
    """(wall seconds, process CPU seconds) per step over the last `steps` of a `warmup + steps` fit."""
    timer = StepTimer(warmup, steps)
    trainer.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, verbose=0, shuffle=False,
                callbacks=[timer, *callbacks])
    return (timer.end - timer.start) / steps, (timer.cpu_end - timer.cpu_start) / steps


def measure(variants: dict, warmup: int, steps: int, repeats: int, label: str) -> tuple:
    """Interleaved rounds over all variants: ({variant: [wall s/step per round]}, {... CPU s/step})."""
    for name, (trainer, dataset, callbacks) in variants.items():  # trace and fill caches, not timed
        start = time.perf_counter()
        trainer.fit(dataset, epochs=1, steps_per_epoch=max(warmup, 2) + 2, verbose=0, shuffle=False,
                    callbacks=list(callbacks))
        print(f"[{label}] warm-up {name}: {time.perf_counter() - start:.1f} s", flush=True)
    seconds = {name: [] for name in variants}
    cpu_seconds = {name: [] for name in variants}
    for round_ in range(repeats):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        for name in order:
            trainer, dataset, callbacks = variants[name]
            wall, cpu = time_fit(trainer, dataset, callbacks, warmup, steps)
            seconds[name].append(wall)
            cpu_seconds[name].append(cpu)
        print(f"[{label}] round {round_ + 1}/{repeats} (wall ms/step): "
              + ", ".join(f"{name} {1000 * s[-1]:.1f}" for name, s in seconds.items()), flush=True)
    return seconds, cpu_seconds


def step_time_ratios(seconds: dict) -> dict:
    """The step-time ratios of the module docstring: medians of within-round ratios."""
    def ratio(numerator, denominator):
        return statistics.median(a / b for a, b in zip(seconds[numerator], seconds[denominator]))

    ratios = {
        "pi_stopgrad_over_ce": ratio("pi_stopgrad", "ce"),
        "pi_over_ce": ratio("pi", "ce"),
        "temporal_ensembling_over_ce": ratio("temporal_ensembling", "ce"),
    }
    for pipelined, tensors in PIPELINE_OF.items():
        ratios[f"pipeline_over_tensors_{tensors}"] = ratio(pipelined, tensors)
    ratios["pipeline_over_tensors"] = max(ratios[f"pipeline_over_tensors_{t}"] for t in PIPELINE_OF.values())
    for trainer in ("pi_stopgrad", "pi", "temporal_ensembling"):
        ratios[f"{trainer}_over_ce_adam"] = ratio(trainer, "ce_adam")
    return ratios


def summarize(seconds: dict, cpu_seconds: dict, batch_size: int) -> dict:
    """examples/s from median wall step times; wall ratios (the targets) and CPU-time ratios beside."""
    ratios = step_time_ratios(seconds)
    return {
        "examples_per_second": {name: batch_size / statistics.median(s) for name, s in seconds.items()},
        "ratios": ratios,
        "targets": {key: {"max": bound, "met": ratios[key] <= bound} for key, bound in TARGETS.items()},
        "step_ms_median": {name: 1000 * statistics.median(s) for name, s in seconds.items()},
        "cpu_ms_per_step_median": {name: 1000 * statistics.median(s) for name, s in cpu_seconds.items()},
        "cpu_time_ratios": step_time_ratios(cpu_seconds),
        "step_seconds_per_round": seconds,
        "cpu_seconds_per_round": cpu_seconds,
    }


def run_model(config, data, name: str, device: str) -> dict:
    """The variants of model `name` on `device` under `config.train` (dtype policy, XLA)."""
    steps = _STEPS.value or AUTO_STEPS[name]
    config = model_config(config, name)
    with dtype_policy(config.train.dtype_policy), tf.device(device):
        variants = build_variants(config, data, _BATCH_SIZE.value, _TENSOR_BATCHES.value)
        seconds, cpu_seconds = measure(variants, _WARMUP.value, steps, _REPEATS.value, f"{name} {device}")
    result = summarize(seconds, cpu_seconds, _BATCH_SIZE.value)
    result.update({"device": device, "steps": steps, "warmup": _WARMUP.value, "repeats": _REPEATS.value,
                   "batch_size": _BATCH_SIZE.value, "jit_compile": bool(config.train.jit_compile),
                   "dtype_policy": config.train.dtype_policy})
    return result


DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def parse_row(row: str, config) -> tuple:
    """'gpu:mixed_float16:jit' -> ('/GPU:0', config with that policy and XLA), or a UsageError naming it."""
    parts = row.split(":")
    if (len(parts) != 3 or parts[0] not in ("cpu", "gpu") or parts[1] not in DTYPE_POLICIES
            or parts[2] not in ("jit", "nojit")):
        raise app.UsageError(f"--rows: {row!r} is not DEVICE:POLICY:JIT with DEVICE cpu|gpu, POLICY one of "
                             f"{'|'.join(DTYPE_POLICIES)}, JIT jit|nojit")
    config = ml_collections.ConfigDict(config.to_dict())
    config.train.dtype_policy = parts[1]
    config.train.jit_compile = parts[2] == "jit"
    return f"/{parts[0].upper()}:0", config


def gpu_config(config) -> ml_collections.ConfigDict:
    """`config` with the GPU rows' settings: mixed_float16 (loss-scaled) and XLA."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.train.dtype_policy = "mixed_float16"
    config.train.jit_compile = True
    return config


def machine_info(gpus) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            names = [line.split(":", 1)[1].strip() for line in file if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__, "device": "cpu"}
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        info["device"] = "cpu+gpu"
        info["gpu"] = details.get("device_name", gpus[0].name)
    return info


def format_table(results: dict) -> str:
    lines = ["| model | device | " + " | ".join(VARIANTS) + " |", "|---" * (len(VARIANTS) + 2) + "|"]
    for label, result in results.items():
        cells = [f"{result['examples_per_second'][v]:,.0f}" for v in VARIANTS]
        lines.append(f"| {label} | {result['device']} | " + " | ".join(cells) + " |")
    lines.insert(0, "examples/s (B images per step / median wall time per step):\n")
    for field, title in (("ratios", "wall"), ("cpu_time_ratios", "process CPU")):
        lines += ["", f"{title}-time ratios (median of within-round ratios; > 1 is slower):", ""]
        keys = list(next(iter(results.values()))[field])
        lines += ["| model | device | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
        for label, result in results.items():
            cells = []
            for key in keys:
                value = result[field][key]
                mark = ""
                if key in TARGETS:
                    mark = " ok" if value <= TARGETS[key] else f" MISS (<= {TARGETS[key]})"
                cells.append(f"{value:.2f}{mark}")
            lines.append(f"| {label} | {result['device']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def keep_other_models(earlier: dict, report: dict) -> dict:
    """`report` plus the models of the `earlier` results file that this command did not measure (each
    model's entry keeps the `date` and `command` that measured it)."""
    merged = dict(report)
    for name in MODELS:
        if name not in report and name in earlier:
            merged[name] = dict(earlier[name])
            merged[name].setdefault("date", earlier.get("date"))
            merged[name].setdefault("command", earlier.get("command"))
    return merged


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in _MODELS.value:
        if name not in MODELS:
            raise app.UsageError(f"--models: {name!r} is not one of {', '.join(MODELS)}")
    if _BATCH_SIZE.value < 2 or _BATCH_SIZE.value % 2:
        raise app.UsageError(f"--batch_size must be even and >= 2, got {_BATCH_SIZE.value}")
    if _REPEATS.value < 1 or _STEPS.value < 0 or _WARMUP.value < 1 or _TENSOR_BATCHES.value < 1:
        raise app.UsageError("--repeats, --warmup and --tensor_batches must be >= 1 and --steps >= 0")
    config = _CONFIG.value
    data = prepare_data(config)
    gpus = tf.config.list_physical_devices("GPU")
    report = {"date": datetime.date.today().isoformat(), "machine": machine_info(gpus),
              "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/speed.py", *sys.argv[1:]]),
              "dataset": config.data.name, "train_examples": len(data.train),
              "image_shape": list(data.image_shape), "batch_size": _BATCH_SIZE.value}
    if _ROWS.value:  # untested on a GPU: none where this was written
        settings = [(row, *parse_row(row, config)) for row in _ROWS.value]
        settings = [setting for setting in settings if gpus or setting[1] != "/GPU:0"]
        if not settings:
            raise app.UsageError(f"--rows: no GPU is visible, and every row asks for one: {','.join(_ROWS.value)}")
    else:
        settings = [("cpu", "/CPU:0", config)] + ([("gpu", "/GPU:0", gpu_config(config))] if gpus else [])
    rows = {}
    for name in _MODELS.value:
        for position, (row, device, row_config) in enumerate(settings):
            label = name if position == 0 else f"{name} {row}"
            rows[label] = run_model(row_config, data, name, device)
            if position == 0:
                report[name] = dict(rows[label], date=report["date"], command=report["command"])
            elif not _ROWS.value:
                report[name]["gpu"] = rows[label]
            else:
                report[name].setdefault("rows", {})[row] = rows[label]
    if _MERGE.value and os.path.exists(_OUTPUT.value):
        report = keep_other_models(io_utils.read_json(_OUTPUT.value), report)
    io_utils.write_json(_OUTPUT.value, report)  # atomic (creates the folder)
    print(format_table(rows))
    print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main)
