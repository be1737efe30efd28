"""The own-data preset (configs/folder.py) on a tiny image folder and CSV the test writes, end to end."""

import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_twostage.data.prepare import prepare_data
from tf_twostage.models.factory import model_for_image
from tf_twostage.runs.experiment import run_experiment
from tf_twostage.runs.propagation import pixel_features, propagate_split
from tf_twostage.stage1.selection import select_confident_labels
from tf_twostage.training.schedules import epochs_for_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("circle", "square", "stripes")


def _load_preset():
    spec = importlib.util.spec_from_file_location("folder", os.path.join(ROOT, "configs", "folder.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _preset(**overrides):
    config = _load_preset()
    for key, value in {"verbose": 0, "data.image_size": (16, 16), "noise.type": "none", "noise.rate": 0.0,
                       "stage1.epochs": 2, "stage2.epochs": 2, "stage2.rampup_epochs": 1,
                       "stage2.rampdown_epochs": 1, "batch_size": 32, "stage2.batch_size": 32, **overrides}.items():
        section, _, leaf = key.rpartition(".")
        (config[section] if section else config)[leaf] = value
    return config


def _image(kind: int, rng) -> np.ndarray:
    image = rng.randint(0, 60, (16, 16, 3)).astype(np.uint8)
    if kind == 0:
        yy, xx = np.mgrid[:16, :16]
        image[(yy - 8) ** 2 + (xx - 8) ** 2 < 25] = (220, 40, 40)
    elif kind == 1:
        image[4:12, 4:12] = (40, 220, 40)
    else:
        image[::3] = (40, 40, 220)
    return image


@pytest.fixture(scope="module", name="own_data")
def fixture_own_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    rng = np.random.RandomState(0)
    rows = []
    for source, per_class in (("train", 40), ("test", 10), ("clean", 4)):
        for c, name in enumerate(CLASSES):
            os.makedirs(root / source / name)
            for i in range(per_class):
                # 20% of the training labels are wrong: the image is drawn from the next class.
                drawn = (c + 1) % 3 if source == "train" and i % 5 == 0 else c
                path = f"{source}/{name}/{i:03d}.png"
                tf.io.write_file(str(root / path), tf.io.encode_png(_image(drawn, rng)))
                if source == "train":
                    rows.append(f"{path},{name}")
    (root / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return root


def test_preset_adds_no_noise_to_the_users_labels_and_passes_the_checks():
    from tf_twostage.config.checks import validate_config
    from tf_twostage.runs.experiment import METHODS

    config = _load_preset()
    assert (config.noise.type, config.noise.rate) == ("none", 0.0)
    assert (config.model.name, config.stage1.optimizer, config.validation.source) == ("auto", "adam", "auto")
    config.data.dir, config.data.train, config.data.test = "/data", "train", "test"
    validate_config(config, methods=tuple(METHODS))


def test_epochs_scale_with_the_data_size_and_the_model_with_the_image_size():
    assert epochs_for_data(60, 1500, 29) == 52  # 3,600 images at batch 128
    assert epochs_for_data(60, 1500, 391) == 10  # 50,000 images: the minimum
    assert epochs_for_data(60, 1500, 2) == 60  # a tiny dataset: the maximum
    assert epochs_for_data(5, 1500, 391) == 5 and epochs_for_data(40, 0, 29) == 40  # off
    with pytest.raises(ValueError, match="steps_per_epoch >= 1"):
        epochs_for_data(60, 1500, 0)
    assert model_for_image("auto", (32, 32, 3)) == "resnet14"
    assert model_for_image("auto", (224, 224, 3)) == "resnet50"
    assert model_for_image("mlp", (224, 224, 3)) == "mlp"


def test_folder_preset_runs_two_stage_scored_on_the_clean_subset(own_data, tmp_path):
    config = _preset(**{"data.dir": str(own_data), "data.train": "train", "data.test": "test",
                        "data.clean": "clean", "stage1.target_steps": 12})
    results = run_experiment(config, str(tmp_path))
    assert results["dataset"] == "folder" and results["method"] == "two_stage"
    assert len(results["history"]["stage1"]["loss"]) == 2  # 12 steps would be 3 epochs: capped by stage1.epochs
    validation = results["validation"]
    assert validation["source"] == "clean" and validation["num_examples"] == 12
    assert validation["measured"] == "accuracy against the clean labels"
    assert validation["stage"] == "stage2" and validation["selected_epoch"] in (1, 2)
    assert isinstance(results["fallbacks"], list)
    assert 0.0 <= results["test_accuracy"] <= 1.0


def test_csv_preset_trains_cross_entropy_scored_on_the_corrected_noisy_split(own_data, tmp_path):
    config = _preset(**{"method": "ce", "data.name": "csv", "data.dir": str(own_data), "data.train": "train.csv",
                        "data.test": "test"})
    config.data.test = ""
    with pytest.raises(ValueError, match="data.name=csv needs data.test"):
        run_experiment(config, str(tmp_path / "refused"))
    rows = ["path,label"] + [f"test/{name}/{i:03d}.png,{name}" for name in CLASSES for i in range(10)]
    (own_data / "test.csv").write_text("\n".join(rows) + "\n")
    config.data.test = "test.csv"
    results = run_experiment(config, str(tmp_path / "run"))
    assert results["dataset"] == "csv" and results["num_train"] + results["num_validation"] == 120
    validation = results["validation"]
    assert validation["source"] == "noisy" and validation["num_examples"] == results["num_validation"]
    assert validation["value"] is not None and "noisy_accuracy" in validation


def test_label_propagation_ranks_a_folder_of_image_files(own_data, tmp_path):
    # Without a clean subset the confidence rule ranks, here with the posterior propagated over the images
    # decoded from their files (16x16 RGB): the kept set is the one the propagated posterior gives.
    config = _preset(**{"data.dir": str(own_data), "data.train": "train", "data.test": "test",
                        "stage1.propagation": "pixels", "stage1.propagation_neighbours": 5})
    results = run_experiment(config, str(tmp_path))
    assert results["stage1"]["propagation"] == "pixels" and results["stage1"]["rule"] == "confidence"
    data = prepare_data(config)
    recorded = np.load(tmp_path / "stage1" / "predictions.npz")["train_probabilities"]
    assert pixel_features(data.train, data.preprocessor, 8).shape == (len(data.train), 16 * 16 * 3)
    propagated = propagate_split(config, data, data.train, recorded)
    expected = select_confident_labels(propagated, data.train.labels, float(config.stage1.threshold),
                                       float(config.stage1.floor_fraction), top_up=config.stage1.top_up)
    np.testing.assert_array_equal(np.load(tmp_path / "stage1" / "selection.npz")["kept"], expected)
