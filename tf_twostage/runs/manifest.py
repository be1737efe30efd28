"""A workdir's manifest: which stages are finished, and under which config.

`manifest.json` records every finished stage with the hash of the config it ran under, the time and
its artifacts. Rerunning the same command skips finished stages (a stage in progress resumes from its
epoch checkpoint, `tf_twostage.training.resume`). A workdir is bound to its config: reusing it with a different
one is refused with the differing keys named, unless the caller asks to start over (`restart=True`),
which removes the run's artifacts first, or only keys of later stages differ (`LATER_STAGE_KEYS`:
each stage is recorded under the hash of the keys it reads, so the finished earlier stages are
reused and the later ones run again). Keys that only change how a run looks (`verbose`) are ignored.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
from typing import Sequence

from absl import logging

from tf_twostage.config.compare import IGNORED_KEYS, config_differences, flatten_config  # noqa: F401
from tf_twostage.utils import io_utils

MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.json"
# Everything a run writes into its workdir (what a restart removes; anything else is left alone).
RUN_ARTIFACTS = (CONFIG_FILE, MANIFEST_FILE, "results.json", "report.md", "stage1", "stage2", "final", "export",
                 "logs", "checkpoints", "plots", "evaluation")


# The stages of a run, in order, and the config keys first read by a stage after `stage1` (every other key
# is read by Stage-1 pre-training, or by everything). A stage's hash covers the keys of it and of the stages
# before it, so a change of only later-stage keys keeps the earlier stages finished: another
# stage1.threshold reruns the selection and Stage 2 from the recorded Stage-1 predictions.
STAGES = ("stage1", "selection", "training", "export", "results")
LATER_STAGE_KEYS = {
    "stage1.threshold": "selection",
    "stage1.floor_fraction": "selection",
    "stage1.top_up": "selection",
    "stage1.posterior": "selection",
    "stage1.propagation": "selection",
    "stage1.propagation_neighbours": "selection",
    "stage1.propagation_alpha": "selection",
    "stage1.propagation_input": "selection",
    "stage1.propagation_blur": "selection",
    "stage1.heavy_noise_alpha": "selection",  # the switch's overrides, applied to the recorded predictions
    "stage1.heavy_noise_input": "selection",
    "stage1.heavy_noise_rate": "selection",  # decided from the recorded Stage-1 predictions
    "stage1.clean_threshold": "selection",
    "baselines.filter_percentile": "selection",  # the corrected posterior's transition estimate
    "stage2.": "training",  # every Stage-2 key
    "baselines.": "training",  # the loss baselines' own keys
}


class ConfigMismatchError(ValueError):
    """The workdir holds a run made with another config."""


def first_stage(key: str) -> str:
    """The first stage that reads config `key` (dotted)."""
    for prefix, stage in LATER_STAGE_KEYS.items():
        if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
            return stage
    return STAGES[0]


def stage_config_hash(config, stage: str) -> str:
    """The hash of the keys that `stage` and the stages before it read."""
    last = STAGES.index(stage)
    flat = {key: value for key, value in flatten_config(config).items() if STAGES.index(first_stage(key)) <= last}
    canonical = json.dumps(flat, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def config_hash(config) -> str:
    """A stable hash of everything in `config` that changes what a run computes."""
    canonical = json.dumps(flatten_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def check_workdir(workdir: str, config, restart: bool = False,
                  remedy: str = "Use another --workdir, or pass --restart to delete this run's artifacts and "
                                "start over with the new config") -> list:
    """Refuses a workdir made with another config, unless only later-stage keys differ.

    A difference only in keys that stages after Stage 1 read (`LATER_STAGE_KEYS`) is accepted: the
    finished earlier stages are kept, the later ones run again (their checkpoints are removed here).
    `restart` clears the run's artifacts first. `remedy` is the advice of the refusal: it must name
    flags the calling program has. Returns the differing keys that were accepted.
    """
    if restart:
        clear_run(workdir)
        return []
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return []
    try:
        saved = io_utils.read_json(path)
        if not isinstance(saved, dict):
            raise ValueError(f"it holds {type(saved).__name__}, not a JSON object")
    except (OSError, ValueError) as error:
        raise ConfigMismatchError(f"{path} cannot be read ({error}). {remedy}.") from error
    differences = config_differences(saved, config)
    early = [difference for difference in differences if first_stage(difference[0]) == STAGES[0]]
    if early:
        shown = "; ".join(f"{key}: {old!r} in the workdir, {new!r} now" for key, old, new in early[:12])
        more = f" (and {len(early) - 12} more)" if len(early) > 12 else ""
        raise ConfigMismatchError(f"workdir {workdir} holds a run with a different config: {shown}{more}. {remedy}.")
    if differences:
        keys = [key for key, _, _ in differences]
        logging.warning("workdir %s: the config differs only in %s: the finished earlier stages are kept, "
                        "later ones run again", workdir, ", ".join(keys))
        remove_later_checkpoints(workdir)
    return [key for key, _, _ in differences]


# Checkpoint folders (training.resume) of a Stage-1 pre-training, which only Stage-1 keys shape.
STAGE1_CHECKPOINTS = ("stage1",)


def remove_later_checkpoints(workdir: str) -> None:
    """Deletes the epoch checkpoints of every training after the Stage-1 pre-training (their config
    changed); a Stage-1 checkpoint is kept only when the manifest's Stage 1 is a two-stage pre-training."""
    folder = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(folder):
        return
    manifest_path = os.path.join(workdir, MANIFEST_FILE)
    try:
        stages = io_utils.read_json(manifest_path).get("stages", {}) if os.path.exists(manifest_path) else {}
    except (OSError, ValueError, AttributeError):
        stages = {}
    keep_stage1 = "stage1" in stages or "training" not in stages and os.path.exists(
        os.path.join(workdir, "stage1", "predictions.npz"))
    for name in os.listdir(folder):
        if name.startswith("stage1_fold") or (name in STAGE1_CHECKPOINTS and keep_stage1):
            continue
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def clear_run(workdir: str) -> None:
    """Removes everything a run writes into `workdir` (other files there are left alone)."""
    for name in RUN_ARTIFACTS:
        path = os.path.join(workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)


