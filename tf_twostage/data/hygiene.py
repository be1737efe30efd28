"""Data hygiene at load time: duplicates within and across splits, classes without training images.

Pure functions on arrays (paths, labels, content fingerprints per split); the loaders of on-disk data
call `hygiene_findings` after screening the files and `enforce` on its result. Each finding is a dict
`{check, level, count, message, examples}` that `results.json` records under `data_checks`; a finding
at level "error" stops the load with its message.

| check                      | level   | what                                                            |
|----------------------------|---------|-----------------------------------------------------------------|
| `path_with_two_labels`     | error   | one file listed twice in a split with different labels          |
| `duplicate_path`           | warning | one file listed twice in a split with the same label            |
| `path_in_two_splits`       | error*  | one file in train and test, clean and test, or a leak into      |
|                            |         | validation (*Clothing1M: warning, the release's own lists)      |
| `content_with_two_labels`  | warning | byte-identical files in one split with different labels         |
| `duplicate_content`        | warning | byte-identical files in one split with the same label           |
| `content_in_two_splits`    | warning | byte-identical files in train and test (a near-leak; web data   |
|                            |         | often repeats placeholder images)                               |
| `class_without_training`   | error*  | a class with no training image (e.g. a label only in the test   |
|                            |         | split, an empty class folder, or every file of it skipped)      |
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
from absl import logging

EXAMPLES = 5  # examples per finding in messages and results.json
_LEAK_PAIRS = (("train", "test"), ("clean", "test"), ("train", "validation"), ("clean", "validation"),
               ("validation", "test"))


class DataHygieneError(ValueError):
    """The data fail a hygiene check at level "error"."""


def _finding(check: str, level: str, count: int, message: str, examples) -> dict:
    return {"check": check, "level": level, "count": int(count), "message": message, "examples": list(examples)}


def hygiene_findings(
    paths: Dict[str, Sequence[str]],
    labels: Dict[str, np.ndarray],
    class_names: Sequence[str],
    fingerprints: Optional[Dict[str, np.ndarray]] = None,
    leak_level: str = "error",
    missing_class_level: str = "error",
) -> list:
    """The findings for splits named train / clean / validation / test (see the module's table).

    Args:
      paths: split -> file paths (resolved, so one file has one path).
      labels: split -> int labels, aligned with `paths`.
      class_names: the classes, in label order.
      fingerprints: split -> 64-bit content hashes aligned with `paths` (no content checks when None).
      leak_level: the level of `path_in_two_splits` ("error", or "warning" for a fixed benchmark).
      missing_class_level: the level of `class_without_training` (likewise).
    """
    findings = []
    names = list(class_names)
    for split, split_paths in paths.items():
        findings += _duplicates_within(split, np.asarray(split_paths, dtype=object), np.asarray(labels[split]),
                                       names, "path")
        if fingerprints is not None:
            findings += _duplicates_within(split, np.asarray(fingerprints[split]), np.asarray(labels[split]), names,
                                           "content", np.asarray(split_paths, dtype=object))
    for first, second in _LEAK_PAIRS:
        if first in paths and second in paths:
            shared = sorted(set(map(str, paths[first])) & set(map(str, paths[second])))
            if shared:
                findings.append(_finding(
                    "path_in_two_splits", leak_level, len(shared),
                    f"{len(shared)} image files are both in data.{first} and data.{second} (a leak between splits), "
                    f"e.g. {', '.join(map(repr, shared[:EXAMPLES]))}; list each image in one split only",
                    shared[:EXAMPLES]))
            if fingerprints is not None and (first, second) == ("train", "test"):
                findings += _content_across(paths, fingerprints, first, second)
    findings += _classes_without_training(labels, names, missing_class_level)
    return findings


def _duplicates_within(split, keys, labels, names, kind, paths=None) -> list:
    """Keys (paths or fingerprints) occurring more than once in one split."""
    if keys.size == 0:
        return []
    shown = keys if paths is None else paths
    if paths is not None:
        keys = keys.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    counts = np.diff(np.r_[starts, len(keys)])
    conflicting, same = [], []
    for start, count in zip(starts[counts > 1], counts[counts > 1]):
        group = order[start:start + count]
        if paths is not None and len(set(map(str, shown[group]))) < 2:
            continue  # one file listed twice: a path duplicate, reported as such
        (conflicting if len(set(labels[group].tolist())) > 1 else same).append(group)
    findings = []
    if conflicting:
        group = conflicting[0]
        example = ", ".join(f"{shown[i]!r} as {names[labels[i]]!r}" for i in group[:EXAMPLES])
        what = ("files listed more than once" if kind == "path"
                else "images stored more than once (same bytes, other paths)")
        findings.append(_finding(
            f"{kind}_with_two_labels", "error" if kind == "path" else "warning", len(conflicting),
            f"data.{split}: {len(conflicting)} {what} with different labels, e.g. {example}"
            + ("; give each image one label" if kind == "path" else ""),
            [str(shown[i]) for i in group[:EXAMPLES]]))
    if same:
        group = same[0]
        duplicates = int(sum(len(g) - 1 for g in same))
        what = "listed more than once" if kind == "path" else "byte-identical to another file"
        findings.append(_finding(
            "duplicate_path" if kind == "path" else "duplicate_content", "warning", duplicates,
            f"data.{split}: {duplicates} image files are {what} with the same label, e.g. "
            f"{', '.join(repr(str(shown[i])) for i in group[:EXAMPLES])}",
            [str(shown[i]) for i in group[:EXAMPLES]]))
    return findings


def _content_across(paths, fingerprints, first, second) -> list:
    seen = dict(zip(np.asarray(fingerprints[first]).tolist(), map(str, paths[first])))
    shared = [(seen[key], str(path)) for key, path in zip(np.asarray(fingerprints[second]).tolist(), paths[second])
              if key in seen and seen[key] != str(path)]
    if not shared:
        return []
    example = ", ".join(f"{a!r} = {b!r}" for a, b in shared[:EXAMPLES])
    return [_finding(
        "content_in_two_splits", "warning", len(shared),
        f"{len(shared)} data.{second} images are byte-identical to data.{first} images (a near-leak), e.g. {example}",
        [f"{a} = {b}" for a, b in shared[:EXAMPLES]])]


def _classes_without_training(labels, names, level) -> list:
    counts = np.bincount(np.asarray(labels["train"], np.int64), minlength=len(names))
    empty = np.flatnonzero(counts == 0)
    if empty.size == 0:
        return []
    test_counts = (np.bincount(np.asarray(labels["test"], np.int64), minlength=len(names))
                   if "test" in labels else np.zeros(len(names), np.int64))
    described = [f"{names[c]!r}" + (f" ({int(test_counts[c])} test images)" if test_counts[c] else "")
                 for c in empty[:EXAMPLES]]
    only_test = " (its labels occur only in the test split)" if np.any(test_counts[empty]) else ""
    return [_finding(
        "class_without_training", level, empty.size,
        f"{empty.size} of {len(names)} classes have no training images{only_test}: {', '.join(described)}; "
        "a classifier cannot learn a class it never sees: add training images or remove the class "
        "(its folder, its rows, or its name in data.class_names)",
        [names[c] for c in empty[:EXAMPLES]])]


def enforce(findings: Sequence[dict]) -> None:
    """Raises the first error-level finding; logs the warnings."""
    for finding in findings:
        if finding["level"] == "error":
            raise DataHygieneError(finding["message"])
    for finding in findings:
        logging.warning("data check %s: %s", finding["check"], finding["message"])
