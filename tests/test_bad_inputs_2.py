"""The bad-input catalogue, second pass (issue 19): web-crawled files, every program's mistakes, leaks
between splits, one run per workdir, stage-level reruns.

Every case goes through a real program (`tf_twostage.programs.*`: its flag parsing and its one error
path), run by `tests/program_driver.py`, one process per program so that dozens of cases cost a
handful of TensorFlow imports; each case asserts the exit code, the one `error:` line (its fragments)
and that no traceback was printed. Most fail before any training. One tiny two-stage run on a CSV of
mixed PNG, GIF and BMP files read with data.channels=1 (the mixed-format case must work) is shared by
the cases that need a finished run; it is trained once, in this process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, smoke_config
from tf_twostage.data.image_check import bad_files_named, screen_image_files
from tf_twostage.data.user_data import load_user_data
from tf_twostage.runs.experiment import run_experiment

SIZE = 8
VAL_FRACTION = 0.34  # one image per class held out: a validation set that is never empty


# --- tiny data -------------------------------------------------------------------------------------------


def _image(path: pathlib.Path, seed: int, image_format: Optional[str] = None) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    pixels = np.clip(rng.normal(40 + 170 * (seed % 2), 25, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    image_format = image_format or {".jpg": "JPEG", ".gif": "GIF", ".bmp": "BMP"}.get(path.suffix, "PNG")
    Image.fromarray(pixels).save(path, format=image_format, **({"quality": 95} if image_format == "JPEG" else {}))
    return path


def damage_png(path: pathlib.Path) -> None:
    """100 bytes overwritten in the middle: the file starts and ends like a PNG but does not decode."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle - 50:middle + 50] = bytes(range(100))
    path.write_bytes(bytes(data))


def damage_jpeg(path: pathlib.Path) -> None:
    """Four bytes of the scan data overwritten by an invalid marker: the decode fails, the ends look fine."""
    data = bytearray(path.read_bytes())
    sos = data.index(b"\xff\xda")
    position = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big") + (len(data) - sos) // 3
    data[position:position + 4] = b"\xff\x31\x32\x33"
    path.write_bytes(bytes(data))


_TRAIN = ("a.png,cat", "b.png,dog", "c.png,cat", "d.png,dog", "e.jpg,cat", "f.jpg,dog")
_TEST = ("t0.png,cat", "t1.png,dog")


def csv_data(root: pathlib.Path, train=_TRAIN, test=_TEST, extra_images=()) -> list:
    """Images (8x8, class = brightness) under root/img and train.csv / test.csv; returns the argv."""
    names = {row.split(",")[0] for row in (*train, *test)} | set(extra_images)
    for number, name in enumerate(sorted(names)):
        label_row = next((row for row in (*train, *test) if row.startswith(name + ",")), "x,cat")
        seed = 2 * number + (0 if label_row.endswith("cat") or label_row.endswith(",0") else 1)
        _image(root / "img" / name, seed)
    (root / "train.csv").write_text("".join(f"img/{row}\n" for row in train))
    (root / "test.csv").write_text("".join(f"img/{row}\n" for row in test))
    return _data_argv(root, "csv", "train.csv", "test.csv")


def _data_argv(root, name, train, test, channels=3) -> list:
    return ["--config=configs/smoke.py", f"--config.data.name={name}", f"--config.data.dir={root}",
            f"--config.data.train={train}", f"--config.data.test={test}", "--config.noise.type=none",
            "--config.noise.rate=0", f"--config.data.image_size=({SIZE}, {SIZE})", f"--config.data.channels={channels}",
            f"--config.data.val_fraction={VAL_FRACTION}"]


# The shared run: two_stage on PNG + GIF + BMP files with one channel.
_MIXED_TRAIN = ("a.png,cat", "b.png,dog", "c.gif,cat", "d.gif,dog", "e.bmp,cat", "f.bmp,dog", "g.png,cat",
                "h.png,dog")


