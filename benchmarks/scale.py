#!/usr/bin/env python3
"""Clothing1M at scale on this machine: list loading, memory per example, input-stream speed (issue 17).

  nice -n 10 python benchmarks/scale.py [--tree=/tmp/clothing1m_synthetic] [--num_files=10000] \
      [--sizes=10000,100000,1000000] [--batch_size=64] [--image_size=224] [--augment=crop] [--resize_size=256] \
      [--steps=100] [--repeats=5] \
      [--ensemble_examples=1000000] [--feed_model=] [--output=benchmarks/results/scale.json] [--dry_run]

The tree is a synthetic release layout (`tf_twostage.data.release_tree`, 256x256 JPEGs) of --num_files
distinct files, written once if missing; for each size N the lists are rewritten with N entries in
`noisy_train_key_list.txt` (files repeat) plus fixed clean subsets (1,000 clean training, 500 validation,
500 test entries). Each N is measured in a fresh subprocess:

  load            `load_clothing1m(tree, image_size)`: list parsing, path resolution and the file checks
                  (files cached by the OS after the first pass), seconds and seconds per 100k entries.
  memory          resident set size (RSS, /proc) after TensorFlow is initialised, after the load (bytes per
                  list entry over all four splits) and the largest RSS sampled while the streams run.
  streams         images/s of, at --batch_size and --image_size, the same decode in all:
                    bare        read + decode_jpeg + bilinear resize to --image_size, batched, AUTOTUNE: the
                                machine's limit
                    stage1      `supervised_dataset(training=True, balance_classes=True)` with per-pixel mean
                                subtraction and, by --augment, the Clothing1M presets' augmentation (crop: the
                                256 decode, a random 224 crop and a flip per image, as the paper) or the earlier
                                one (shift: decode to 224, flip + 16 px translation) (Stage 1)
                    stage2_1    `semi_supervised_stream`, one view (temporal ensembling)
                    stage2_2    the same, two views (Pi model; decoded once, augmented twice)
                  Each timing builds the stream afresh and destroys it after (an idle stream's buffers
                  refill in the background: with the four streams kept open, 30 steps and 3 rounds, the
                  same code measured Stage 1 at 0.85-1.15x of bare from run to run).
                  Rounds alternate the order of the streams; per stream the median over rounds of images/s
                  (wall) and of process CPU ms per image. ratio_wall = median within-round ratio to bare;
                  ratio_cpu = CPU per image of bare / of the stream (steadier on a shared machine).
  ensemble        (once, in the last size's process) the temporal-ensembling buffer of `TemporalEnsembling`
                  for --ensemble_examples x 14 classes: RSS growth, time of the per-epoch update
                  (`update_ensemble`) and of one step's scatter of a batch of predictions (`after_step`).
  feed_model      (optional, once, last size; e.g. resnet50 on a GPU) training steps/s of `CrossEntropyTrainer`
                  on the Stage-1 stream vs on one repeated batch already in memory: input_bound = 1 - the
                  ratio, the share of step time the model waits on input.

The per-pixel mean is a constant image (its values do not change the cost). --dry_run: a tiny tree under
/tmp, 300 entries, 32x32 images, batch 8, 3 steps, 1 round, a 1,000-row buffer (for tests). Writes
--output atomically (JSON) and prints a table. Never part of the test suite's timing: no timed asserts.
"""

import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from child_env import child_env  # noqa: E402  (benchmarks/)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

STREAMS = ("bare", "stage1", "stage2_1", "stage2_2")
CLEAN_SUBSETS = {"num_clean_train": 1000, "num_val": 500, "num_test": 500}
DRY_CLEAN_SUBSETS = {"num_clean_train": 20, "num_val": 10, "num_test": 10}

_TREE = flags.DEFINE_string("tree", "/tmp/clothing1m_synthetic", "Folder of the synthetic release tree.")
_NUM_FILES = flags.DEFINE_integer("num_files", 10_000, "Distinct JPEGs of the tree (written if missing).")
_SIZES = flags.DEFINE_list("sizes", ["10000", "100000", "1000000"], "Entries of the noisy training list.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per batch (even).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Side of the images the model takes.")
_AUGMENT = flags.DEFINE_enum("augment", "crop", ["crop", "shift"],
                             "The streams' decode and augmentation: crop = the Clothing1M presets' (decode at "
                             "--resize_size, a random --image_size crop + flip per image); shift = decode and resize "
                             "to --image_size, flip + a translation of 16 px per 224.")
