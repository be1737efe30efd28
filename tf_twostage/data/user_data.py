"""A practitioner's own labelled images: an image-folder tree or a CSV of `path,label`.

This is how real web-crawled data enters the package. Each source (train, test, optional clean) is

* `folder`: one sub-folder per class (class = folder name); images (.jpg/.jpeg/.png/.gif/.bmp, any
  case) are found recursively below each class folder. Hidden files and folders (".name") are ignored,
  so `.ipynb_checkpoints` or macOS `._x.jpg` files do not become classes or examples.
* `csv`: rows `path,label`, the path relative to the data dir (or absolute inside it), the label a class
  name or an integer class id. A first row `path,label` is taken as a header.

Class names: `class_names` when given; else the training folder's sorted class folders; else (CSV) the
sorted training labels, or "0".."C-1" when every label of every source is an integer (C = max + 1).
The training labels are the (noisy) labels, their clean labels are unknown (None); test and clean
labels are clean. Ids (`index`): train 0..N-1 in sorted path order, then clean, then test, each in sorted
path order; given before bad files are skipped, so ids do not move when a file goes bad.
"""

from __future__ import annotations

import csv
import os
import re

import numpy as np

from tf_twostage.data.files import (
    IMAGE_EXTENSIONS,
    check_image_size,
    check_on_bad_file,
    resolve_paths_under_root,
    resolve_under_root,
)
from tf_twostage.data.hygiene import enforce, hygiene_findings
from tf_twostage.data.image_check import apply_on_bad_file, screen_image_files
from tf_twostage.data.source import DatasetSplits, ImageSplit

KINDS = ("folder", "csv")
_SPLIT_ORDER = ("train", "clean", "test")  # the order in which ids are given
_INTEGER = re.compile(r"[+-]?[0-9]+")
_SOURCE_HELP = {
    "folder": f"expected one sub-folder per class holding {'/'.join(IMAGE_EXTENSIONS)} images",
    "csv": "expected rows 'path,label' (an optional first row 'path,label' is a header)",
}


def load_user_data(
    kind: str,
    data_dir: str,
    train: str,
    test: str,
    clean: str = "",
    image_size=(224, 224),
    channels: int = 3,
    class_names=(),
    on_bad_file: str = "error",
) -> DatasetSplits:
    """Loads a user's `folder` tree or `csv` files under `data_dir` as lazy splits.

    Args:
      kind: "folder" or "csv".
      data_dir: the data root; every source and image path must resolve inside it.
      train, test, clean: the sources (folders or CSV files), relative to `data_dir` or absolute inside
        it; `clean` ("" for none) is a hand-checked subset with clean labels.
      image_size: (height, width) the images are resized to when read.
      channels: 1 (grayscale) or 3 (RGB).
      class_names: the class names in label order; empty to infer them (see the module docstring).
      on_bad_file: "error" or "skip" for missing, empty, truncated or non-image files.

    Raises:
      ValueError: naming the bad value, on any invalid argument, source, row, label, path or file.
    """
    if kind not in KINDS:
        raise ValueError(f"data.name for user data must be one of {', '.join(KINDS)}; got {kind!r}")
    height, width = check_image_size(image_size)
    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 1 or 3; got {channels!r}")
    check_on_bad_file(on_bad_file)
    if not os.path.isdir(data_dir):
        raise ValueError(f"data.dir {data_dir!r} is not an existing directory")
    sources = {"train": train, "clean": clean, "test": test}
    rows, class_folders = {}, {}
    for split in _SPLIT_ORDER:
        if split == "clean" and not clean:
            continue
        source_path = _source_path(split, sources[split], data_dir, kind)
        if kind == "folder":
            rows[split], class_folders[split] = _read_folder(source_path)
        else:
            rows[split] = _read_csv(source_path)
        if not rows[split]:
            raise ValueError(f"data.{split} {sources[split]!r} holds no images; {_SOURCE_HELP[kind]}")
    names = _class_names(kind, rows, class_folders.get("train", ()), class_names)
    if len(names) < 2:
        where = "sub-folder per class" if kind == "folder" else "label per row"
        raise ValueError(
            f"data.train {train!r} has {len(names)} class ({', '.join(map(repr, names))}); a classifier needs "
            f"at least 2 classes (one {where}, or list them in data.class_names)"
        )
    for split, folders in class_folders.items():
        _check_class_folders(split, folders, names)

    splits, checks, fingerprints = {}, [], {}
    next_index = 0
    for split in rows:
        paths = resolve_paths_under_root([path for path, _ in rows[split]], data_dir)
        order = sorted(range(len(paths)), key=paths.__getitem__)
        labels = _label_ids(split, [rows[split][i] for i in order], names, allow_ids=kind == "csv")
        image_split = ImageSplit(
            labels=labels,
            index=np.arange(next_index, next_index + len(order), dtype=np.int64),
            num_classes=len(names),
            image_shape=(height, width, channels),
            paths=np.array([paths[i] for i in order], dtype=object),
            clean_labels=None if split == "train" else labels,
        )
        next_index += len(order)
        screening = screen_image_files(image_split.paths, channels)
        keep, record = apply_on_bad_file(screening, on_bad_file, f"data.{split}")
        if record:
            checks.append(record)
        if not keep.any():
            raise ValueError(
                f"data.{split} {sources[split]!r}: none of its {len(keep)} images is usable"
            )
        splits[split] = image_split if keep.all() else image_split.subset(np.flatnonzero(keep))
        fingerprints[split] = screening.fingerprints[keep]
    findings = hygiene_findings({split: s.paths for split, s in splits.items()},
                                {split: s.labels for split, s in splits.items()}, names, fingerprints)
    enforce(findings)
    return DatasetSplits(name=kind, class_names=names, checks=tuple(checks + findings), **splits)


