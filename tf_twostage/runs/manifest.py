"""A workdir's manifest: which stages are finished, and under which config.

`manifest.json` records every finished stage with the hash of the config it ran under, the time and
its artifacts. Rerunning the same command skips finished stages (a stage in progress resumes from its
epoch checkpoint, `tf_twostage.training.resume`). A workdir is bound to its config: reusing it with a different
one is refused with the differing keys named, unless the caller asks to start over (`restart=True`),
which removes the run's artifacts first. Keys that only change how a run looks (`verbose`) are ignored.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
from typing import Sequence

from tf_twostage.utils import io_utils

MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.json"
IGNORED_KEYS = ("verbose",)  # presentation only: may differ between a run and its resume
# Everything a run writes into its workdir (what a restart removes; anything else is left alone).
RUN_ARTIFACTS = (CONFIG_FILE, MANIFEST_FILE, "results.json", "report.md", "stage1", "final", "export",
                 "logs", "checkpoints", "plots", "evaluation")


class ConfigMismatchError(ValueError):
    """The workdir holds a run made with another config."""


def flatten_config(config) -> dict:
    """Dotted key -> value (JSON types), without the ignored keys."""
    tree = config.to_dict() if hasattr(config, "to_dict") else config
    tree = json.loads(json.dumps(tree, default=str))  # tuples -> lists, as config.json stores them
    flat = {}

    def walk(prefix, node):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(f"{name}.", value)
            elif name not in IGNORED_KEYS:
                flat[name] = value

    walk("", tree)
    return flat


def config_hash(config) -> str:
    """A stable hash of everything in `config` that changes what a run computes."""
    canonical = json.dumps(flatten_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def config_differences(saved, current) -> list:
    """[(key, saved value, current value)] for every key that differs (missing keys read as absent)."""
    old, new = flatten_config(saved), flatten_config(current)
    missing = "<absent>"
    return [(key, old.get(key, missing), new.get(key, missing))
            for key in sorted(set(old) | set(new)) if old.get(key, missing) != new.get(key, missing)]


def check_workdir(workdir: str, config, restart: bool = False) -> None:
    """Refuses a workdir made with another config; with `restart`, clears its run artifacts first."""
    if restart:
        clear_run(workdir)
        return
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    try:
        saved = io_utils.read_json(path)
    except (OSError, ValueError) as error:
        raise ConfigMismatchError(f"{path} cannot be read ({error}); start over with --restart") from error
    differences = config_differences(saved, config)
    if differences:
        shown = "; ".join(f"{key}: {old!r} in the workdir, {new!r} now" for key, old, new in differences[:12])
        more = f" (and {len(differences) - 12} more)" if len(differences) > 12 else ""
        raise ConfigMismatchError(
            f"workdir {workdir} holds a run with a different config: {shown}{more}. Use another --workdir, "
            "or pass --restart to delete this run's artifacts and start over with the new config."
        )


def clear_run(workdir: str) -> None:
    """Removes everything a run writes into `workdir` (other files there are left alone)."""
    for name in RUN_ARTIFACTS:
        path = os.path.join(workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)


class RunManifest:
    """The stages of the run in `workdir` finished under `config` (read from and written to disk)."""

    def __init__(self, workdir: str, config):
        self.path = os.path.join(workdir, MANIFEST_FILE)
        self.config_hash = config_hash(config)
        self.data = {"config_hash": self.config_hash, "stages": {}}
        if os.path.exists(self.path):
            saved = io_utils.read_json(self.path)
            if saved.get("config_hash") == self.config_hash:
                self.data = saved

    def done(self, stage: str) -> bool:
        entry = self.data["stages"].get(stage)
        return bool(entry) and entry.get("config_hash") == self.config_hash

    def mark_done(self, stage: str, artifacts: Sequence[str] = ()) -> None:
        self.data["stages"][stage] = {
            "config_hash": self.config_hash,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "artifacts": list(artifacts),
        }
        io_utils.write_json(self.path, self.data)

    def stages(self) -> list:
        return list(self.data["stages"])
