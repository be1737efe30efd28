"""Atomic artifact writing: write to a temporary file in the same folder, then rename.

A crash never leaves a torn `results.json` or `selection.npz` that a later stage would read.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yields a temporary path next to `path`; renames it onto `path` only if the block succeeds.

    `suffix` (default: the extension of `path`) ends the temporary name, for writers that check it
    (Keras wants `.weights.h5`).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = suffix or os.path.splitext(path)[1]
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        yield temporary
        if os.path.isfile(temporary):  # mkstemp makes 0600; give the usual permissions (umask applied)
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str, data) -> None:
    """Writes `data` as indented JSON, atomically (numpy scalars and arrays are converted)."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2, sort_keys=True, default=_to_builtin)
            file.write("\n")


def read_json(path: str):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def write_npz(path: str, **arrays) -> None:
    """Saves arrays to `.npz` atomically; object (pickled) arrays are refused."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise ValueError(f"array {name!r} has dtype object, which would need pickle; refused")
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            np.savez(file, **arrays)


def read_npz(path: str) -> dict:
    """The arrays of an .npz file; arrays of Python objects (pickles) are refused, never loaded."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {}
        for name in data.files:
            try:
                arrays[name] = data[name]
            except ValueError as error:
                raise ValueError(f"{path}: array {name!r} holds Python objects (pickled), which are never "
                                 f"loaded; write plain numeric or string arrays ({error})") from error
        return arrays


def history_json(history) -> dict:
    """A Keras `History` as plain lists of floats per metric (for results.json)."""
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def _to_builtin(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
