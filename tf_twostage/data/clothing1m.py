"""Clothing1M (Xiao et al., 2015) read from its release layout and streamed from disk.

The release ships 1M web images with noisy labels, a 72K subset with clean labels, and key lists
naming the splits. Only the text files are read at load time; images are decoded by the input
pipeline (`ImageSplit.element`), so the million images never sit in memory.

Example ids (`index`): every split's examples are sorted by key, and ids count up over the splits in
the order train, clean, validation, test (train gets 0..N-1, clean continues at N, and so on). An image
listed in two key lists thus has one id per split. Ids are given before bad files are skipped, so they
do not move when another file goes bad.
"""

from __future__ import annotations

import os

import numpy as np

from tf_twostage.data.files import (
    check_image_size,
    check_on_bad_file,
    resolve_paths_under_root,
)
from tf_twostage.data.hygiene import enforce, hygiene_findings
from tf_twostage.data.image_check import apply_on_bad_file, screen_image_files
from tf_twostage.data.source import UNKNOWN_LABEL, DatasetSplits, ImageSplit

CLASS_NAMES = (
    "T-Shirt",
    "Shirt",
    "Knitwear",
    "Chiffon",
    "Sweater",
    "Hoodie",
    "Windbreaker",
    "Jacket",
    "Down Coat",
    "Suit",
    "Shawl",
    "Dress",
    "Vest",
    "Underwear",
)
NOISY_LABELS_FILE = "noisy_label_kv.txt"
CLEAN_LABELS_FILE = "clean_label_kv.txt"
CLASS_NAMES_FILE = "category_names_eng.txt"  # optional; CLASS_NAMES when absent
# Split -> (key list, label file giving its labels); the dict order is the order of the ids.
SPLIT_FILES = {
    "train": ("noisy_train_key_list.txt", NOISY_LABELS_FILE),
    "clean": ("clean_train_key_list.txt", CLEAN_LABELS_FILE),
    "validation": ("clean_val_key_list.txt", CLEAN_LABELS_FILE),
    "test": ("clean_test_key_list.txt", CLEAN_LABELS_FILE),
}
REQUIRED_FILES = (NOISY_LABELS_FILE, CLEAN_LABELS_FILE) + tuple(
    key_list for key_list, _ in SPLIT_FILES.values()
)
EXPECTED_LAYOUT = (
    "data_dir/\n"
    "  images/0/00/123.jpg ...        image folders\n"
    "  noisy_label_kv.txt             lines 'images/0/00/123.jpg 4' (noisy labels)\n"
    "  clean_label_kv.txt             lines 'images/0/00/123.jpg 4' (clean labels)\n"
    "  noisy_train_key_list.txt       one image path per line (noisy training set)\n"
    "  clean_train_key_list.txt       one image path per line (clean training subset)\n"
    "  clean_val_key_list.txt         one image path per line (clean validation set)\n"
    "  clean_test_key_list.txt        one image path per line (clean test set)\n"
    "  category_names_eng.txt         optional, the 14 class names"
)