def _run_overrides(root) -> dict:
    return {"data.name": "csv", "data.dir": str(root), "data.train": "train.csv", "data.test": "test.csv",
            "noise.type": "none", "noise.rate": 0.0, "data.image_size": (SIZE, SIZE), "data.channels": 1,
            "method": "two_stage", "data.val_fraction": VAL_FRACTION}


def _run_argv(root) -> list:
    return [*_data_argv(root, "csv", "train.csv", "test.csv", channels=1), "--config.method=two_stage"]


# --- the cases ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class World:
    """What the cases use: the shared run and folders made for them."""

    tmp: pathlib.Path
    run_data: pathlib.Path
    run: pathlib.Path

    def folder(self, name: str) -> pathlib.Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def copy_of_run(self, name: str) -> pathlib.Path:
        target = self.tmp / name
        shutil.copytree(self.run, target)
        return target

    @property
    def weights(self) -> pathlib.Path:
        return self.run / "final" / "classifier.weights.h5"

    @property
    def export(self) -> pathlib.Path:
        return self.run / "export" / "csv" / "1"


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    program: str
    argv: Callable[[World], list]  # builds its data, returns the arguments
    fragments: Sequence[str]
    code: int = 2
    after: Optional[Callable[[World, dict], None]] = None  # extra checks on the folders afterwards

    def __str__(self):
        return self.id


_FOLDERS = iter(range(10**6))  # a fresh folder per case: programs run at the same time and lock workdirs


def _with_data(builder, *extra):
    """A run-type case on its own data: argv = data + --workdir + extra."""
    def argv(world):
        root = world.folder(f"data-{builder.__name__}-{next(_FOLDERS)}")
        return [*builder(root), f"--workdir={root / 'w'}", *extra]
    return argv


def _damaged_png(root):
    argv = csv_data(root)
    damage_png(root / "img" / "b.png")
    return argv


def _damaged_jpeg(root):
    argv = csv_data(root)
    damage_jpeg(root / "img" / "e.jpg")
    return argv


def _three_damaged(root):
    argv = csv_data(root)
    damage_png(root / "img" / "a.png")
    damage_png(root / "img" / "d.png")
    damage_jpeg(root / "img" / "f.jpg")
    return argv


def _all_damaged(root):
    argv = csv_data(root, train=("a.png,cat", "b.png,dog"))
    damage_png(root / "img" / "a.png")
    damage_png(root / "img" / "b.png")
    return argv


def _damaged_test_image(root):
    argv = csv_data(root)
    damage_png(root / "img" / "t1.png")
    return argv


def _png_named_jpg(root):
    argv = csv_data(root)
    _image(root / "img" / "e.jpg", 3, "PNG")  # a PNG under a .jpg name decodes: contents decide, not names
    damage_png(root / "img" / "e.jpg")
    return argv


def _duplicate_two_labels(root):
    return csv_data(root, train=(*_TRAIN, "a.png,dog"))


def _test_in_train(root):
    return csv_data(root, train=(*_TRAIN, "t0.png,cat"))


def _clean_in_test(root):
    argv = csv_data(root)
    (root / "clean.csv").write_text("img/t1.png,dog\n")
    return [*argv, "--config.data.clean=clean.csv"]


def _label_only_in_test(root):
    return csv_data(root, train=("a.png,0", "b.png,1", "c.png,0", "d.png,1"), test=("t0.png,0", "t1.png,2"))


def _extra_class_name(root):
    return [*csv_data(root), "--config.data.class_names=('cat', 'dog', 'emu')"]


def _empty_class_folder(root):
    for split, classes in (("train", ("cat", "dog")), ("test", ("cat", "dog"))):
        for number, class_name in enumerate(classes):
            for copy in range(2):
                _image(root / split / class_name / f"{copy}.png", 4 * number + 2 * copy + (split == "test"))
    (root / "train" / "emu").mkdir()
    return _data_argv(root, "folder", "train", "test")


def _skip_damaged(root):
    argv = _damaged_png(root)
    return [*argv, "--config.data.on_bad_file=skip"]