_RESIZE_SIZE = flags.DEFINE_integer("resize_size", 256, "--augment=crop: side the images are decoded (resized) to.")
_STEPS = flags.DEFINE_integer("steps", 100, "Timed batches per stream and round.")
_WARMUP = flags.DEFINE_integer("warmup", 8, "Untimed batches before each timing.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Rounds over the streams.")
_ENSEMBLE = flags.DEFINE_integer("ensemble_examples", 1_000_000, "Rows of the temporal-ensembling buffer; 0: skip.")
_FEED_MODEL = flags.DEFINE_string("feed_model", "", "Model trained on the Stage-1 stream (e.g. resnet50); empty: skip.")
_FEED_STEPS = flags.DEFINE_integer("feed_steps", 20, "Timed training steps per feed measurement.")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "scale.json"), "JSON output.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Tiny sizes (a test calls it).")
_WORKER = flags.DEFINE_string("worker", "", "Internal: measure one size N in this process and print JSON.")


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bare_stream(paths, image_size: int, batch_size: int):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    def decode(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return tf.image.resize(image, (image_size, image_size))

    return (tf.data.Dataset.from_tensor_slices(paths).repeat().map(decode, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def build_streams(splits, image_size: int, batch_size: int, augment: str = "crop") -> dict:
    import numpy as np  # pylint: disable=import-outside-toplevel

    from tf_twostage.data import pipelines  # pylint: disable=import-outside-toplevel
    from tf_twostage.data.augment import build_augmenter  # pylint: disable=import-outside-toplevel
    from tf_twostage.data.preprocess import Preprocessor  # pylint: disable=import-outside-toplevel

    train = splits.train
    shape = (image_size, image_size, 3)
    if augment == "crop":  # the presets' data.resize_size: a random crop per image, the center crop elsewhere
        preprocessor = Preprocessor(np.full(shape, 0.5, np.float32), crop_size=(image_size, image_size))
        augmenter = build_augmenter(shape, flip=True, seed=0, crop_size=(image_size, image_size))
    else:
        preprocessor = Preprocessor(np.full(shape, 0.5, np.float32))
        augmenter = build_augmenter(shape, flip=True, translate_px=max(1, 16 * image_size // 224), seed=0)
    labeled = np.sort(np.random.RandomState(0).permutation(len(train))[: len(train) // 2])  # ~ Stage 1 keeps half

    def stage2(views):
        return pipelines.semi_supervised_stream(train, labeled, train.labels, preprocessor, batch_size, seed=0,
                                                augmenter=augmenter, num_views=views)

    return {
        "bare": lambda: bare_stream(train.paths.astype(str), image_size, batch_size),
        "stage1": lambda: pipelines.supervised_dataset(train, preprocessor, batch_size, training=True, seed=0,
                                                       augmenter=augmenter, balance_classes=True),
        "stage2_1": lambda: stage2(1),
        "stage2_2": lambda: stage2(2),
    }


def time_batches(iterator, warmup: int, steps: int) -> tuple:
    for _ in range(warmup):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        next(iterator)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure_size(num_entries: int, args: dict) -> dict:
    """One size, in this (fresh) process: load, memory, streams."""
    import gc  # pylint: disable=import-outside-toplevel

    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tf_twostage.data.clothing1m import load_clothing1m  # pylint: disable=import-outside-toplevel

    tf.constant(0)  # initialise the runtime before the baseline
    gc.collect()
    rss_start = rss_bytes()
    start = time.perf_counter()
    side = args["resize_size"] if args["augment"] == "crop" else args["image_size"]
    splits = load_clothing1m(args["tree"], (side, side))
    load_s = time.perf_counter() - start
    gc.collect()
    rss_loaded = rss_bytes()
    entries = sum(len(s) for s in (splits.train, splits.clean, splits.validation, splits.test))
    streams = build_streams(splits, args["image_size"], args["batch_size"], args["augment"])
    batch = args["batch_size"]
    rounds = {name: [] for name in STREAMS}
    rss_peak = rss_bytes()
    for round_index in range(args["repeats"]):
        order = STREAMS if round_index % 2 == 0 else tuple(reversed(STREAMS))
        for name in order:
            # A fresh iterator per timing, destroyed after it: an idle iterator's AUTOTUNE map and prefetch
            # buffers refill in the background and would take CPU from the stream being timed.
            iterator = iter(streams[name]())
            wall, cpu = time_batches(iterator, args["warmup"], args["steps"])
            rounds[name].append((wall, cpu))
            rss_peak = max(rss_peak, rss_bytes())
            del iterator
            gc.collect()
    images = batch * args["steps"]
    result_streams = {}
    for name in STREAMS:
        walls = [w for w, _ in rounds[name]]
        cpus = [c for _, c in rounds[name]]
        result_streams[name] = {
            "images_per_second": images / statistics.median(walls),
            "cpu_ms_per_image": 1e3 * statistics.median(cpus) / images,
            "ratio_wall": statistics.median(b[0] / s[0] for b, s in zip(rounds["bare"], rounds[name])),
            "ratio_cpu": statistics.median(b[1] / s[1] for b, s in zip(rounds["bare"], rounds[name])),
        }
    result = {
        "entries": entries,
        "train_entries": len(splits.train),
        "distinct_files": len(set(splits.train.paths)),
        "load_seconds": load_s,
        "load_seconds_per_100k": load_s * 100_000 / entries,
        "rss_start_bytes": rss_start,
        "rss_after_load_bytes": rss_loaded,
        "bytes_per_entry_after_load": (rss_loaded - rss_start) / entries,
        "rss_streaming_peak_bytes": rss_peak,
        "bytes_per_entry_streaming": (rss_peak - rss_start) / entries,
        "peak_rss_process_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "streams": result_streams,
    }
    if args.get("feed_model"):
        result["feed_model"] = measure_feed(streams["stage1"](), args)
    if args.get("ensemble_examples"):
        result["ensemble"] = measure_ensemble(args["ensemble_examples"])
    return result


def measure_feed(stream, args: dict) -> dict:
    """Training steps/s of a CrossEntropyTrainer on `stream` vs on one batch held in memory."""
    import keras  # pylint: disable=import-outside-toplevel
    import ml_collections  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tf_twostage.models.factory import build_classifier  # pylint: disable=import-outside-toplevel
    from tf_twostage.training.trainer import CrossEntropyTrainer  # pylint: disable=import-outside-toplevel

    shape = (args["image_size"], args["image_size"], 3)
    keras.utils.set_random_seed(0)
    config = ml_collections.ConfigDict({"name": args["feed_model"], "dropout": 0.0})
    trainer = CrossEntropyTrainer(build_classifier(config, shape, 14, seed=0))
    trainer.compile(optimizer=keras.optimizers.SGD(0.01))
    images, labels = next(iter(stream))
    in_memory = tf.data.Dataset.from_tensors((images, labels)).repeat()
    warmup, steps = 3, args["feed_steps"]
    timings = {}
    for name, dataset in (("in_memory", in_memory), ("stage1_stream", stream)):
        timer = StepTimer(warmup, steps)
        trainer.fit(dataset, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer])
        timings[name] = steps / (timer.end - timer.start)
    return {
        "model": args["feed_model"],
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "steps_per_second": timings,
        "images_per_second": {k: v * args["batch_size"] for k, v in timings.items()},
        "input_bound": 1.0 - timings["stage1_stream"] / timings["in_memory"],
    }


def _step_timer_class():
    import keras  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel

    class Timer(keras.callbacks.Callback):
        """Wall time from the end of step `warmup` to the end of step `warmup + steps` (synced on the logs)."""

        def __init__(self, warmup: int, steps: int):
            super().__init__()
            self.first, self.last = warmup - 1, warmup + steps - 1
            self.start = self.end = None

        def on_train_batch_end(self, batch, logs=None):
            if batch in (self.first, self.last):
                if logs:
                    np.asarray(next(iter(logs.values())))
                if batch == self.first:
                    self.start = time.perf_counter()
                else:
                    self.end = time.perf_counter()

    return Timer


def StepTimer(warmup: int, steps: int):  # pylint: disable=invalid-name
    return _step_timer_class()(warmup, steps)


def measure_ensemble(num_examples: int) -> dict:
    """The temporal-ensembling buffer of `num_examples` x 14: memory and update times."""
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tf_twostage.stage2.temporal_ensembling import TemporalEnsembling  # pylint: disable=import-outside-toplevel

    classes = 14
    classifier = keras.Sequential([keras.Input((4,)), keras.layers.Dense(classes, activation="softmax")])
    tf.constant(0)
    rss_start = rss_bytes()
    trainer = TemporalEnsembling(classifier, num_examples=num_examples, num_classes=classes)
    rss_built = rss_bytes()
    trainer.update_ensemble()  # trace
    updates = []
    for _ in range(5):
        start = time.perf_counter()
        trainer.update_ensemble()
        trainer.ensemble.numpy()[:1]  # the update is done
        updates.append(time.perf_counter() - start)
    rss_updated = rss_bytes()
    batch = 64
    after_step = tf.function(lambda ids, rows: trainer.after_step({"index": ids}, rows))
    ids = tf.random.stateless_uniform([batch], [1, 2], 0, num_examples, tf.int64)
    rows = tf.nn.softmax(tf.random.stateless_normal([batch, classes], [3, 4]))
    after_step(ids, rows)
    start = time.perf_counter()
    for _ in range(50):
        after_step(ids, rows)
    step_s = (time.perf_counter() - start) / 50
    return {
        "examples": num_examples,
        "classes": classes,
        "buffer_bytes": 2 * num_examples * classes * 4,  # ensemble + epoch predictions, float32
        "rss_growth_bytes": max(rss_built, rss_updated) - rss_start,
        "update_seconds_per_epoch": statistics.median(updates),
        "scatter_seconds_per_step": step_s,
        "scatter_seconds_per_epoch_at_batch_64": step_s * num_examples / batch,
    }


def ensure_tree(tree: str, num_files: int, num_entries: int, image_size, clean: dict) -> dict:
    from tf_twostage.data.release_tree import ReleaseTreeSpec, write_release_tree  # pylint: disable=C0415

    spec = ReleaseTreeSpec(num_files=num_files, num_train=num_entries, image_size=image_size, **clean)
    return write_release_tree(tree, spec, keep_existing_images=True)


def run_worker(worker: str, args: dict) -> dict:
    command = [sys.executable, os.path.abspath(__file__), f"--worker={worker}", f"--tree={args['tree']}",
               f"--image_size={args['image_size']}", f"--batch_size={args['batch_size']}",
               f"--augment={args['augment']}", f"--resize_size={args['resize_size']}",
               f"--steps={args['steps']}", f"--warmup={args['warmup']}", f"--repeats={args['repeats']}",
               f"--ensemble_examples={args['ensemble_examples']}", f"--feed_model={args['feed_model']}",
               f"--feed_steps={args['feed_steps']}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env=child_env())
    if done.returncode != 0:
        raise RuntimeError(f"scale worker {worker} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def format_table(report: dict) -> str:
    lines = ["| entries | load s / 100k | bytes / entry (load, streaming) | bare img/s | stage1 | stage2 1 view "
             "| stage2 2 views |", "|---|---|---|---|---|---|---|"]
    for size in report["sizes"].values():
        streams = size["streams"]
        cells = [f"{streams[s]['images_per_second']:.0f} ({streams[s]['ratio_wall']:.2f}x wall, "
                 f"{streams[s]['ratio_cpu']:.2f}x CPU)" for s in STREAMS[1:]]
        lines.append(f"| {size['train_entries']:,} | {size['load_seconds_per_100k']:.2f} | "
                     f"{size['bytes_per_entry_after_load']:.0f}, {size['bytes_per_entry_streaming']:.0f} | "
                     f"{streams['bare']['images_per_second']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    args = {"tree": _TREE.value, "image_size": _IMAGE_SIZE.value, "batch_size": _BATCH_SIZE.value,
            "augment": _AUGMENT.value, "resize_size": _RESIZE_SIZE.value,
            "steps": _STEPS.value, "warmup": _WARMUP.value, "repeats": _REPEATS.value,
            "ensemble_examples": _ENSEMBLE.value, "feed_model": _FEED_MODEL.value, "feed_steps": _FEED_STEPS.value}
    if _WORKER.value:
        print(json.dumps(measure_size(int(_WORKER.value), args)))
        return 0
    sizes = [int(s) for s in _SIZES.value]
    num_files, image_side, clean = _NUM_FILES.value, 256, CLEAN_SUBSETS
    if _DRY_RUN.value:
        args.update(tree=os.path.join(tempfile.gettempdir(), f"scale_dry_run_{os.getuid()}"), image_size=32,
                    resize_size=36,
                    batch_size=8, steps=3, warmup=2, repeats=1, ensemble_examples=min(args["ensemble_examples"], 1000),
                    feed_steps=2)
        sizes, num_files, image_side, clean = [300], 120, 40, DRY_CLEAN_SUBSETS
    if args["batch_size"] < 2 or args["batch_size"] % 2:
        raise app.UsageError(f"--batch_size must be even and >= 2, got {args['batch_size']}")
    if min(sizes) < 1 or args["steps"] < 1 or args["repeats"] < 1:
        raise app.UsageError("--sizes, --steps and --repeats must be >= 1")
    report = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(shlex.quote(a) for a in ["python", "benchmarks/scale.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": dict(args, num_files=num_files, source_image_size=image_side, clean_subsets=clean,
                         mean_file_bytes=None),
        "sizes": {},
    }
    for position, size in enumerate(sizes):
        summary = ensure_tree(args["tree"], num_files, size, (image_side, image_side), clean)
        report["settings"]["mean_file_bytes"] = summary["mean_file_bytes"]
        last = position == len(sizes) - 1  # the buffer and the model feed are measured once, after the streams
        measured = run_worker(str(size), dict(args, ensemble_examples=args["ensemble_examples"] if last else 0,
                                              feed_model=args["feed_model"] if last else ""))
        for key in ("ensemble", "feed_model"):
            if key in measured:
                report[key] = dict(measured.pop(key), measured_with_entries=size)
        report["sizes"][str(size)] = measured
        print(f"N={size}: {json.dumps(measured['streams'])}", flush=True)
    from tf_twostage.utils import io_utils  # pylint: disable=import-outside-toplevel

    io_utils.write_json(_OUTPUT.value, report)
    print(format_table(report))
    print(f"wrote {_OUTPUT.value}")
    return 0


if __name__ == "__main__":
    app.run(main)