def load_clothing1m(data_dir: str, image_size=(224, 224), on_bad_file: str = "error") -> DatasetSplits:
    """Loads Clothing1M from `data_dir` as lazy splits of RGB images resized to `image_size`.

    Returns DatasetSplits(name="clothing1m") with `train` (noisy labels; clean labels where known, else
    UNKNOWN_LABEL), `clean` (the clean training subset), `validation` and `test` (clean labels).

    Raises:
      ValueError: on a missing layout file, a malformed line, a key without a label, a path outside
        `data_dir`, an empty training or test key list, a split left without usable images, or (with
        on_bad_file="error") a missing, empty, truncated or non-image file.
    """
    height, width = check_image_size(image_size)
    check_on_bad_file(on_bad_file)
    _check_layout(data_dir)
    class_names = _read_class_names(data_dir)
    label_maps = {
        name: _read_label_file(os.path.join(data_dir, name), len(class_names))
        for name in (NOISY_LABELS_FILE, CLEAN_LABELS_FILE)
    }
    splits, checks, fingerprints = {}, [], {}
    next_index = 0
    for split, (key_list_file, labels_file) in SPLIT_FILES.items():
        keys = sorted(_read_key_list(os.path.join(data_dir, key_list_file)))
        if not keys and split in ("train", "test"):
            raise ValueError(
                f"Clothing1M {key_list_file} in {data_dir!r} lists no images; expected one image path per "
                f"line (the {split} split cannot be empty)"
            )
        labels = _lookup_labels(keys, label_maps[labels_file], key_list_file, labels_file)
        if split == "train":
            clean_map = label_maps[CLEAN_LABELS_FILE]
            clean_labels = np.fromiter(
                (clean_map.get(key, UNKNOWN_LABEL) for key in keys), np.int64, count=len(keys)
            )
        else:
            clean_labels = labels
        paths = resolve_paths_under_root(keys, data_dir)
        screening = screen_image_files(paths, 3)
        keep, record = apply_on_bad_file(screening, on_bad_file, f"Clothing1M {key_list_file}")
        if record:
            checks.append(record)
        fingerprints[split] = screening.fingerprints[keep]
        if keys and not keep.any():
            raise ValueError(
                f"Clothing1M {key_list_file}: none of its {len(keys)} images is usable (all missing, empty, "
                "truncated or not images); check data.dir"
            )
        image_split = ImageSplit(
            labels=labels,
            index=np.arange(next_index, next_index + len(keys), dtype=np.int64),
            num_classes=len(class_names),
            image_shape=(height, width, 3),
            paths=np.array(paths, dtype=object),
            clean_labels=clean_labels,
        )
        splits[split] = image_split if keep.all() else image_split.subset(np.flatnonzero(keep))
        next_index += len(keys)
    present = {split: image_split for split, image_split in splits.items() if len(image_split)}
    findings = hygiene_findings({split: s.paths for split, s in present.items()},
                                {split: s.labels for split, s in present.items()}, class_names,
                                {split: fingerprints[split] for split in present}, leak_level="warning",
                                missing_class_level="warning")
    enforce(findings)
    return DatasetSplits(name="clothing1m", class_names=class_names, checks=tuple(checks + findings), **splits)


def _check_layout(data_dir: str) -> None:
    if not os.path.isdir(data_dir):
        raise ValueError(
            f"Clothing1M data_dir {data_dir!r} is not a directory; expected layout:\n{EXPECTED_LAYOUT}"
        )
    missing = [name for name in REQUIRED_FILES if not os.path.isfile(os.path.join(data_dir, name))]
    if missing:
        raise ValueError(
            f"Clothing1M data_dir {data_dir!r} lacks {', '.join(missing)}; expected layout:\n"
            f"{EXPECTED_LAYOUT}"
        )


def _read_class_names(data_dir: str) -> tuple:
    path = os.path.join(data_dir, CLASS_NAMES_FILE)
    if not os.path.isfile(path):
        return CLASS_NAMES
    with open(path, encoding="utf-8") as file:
        names = tuple(line.strip() for line in file if line.strip())
    if len(names) != len(CLASS_NAMES):
        raise ValueError(
            f"{path} must list {len(CLASS_NAMES)} class names, one per line; got {len(names)}"
        )
    return names


def _read_key_list(path: str) -> list:
    """Image keys (paths relative to the data dir), one per non-blank line."""
    with open(path, encoding="utf-8") as file:
        return [key for key in (line.strip() for line in file) if key]


def _read_label_file(path: str, num_classes: int) -> dict:
    """Key -> label from lines `images/0/00/123.jpg 4`, checking each label is in [0, num_classes)."""
    labels = {}
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            fields = line.split()
            if not fields:
                continue
            label = fields[-1] if len(fields) == 2 else ""
            if not (label.isascii() and label.isdigit()) or int(label) >= num_classes:
                raise ValueError(
                    f"{path} line {line_number}: expected '<image path> <label in "
                    f"0..{num_classes - 1}>', got {line.strip()!r}"
                )
            labels[fields[0]] = int(label)
    return labels


def _lookup_labels(keys, label_map: dict, key_list_file: str, labels_file: str) -> np.ndarray:
    try:
        return np.fromiter((label_map[key] for key in keys), np.int64, count=len(keys))
    except KeyError:
        missing = [key for key in keys if key not in label_map]
        raise ValueError(
            f"{len(missing)} keys of {key_list_file} have no label in {labels_file}, e.g. {missing[0]!r}"
        ) from None