def _lock_held_by_other(world: World, workdir: pathlib.Path) -> pathlib.Path:
    world.holder_dirs.append(str(workdir))
    return workdir


def _busy(program, with_run=True, extra=()):
    def argv(world):
        workdir = world.copy_of_run(f"busy-{program}") if with_run else world.folder(f"busy-{program}")
        _lock_held_by_other(world, workdir)
        return [*_run_argv(world.run_data), f"--workdir={workdir}", *extra]
    return argv


def _stale_lock(world):
    root = world.folder("stale-data")
    argv = _damaged_png(root)
    workdir = world.folder("stale-run")
    (workdir / ".lock").write_text(json.dumps({"pid": 999_999_999, "host": socket.gethostname(),
                                               "started": "2026-01-01T00:00:00+00:00"}))
    return [*argv, f"--workdir={workdir}"]


def _stale_lock_after(world, result):
    assert not (world.tmp / "stale-run" / ".lock").exists()  # taken over, then released


def _temporaries(world):
    workdir = world.copy_of_run("temporaries")
    (workdir / ".tmp-abc").mkdir()
    (workdir / ".tmp-def.json").write_text("{")
    (workdir / "export" / "csv" / ".tmp-xyz").mkdir(parents=True)
    return [*_run_argv(world.run_data), f"--workdir={workdir}", "--config.stage1.epochs=3"]


def _temporaries_after(world, result):
    left = [p for p in (world.tmp / "temporaries").rglob(".tmp-*")]
    assert not left, left


def _truncated(name):
    def argv(world):
        workdir = world.copy_of_run(f"truncated-{name.replace('/', '-')}")
        path = workdir / name
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        return [*_run_argv(world.run_data), f"--workdir={workdir}"]
    return argv


def _on_run(*extra, copy: Optional[str] = None):
    """A case on a copy of the shared run (the programs that write lock it; they run at the same time)."""
    def argv(world):
        workdir = world.copy_of_run(copy or f"run-copy-{next(_FOLDERS)}")
        return [*_run_argv(world.run_data), f"--workdir={workdir}", *extra]
    return argv


def _garbage_weights(world):
    path = world.folder("weights") / "garbage.weights.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    return str(path)


def _truncated_weights(world):
    path = world.folder("weights") / "truncated.weights.h5"
    data = world.weights.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def _broken_saved_model(world):
    target = world.tmp / "broken_export" / "csv" / "1"
    if not target.exists():
        shutil.copytree(world.export, target)
        (target / "saved_model.pb").write_bytes(b"\x08\x01garbage" * 10)
    return str(target)


def _a_file(world, name="a_file.txt"):
    path = world.folder("files") / name
    path.write_text("not a folder")
    return str(path)


def _stage1_reused_after(world, result):
    workdir = world.tmp / "rethreshold"
    manifest = json.loads((workdir / "manifest.json").read_text())
    before = json.loads((world.run / "manifest.json").read_text())
    assert manifest["stages"]["stage1"] == before["stages"]["stage1"]  # Stage 1 was not run again
    assert json.loads((workdir / "config.json").read_text())["stage1"]["threshold"] == 0.5
    assert os.path.getmtime(workdir / "stage1" / "predictions.npz") == os.path.getmtime(
        world.run / "stage1" / "predictions.npz")