def _source_path(split: str, source: str, data_dir: str, kind: str) -> str:
    """The real path of a source, checked to exist (as a folder or a file) inside `data_dir`."""
    what = "folder" if kind == "folder" else "CSV file"
    if not source:
        raise ValueError(f"data.{split} must name a {what} under data.dir {data_dir!r}")
    path = resolve_under_root(source, data_dir)
    exists = os.path.isdir(path) if kind == "folder" else os.path.isfile(path)
    if not exists:
        raise ValueError(f"data.{split} {source!r} ({path}) is not an existing {what}")
    return path


def _read_folder(folder: str) -> tuple:
    """(image path, class folder name) rows and the sorted class folder names of a folder tree."""
    classes = sorted(
        entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith(".")
    )
    rows = []
    for class_name in classes:
        for directory, subfolders, files in os.walk(os.path.join(folder, class_name)):
            subfolders[:] = [name for name in subfolders if not name.startswith(".")]
            rows.extend(
                (os.path.join(directory, name), class_name)
                for name in files
                if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
            )
    return rows, classes


def _read_csv(csv_path: str) -> list:
    """(path, label) rows of a CSV file, without blank rows and the optional `path,label` header."""
    rows = []
    with open(csv_path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header_allowed = True
        for row in reader:
            fields = [field.strip() for field in row]
            if not any(fields):
                continue
            if len(fields) != 2 or not all(fields):
                raise ValueError(
                    f"{csv_path} line {reader.line_num}: expected 2 non-empty fields 'path,label', "
                    f"got {row!r}"
                )
            is_header = header_allowed and [field.lower() for field in fields] == ["path", "label"]
            header_allowed = False
            if not is_header:
                rows.append(tuple(fields))
    return rows


def _is_integer(label: str) -> bool:
    return _INTEGER.fullmatch(label) is not None


def _class_names(kind: str, rows: dict, train_class_folders, class_names) -> tuple:
    if class_names:
        names = tuple(str(name) for name in class_names)
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"data.class_names must be distinct non-empty names; got {names}")
        return names
    if kind == "folder":
        return tuple(train_class_folders)
    labels = [label for split_rows in rows.values() for _, label in split_rows]
    integers = [label for label in labels if _is_integer(label)]
    if len(integers) == len(labels):
        return tuple(str(i) for i in range(max(int(label) for label in labels) + 1))
    if integers:
        name = next(label for label in labels if not _is_integer(label))
        raise ValueError(
            f"the CSV labels mix integer ids (e.g. {integers[0]!r}) and class names (e.g. {name!r}); "
            "use one or the other, or give data.class_names"
        )
    return tuple(sorted({label for _, label in rows["train"]}))


def _check_class_folders(split: str, folders, names: tuple) -> None:
    unknown = [folder for folder in folders if folder not in names]
    if unknown:
        raise ValueError(
            f"data.{split} has class folder {unknown[0]!r}, which is not among the training classes "
            f"{list(names)}"
        )


def _label_ids(split: str, rows, names: tuple, allow_ids: bool) -> np.ndarray:
    """Class ids of the rows' labels: a class name, or (CSV) an integer id in [0, C)."""
    id_of_name = {name: class_id for class_id, name in enumerate(names)}
    ids = np.empty(len(rows), dtype=np.int64)
    for position, (path, label) in enumerate(rows):
        class_id = id_of_name.get(label)
        if class_id is None and allow_ids and _is_integer(label) and 0 <= int(label) < len(names):
            class_id = int(label)
        if class_id is None:
            allowed = f" or an integer id in [0, {len(names)})" if allow_ids else ""
            raise ValueError(
                f"data.{split} has unknown label {label!r} (for {path!r}); a label must be one of the "
                f"training classes {list(names)}{allowed}"
            )
        ids[position] = class_id
    return ids
