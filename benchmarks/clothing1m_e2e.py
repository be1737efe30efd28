#!/usr/bin/env python3
"""The Clothing1M recipe end to end on a generated release tree: Stage 1, selection, Stage 2, fine-tuning and
the SavedModel export at the preset's own batch sizes, with the peak resident memory of the run (issue 17).

  nice -n 5 python benchmarks/clothing1m_e2e.py [--tree=/tmp/clothing1m_e2e] [--num_files=10000] \
      [--num_train=100000] [--num_clean_train=1000] [--num_val=500] [--num_test=500] \
      [--config=configs/paper/clothing1m_clean.py] [--epochs=1] [--micro_batches=1] \
      [--workdir=/tmp/clothing1m_e2e_run] [--output=benchmarks/results/clothing1m_e2e.json]

The tree is `tf_twostage.data.release_tree` (256x256 JPEGs, the release's list files, 14 classes; files repeat
when --num_train exceeds --num_files), written once. The run is one `bin/run_experiment.py` process with the
preset as it is (ResNet-50 at 224x224, its batch sizes, crops, optimizers, the clean-set Stage 1 of
`clothing1m_clean`) except: every stage trains --epochs epoch(s) (Stage 1, the clean-set heads, Stage-2
sub-epochs, the clean fine-tuning), and `model.weights_path` is empty (random initialization: no network here;
the ImageNet loading is the same model with other starting values, so the same memory). The sampler reads the
process's resident set size from /proc every 0.5 s; the JSON has the peak (also `ru_maxrss`), the wall time of
each stage (from results.json) and the steps they took, under `runs["micro_batches=K"]` (`train.micro_batches`:
the batch sizes stay the preset's; each batch is differentiated in K slices). Never part of the test suite.
"""

import datetime
import os
import resource
import shlex
import subprocess
import sys
import threading
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tf_twostage.utils import io_utils  # noqa: E402
from child_env import child_env  # noqa: E402  (benchmarks/)

_TREE = flags.DEFINE_string("tree", "/tmp/clothing1m_e2e", "Folder of the generated release tree.")
_NUM_FILES = flags.DEFINE_integer("num_files", 10_000, "Distinct JPEGs of the tree.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 100_000, "Entries of the noisy training list.")
_NUM_CLEAN = flags.DEFINE_integer("num_clean_train", 1_000, "Entries of the clean training list.")
_NUM_VAL = flags.DEFINE_integer("num_val", 500, "Entries of the clean validation list.")
_NUM_TEST = flags.DEFINE_integer("num_test", 500, "Entries of the clean test list.")
_CONFIG = flags.DEFINE_string("config", "configs/paper/clothing1m_clean.py", "Preset (a Clothing1M one).")
_EPOCHS = flags.DEFINE_integer("epochs", 1, "Epochs of every stage (Stage-2 sub-epochs).")
_MICRO = flags.DEFINE_integer("micro_batches", 1, "train.micro_batches of the run (1: whole batches).")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/clothing1m_e2e_run", "Workdir of the run (removed first).")
_OUTPUT = flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results", "clothing1m_e2e.json"),
                              "JSON results file.")


def rss_of(pid: int) -> int:
    """Resident set size of `pid` in bytes (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_sampled(command: list) -> dict:
    """Runs `command`, sampling its RSS; returns rc, wall seconds, peak RSS and the stderr tail."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    peak = [0]
    timeline = []  # (unix time, RSS bytes), every 0.5 s

    def sample():
        while process.poll() is None:
            rss = rss_of(process.pid)
            peak[0] = max(peak[0], rss)
            timeline.append((time.time(), rss))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    sampler.join()
    return {"returncode": process.returncode, "wall_seconds": time.perf_counter() - started,
            "peak_rss_sampled_bytes": peak[0], "timeline": timeline,
            "peak_rss_children_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
            "stdout_tail": stdout[-2000:], "stderr_tail": stderr[-3000:]}