_RUN = "run_experiment"
CASES = [
    # Damaged files in the middle (they pass the header/end check) and mixed formats.
    Case("png-damaged-mid-file", _RUN, _with_data(_damaged_png),
         ["1 of 6 image files of data.train", "b.png' is not decodable (Invalid PNG data", "data.on_bad_file=skip"]),
    Case("jpeg-scan-data-damaged", _RUN, _with_data(_damaged_jpeg),
         ["e.jpg' is not decodable (jpeg::Uncompress failed", "data.on_bad_file=skip"]),
    Case("every-bad-file-listed", _RUN, _with_data(_three_damaged),
         ["3 of 6 image files of data.train", "a.png' is not decodable", "d.png' is not decodable",
          "f.jpg' is not decodable"]),
    Case("damaged-test-image", _RUN, _with_data(_damaged_test_image),
         ["1 of 2 image files of data.test", "t1.png' is not decodable"]),
    Case("png-under-jpg-name-damaged", _RUN, _with_data(_png_named_jpg), ["e.jpg' is not decodable (Invalid PNG"]),
    Case("skip-with-every-file-bad", _RUN, _with_data(_all_damaged, "--config.data.on_bad_file=skip"),
         ["data.train 'train.csv': none of its 2 images is usable"]),
    Case("train-stage1-damaged-file", "train_stage1", _with_data(_damaged_png),
         ["b.png' is not decodable", "data.on_bad_file=skip"]),
    Case("skip-trains-to-the-end-and-counts", _RUN, _with_data(_skip_damaged, "--config.method=ce"),
         ["data check: skipped 1 of 6 image files of data.train (data.on_bad_file=skip)"], code=0),
    # Hygiene: duplicates, leaks, classes without training images.
    Case("same-image-two-labels", _RUN, _with_data(_duplicate_two_labels),
         ["data.train: 1 files listed more than once with different labels", "a.png' as 'cat'", "a.png' as 'dog'",
          "give each image one label"]),
    Case("test-image-in-training-list", _RUN, _with_data(_test_in_train),
         ["1 image files are both in data.train and data.test (a leak between splits)", "t0.png'"]),
    Case("clean-image-in-test", _RUN, _with_data(_clean_in_test),
         ["both in data.clean and data.test"]),
    Case("label-only-in-test", _RUN, _with_data(_label_only_in_test),
         ["1 of 3 classes have no training images (its labels occur only in the test split): '2' (1 test images)"]),
    Case("class-name-without-images", _RUN, _with_data(_extra_class_name),
         ["1 of 3 classes have no training images: 'emu'", "data.class_names"]),
    Case("empty-class-folder", _RUN, _with_data(_empty_class_folder),
         ["1 of 3 classes have no training images: 'emu'"]),
    Case("train-stage1-class-without-images", "train_stage1", _with_data(_extra_class_name),
         ["have no training images: 'emu'"]),
    # Workdirs: preconditions, the lock, leftovers.
    Case("workdir-is-a-file", _RUN, lambda w: [*_run_argv(w.run_data), f"--workdir={_a_file(w)}"],
         ["is an existing file, not a folder"]),
    Case("workdir-empty", _RUN, lambda w: [*_run_argv(w.run_data), "--workdir="],
         ["the workdir must name a folder to write the run into, got ''"]),
    Case("workdir-below-a-file", _RUN, lambda w: [*_run_argv(w.run_data), f"--workdir={_a_file(w)}/run"],
         ["cannot create the workdir", "Not a directory"]),
    Case("train-stage1-workdir-is-a-file", "train_stage1",
         lambda w: [*_run_argv(w.run_data), f"--workdir={_a_file(w, 'b.txt')}"], ["is an existing file"]),
    Case("workdir-in-use", _RUN, _busy("run"), ["is in use by another run (pid ", f"on host {socket.gethostname()}",
                                                  "use another --workdir"]),
    Case("train-stage1-workdir-in-use", "train_stage1", _busy("stage1"), ["is in use by another run (pid "]),
    Case("select-labels-workdir-in-use", "select_labels", _busy("select"), ["is in use by another run (pid "]),
    Case("export-workdir-in-use", "export", _busy("export"), ["is in use by another run (pid "]),
    Case("stale-lock-is-taken-over", _RUN, _stale_lock, ["b.png' is not decodable"], after=_stale_lock_after),
    Case("temporaries-removed-on-the-next-run", _RUN, _temporaries,
         ["stage1.epochs: 1 in the workdir, 3 now", "--restart"], after=_temporaries_after),
    # Reusing a run: configs that do not match, damaged artifacts.
    Case("stage1-key-changed", _RUN, _on_run("--config.stage1.epochs=2"),
         ["holds a run with a different config: stage1.epochs: 1 in the workdir, 2 now", "pass --restart"]),
    Case("select-labels-stage1-key-changed", "select_labels", _on_run("--config.seed=3"),
         ["seed: 0 in the workdir, 3 now", "bin/train_stage1.py --restart"]),
    Case("select-labels-new-threshold-reuses-stage1", "select_labels",
         _on_run("--config.stage1.threshold=0.5", copy="rethreshold"), ['"kept_fraction"'], code=0,
         after=_stage1_reused_after),
    Case("truncated-manifest", _RUN, _truncated("manifest.json"), ["manifest.json is damaged", "--restart"]),
    Case("truncated-config-json", _RUN, _truncated("config.json"), ["config.json cannot be read", "--restart"]),
    Case("export-model-config-differs", "export", _on_run("--config.model.hidden_units=(32,)"),
         ["does not match the run", "model.hidden_units: [16] in the run, [32] given"]),
    Case("export-seed-differs", "export", _on_run("--config.seed=1"), ["seed: 0 in the run, 1 given"]),
    Case("export-noise-differs", "export", _on_run("--config.noise.type=symmetric", "--config.noise.rate=0.2"),
         ["noise.rate: 0.0 in the run, 0.2 given", "noise.type: 'none' in the run, 'symmetric' given"]),
    Case("export-garbage-weights", "export", lambda w: [*_on_run()(w), f"--weights={_garbage_weights(w)}"],
         ["cannot load the classifier weights", "garbage.weights.h5", "The file is damaged"]),
    Case("export-truncated-weights", "export", lambda w: [*_on_run()(w), f"--weights={_truncated_weights(w)}"],
         ["cannot load the classifier weights", "truncated.weights.h5"]),
    Case("export-empty-workdir", "export", lambda w: [*_run_argv(w.run_data), "--workdir="],
         ["workdir must name a run's folder, got ''"]),
    Case("export-workdir-without-run", "export",
         lambda w: [*_run_argv(w.run_data), f"--workdir={w.folder('no_run')}"],
         ["no classifier weights in", "train first"]),
    Case("export-truncated-config-json", "export",
         lambda w: [*_run_argv(w.run_data), f"--workdir={_truncated_config_copy(w, 'export-truncated')}"],
         ["cannot be read as a run's config", "config.json"]),
    Case("export-bad-model-name", "export", _on_run("--model_name=../elsewhere"),
         ["model_name must be a plain folder name, got '../elsewhere'"]),
    # Evaluate, predict, report: outputs, damaged models, unknown keys.
    Case("evaluate-unknown-config-key", "evaluate", _on_run("--config.model.nosuch=1"), ["'model.nosuch'"]),
    Case("evaluate-model-config-differs", "evaluate", _on_run("--config.model.hidden_units=(32,)"),
         ["model.hidden_units: [16] in the run, [32] given", "--config.data.dir"]),
    Case("evaluate-output-is-a-folder", "evaluate", lambda w: [f"--workdir={w.run}", f"--output={w.folder('out')}"],
         ["is an existing folder; name a file"]),
    Case("evaluate-output-below-a-file", "evaluate",
         lambda w: [f"--workdir={w.run}", f"--output={_a_file(w, 'c.txt')}/x.json"], ["cannot be created"]),
    Case("evaluate-garbage-weights", "evaluate",
         lambda w: [f"--workdir={w.run}", f"--weights={_garbage_weights(w)}"], ["cannot load the classifier weights"]),
    Case("evaluate-damaged-saved-model", "evaluate",
         lambda w: [f"--workdir={w.run}", f"--saved_model={_broken_saved_model(w)}"],
         ["cannot load the SavedModel", "export it again"]),
    Case("evaluate-empty-workdir", "evaluate", lambda w: ["--workdir="], ["workdir must name a run's folder"]),
    Case("evaluate-truncated-config-json", "evaluate",
         lambda w: [f"--workdir={_truncated_config_copy(w, 'evaluate-truncated')}"],
         ["cannot be read as a run's config", "config.json"]),
    Case("predict-output-is-a-folder", "predict",
         lambda w: [f"--saved_model={w.export}", f"--output={w.folder('pred_out')}", str(w.run_data / "img")],
         ["is an existing folder; name a file"]),
    Case("predict-damaged-saved-model", "predict",
         lambda w: [f"--saved_model={_broken_saved_model(w)}", str(w.run_data / "img")], ["cannot load the SavedModel"]),
    Case("predict-output-below-a-file", "predict",
         lambda w: [f"--saved_model={w.export}", f"--output={_a_file(w, 'd.txt')}/p.csv", str(w.run_data / "img")],
         ["cannot be created"]),
    Case("report-output-is-a-file", "report", lambda w: [f"--output={_a_file(w, 'e.txt')}", str(w.run)],
         ["is an existing file; name a folder"]),
    Case("report-output-empty", "report", lambda w: ["--output=", str(w.run)], ["output must name a folder"]),
]


