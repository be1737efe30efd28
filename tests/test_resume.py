"""Epoch checkpoints and the run manifest: exact resume, NaN stop, torn writes, config binding."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_twostage.training.trainer import CrossEntropyTrainer
from tf_twostage.runs.manifest import (ConfigMismatchError, RunManifest, check_workdir, config_differences,
                                      config_hash, stage_config_hash)
from tf_twostage.training.resume import NonFiniteLossError, latest_checkpoint, resume_fit
from tf_twostage.training.optimizers import ResumableReduceLROnPlateau

STEPS = 4


def _trainer():
    keras.utils.set_random_seed(0)
    classifier = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.5, seed=3),
        keras.layers.GaussianNoise(0.3, seed=4), keras.layers.Dense(3, activation="softmax"),
    ])
    trainer = CrossEntropyTrainer(classifier)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    return trainer


def _stream(poison_from_step=None):
    rng = np.random.RandomState(0)
    images, labels = rng.randn(64, 8).astype(np.float32), np.arange(64) % 3
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(64, seed=1).batch(16).repeat()
    if poison_from_step is None:
        return dataset
    poisoned = dataset.map(lambda x, y: (x * np.float32(np.nan), y))
    return dataset.take(poison_from_step).concatenate(poisoned)


def _plateau():
    return ResumableReduceLROnPlateau(monitor="loss", mode="min", factor=0.5, patience=1, min_lr=1e-6)


def test_resumed_fit_equals_an_uninterrupted_one(tmp_path):
    uninterrupted = _trainer()
    history = resume_fit(uninterrupted, _stream(), epochs=4, steps_per_epoch=STEPS,
                         directory=str(tmp_path / "a"), callbacks=[_plateau()], verbose=0)

    first = _trainer()  # stops after 2 epochs, as if killed
    resume_fit(first, _stream(), epochs=2, steps_per_epoch=STEPS, directory=str(tmp_path / "b"),
               callbacks=[_plateau()], verbose=0)
    assert os.path.basename(latest_checkpoint(str(tmp_path / "b"))) == "epoch-00002"
    resumed = _trainer()  # a fresh process would build everything again
    resumed_history = resume_fit(resumed, _stream(), epochs=4, steps_per_epoch=STEPS,
                                 directory=str(tmp_path / "b"), callbacks=[_plateau()], verbose=0)

    for expected, actual in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(expected, actual)
    assert int(resumed.optimizer.iterations.numpy()) == 4 * STEPS
    assert resumed_history.history == history.history  # all 4 epochs, the 2 before the resume included
    assert len(history.history["loss"]) == 4


def test_finished_stage_restores_without_training(tmp_path):
    trainer = _trainer()
    resume_fit(trainer, _stream(), epochs=2, steps_per_epoch=STEPS, directory=str(tmp_path), verbose=0)
    again = _trainer()
    history = resume_fit(again, _stream(), epochs=2, steps_per_epoch=STEPS, directory=str(tmp_path), verbose=0)
    assert int(again.optimizer.iterations.numpy()) == 2 * STEPS
    assert len(history.history["loss"]) == 2
    for expected, actual in zip(trainer.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(expected, actual)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = _trainer()
    with pytest.raises(NonFiniteLossError, match=r"became (nan|NaN).* in epoch 2.*epoch-00001"):
        resume_fit(trainer, _stream(poison_from_step=STEPS + 1), epochs=3, steps_per_epoch=STEPS,
                   directory=str(tmp_path), verbose=0)
    assert sorted(os.listdir(tmp_path)) == ["epoch-00001"]
    restored = _trainer()
    history = resume_fit(restored, _stream(), epochs=1, steps_per_epoch=STEPS, directory=str(tmp_path),
                         verbose=0)
    assert all(np.isfinite(weight).all() for weight in restored.get_weights())
    assert len(history.history["loss"]) == 1


def test_a_torn_checkpoint_folder_is_ignored(tmp_path):
    trainer = _trainer()
    resume_fit(trainer, _stream(), epochs=1, steps_per_epoch=STEPS, directory=str(tmp_path), verbose=0)
    torn = tmp_path / ".tmp-killed"
    torn.mkdir()
    (torn / "trainer.weights.h5").write_bytes(b"\x89HDF")  # what a kill mid-write leaves
    assert os.path.basename(latest_checkpoint(str(tmp_path))) == "epoch-00001"
    resume_fit(_trainer(), _stream(), epochs=2, steps_per_epoch=STEPS, directory=str(tmp_path), verbose=0)
    assert sorted(os.listdir(tmp_path)) == ["epoch-00002"]  # the torn folder is cleaned up


def _config(**changes):
    from tf_twostage.config import base_config

    config = base_config()
    for key, value in changes.items():
        section, _, leaf = key.rpartition(".")
        (config[section] if section else config)[leaf] = value
    return config


def test_config_differences_name_the_keys_and_ignore_verbosity():
    saved = json.loads(json.dumps(_config().to_dict()))  # as config.json stores it (tuples -> lists)
    assert config_differences(saved, _config(verbose=0)) == []
    assert config_hash(saved) == config_hash(_config(verbose=2))
    differences = config_differences(saved, _config(**{"noise.rate": 0.2, "stage1.epochs": 7}))
    assert differences == [("noise.rate", 0.6, 0.2), ("stage1.epochs", saved["stage1"]["epochs"], 7)]


def test_workdir_with_another_config_is_refused_unless_restarted(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_config().to_dict()))
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    check_workdir(str(tmp_path), _config(verbose=0))  # same config: accepted
    with pytest.raises(ConfigMismatchError, match=r"noise\.rate: 0\.6 in the workdir, 0\.2 now.*--restart"):
        check_workdir(str(tmp_path), _config(**{"noise.rate": 0.2}))
    check_workdir(str(tmp_path), _config(**{"noise.rate": 0.2}), restart=True)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]  # the run's artifacts went, the user's file stayed


def test_manifest_records_stages_under_the_config_hash(tmp_path):
    manifest = RunManifest(str(tmp_path), _config())
    assert not manifest.done("stage1")
    manifest.mark_done("stage1", ["stage1/predictions.npz"])
    assert RunManifest(str(tmp_path), _config(verbose=0)).done("stage1")
    assert not RunManifest(str(tmp_path), _config(seed=1)).done("stage1")
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["stages"]["stage1"]["artifacts"] == ["stage1/predictions.npz"]
    assert saved["stages"]["stage1"]["config_hash"] == stage_config_hash(_config(), "stage1")


def test_a_change_of_later_stage_keys_keeps_the_earlier_stages_done(tmp_path):
    manifest = RunManifest(str(tmp_path), _config())
    for stage in ("stage1", "selection", "training"):
        manifest.mark_done(stage)
    rethreshold = RunManifest(str(tmp_path), _config(**{"stage1.threshold": 0.8}))
    assert rethreshold.done("stage1") and not rethreshold.done("selection") and not rethreshold.done("training")
    switch = RunManifest(str(tmp_path), _config(**{"stage1.heavy_noise_rate": 0.65}))  # decided from predictions
    assert switch.done("stage1") and not switch.done("selection")
    for key, value in (("stage1.propagation_input", "labels"), ("stage1.heavy_noise_alpha", 0.9),
                       ("stage1.propagation_blur", 0.0),
                       ("stage1.heavy_noise_input", "posterior")):  # what the selection spreads, and how far
        respread = RunManifest(str(tmp_path), _config(**{key: value}))
        assert respread.done("stage1") and not respread.done("selection"), key
    stage2 = RunManifest(str(tmp_path), _config(**{"stage2.epochs": 3}))
    assert stage2.done("stage1") and stage2.done("selection") and not stage2.done("training")
    assert not RunManifest(str(tmp_path), _config(**{"stage1.epochs": 3})).done("stage1")


def test_workdir_accepts_a_later_stage_change_and_drops_only_later_checkpoints(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_config(method="two_stage").to_dict()))
    RunManifest(str(tmp_path), _config(method="two_stage")).mark_done("stage1")
    for name in ("stage1", "stage2"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    changed = _config(method="two_stage", **{"stage1.floor_fraction": 0.2, "stage2.epochs": 2})
    assert check_workdir(str(tmp_path), changed) == ["stage1.floor_fraction", "stage2.epochs"]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["stage1"]
    with pytest.raises(ConfigMismatchError, match=r"stage1\.epochs: .* now\. Rerun with --retrain"):
        check_workdir(str(tmp_path), _config(method="two_stage", **{"stage1.epochs": 2}),
                      remedy="Rerun with --retrain")


def test_a_stage_marked_by_another_manifest_instance_is_kept(tmp_path):
    runner = RunManifest(str(tmp_path), _config())  # the runner's, created before the stages ran
    RunManifest(str(tmp_path), _config()).mark_done("stage1")  # a stage function's own
    runner.mark_done("training")
    assert RunManifest(str(tmp_path), _config()).stages() == ["stage1", "training"]
