"""The load-time screening of image files: header check, full decode, content fingerprint.

A web-crawled file can be damaged in its middle (a few bytes of JPEG scan data or PNG chunk data
overwritten): it starts and ends like an image, passes the header check of `files.py`, and used to
crash training later with TensorFlow's `InvalidArgumentError` naming no file. `screen_image_files`
therefore decodes every file once, at load time, with the very decoding the pipelines use
(`source.decode_pixels`, so a file that passes decodes in every stream, in mean estimation and in the
export's `serving_bytes`), in a parallel `tf.data` pass whose failed elements are dropped
(`Dataset.ignore_errors`) and then named one by one. The same pass reads each file's bytes once and
keeps a 64-bit fingerprint of them for the duplicate-content check (`hygiene.py`).

Cost (benchmarks/results/decode_check.json, README "Bad files and data checks"): the pass is a full
decode of every file, about 1.5 s per 1,000 224x224 JPEGs on 2 busy cores; parallel over the cores.

`apply_on_bad_file` turns a screening into the keep-mask of `data.on_bad_file`: `error` raises
`BadImageFilesError` listing the bad files (path and what failed) before anything trains; `skip`
drops them, logs a count and returns a record that ends up in `results.json` (`data_checks`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from tf_twostage.data.files import check_on_bad_file, image_file_problems
from tf_twostage.data.source import ImageSplit, decode_pixels

LISTED_FILES = 10  # bad files named in an error message (the count says how many there are)
RECORDED_FILES = 100  # bad files listed in results.json's data_checks
_EXPLAINED_FILES = 100  # undecodable files re-decoded one by one to quote TensorFlow's reason
# What TensorFlow says when a file cannot be read or decoded (other errors are not screened for).
_LOOKS_LIKE_A_FILE_ERROR = re.compile(r"(?i)jpeg|png|gif|bmp|decode|image|no such file|read ?file|not found|"
                                      r"permission|channels")
_TF_PREFIX = re.compile(r"^\{\{[^}]*\}\}\s*")
_TF_SUFFIX = re.compile(r"\s*\[Op:[A-Za-z0-9_]+\](\s*name:.*)?\s*$")


class BadImageFilesError(ValueError):
    """Image files that cannot be used, under data.on_bad_file=error."""


@dataclasses.dataclass(frozen=True)
class Screening:
    """Per file: `problems[i]` is None when file i is a usable image, else what failed; `fingerprints[i]`
    a 64-bit hash of its bytes (0 for a bad file)."""

    paths: tuple
    problems: tuple
    fingerprints: np.ndarray

    @property
    def usable(self) -> np.ndarray:
        return np.array([problem is None for problem in self.problems], dtype=bool)


def screen_image_files(paths: Sequence[str], channels: int) -> Screening:
    """Checks every file's header and end (`files.image_file_problems`), then decodes the rest in full.

    Args:
      paths: image file paths.
      channels: the channels the pipelines decode to (1 or 3): a GIF decoded to 1 channel must work.
    """
    paths = tuple(str(path) for path in paths)
    # A path listed more than once (a list that repeats files) is checked and decoded once.
    slots = {}
    inverse = np.fromiter((slots.setdefault(path, len(slots)) for path in paths), np.int64, count=len(paths))
    distinct = tuple(slots)
    problems = list(image_file_problems(distinct))
    fingerprints = np.zeros(len(distinct), np.int64)
    candidates = np.array([position for position, problem in enumerate(problems) if problem is None], np.int64)
    if candidates.size:
        decoded, hashes = _decode_pass([distinct[position] for position in candidates], channels)
        fingerprints[candidates[decoded]] = hashes
        failed = candidates[np.setdiff1d(np.arange(len(candidates)), decoded)]
        for number, position in enumerate(failed):
            reason = _decode_reason(distinct[position], channels) if number < _EXPLAINED_FILES else None
            problems[position] = f"not decodable ({reason})" if reason else "not decodable"
    return Screening(paths=paths, problems=tuple(problems[slot] for slot in inverse),
                     fingerprints=fingerprints[inverse])


def _decode_pass(paths: Sequence[str], channels: int) -> tuple:
    """(positions that decoded, their fingerprints): one parallel pass, failures dropped.

    Every file is decoded exactly as the pipelines decode it (`decode_pixels`), so passing here means
    decoding there. (A JPEG decoded at 1/8 scale found the same 792 failures among 1,500 damaged JPEGs,
    but was not measurably faster inside this pass, so the pipelines' own decode is kept.)
    """

    def probe(position, path):
        # Outputs that need the pixels: tf.data prunes control dependencies, and Grappler may answer
        # `tf.shape(decode_jpeg(x))` from the header alone, so neither would decode the data.
        contents = tf.io.read_file(path)
        image = decode_pixels(contents, channels)
        return (position, tf.strings.to_hash_bucket_fast(contents, np.iinfo(np.int64).max),
                tf.size(image, out_type=tf.int64), tf.reduce_max(image))

    dataset = (
        tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), np.array(paths, dtype=object)))
        .map(probe, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .ignore_errors()
        .batch(4096)
    )
    positions, hashes = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for batch_positions, batch_hashes, batch_sizes, _ in dataset.as_numpy_iterator():
        positions.append(batch_positions[batch_sizes > 0])  # a 0 x N image cannot be resized: bad
        hashes.append(batch_hashes[batch_sizes > 0])
    positions, hashes = np.concatenate(positions), np.concatenate(hashes)
    order = np.argsort(positions)
    return positions[order], hashes[order]


def _decode_reason(path: str, channels: int) -> Optional[str]:
    """TensorFlow's message for a file that does not decode (None if it decodes now)."""
    try:
        image = decode_pixels(tf.io.read_file(path), channels)
        if int(tf.reduce_prod(tf.shape(image)[:2])) == 0:
            return "the image has no pixels"
    except (tf.errors.OpError, ValueError) as error:
        return tf_error_text(error)
    return None


def tf_error_text(error: Exception) -> str:
    """A TensorFlow error as one short line, without its node name and op suffix."""
    text = getattr(error, "message", None) or str(error)
    text = _TF_SUFFIX.sub("", _TF_PREFIX.sub("", text.strip().splitlines()[0] if text.strip() else text))
    return text or type(error).__name__


def apply_on_bad_file(screening: Screening, on_bad_file: str, what: str) -> tuple:
    """(keep-mask, record or None) for `data.on_bad_file`; `what` names the split (e.g. "data.train").

    Raises:
      BadImageFilesError: under "error", when any file is bad, naming up to `LISTED_FILES` of them.
    """
    check_on_bad_file(on_bad_file)
    keep = screening.usable
    bad = np.flatnonzero(~keep)
    if bad.size == 0:
        return keep, None
    listed = "; ".join(f"{screening.paths[i]!r} is {screening.problems[i]}" for i in bad[:LISTED_FILES])
    more = f"; and {bad.size - LISTED_FILES} more" if bad.size > LISTED_FILES else ""
    if on_bad_file == "error":
        raise BadImageFilesError(
            f"{bad.size} of {len(keep)} image files of {what} are missing, empty, truncated, not images or "
            f"not decodable: {listed}{more}. Fix or remove them, or set data.on_bad_file=skip to skip them"
        )
    logging.warning("Skipped %d of %d image files of %s that are missing, empty, truncated, not images or not "
                    "decodable: %s%s", bad.size, len(keep), what, listed, more)
    record = {
        "check": "bad_files", "level": "warning", "split": what, "count": int(bad.size), "total": len(keep),
        "message": f"skipped {bad.size} of {len(keep)} image files of {what} (data.on_bad_file=skip)",
        "examples": [{"path": screening.paths[i], "problem": screening.problems[i]} for i in bad[:RECORDED_FILES]],
    }
    return keep, record


@contextlib.contextmanager
def bad_files_named(splits: Sequence[Optional[ImageSplit]]):
    """Turns a decode failure inside a stream into `BadImageFilesError` naming the files.

    Every file passed the load-time screening, so a stream fails only when a file changed after it
    (or was replaced while the run went on). TensorFlow's error names no file: on one, the on-disk
    splits are screened again and the files that no longer decode are named; any other error, or one
    the screening cannot explain, passes through unchanged.
    """
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError) as error:
        lazy = [split for split in splits if split is not None and not split.in_memory and len(split)]
        if not lazy or not _LOOKS_LIKE_A_FILE_ERROR.search(getattr(error, "message", None) or str(error)):
            raise
        paths = [str(path) for split in lazy for path in split.paths]
        screening = screen_image_files(paths, lazy[0].image_shape[-1])
        bad = np.flatnonzero(~screening.usable)
        if bad.size == 0:
            raise
        listed = "; ".join(f"{screening.paths[i]!r} is {screening.problems[i]}" for i in bad[:LISTED_FILES])
        more = f"; and {bad.size - LISTED_FILES} more" if bad.size > LISTED_FILES else ""
        raise BadImageFilesError(
            f"{bad.size} image files changed after the load-time check and can no longer be used: {listed}{more}. "
            "Restore or remove them and rerun the same command (training resumes from its last epoch)"
        ) from None