def stage_peaks(timeline: list, workdir: str) -> dict:
    """Peak RSS between the run's start and each stage's end (manifest.json's `finished` times, in order):
    `stage1` (pre-training and the clean-set scores), `selection`, `training` (Stage 2 and the fine-tuning),
    `export`, `results` (evaluation, report)."""
    path = os.path.join(workdir, "manifest.json")
    if not timeline or not os.path.exists(path):
        return {}
    ends = sorted((datetime.datetime.fromisoformat(stage["finished"]).timestamp(), name)
                  for name, stage in io_utils.read_json(path)["stages"].items())
    peaks, start = {}, timeline[0][0]
    for end, name in ends:
        window = [rss for moment, rss in timeline if start <= moment <= end + 1.0]
        peaks[name] = max(window, default=0)
        start = end
    return peaks


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tf_twostage.data.release_tree import ReleaseTreeSpec, write_release_tree

    spec = ReleaseTreeSpec(num_files=_NUM_FILES.value, num_train=_NUM_TRAIN.value, image_size=(256, 256),
                           num_clean_train=_NUM_CLEAN.value, num_val=_NUM_VAL.value, num_test=_NUM_TEST.value)
    started = time.perf_counter()
    tree = write_release_tree(_TREE.value, spec, keep_existing_images=True)
    tree_seconds = time.perf_counter() - started
    if os.path.exists(_WORKDIR.value):
        import shutil  # pylint: disable=import-outside-toplevel

        shutil.rmtree(_WORKDIR.value)
    epochs = _EPOCHS.value
    overrides = [f"--config.data.dir={_TREE.value}", "--config.model.weights_path=", "--config.verbose=0",
                 f"--config.stage1.epochs={epochs}", f"--config.stage1.clean_epochs={epochs}",
                 f"--config.stage2.epochs={epochs}", f"--config.train.micro_batches={_MICRO.value}"]
    command = [sys.executable, os.path.join(ROOT, "bin", "run_experiment.py"), f"--config={_CONFIG.value}",
               f"--workdir={_WORKDIR.value}", *overrides]
    if "clean" in os.path.basename(_CONFIG.value):
        command.append(f"--config.stage2.finetune_epochs={epochs}")
    print(f"tree: {tree}; running {shlex.join(command)}", flush=True)
    run = run_sampled(command)
    report = {
        "date": datetime.date.today().isoformat(),
        "command": shlex.join(["python", "benchmarks/clothing1m_e2e.py", *sys.argv[1:]]),
        "run_command": shlex.join(command), "tree": tree, "tree_seconds": tree_seconds,
        "machine": {"cpus": os.cpu_count()},
        **{k: v for k, v in run.items() if not k.endswith("_tail") or run["returncode"]},
    }
    report["peak_rss_by_stage_bytes"] = stage_peaks(run.pop("timeline"), _WORKDIR.value)
    report.pop("timeline", None)
    results_path = os.path.join(_WORKDIR.value, "results.json")
    if run["returncode"] == 0 and os.path.exists(results_path):
        results = io_utils.read_json(results_path)
        report["results"] = {key: results.get(key) for key in (
            "dataset", "method", "num_train", "test_accuracy", "wall_seconds", "training_seconds", "export_dir",
            "fallbacks", "batch_size")}
        report["results"]["stage1_kept_fraction"] = (results.get("stage1") or {}).get("kept_fraction")
        report["results"]["history_lengths"] = {stage: len(next(iter(logs.values()), []))
                                                for stage, logs in (results.get("history") or {}).items()}
        report["export_saved_model"] = os.path.exists(os.path.join(results["export_dir"], "saved_model.pb"))
    previous = io_utils.read_json(_OUTPUT.value) if os.path.exists(_OUTPUT.value) else {}
    runs = previous.get("runs", {})
    runs[f"micro_batches={_MICRO.value}"] = report
    io_utils.write_json(_OUTPUT.value, {"runs": runs})
    peak_gib = max(run["peak_rss_sampled_bytes"], run["peak_rss_children_bytes"]) / 2**30
    print(f"exit {run['returncode']} after {run['wall_seconds']:.0f} s; peak RSS {peak_gib:.2f} GiB; "
          f"wrote {_OUTPUT.value}")
    return run["returncode"]


if __name__ == "__main__":
    sys.exit(app.run(main))
