"""Returning a finished stage's memory to the operating system."""

from __future__ import annotations

import ctypes
import gc


def release_memory() -> bool:
    """Collects garbage, then asks glibc to give its free heap pages back (`malloc_trim(0)`); True if it did.

    Between the stages of a run: TensorFlow frees a stage's buffers (a ResNet-50 step's activations, GBs on
    CPU) into glibc's arenas, which keep them, so without this the resident set of a run only grows, each
    stage on top of the last. A no-op where the C library has no `malloc_trim` (not glibc).
    """
    gc.collect()
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))
