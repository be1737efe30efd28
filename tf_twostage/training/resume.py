"""Crash-safe `fit`: epoch checkpoints that a rerun resumes from, exactly where the run stopped.

After every epoch, `EpochCheckpoint` writes one folder `<checkpoint_dir>/epoch-NNNNN/`, built under a
temporary name and renamed when complete (a SIGKILL mid-write leaves only an ignored `.tmp-*` folder):

  trainer.weights.h5  the trainer's weights: the classifier, the optimizer (step count, moments,
                      learning rate, hence the schedule position) and the algorithm's variables
                      (the Stage-2 epoch, the temporal-ensemble buffer)
  state.npz           the dropout / noise seed-generator states, and the array state of the stateful
                      callbacks (e.g. the Stage-1 recorder's best weights and predictions)
  state.json          the epoch, the history so far, the scalar state of the stateful callbacks

`resume_fit` restores the newest complete folder, skips the input stream past the steps already
trained (the pipelines are deterministic, so every later batch is the one an uninterrupted run would
see) and continues `fit` from that epoch; a finished stage restores and trains zero epochs.

Why not `keras.callbacks.BackupAndRestore`: it writes its files in place (a kill mid-write leaves a
torn checkpoint), and it carries neither the seed-generator states nor callbacks' own state, so a
resumed run would drift from an uninterrupted one.

A callback with state implements `checkpoint_state() -> (json_dict, arrays_dict)` and
`restore_state(json_dict, arrays_dict)`; `resume_fit` saves every such callback it is given.

A non-finite epoch loss (or non-finite weights) stops training with `NonFiniteLossError` before
anything is written, so the last good checkpoint stays intact.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from typing import Optional, Sequence

import keras
import numpy as np
from absl import logging

from tf_twostage.utils import io_utils

CHECKPOINTS_DIR = "checkpoints"  # under a run's workdir: one folder per training stage
WEIGHTS_FILE = "trainer.weights.h5"
_EPOCH_DIR = re.compile(r"^epoch-(\d{5,})$")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def checkpoint_dir(workdir: str, stage_name: str) -> str:
    return os.path.join(workdir, CHECKPOINTS_DIR, stage_name)


def latest_checkpoint(directory: str) -> Optional[str]:
    """The newest complete `epoch-NNNNN` folder in `directory` (None when there is none)."""
    if not os.path.isdir(directory):
        return None
    epochs = [(int(match.group(1)), name) for name in os.listdir(directory)
              if (match := _EPOCH_DIR.match(name))]
    return os.path.join(directory, max(epochs)[1]) if epochs else None


def seed_generator_states(model: keras.Model) -> list:
    """The seed-generator state variables of `model`'s layers (dropout, noise), in a fixed order."""
    # `Layer.variables` is every state of the layer and its sub-layers, seed generators included.
    return [variable for variable in model.variables if "seed_generator_state" in variable.path]


class EpochCheckpoint(keras.callbacks.Callback):
    """Writes a complete, atomically renamed checkpoint after every epoch (see the module docstring).

    Put it last in the callback list, so the state it saves includes every other callback's epoch end.
    """

    def __init__(self, directory: str, stateful: Sequence = (), history: Optional[dict] = None,
                 keep: int = 1):
        super().__init__()
        self.directory = directory
        self.stateful = list(stateful)
        self.history = {key: list(values) for key, values in (history or {}).items()}
        self.keep = int(keep)

    def on_epoch_end(self, epoch, logs=None):
        logs = {key: float(np.asarray(value).reshape(-1)[0]) for key, value in (logs or {}).items()}
        loss = logs.get("loss")
        problem = None
        if loss is not None and not math.isfinite(loss):
            problem = f"the training loss became {loss}"
        elif not all(np.isfinite(weight).all() for weight in self.model.get_weights()):
            problem = "the weights became NaN or infinite"  # a clipped loss can hide the divergence
        if problem:
            last = latest_checkpoint(self.directory)
            raise NonFiniteLossError(
                f"{problem} in epoch {epoch + 1}; training stopped. The last good "
                f"checkpoint is {last or 'none (it was the first epoch)'}; rerunning resumes from it. "
                "Lower the learning rate or check the data for NaN or infinite pixels."
            )
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        self.save(epoch + 1)

    def save(self, epochs_done: int) -> None:
        os.makedirs(self.directory, exist_ok=True)
        temporary = tempfile.mkdtemp(prefix=".tmp-", dir=self.directory)
        try:
            self.model.save_weights(os.path.join(temporary, WEIGHTS_FILE))
            scalars, arrays = {}, {}
            for number, variable in enumerate(seed_generator_states(self.model)):
                arrays[f"seed_generator/{number}"] = np.asarray(variable.numpy())
            for number, callback in enumerate(self.stateful):
                callback_scalars, callback_arrays = callback.checkpoint_state()
                scalars[str(number)] = callback_scalars
                arrays.update({f"callback{number}/{key}": value for key, value in callback_arrays.items()})
            io_utils.write_npz(os.path.join(temporary, "state.npz"), **arrays)
            io_utils.write_json(os.path.join(temporary, "state.json"), {
                "epochs_done": epochs_done, "history": self.history, "callbacks": scalars,
            })
            _fsync_tree(temporary)
            final = os.path.join(self.directory, f"epoch-{epochs_done:05d}")
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(temporary, final)
        finally:
            if os.path.exists(temporary):
                shutil.rmtree(temporary)
        self._prune()

    def _prune(self) -> None:
        names = sorted(name for name in os.listdir(self.directory) if _EPOCH_DIR.match(name))
        for name in names[:-self.keep]:
            shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        for name in os.listdir(self.directory):  # folders of a write that was killed
            if name.startswith(".tmp-"):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)