def _truncated_config_copy(world, name) -> pathlib.Path:
    workdir = world.copy_of_run(name)
    path = workdir / "config.json"
    path.write_bytes(path.read_bytes()[:40])
    return workdir


# --- running them ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    tmp = tmp_path_factory.mktemp("catalogue2")
    run_data = tmp / "run_data"
    csv_data(run_data, train=_MIXED_TRAIN)
    run = tmp / "run"
    run_experiment(smoke_config(**_run_overrides(run_data)), str(run))
    return World(tmp=tmp, run_data=run_data, run=run)


@pytest.fixture(scope="module")
def outcomes(world):
    world.holder_dirs = []
    by_program = {}
    argvs = {}
    for case in CASES:
        argvs[case.id] = case.argv(world)
        by_program.setdefault(case.program, []).append({"id": case.id, "argv": argvs[case.id]})
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom tf_twostage.utils import workdir_lock\n"
         "for path in sys.argv[1:]:\n    workdir_lock.acquire(path)\nprint('held', flush=True)\ntime.sleep(600)",
         *world.holder_dirs], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        processes = {}
        for program, cases in by_program.items():
            cases_path, results_path = world.tmp / f"{program}.cases.json", world.tmp / f"{program}.results.json"
            cases_path.write_text(json.dumps(cases))
            processes[program] = (subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "tests", "program_driver.py"), program, str(cases_path),
                 str(results_path)], cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), results_path)
        results = {}
        for program, (process, results_path) in processes.items():
            _, stderr = process.communicate(timeout=900)
            assert process.returncode == 0, stderr[-3000:]
            results.update({result["id"]: result for result in json.loads(results_path.read_text())})
    finally:
        holder.kill()
        holder.wait()
    return results