class RunManifest:
    """The stages of the run in `workdir` finished under `config` (read from and written to disk).

    Each stage is recorded with the hash of the config keys it reads (`stage_config_hash`), so a
    stage stays done when only keys of later stages change. Entries written before per-stage hashes
    (the whole config's hash) count as done for an identical config.
    """

    def __init__(self, workdir: str, config):
        self.path = os.path.join(workdir, MANIFEST_FILE)
        self.config_hash = config_hash(config)
        self._config = config
        self.data = {"config_hash": self.config_hash, "stages": {}}
        if os.path.exists(self.path):
            try:
                saved = io_utils.read_json(self.path)
            except ValueError as error:
                raise ValueError(f"{self.path} is damaged ({error}); start over with bin/run_experiment.py (or "
                                 "bin/train_stage1.py) --restart, or use another --workdir") from error
            if isinstance(saved, dict) and isinstance(saved.get("stages"), dict):
                self.data = {"config_hash": self.config_hash, "stages": saved["stages"]}

    def stage_hash(self, stage: str) -> str:
        return stage_config_hash(self._config, stage if stage in STAGES else STAGES[-1])

    def done(self, stage: str) -> bool:
        entry = self.data["stages"].get(stage)
        return bool(entry) and entry.get("config_hash") in (self.stage_hash(stage), self.config_hash)

    def mark_done(self, stage: str, artifacts: Sequence[str] = ()) -> None:
        """Records `stage` as finished, keeping what other instances recorded meanwhile (the runner holds
        one manifest while the stage functions mark theirs with their own)."""
        if os.path.exists(self.path):
            try:
                saved = io_utils.read_json(self.path)
            except ValueError:
                saved = {}
            if isinstance(saved, dict) and isinstance(saved.get("stages"), dict):
                self.data["stages"] = {**saved["stages"], **self.data["stages"]}
                for name, entry in saved["stages"].items():  # the newer record of a stage wins
                    if entry.get("finished", "") > self.data["stages"][name].get("finished", ""):
                        self.data["stages"][name] = entry
        self.data["stages"][stage] = {
            "config_hash": self.stage_hash(stage),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "artifacts": list(artifacts),
        }
        io_utils.write_json(self.path, self.data)

    def stages(self) -> list:
        return list(self.data["stages"])
