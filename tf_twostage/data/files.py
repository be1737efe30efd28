"""Helpers for datasets of image files on disk (Clothing1M, a user's folder or CSV).

Two boundary checks, both cheap enough for a million files:

* every image path must stay inside the declared data root once `..` and symlinks are resolved, so a
  list or CSV cannot make the pipeline read arbitrary files;
* every file must exist, be non-empty, start with JPEG/PNG/GIF/BMP magic bytes and end like a complete
  file of its format (JPEG end-of-image marker after the image data, PNG `IEND` chunk, GIF trailer, BMP
  size as its header declares), so a missing, empty, truncated or non-image file stops the run at load
  time with a clear message (or is skipped and counted) instead of crashing `tf.data` hours into
  training. Only the first and last few KiB of a file are read (all of it only for a JPEG followed by a
  long trailer); a file damaged in its middle is found by the full-decode check that the loaders run
  next (`tf_twostage.data.image_check`).
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Iterable, Optional, Sequence

import numpy as np
from absl import logging

ON_BAD_FILE_CHOICES = ("error", "skip")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")

_MAGIC_BYTES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
)
_HEAD_LENGTH = 4096  # bytes read from the start of a file (magic bytes, JPEG segment headers)
_TAIL_LENGTH = 4096  # bytes read from the end of a file (its end marker; trailing bytes are tolerated)
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC
_JPEG_END = b"\xff\xd9"
_FILES_PER_TASK = 4096  # files checked per thread task: enough to hide the pool's overhead
_MAX_THREADS = 8  # opens are I/O-bound: threads help on network or cold disks


def check_image_size(image_size) -> tuple:
    """Returns `image_size` as `(height, width)` after checking it is two positive integers."""
    size = tuple(image_size)
    if len(size) != 2 or not all(_is_positive_int(d) for d in size):
        raise ValueError(f"image_size must be two positive integers (height, width), got {image_size!r}")
    return tuple(int(d) for d in size)


def _is_positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def check_on_bad_file(on_bad_file: str) -> str:
    """Returns `on_bad_file` after checking it is one of `ON_BAD_FILE_CHOICES`."""
    if on_bad_file not in ON_BAD_FILE_CHOICES:
        raise ValueError(
            f"on_bad_file must be one of {', '.join(ON_BAD_FILE_CHOICES)}; got {on_bad_file!r}"
        )
    return on_bad_file


def resolve_paths_under_root(paths: Iterable[str], root: str) -> list:
    """Absolute real paths of `paths` (relative to `root`, or absolute), refusing any outside `root`.

    Paths are resolved with symlinks and `..` as the OS would follow them (`os.path.realpath`), so the
    returned paths are the files actually read. Directory resolutions are cached: one `lstat` per file.

    Raises:
      ValueError: naming the first path that resolves outside `root`.
    """
    real_root = os.path.realpath(root)
    prefix = real_root if real_root.endswith(os.sep) else real_root + os.sep
    real_dirs = {}
    resolved_paths = []
    for path in paths:
        joined = os.path.join(real_root, path)
        head, tail = os.path.split(joined)
        real_head = real_dirs.get(head)
        if real_head is None:
            real_head = real_dirs[head] = os.path.realpath(head)
        resolved = os.path.join(real_head, tail)
        if tail in ("", ".", "..") or os.path.islink(resolved):
            resolved = os.path.realpath(joined)
        if resolved != real_root and not resolved.startswith(prefix):
            raise ValueError(
                f"path {path!r} resolves to {resolved!r}, outside the data root {root!r}; "
                "image paths must stay inside the data directory"
            )
        resolved_paths.append(resolved)
    return resolved_paths


def resolve_under_root(path: str, root: str) -> str:
    """The absolute real path of one `path` (relative to `root`, or absolute) inside `root`."""
    return resolve_paths_under_root([path], root)[0]


def verify_image_files(paths: Sequence[str], on_bad_file: str) -> np.ndarray:
    """Checks each file exists, is non-empty and starts and ends like a complete JPEG/PNG/GIF/BMP image.

    Args:
      paths: file paths.
      on_bad_file: "error" raises on any bad file; "skip" logs how many were bad and leaves them out.

    Returns:
      bool `[N]` keep-mask (all True under "error").

    Raises:
      ValueError: under "error", naming the first bad file, why it is bad and how many are bad.
    """
    check_on_bad_file(on_bad_file)
    paths = list(paths)
    problems = image_file_problems(paths)
    keep = np.array([problem is None for problem in problems], dtype=bool)
    num_bad = int(np.sum(~keep))
    if num_bad == 0:
        return keep
    first = int(np.flatnonzero(~keep)[0])
    first_bad = f"{paths[first]!r} is {problems[first]}"
    if on_bad_file == "error":
        raise ValueError(
            f"{num_bad} of {len(paths)} image files are missing, empty, truncated or not images; the first: "
            f"{first_bad}. Fix or remove them, or set data.on_bad_file=skip to skip them"
        )
    logging.warning(
        "Skipped %d of %d image files that are missing, empty, truncated or not images (first: %s)",
        num_bad,
        len(paths),
        first_bad,
    )
    return keep


def image_file_problems(paths: Sequence[str]) -> list:
    """Per path: None when its first and last bytes look like a complete image file, else why not."""
    paths = list(paths)
    chunks = [paths[start : start + _FILES_PER_TASK] for start in range(0, len(paths), _FILES_PER_TASK)]
    num_threads = min(_MAX_THREADS, os.cpu_count() or 1)  # more threads than cores slow warm disks
    if len(chunks) > 1 and num_threads > 1:
        with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
            return [p for chunk in pool.map(_check_files, chunks) for p in chunk]
    return [p for chunk in chunks for p in _check_files(chunk)]


def _check_files(paths: Sequence[str]) -> list:
    return [_file_problem(path) for path in paths]


def _file_problem(path: str) -> Optional[str]:
    """Why `path` is not a usable image file, or None when its first and last bytes look like one."""
    try:
        descriptor = os.open(path, os.O_RDONLY)  # os-level calls: about twice as fast as open()
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    try:
        size = os.fstat(descriptor).st_size
        head = os.pread(descriptor, _HEAD_LENGTH, 0)
        if not head:
            return "empty"
        if not head.startswith(_MAGIC_BYTES):
            return "not an image (expected JPEG, PNG, GIF or BMP)"
        tail = head if size <= len(head) else os.pread(descriptor, _TAIL_LENGTH, max(0, size - _TAIL_LENGTH))
        return _truncation(descriptor, head, tail, size)
    except OSError as error:  # e.g. a directory
        return f"unreadable ({error.strerror or error})"
    finally:
        os.close(descriptor)


def _truncation(descriptor: int, head: bytes, tail: bytes, size: int) -> Optional[str]:
    """Why a file that starts like an image is cut short, or None when it ends like a complete one."""
    if head.startswith(b"\x89PNG"):
        return None if _ends_with_marker(descriptor, _PNG_END, 8, tail, size) else "truncated (no PNG IEND chunk)"
    if head.startswith(b"GIF"):
        return None if tail.rstrip(b"\x00").endswith(b";") else "truncated (no GIF trailer at its end)"
    if head.startswith(b"BM"):
        declared = int.from_bytes(head[2:6], "little") if len(head) >= 6 else 0
        if declared and declared != size:
            return f"truncated or padded (its BMP header declares {declared} bytes, the file has {size})"
        return None
    return _jpeg_truncation(descriptor, head, tail, size)


def _jpeg_truncation(descriptor: int, head: bytes, tail: bytes, size: int) -> Optional[str]:
    """None when the end-of-image marker follows the start of the image data (SOS), else why not.

    The marker segments before the data are walked by their lengths (an EXIF thumbnail inside one ends
    with its own end marker, which must not count). Inside the entropy-coded data 0xFF is always
    followed by 0x00 or a restart marker, so an end marker found after the SOS is the image's.
    """
    position = 2
    for _ in range(1024):  # a JPEG has a few dozen segments at most before its data
        header = head[position:position + 4] if position + 4 <= len(head) else os.pread(descriptor, 4, position)
        if len(header) < 2 or header[0] != 0xFF:
            return "truncated or corrupt (its JPEG marker segments end early)"
        marker = header[1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xDA:  # start of scan: the image data begins
            break
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        if len(header) < 4:
            return "truncated (its JPEG marker segments end early)"
        position += 2 + int.from_bytes(header[2:4], "big")
        if position >= size:
            return "truncated (a JPEG marker segment runs past the end of the file)"
    else:
        return "corrupt (no JPEG image data found)"
    if _ends_with_marker(descriptor, _JPEG_END, position, tail, size):
        return None
    return "truncated (no JPEG end-of-image marker after the image data)"


def _ends_with_marker(descriptor: int, marker: bytes, start: int, tail: bytes, size: int) -> bool:
    """Whether `marker` occurs after byte `start`: in the tail read already, or (rarely: a long trailer
    after the image, e.g. a motion photo) anywhere from `start` on, read in 1 MiB chunks."""
    tail_start = max(0, size - len(tail))
    found = tail.rfind(marker)
    if found >= 0 and tail_start + found >= start:
        return True
    chunk_length = 1 << 20
    while start < tail_start:
        if marker in os.pread(descriptor, chunk_length + len(marker), start):
            return True
        start += chunk_length
    return False