def test_the_catalogue_has_at_least_40_cases_with_unique_ids():
    ids = [case.id for case in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_program_case(case, world, outcomes):
    result = outcomes[case.id]
    output = result["stderr"] + result["stdout"]
    assert result["code"] == case.code, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result["stderr"].splitlines() if line.startswith("error: ")]
    if case.code == 2:
        assert len(errors) == 1, result["stderr"][-3000:]
        assert "unexpected" not in errors[0]
        text = errors[0]
    else:
        assert not errors, errors
        text = result["stdout"]
    for fragment in case.fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    if case.after:
        case.after(world, result)


# --- library-level checks that the programs rely on --------------------------------------------------------


def test_mixed_gif_bmp_png_folder_decodes_with_one_channel(world):
    splits = load_user_data("csv", str(world.run_data), train="train.csv", test="test.csv",
                            image_size=(SIZE, SIZE), channels=1)
    images = [example["image"] for example in splits.train.to_dataset().as_numpy_iterator()]
    assert len(images) == len(_MIXED_TRAIN) and {image.shape for image in images} == {(SIZE, SIZE, 1)}
    results = json.loads((world.run / "results.json").read_text())
    assert results["method"] == "two_stage" and results["data_checks"] == []


def test_skipped_files_are_counted_in_results_json(world, outcomes):
    results = json.loads(next(world.tmp.glob("data-_skip_damaged-*/w/results.json")).read_text())
    (check,) = [check for check in results["data_checks"] if check["check"] == "bad_files"]
    assert check["count"] == 1 and check["total"] == 6 and check["examples"][0]["path"].endswith("b.png")
    assert results["num_train"] + results["num_validation"] == 5


