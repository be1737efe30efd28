"""A catalogue of bad inputs through the real entry points (issue 8).

Each case provokes one bad input and expects a clear error: one paragraph that names the bad value and
what is allowed (both checked as text), and no torn or partial artifact (`results.json`, selections,
weights, exports, `.tmp-*` files) in the run's workdir. Most cases call the library in process (the
runner's `run_experiment`, the data loaders, the pure checks); a handful run the `bin/` programs as
subprocesses (exit code 2, `error:` on stderr), started together so that their TensorFlow imports
overlap. A last group checks that no code path can unpickle data.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import os
import pathlib
import subprocess
import sys
from typing import Callable, Sequence

import numpy as np
import pytest
from PIL import Image

from tf_twostage.utils import io_utils
from tf_twostage.config import load_run_config
from tf_twostage.config.checks import check_override_keys
from tf_twostage.data.clothing1m import load_clothing1m
from tf_twostage.data.noise import add_label_noise, load_matrix_file
from tf_twostage.data.preprocess import Preprocessor
from tf_twostage.data.source import DatasetSplits, ImageSplit
from tf_twostage.data.user_data import load_user_data
from tf_twostage.training.distribution import check_global_batch_size
from tf_twostage.runs.experiment import run_experiment
from tf_twostage.runs.stage1 import weights_path
from tf_twostage.stage1.selection import check_every_class_kept, select_confident_labels
from tests.conftest import ROOT, smoke_config as _smoke_config

SIZE = 8  # side of every test image


# --- tiny data on disk ------------------------------------------------------------------------------


def _image(path: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """Writes a small real image (PNG, or JPEG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.RandomState(seed).randint(0, 256, (SIZE, SIZE, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG" if path.suffix == ".jpg" else "PNG")
    return path


def _truncate(path: pathlib.Path, keep: int = 0) -> None:
    """Cuts an image file (in the middle, or after `keep` bytes; negative: drops the last bytes): it still
    starts like an image but cannot be decoded."""
    data = path.read_bytes()
    path.write_bytes(data[: keep or len(data) // 2])


def _csv_data(root: pathlib.Path, train_rows: Sequence[str], test_rows=("img/t0.png,cat", "img/t1.png,dog"),
              images=("a.png", "b.png", "c.png", "t0.png", "t1.png")) -> dict:
    for number, name in enumerate(images):
        _image(root / "img" / name, number)
    (root / "train.csv").write_text("".join(f"{row}\n" for row in train_rows))
    (root / "test.csv").write_text("".join(f"{row}\n" for row in test_rows))
    return {"data.name": "csv", "data.dir": str(root), "data.train": "train.csv", "data.test": "test.csv"}


def _folder_data(root: pathlib.Path, train=None, test=None) -> dict:
    train = {"cat": ["a.png", "b.png"], "dog": ["c.png", "d.png"]} if train is None else train
    test = {"cat": ["e.png"], "dog": ["f.png"]} if test is None else test
    for split, classes in (("train", train), ("test", test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for class_name, files in classes.items():
            (root / split / class_name).mkdir(exist_ok=True)
            for number, name in enumerate(files):
                _image(root / split / class_name / name, number)
    return {"data.name": "folder", "data.dir": str(root), "data.train": "train", "data.test": "test"}


_CLOTHING_KEYS = {  # key list -> (key, label) rows; labels in 0..13
    "noisy_train_key_list.txt": [("images/0/a.png", 1), ("images/0/b.png", 4), ("images/0/c.png", 9)],
    "clean_train_key_list.txt": [("images/1/d.png", 2)],
    "clean_val_key_list.txt": [("images/2/e.png", 3)],
    "clean_test_key_list.txt": [("images/3/f.png", 5), ("images/3/g.png", 7)],
}


def _clothing1m(root: pathlib.Path) -> pathlib.Path:
    """A Clothing1M release layout with 7 tiny images."""
    noisy, clean = [], []
    for number, (key_list, rows) in enumerate(_CLOTHING_KEYS.items()):
        (root / key_list).parent.mkdir(parents=True, exist_ok=True)
        (root / key_list).write_text("".join(f"{key}\n" for key, _ in rows))
        for key, label in rows:
            _image(root / key, number)
            (noisy if key_list.startswith("noisy") else clean).append(f"{key} {label}\n")
    (root / "noisy_label_kv.txt").write_text("".join(noisy))
    (root / "clean_label_kv.txt").write_text("".join(clean))
    return root


def _user_config(overrides: dict):
    """The smoke preset on a user's tiny folder / CSV data (no synthetic noise, 8x8 images)."""
    return _smoke_config(**{"noise.type": "none", "noise.rate": 0.0, "data.image_size": (SIZE, SIZE), **overrides})


# --- the catalogue ----------------------------------------------------------------------------------


class Context:
    """What a case may use: a fresh folder, the workdir to check, and the 2-replica strategy."""

    def __init__(self, tmp_path: pathlib.Path, request):
        self.tmp = tmp_path
        self.data = tmp_path / "data"
        self.workdir = tmp_path / "run"
        self._request = request

    @property
    def strategy(self):
        return self._request.getfixturevalue("mirrored_strategy")


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    provoke: Callable[[Context], object]  # must raise `error`
    fragments: Sequence[str]  # the bad value, and what is allowed, as the message writes them
    error: type = ValueError
    writes_nothing: bool = False  # refused before the workdir is even created

    def __str__(self):
        return self.id


def _config_case(key: str, value, *fragments: str) -> Case:
    """A bad config value, through the runner: it must fail before the workdir is even created."""
    def provoke(ctx):
        run_experiment(_smoke_config(**{key: value}), str(ctx.workdir))
    return Case(f"config-{key}={value!r}", provoke, (f"{key} must", *fragments), writes_nothing=True)


def _user_run(case_id: str, build: Callable[[pathlib.Path], dict], *fragments: str, **extra) -> Case:
    """Bad user data (folder / CSV), through the runner."""
    def provoke(ctx):
        overrides = build(ctx.data)
        run_experiment(_user_config({**overrides, **extra}), str(ctx.workdir))
    return Case(case_id, provoke, fragments)


def _csv_rows(*rows):
    return lambda root: _csv_data(root, rows)


def _csv_path_outside(root):
    _image(root.parent / "outside.png")
    return _csv_data(root, ["img/a.png,cat", "../outside.png,dog"])


def _csv_absolute_outside(root):
    outside = _image(root.parent / "outside.png")
    return _csv_data(root, ["img/a.png,cat", f"{outside},dog"])


def _empty_folder(root):
    overrides = _folder_data(root)
    (root / "empty").mkdir()
    return {**overrides, "data.train": "empty"}


def _empty_csv(root):
    return _csv_data(root, [])


def _single_class_folder(root):
    return _folder_data(root, train={"cat": ["a.png", "b.png"]}, test={"cat": ["e.png"]})


def _csv_bad_files(root):
    overrides = _csv_data(root, ["img/a_cut.png,cat", "img/b.png,dog", "img/c.png,cat", "img/gone.png,dog",
                                 "img/notes.png,dog"], images=("a_cut.png", "b.png", "c.png", "t0.png", "t1.png"))
    _truncate(root / "img" / "a_cut.png")
    (root / "img" / "notes.png").write_text("<html>404 not found</html>")
    return overrides


def _folder_bad_files(root):
    overrides = _folder_data(root, train={"cat": ["a_cut.jpg", "b.png"], "dog": ["c.png", "d.png", "e.png"]})
    _truncate(root / "train" / "cat" / "a_cut.jpg", keep=-20)  # the image data without its end
    (root / "train" / "dog" / "d.png").write_bytes(b"")
    (root / "train" / "dog" / "e.png").write_bytes(b"GIF89a")  # a header and nothing else
    return overrides


def _load_folder_bad_files(ctx):
    _folder_bad_files(ctx.data)
    load_user_data("folder", str(ctx.data), train="train", test="test", image_size=(SIZE, SIZE))


def _clothing_bad_files(root):
    _clothing1m(root)
    (root / "images/0/a.png").write_text("<html>404 not found</html>")
    _truncate(root / "images/0/b.png")
    (root / "images/3/g.png").unlink()
    return root


def _clothing_key_outside(root):
    _clothing1m(root)
    _image(root.parent / "outside.png")
    (root / "clean_test_key_list.txt").write_text("images/3/f.png\n../outside.png\n")
    with open(root / "clean_label_kv.txt", "a") as file:
        file.write("../outside.png 3\n")
    return root


def _clothing_empty_train(root):
    _clothing1m(root)
    (root / "noisy_train_key_list.txt").write_text("\n")
    return root


def _folder_symlink_outside(ctx):
    _folder_data(ctx.data)
    outside = _image(ctx.tmp / "secret.png")
    (ctx.data / "train" / "cat" / "link.png").symlink_to(outside)
    load_user_data("folder", str(ctx.data), train="train", test="test", image_size=(SIZE, SIZE))


def _split(labels=(0, 1, 2), images=None, image_shape=(SIZE, SIZE, 1), index=None, num_classes=3):
    images = np.zeros((len(labels), *image_shape), np.uint8) if images is None else images
    return ImageSplit(labels=np.asarray(labels), index=np.arange(len(labels)) if index is None else index,
                      num_classes=num_classes, image_shape=image_shape, images=images)


def _pixels_with(value, where=(1, 2, 3, 0)):
    images = np.full((3, SIZE, SIZE, 1), 0.5, np.float32)
    images[where] = value
    return images


def _mismatched_splits(ctx):
    train = _split()
    test = _split(images=np.zeros((3, 4, 4, 1), np.uint8), image_shape=(4, 4, 1))
    DatasetSplits(name="mine", class_names=("a", "b", "c"), train=train, test=test)


def _class_left_empty(ctx):
    probabilities = np.full((6, 3), 1.0 / 3.0)
    probabilities[0] = [1.0, 0.0, 0.0]  # only this example is certain: threshold 1.0 keeps it alone
    labels = np.array([0, 0, 1, 1, 2, 2])
    kept = select_confident_labels(probabilities, labels, threshold=1.0, floor_fraction=0.0)
    check_every_class_kept(kept, labels, 3, ("cat", "dog", "emu"))


def _class_without_labels(ctx):
    check_every_class_kept(np.ones(4, bool), np.array([0, 0, 1, 1]), 3, ("cat", "dog", "emu"))


def _object_matrix_file(ctx):
    path = ctx.tmp / "matrix.npy"
    np.save(path, np.array([[1.0, 0.0], [0.0, 1.0]], dtype=object), allow_pickle=True)
    load_matrix_file(path, 2)


NAN, INF = float("nan"), float("inf")

CASES = [
    # Unknown names.
    _config_case("method", "magic", "got 'magic'", "one of ce, two_stage, improved_baseline"),
    _config_case("data.name", "imagenet", "got 'imagenet'",
                 "one of mnist5k, mnist, cifar10, clothing1m, folder, csv"),
    _config_case("noise.type", "gaussian", "got 'gaussian'",
                 "one of none, symmetric, uniform, asymmetric, matrix"),
    _config_case("model.name", "vgg16", "got 'vgg16'", "one of mlp, resnet14, resnet50"),
    _config_case("stage2.algorithm", "mixmatch", "got 'mixmatch'", "one of pi, temporal_ensembling"),
    _config_case("stage1.optimizer", "rmsprop", "got 'rmsprop'", "one of adagrad, sgd, adam"),
    _config_case("stage1.ranking", "median", "got 'median'", "one of best, average, kfold"),
    _config_case("stage1.loss", "mae", "got 'mae'", "one of cross_entropy, gce"),
    _config_case("stage1.rule", "oracle", "got 'oracle'", "one of auto, confidence, clean_set"),
    _config_case("stage1.top_up", "all", "got 'all'", "one of class, agreeing"),
    _config_case("baselines.transition", "guess", "got 'guess'", "one of estimated, true"),
    _config_case("distribution.strategy", "tpu", "got 'tpu'", "one of auto, none, mirrored, multi_worker"),
    _config_case("data.on_bad_file", "ignore", "got 'ignore'", "one of error, skip"),
    _config_case("verbose", 3, "got 3", "one of 0, 1, 2"),
    _config_case("train.dtype_policy", "float16", "got 'float16'", "one of float32, mixed_float16, mixed_bfloat16"),
    # Values out of range.
    _config_case("noise.rate", 1.5, "got 1.5", "in [0, 1]"),
    _config_case("noise.rate", -0.2, "got -0.2", "in [0, 1]"),
    _config_case("noise.rate", NAN, "got nan", "in [0, 1]"),
    _config_case("noise.mapping", "2=>7", "'2=>7'", "look like '2->7,3->8'"),
    _config_case("seed", -1, "got -1", "integer >= 0"),
    _config_case("batch_size", 0, "got 0", "integer >= 1"),
    _config_case("train.eval_batch_size", -4, "got -4", "integer >= 0"),
    _config_case("data.val_fraction", 1.0, "got 1.0", "in [0, 0.99]"),
    _config_case("data.image_size", (0, 224), "got (0, 224)", "two integers >= 1 (height, width)"),
    _config_case("data.channels", 2, "got 2", "one of 1, 3"),
    _config_case("data.class_names", ("cat", "cat"), "got ('cat', 'cat')", "distinct non-empty strings"),
    _config_case("augment.translate_px", -2, "got -2", "integer >= 0"),
    _config_case("model.dropout", 1.0, "got 1.0", "in [0, 0.99]"),
    _config_case("model.hidden_units", (16, 0), "got (16, 0)", "one or more integers >= 1"),
    _config_case("model.input_noise", -0.1, "got -0.1", "finite number >= 0"),
    _config_case("model.top_noise", INF, "got inf", "finite number >= 0"),
    _config_case("model.weight_decay", -1e-4, "got -0.0001", "finite number >= 0"),
    _config_case("stage1.epochs", 0, "got 0", "integer >= 1"),
    _config_case("stage1.learning_rate", 0.0, "got 0.0", "finite number > 0"),
    _config_case("stage1.momentum", 1.5, "got 1.5", "in [0, 0.999]"),
    _config_case("stage1.lr_patience", -1, "got -1", "integer >= 0"),
    _config_case("stage1.lr_factor", 1.0, "got 1.0", "in [0.001, 0.999]"),
    _config_case("stage1.min_lr", -1e-7, "got -1e-07", "finite number >= 0"),
    _config_case("stage1.average_last", 0, "got 0", "integer >= 1"),
    _config_case("stage1.kfold", 1, "got 1", "integer >= 2"),
    _config_case("stage1.threshold", 1.5, "got 1.5", "in [0, 1]"),
    _config_case("stage1.gce_q", 0.0, "got 0.0", "in (0, 1]"),
    _config_case("stage1.floor_fraction", -0.1, "got -0.1", "in [0, 1]"),
    _config_case("stage1.clean_threshold", 1.1, "got 1.1", "in [0, 1]"),
    _config_case("stage1.small_loss_probability", -0.5, "got -0.5", "in [0, 1]"),
    _config_case("stage1.transition", "oracle", "got 'oracle'", "one of anchors, clusters"),
    _config_case("stage1.clean_epochs", 0, "got 0", "integer >= 1"),
    _config_case("stage1.clean_batch_size", 0, "got 0", "integer >= 1"),
    _config_case("stage2.epochs", 0, "got 0", "integer >= 1"),
    _config_case("stage2.batch_size", 0, "got 0", "even integer >= 2"),
    _config_case("stage2.batch_size", 101, "got 101", "even integer >= 2 (half labeled, half unlabeled)"),
    _config_case("stage2.learning_rate", -0.003, "got -0.003", "finite number > 0"),
    _config_case("stage2.rampup_epochs", -1, "got -1", "integer >= 0"),
    _config_case("stage2.rampdown_epochs", -1, "got -1", "integer >= 0"),
    _config_case("stage2.max_weight_pi", -1.0, "got -1.0", "finite number >= 0"),
    _config_case("stage2.max_weight_te", NAN, "got nan", "finite number >= 0"),
    _config_case("stage2.fixed_weight", -100.0, "got -100.0", "finite number >= 0"),
    _config_case("stage2.ensemble_momentum", 1.0, "got 1.0", "in [0, 0.999]"),
    _config_case("stage2.input_noise", -0.15, "got -0.15", "finite number >= 0"),
    _config_case("stage2.top_noise", -1.0, "got -1.0", "finite number >= 0"),
    _config_case("stage2.translate_px", -1, "got -1", "integer >= 0"),
    _config_case("stage2.finetune_epochs", -1, "got -1", "integer >= 0"),
    _config_case("stage2.finetune_learning_rate", 0.0, "got 0.0", "finite number > 0"),
    _config_case("baselines.filter_percentile", 101.0, "got 101.0", "in [0, 100]"),
    _config_case("baselines.beta_soft", 1.5, "got 1.5", "in [0, 1]"),
    _config_case("baselines.beta_hard", -0.2, "got -0.2", "in [0, 1]"),
    Case("config-rate-without-noise-type",
         lambda ctx: run_experiment(_smoke_config(**{"noise.type": "none", "noise.rate": 0.2}), str(ctx.workdir)),
         ("noise.rate is 0.2", "set the rate to 0"), writes_nothing=True),
    # Only the data know the class count: checked after loading (on a user's 2-class CSV data).
    _user_run("noise-mapping-class-out-of-range", _csv_rows("img/a.png,cat", "img/b.png,dog"),
              "class 5", "outside [0, 2)",
              **{"noise.type": "asymmetric", "noise.rate": 0.2, "noise.mapping": "0->5"}),
    _user_run("noise-matrix-file-missing", _csv_rows("img/a.png,cat", "img/b.png,dog"),
              "'nope.npy' does not exist", ".npy, .csv or .txt",
              **{"noise.type": "matrix", "noise.matrix_file": "nope.npy"}),
    Case("config-non-integer-epochs",  # refused by the locked ConfigDict's types already
         lambda ctx: _smoke_config(**{"stage1.epochs": 1.5}), ("'epochs'", "1.5", "int"), TypeError),
    # Unknown config keys (as the programs see them on the command line).
    Case("override-unknown-top-level-key",
         lambda ctx: check_override_keys(["prog", "--config=configs/smoke.py", "--config.nosuch=1"]),
         ("'nosuch'", "the config has the keys augment, baselines, batch_size")),
    Case("override-unknown-stage1-key",
         lambda ctx: check_override_keys(["prog", "--config=configs/smoke.py", "--config.stage1.nosuch=1"]),
         ("'stage1.nosuch'", "stage1 has the keys average_last", "threshold")),
    # Batch sizes under 2 replicas (the MirroredStrategy over 2 logical CPUs).
    Case("batch-size-not-divisible-by-replicas", lambda ctx: check_global_batch_size(3, ctx.strategy),
         ("got 3", "multiple of the replica count (2 with 2 replicas)")),
    Case("stage2-batch-size-not-divisible-into-halves",
         lambda ctx: check_global_batch_size(6, ctx.strategy, halves=True),
         ("got 6", "multiple of 2 x the replica count (4 with 2 replicas)")),
    Case("micro-batches-more-than-a-replicas-share",
         lambda ctx: check_global_batch_size(8, ctx.strategy, halves=True, key="stage2.batch_size", micro_batches=5),
         ("train.micro_batches=5", "stage2.batch_size=8 (4 with 2 replicas)")),
    # Labels: user data (through the runner) and in memory.
    _user_run("csv-label-id-out-of-range", _csv_rows("img/a.png,0", "img/b.png,1", "img/c.png,2"),
              "unknown label '2'", "integer id in [0, 2)", **{"data.class_names": ("cat", "dog")}),
    _user_run("csv-negative-label", _csv_rows("img/a.png,0", "img/b.png,-1"),
              "unknown label '-1'", "integer id in [0, 2)", **{"data.class_names": ("cat", "dog")}),
    _user_run("csv-label-not-a-class", _csv_rows("img/a.png,cat", "img/b.png,dgo"),
              "unknown label 'dgo'", "one of the training classes ['cat', 'dog']",
              **{"data.class_names": ("cat", "dog")}),
    _user_run("csv-fractional-label", _csv_rows("img/a.png,0", "img/b.png,1.5"),
              "(e.g. '1.5')", "integer ids (e.g. '0')", "use one or the other"),
    _user_run("folder-test-class-unknown-to-training",
              lambda root: _folder_data(root, test={"cat": ["e.png"], "zebra": ["z.png"]}),
              "class folder 'zebra'", "training classes ['cat', 'dog']"),
    Case("memory-label-out-of-range", lambda ctx: _split(labels=(0, 5, 1)), ("got 5 at position 1", "in [0, 3)")),
    Case("memory-label-fraction", lambda ctx: _split(labels=(0, 1.5, 2)),
         ("got 1.5 at position 1", "integers in [0, 3)")),
    Case("memory-label-nan", lambda ctx: _split(labels=(0, 1, NAN)),
         ("got nan at position 2", "integers in [0, 3)")),
    Case("memory-label-strings", lambda ctx: _split(labels=("cat", "dog", "emu")),
         ("'cat'", "integers in [0, 3)")),
    Case("noise-on-fractional-labels", lambda ctx: add_label_noise(np.array([0, 1.5]), [0, 1], np.eye(3), 0),
         ("got 1.5", "labels must be integers")),
    Case("memory-duplicate-ids", lambda ctx: _split(index=np.array([0, 3, 3])), ("id 3 2 times", "distinct ids")),
    # Images in memory: rank, size, dtype, NaN / infinite pixels.
    Case("memory-images-rank-3", lambda ctx: _split(images=np.zeros((3, SIZE, SIZE), np.uint8)),
         (f"got shape (3, {SIZE}, {SIZE})", "rank 4 [N, H, W, C]")),
    Case("memory-images-two-channels", lambda ctx: _split(images=np.zeros((3, SIZE, SIZE, 2), np.uint8)),
         (f"got shape (3, {SIZE}, {SIZE}, 2)", "C in (1, 3)")),
    Case("memory-images-wrong-size", lambda ctx: _split(images=np.zeros((3, 5, 5, 1), np.uint8)),
         ("shape (5, 5, 1)", f"image_shape is ({SIZE}, {SIZE}, 1)")),
    Case("memory-images-zero-height", lambda ctx: _split(images=np.zeros((3, 0, SIZE, 1), np.uint8),
                                                        image_shape=(0, SIZE, 1)),
         (f"got (0, {SIZE}, 1)", "H, W >= 1")),
    Case("memory-images-float-dtype", lambda ctx: _split(images=np.zeros((3, SIZE, SIZE, 1), np.float32)),
         ("got float32", "dtype uint8 (raw pixels 0..255)")),
    Case("memory-images-nan-pixel", lambda ctx: _split(images=_pixels_with(NAN)),
         ("nan at [1, 2, 3, 0]", "finite raw values 0..255")),
    Case("memory-images-infinite-pixel", lambda ctx: _split(images=_pixels_with(-INF)),
         ("-inf at [1, 2, 3, 0]", "finite raw values 0..255")),
    Case("memory-mean-image-nan", lambda ctx: Preprocessor(_pixels_with(NAN)[1]),
         ("nan at [2, 3, 0]", "must be finite")),
    Case("memory-splits-of-different-shapes", _mismatched_splits, ("(4, 4, 1)", "must have the same shape")),
    # Empty datasets.
    _user_run("folder-empty", _empty_folder, "data.train 'empty' holds no images", "one sub-folder per class"),
    _user_run("csv-empty", _empty_csv, "data.train 'train.csv' holds no images", "rows 'path,label'"),
    Case("clothing1m-empty-train-list", lambda ctx: load_clothing1m(str(_clothing_empty_train(ctx.data))),
         ("noisy_train_key_list.txt", "lists no images", "one image path per line")),
    _user_run("folder-single-class", _single_class_folder, "has 1 class ('cat')", "at least 2 classes"),
    # A class that Stage 1 leaves without any kept label.
    Case("stage1-class-left-empty", _class_left_empty,
         ("1 ('dog'): 0 of 2 labels kept", "2 ('emu'): 0 of 2 labels kept", "lower stage1.threshold",
          "raise stage1.floor_fraction")),
    Case("stage1-class-without-training-labels", _class_without_labels,
         ("2 ('emu'): 0 of 0 labels kept", "give each class training images")),
    # Missing / truncated / non-image files (data.on_bad_file=error; the skip counterpart is tested below).
    _user_run("csv-bad-files-error", _csv_bad_files,
              "3 of 5 image files", "a_cut.png' is truncated (no PNG IEND chunk)", "data.on_bad_file=skip"),
    Case("folder-bad-files-error", _load_folder_bad_files,
         ("3 of 5 image files", "a_cut.jpg' is truncated (no JPEG end-of-image marker after the image data)",
          "data.on_bad_file=skip")),
    Case("clothing1m-bad-files-error", lambda ctx: load_clothing1m(str(_clothing_bad_files(ctx.data))),
         ("2 of 3 image files", "a.png' is not an image (expected JPEG, PNG, GIF or BMP)",
          "data.on_bad_file=skip")),
    # Paths outside the data root.
    _user_run("csv-path-with-dotdot", _csv_path_outside,
              "'../outside.png'", "must stay inside the data directory"),
    _user_run("csv-absolute-path-outside", _csv_absolute_outside, "outside.png'", "outside the data root"),
    Case("clothing1m-key-with-dotdot", lambda ctx: load_clothing1m(str(_clothing_key_outside(ctx.data))),
         ("'../outside.png'", "must stay inside the data directory")),
    Case("folder-symlink-escaping-root", _folder_symlink_outside, ("link.png'", "outside the data root")),
    _user_run("folder-source-outside-root", lambda root: {**_folder_data(root), "data.test": "../elsewhere"},
              "'../elsewhere'", "must stay inside the data directory"),
    # Missing artifacts of an earlier stage; pickled data.
    Case("stage2-before-stage1", lambda ctx: weights_path(str(ctx.workdir)),
         ("classifier.weights.h5 does not exist", "run bin/train_stage1.py first"), FileNotFoundError),
    Case("not-a-run-workdir", lambda ctx: load_run_config(str(ctx.workdir)),
         ("config.json does not exist", "bin/run_experiment.py writes config.json"), FileNotFoundError),
    Case("noise-matrix-file-pickled", _object_matrix_file,
         ("matrix.npy' is not a readable matrix", "allow_pickle")),
]

_TORN = ("results.json", "final", "export", "stage1/selection.npz", "stage1/predictions.npz",
         "stage1/classifier.weights.h5", "stage1/selection_stats.json")


def assert_clear_message(message: str, fragments: Sequence[str]) -> None:
    assert message.strip() and "\n\n" not in message and "Traceback" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def assert_no_torn_artifacts(workdir: pathlib.Path) -> None:
    """No results or later-stage artifact, no temporary file; at most the recorded config (and manifest)."""
    if not workdir.exists():
        return
    for name in _TORN:
        assert not (workdir / name).exists(), f"{name} left in {workdir}"
    left = [str(p.relative_to(workdir)) for p in workdir.rglob("*") if p.name.startswith(".tmp-")]
    assert not left, left


def test_the_catalogue_is_large_and_its_ids_unique():
    ids = [case.id for case in CASES]
    assert len(ids) >= 25 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_is_refused_with_a_clear_message(case, tmp_path, request):
    context = Context(tmp_path, request)
    with pytest.raises(case.error) as raised:
        case.provoke(context)
    assert_clear_message(str(raised.value), case.fragments)
    assert_no_torn_artifacts(context.workdir)
    if case.writes_nothing:
        assert not context.workdir.exists(), "a bad config value must fail before anything is written"


# --- bad files: skipped and counted under data.on_bad_file=skip ------------------------------------------


@pytest.mark.parametrize("source", ["csv", "folder", "clothing1m"])
def test_bad_files_are_skipped_and_counted_under_skip(source, tmp_path, caplog):
    root = tmp_path / "data"
    with caplog.at_level(logging.WARNING):
        if source == "clothing1m":
            splits = load_clothing1m(str(_clothing_bad_files(root)), image_size=(SIZE, SIZE), on_bad_file="skip")
            expected, log = ["c.png"], "Skipped 2 of 3"
        else:
            overrides = (_csv_bad_files if source == "csv" else _folder_bad_files)(root)
            splits = load_user_data(source, str(root), train=overrides["data.train"], test=overrides["data.test"],
                                    image_size=(SIZE, SIZE), on_bad_file="skip")
            expected, log = ["b.png", "c.png"], "Skipped 3 of 5"
    assert sorted(os.path.basename(path) for path in splits.train.paths) == expected
    assert log in caplog.text
    decoded = list(splits.train.to_dataset().as_numpy_iterator())  # what is left decodes
    assert len(decoded) == len(expected) and decoded[0]["image"].shape == (SIZE, SIZE, splits.image_shape[-1])


def test_a_selection_that_keeps_every_class_passes():
    check_every_class_kept(np.array([True, False, True, False]), np.array([0, 0, 1, 1]), 2, ("cat", "dog"))


# --- the programs: exit code 2, one `error:` line, no results ----------------------------------------------

_PROGRAMS = {  # id -> (program, arguments, data on disk, message fragments)
    "unknown-stage1-key": ("run_experiment.py", ["--config.stage1.nosuch=1"], None,
                           ["'stage1.nosuch'", "stage1 has the keys"]),
    "threshold-above-one": ("run_experiment.py", ["--config.stage1.threshold=1.5"], None,
                            ["stage1.threshold must be in [0, 1], got 1.5"]),
    "select-labels-before-train-stage1": ("select_labels.py", [], _csv_rows("img/a.png,cat", "img/b.png,dog"),
                                          ["predictions.npz does not exist", "run bin/train_stage1.py"]),
    "train-stage1-on-csv-path-outside-root": ("train_stage1.py", [], _csv_path_outside,
                                              ["'../outside.png'", "must stay inside the data directory"]),
}

@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """Starts every program case at once (their TensorFlow imports overlap); yields id -> (result, workdir)."""
    started = {}
    for case_id, (program, args, build_data, _) in _PROGRAMS.items():
        folder = tmp_path_factory.mktemp(case_id)
        if build_data is not None:  # a user's CSV data: cheaper to load than MNIST-5k
            overrides = build_data(folder / "data")
            args = [f"--config.{key}={value}" for key, value in overrides.items()] + [
                "--config.noise.type=none", "--config.noise.rate=0", f"--config.data.image_size=({SIZE}, {SIZE})"]
        command = [sys.executable, os.path.join(ROOT, "bin", program), "--config=configs/smoke.py",
                   f"--workdir={folder / 'run'}", *args]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        started[case_id] = (process, folder / "run")
    finished = {}
    for case_id, (process, workdir) in started.items():
        stdout, stderr = process.communicate(timeout=300)
        finished[case_id] = (process.returncode, stdout, stderr, workdir)
    return finished


@pytest.mark.parametrize("case_id", list(_PROGRAMS))
def test_program_refuses_bad_input_with_exit_code_2_and_one_error_line(case_id, programs):
    returncode, stdout, stderr, workdir = programs[case_id]
    assert returncode == 2, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    assert_clear_message(errors[0], _PROGRAMS[case_id][3])
    assert "Traceback" not in stderr
    assert_no_torn_artifacts(workdir)


# --- no pickles ---------------------------------------------------------------------------------------------

_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal", "torch"}


def pickle_uses(source: str, filename: str = "<source>") -> list:
    """Lines of `source` that could unpickle data (imports, np.load without allow_pickle=False, ...)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{filename}:{node.lineno}: import {name}" for name in names
                      if name.split(".")[0] in _PICKLE_MODULES]
        elif isinstance(node, ast.Call):
            keywords = {kw.arg: kw.value for kw in node.keywords}
            call = ast.unparse(node.func)
            for key, safe in (("allow_pickle", False), ("safe_mode", True)):  # keras.saving.load_model: safe_mode
                value = keywords.get(key)
                if value is not None and not (isinstance(value, ast.Constant) and value.value is safe):
                    found.append(f"{filename}:{node.lineno}: {call}({key}={ast.unparse(value)})")
            if call in ("np.load", "numpy.load") and "allow_pickle" not in keywords:
                found.append(f"{filename}:{node.lineno}: {call} without allow_pickle=False")
            if call.endswith(("read_pickle", "torch.load", "pickle.load", "pickle.loads", "joblib.load")):
                found.append(f"{filename}:{node.lineno}: {call}")
    return found


@pytest.mark.parametrize("snippet", [
    "import pickle", "from joblib import load", "import torch\ntorch.load('m.pt')", "np.load('x.npy')",
    "np.load('x.npz', allow_pickle=True)", "numpy.load(path, mmap_mode='r')", "df = pd.read_pickle('x.pkl')",
    "keras.saving.load_model('m.keras', safe_mode=False)", "import dill.settings",
])
def test_the_pickle_scan_catches_each_kind_of_use(snippet):
    assert pickle_uses(snippet)


def test_no_source_file_of_the_package_or_its_programs_can_unpickle():
    root = pathlib.Path(ROOT)
    files = sorted((root / "tf_twostage").rglob("*.py")) + sorted((root / "bin").glob("*.py"))
    assert len(files) > 20
    found = [use for path in files for use in pickle_uses(path.read_text(encoding="utf-8"), str(path))]
    assert not found, "\n".join(found)
    assert not pickle_uses("np.load(path, allow_pickle=False)")


class _Tripwire:
    """Unpickling it creates a folder: proof that a reader executed code from the file."""

    def __init__(self, folder):
        self.folder = folder

    def __reduce__(self):
        return os.mkdir, (self.folder,)


def test_read_npz_refuses_an_object_array_without_running_its_code(tmp_path):
    path, marker = tmp_path / "evil.npz", tmp_path / "unpickled"
    np.savez(path, index=np.arange(3), payload=np.array([_Tripwire(str(marker))], dtype=object))
    with pytest.raises(ValueError, match="(?i)allow_pickle|object|pickle"):
        io_utils.read_npz(str(path))
    assert not marker.exists()


def test_write_npz_refuses_an_object_array(tmp_path):
    with pytest.raises(ValueError, match="dtype object, which would need pickle"):
        io_utils.write_npz(str(tmp_path / "out.npz"), payload=np.array([{"a": 1}], dtype=object))
    assert not list(tmp_path.iterdir())