def restore_checkpoint(directory: str, trainer: keras.Model, stateful: Sequence = ()) -> tuple:
    """Loads the newest checkpoint into `trainer` and `stateful`; returns (epochs_done, history)."""
    path = latest_checkpoint(directory)
    if path is None:
        return 0, {}
    with open(os.path.join(path, "state.json"), encoding="utf-8") as file:
        state = json.load(file)
    arrays = io_utils.read_npz(os.path.join(path, "state.npz"))
    if not trainer.optimizer.built:
        trainer.optimizer.build(getattr(trainer, "classifier", trainer).trainable_variables)
    trainer.load_weights(os.path.join(path, WEIGHTS_FILE))
    states = seed_generator_states(trainer)
    saved_states = sorted((key for key in arrays if key.startswith("seed_generator/")),
                          key=lambda key: int(key.split("/")[1]))
    if len(saved_states) != len(states):
        raise ValueError(f"{path} holds {len(saved_states)} seed-generator states but the model has "
                         f"{len(states)}: the checkpoint belongs to another architecture")
    for variable, key in zip(states, saved_states):
        variable.assign(arrays[key])
    for number, callback in enumerate(stateful):
        prefix = f"callback{number}/"
        callback.restore_state(state["callbacks"].get(str(number), {}),
                               {key[len(prefix):]: value for key, value in arrays.items()
                                if key.startswith(prefix)})
    logging.info("resumed from %s (%d epochs done)", path, state["epochs_done"])
    return int(state["epochs_done"]), state["history"]


def resume_fit(trainer: keras.Model, dataset, *, epochs: int, steps_per_epoch: int, directory: str,
               callbacks: Sequence = (), **fit_kwargs) -> keras.callbacks.History:
    """`trainer.fit(dataset, ...)` that checkpoints every epoch into `directory` and resumes from it.

    Call with the trainer compiled (under the strategy's scope when there is one). `dataset` is the
    endless training stream; callbacks with a `checkpoint_state` method have their state saved too.
    Returns a `History` covering every epoch of the stage, including those before a resume.
    """
    stateful = [callback for callback in callbacks if hasattr(callback, "checkpoint_state")]
    done, history = restore_checkpoint(directory, trainer, stateful)
    done = min(done, int(epochs))
    checkpoint = EpochCheckpoint(directory, stateful, history)
    fitted = trainer.fit(
        dataset.skip(done * int(steps_per_epoch)) if done else dataset,
        epochs=int(epochs), initial_epoch=done, steps_per_epoch=int(steps_per_epoch),
        callbacks=list(callbacks) + [checkpoint], **fit_kwargs,
    )
    fitted.history = checkpoint.history
    fitted.epoch = list(range(len(next(iter(checkpoint.history.values()), []))))
    return fitted


def remove_checkpoints(workdir: str) -> None:
    """Deletes a finished run's epoch checkpoints (they only serve a resume)."""
    shutil.rmtree(os.path.join(workdir, CHECKPOINTS_DIR), ignore_errors=True)


def _fsync_tree(folder: str) -> None:
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as file:
            os.fsync(file.fileno())