def test_a_file_damaged_after_the_check_is_named_by_the_stream(tmp_path):
    csv_data(tmp_path)
    splits = load_user_data("csv", str(tmp_path), train="train.csv", test="test.csv", image_size=(SIZE, SIZE))
    damage_png(tmp_path / "img" / "c.png")
    with pytest.raises(ValueError, match=r"1 image files changed after the load-time check.*c\.png' is not decodable"):
        with bad_files_named([splits.train, splits.test]):
            list(splits.train.to_dataset().as_numpy_iterator())


def test_duplicate_contents_are_warnings_recorded_with_examples(tmp_path):
    csv_data(tmp_path, train=(*_TRAIN, "a2.png,cat"), test=(*_TEST, "t2.png,dog"))
    shutil.copy(tmp_path / "img" / "a.png", tmp_path / "img" / "a2.png")
    shutil.copy(tmp_path / "img" / "b.png", tmp_path / "img" / "t2.png")
    splits = load_user_data("csv", str(tmp_path), train="train.csv", test="test.csv", image_size=(SIZE, SIZE))
    checks = {check["check"]: check for check in splits.checks}
    assert checks["duplicate_content"]["level"] == "warning" and checks["duplicate_content"]["count"] == 1
    assert checks["content_in_two_splits"]["count"] == 1 and "t2.png" in checks["content_in_two_splits"]["message"]


def test_the_screening_decodes_what_the_header_check_passes(tmp_path):
    good, jpeg = _image(tmp_path / "good.png", 0), _image(tmp_path / "scan.jpg", 1)
    damage_jpeg(jpeg)
    screening = screen_image_files([good, jpeg, tmp_path / "missing.png"], 3)
    assert screening.problems[0] is None and screening.fingerprints[0] != 0
    assert screening.problems[1].startswith("not decodable (") and screening.problems[2] == "missing"


def test_the_screening_decodes_a_repeated_path_once_and_answers_for_every_listing(tmp_path, monkeypatch):
    from tf_twostage.data import image_check

    good, jpeg = _image(tmp_path / "good.png", 0), _image(tmp_path / "scan.jpg", 1)
    damage_jpeg(jpeg)
    decoded = []
    real_pass = image_check._decode_pass  # pylint: disable=protected-access

    def counting_pass(paths, channels):
        decoded.extend(paths)
        return real_pass(paths, channels)

    monkeypatch.setattr(image_check, "_decode_pass", counting_pass)
    screening = screen_image_files([good, jpeg, good, good, jpeg], 3)
    assert sorted(decoded) == sorted([str(good), str(jpeg)])
    assert [problem is None for problem in screening.problems] == [True, False, True, True, False]
    assert screening.fingerprints[0] == screening.fingerprints[2] == screening.fingerprints[3] != 0


def test_two_runs_on_one_workdir_one_stops_at_once(world, tmp_path):
    """Two real processes on one workdir: the second stops within seconds with the holder named."""
    command = [sys.executable, os.path.join(ROOT, "bin", "run_experiment.py"), *_run_argv(world.run_data),
               f"--workdir={tmp_path / 'shared'}", "--config.stage1.epochs=3"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "shared" / ".lock").exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    assert second.returncode == 2, second.stderr[-3000:]
    assert "is in use by another run (pid " in second.stderr and "Traceback" not in second.stderr
    assert json.loads((tmp_path / "shared" / "results.json").read_text())["method"] == "two_stage"
    assert sorted(os.listdir(tmp_path / "shared" / "export" / "csv")) == ["1"]  # one export, not two
