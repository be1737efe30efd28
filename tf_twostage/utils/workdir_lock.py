"""One run per workdir: a lock file holding the owner's pid and host, and the cleanup of `.tmp-*` leftovers.

`acquire(workdir)` creates `workdir/.lock` and holds an exclusive `fcntl.flock` on it for as long as
the process runs (or until `release`). The kernel drops the flock when its holder dies, however it
dies, so a lock file left by a killed run is stale by construction: the next run takes it over (and
says whose it was). A second live run on the same workdir stops at once with `WorkdirBusyError`
naming the holder's pid, host and start time. The file's content is for people; the flock is the
lock. Locks are re-entrant within one process (the runner and the stage programs share one).

`remove_temporaries(workdir)` deletes the `.tmp-*` files and folders that an atomic write or an
export left behind when it was killed; call it while holding the lock, so no live writer owns them.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import shutil
import socket
from typing import Optional

from absl import logging

LOCK_FILE = ".lock"
TEMPORARY_PREFIX = ".tmp-"

_HELD = {}  # real workdir path -> [file descriptor, count, created the workdir]


class WorkdirBusyError(ValueError):
    """Another live process holds the workdir's lock."""


def lock_path(workdir: str) -> str:
    return os.path.join(workdir, LOCK_FILE)


def acquire(workdir: str) -> None:
    """Takes the workdir's lock (creating the folder if needed), or raises `WorkdirBusyError`.

    Also the precondition check of every program that writes into a workdir: an empty name, an
    existing file, or a folder that cannot be created or written is refused (ValueError) here, before
    any data is loaded.
    """
    workdir = os.fspath(workdir) if workdir is not None else ""
    if not workdir.strip():
        raise ValueError(f"the workdir must name a folder to write the run into, got {workdir!r}")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"the workdir {workdir!r} is an existing file, not a folder; name a folder")
    created = not os.path.exists(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the workdir {workdir!r}: {error.strerror or error}") from None
    key = os.path.realpath(workdir)
    if key in _HELD:
        _HELD[key][1] += 1
        return
    path = lock_path(workdir)
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise ValueError(f"the workdir {workdir!r} is not writable; pick a folder you can write to")
    for _ in range(10):  # the file may be removed by its releasing holder between open and flock
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise ValueError(f"cannot write the lock file {path}: {error.strerror or error}; the workdir "
                             "must be writable") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _describe(_read_holder(descriptor))
            os.close(descriptor)
            raise WorkdirBusyError(
                f"workdir {workdir} is in use by another run ({holder}; lock file {path}); wait for it to "
                "finish or stop it, or use another --workdir"
            ) from None
        try:
            same_file = os.path.samestat(os.fstat(descriptor), os.stat(path))
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(descriptor)
    else:
        raise WorkdirBusyError(f"could not lock {path}: it keeps being replaced by another process")
    previous = _read_holder(descriptor)
    if previous:
        logging.warning("took over the stale lock of %s on %s (that run is gone)", workdir, _describe(previous))
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }).encode("utf-8") + b"\n", 0)
    _HELD[key] = [descriptor, 1, created]


def release(workdir: str, remove_if_empty: bool = False) -> None:
    """Drops one hold of the lock; the last one removes the lock file and, with `remove_if_empty`, the
    workdir when this process created it and nothing else is in it (a run refused at load time)."""
    key = os.path.realpath(workdir)
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    descriptor, _, created = held
    try:
        os.remove(lock_path(workdir))  # while still locked: a waiting opener re-checks the inode
    except FileNotFoundError:
        pass
    os.close(descriptor)
    if remove_if_empty and created:
        try:
            os.rmdir(workdir)
        except OSError:
            pass  # not empty: keep it


def holds(workdir: str) -> bool:
    return os.path.realpath(workdir) in _HELD


def remove_temporaries(workdir: str) -> list:
    """Deletes `.tmp-*` files and folders anywhere under `workdir`; returns what it removed."""
    removed = []
    for folder, subfolders, files in os.walk(workdir):
        for name in list(subfolders):
            if name.startswith(TEMPORARY_PREFIX):
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
                removed.append(os.path.join(folder, name))
                subfolders.remove(name)
        for name in files:
            if name.startswith(TEMPORARY_PREFIX):
                os.remove(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
    if removed:
        logging.info("removed %d temporary leftovers of an interrupted write in %s", len(removed), workdir)
    return removed


def _read_holder(descriptor: int) -> Optional[dict]:
    try:
        content = os.pread(descriptor, 4096, 0)
        holder = json.loads(content.decode("utf-8")) if content.strip() else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: Optional[dict]) -> str:
    if not holder:
        return "a process that has not written its pid yet"
    return f"pid {holder.get('pid')} on host {holder.get('host')}, since {holder.get('started')}"
