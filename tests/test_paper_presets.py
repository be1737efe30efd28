"""The paper's recipes (configs/paper/): the values the paper states, and each preset end to end on data the
tests make (mnist5k; tfds mock CIFAR-10; a generated Clothing1M release tree) with its epochs cut."""

import importlib.util
import os

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tf_twostage.config.checks import validate_config
from tf_twostage.runs.experiment import METHODS, run_experiment
from tf_twostage.runs.stage2 import build_semi_supervised_classifier

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = ("mnist", "cifar10", "clothing1m", "clothing1m_clean")


def paper_config(name, **overrides):
    spec = importlib.util.spec_from_file_location(f"paper_{name}", os.path.join(ROOT, "configs", "paper", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in overrides.items():
        section, _, leaf = key.rpartition(".")
        node = config
        for part in section.split(".") if section else ():
            node = node[part]
        node[leaf] = value
    return config


@pytest.mark.parametrize("name", PRESETS)
def test_every_paper_preset_is_a_valid_two_stage_config(name):
    config = paper_config(name)
    validate_config(config, methods=tuple(METHODS))
    assert config.method == "two_stage"
    # [3.1]: keep P(c|x) >= 0.9, at least 10% of each class.
    assert (config.stage1.threshold, config.stage1.floor_fraction, config.stage1.top_up) == (0.9, 0.1, "class")
    assert config.stage1.posterior == "noisy" and not config.stage1.balance_classes
    assert config.stage2.init_from_stage1 and config.data.val_fraction == 0.1


def test_mnist_recipe_is_the_papers():
    config = paper_config("mnist")
    assert config.model.name == "mlp" and tuple(config.model.hidden_units) == (128, 128)
    # [4.2] AdaGrad, lr 0.1, halved after 10 epochs without improvement, min 1e-7, 40 epochs.
    assert (config.stage1.optimizer, config.stage1.learning_rate, config.stage1.epochs) == ("adagrad", 0.1, 40)
    assert (config.stage1.lr_factor, config.stage1.lr_patience, config.stage1.min_lr) == (0.5, 10, 1e-7)
    # [3.2] temporal ensembling with Laine & Aila's ramps and weight; Gaussian noise + dropout for Stage 2 only.
    stage2 = config.stage2
    assert stage2.algorithm == "temporal_ensembling" and stage2.epoch_unit == "all"
    assert (stage2.epochs, stage2.rampup_epochs, stage2.rampdown_epochs) == (300, 80, 50)
    assert (stage2.learning_rate, stage2.max_weight_te, stage2.batch_size) == (0.003, 30.0, 100)
    assert stage2.consistency_normalization == "classes" and stage2.fixed_weight == 0.0
    assert (config.model.input_noise, stage2.input_noise, stage2.dropout) == (0.0, 0.15, 0.5)


def test_cifar10_recipe_is_the_papers():
    config = paper_config("cifar10")
    assert config.model.name == "resnet14" and config.data.subtract_mean and config.augment.flip
    assert (config.stage1.optimizer, config.stage1.momentum, config.stage1.learning_rate) == ("sgd", 0.9, 0.1)
    assert (config.stage1.epochs, config.stage1.lr_factor, config.stage1.lr_patience) == (120, 0.5, 10)
    # [4.2] the baseline has no dropout; the SSL model adds dropout in the residual units and noise on top.
    assert (config.model.dropout, config.model.top_noise) == (0.0, 0.0)
    assert (config.stage2.dropout, config.stage2.top_noise) == (0.5, 0.15)
    assert config.stage2.algorithm == "temporal_ensembling"


@pytest.mark.parametrize("name", ["clothing1m", "clothing1m_clean"])
def test_clothing1m_recipe_is_the_papers(name):
    config = paper_config(name)
    stage2 = config.stage2
    # [4.3] ResNet-50 from ImageNet (ImageNet pre-processing inside the model), random 224 crops and flips.
    assert (config.model.name, config.model.weights_path, config.model.input_preprocessing) == (
        "resnet50", "imagenet", "imagenet")
    assert tuple(config.data.image_size) == (224, 224) and tuple(config.data.resize_size) == (256, 256)
    assert config.augment.flip
    # [3.2, 4.3] the Pi model, alpha = 100 fixed in Eq. 2's normalization, Adam 3e-4, 100 sub-epochs, lr halved
    # after 10 sub-epochs without improvement, early stopping after 20.
    assert stage2.algorithm == "pi" and not stage2.stop_gradient
    assert (stage2.fixed_weight, stage2.consistency_normalization) == (100.0, "paper")
    assert (stage2.learning_rate, stage2.rampup_epochs, stage2.rampdown_epochs) == (3e-4, 0, 0)
    assert (stage2.epoch_unit, stage2.epochs) == ("labeled", 100)
    assert (stage2.lr_factor, stage2.lr_patience, stage2.early_stopping_patience) == (0.5, 10, 20)
    assert (stage2.dropout, stage2.top_noise) == (0.5, 0.15)
    if name == "clothing1m":
        assert config.stage1.rule == "confidence" and stage2.finetune_epochs == 0  # Table 4 row 7
    else:
        assert config.stage1.rule == "clean_set" and stage2.finetune_epochs > 0  # rows 8 and 13


# ---------------------------------------------------------------- end to end, epochs cut


def test_mnist_preset_runs_on_mnist5k(tmp_path):
    config = paper_config("mnist", **{
        "data.name": "mnist5k", "verbose": 0, "stage1.epochs": 1, "stage2.epochs": 2,
        "stage2.rampup_epochs": 1, "stage2.rampdown_epochs": 1, "model.hidden_units": (16, 16)})
    results = run_experiment(config, str(tmp_path))
    assert results["method"] == "two_stage" and results["dataset"] == "mnist5k"
    assert len(results["history"]["stage2"]["loss"]) == 2
    assert results["test_accuracy"] > 0.2


def test_cifar10_preset_runs_on_mock_data_with_the_stage2_perturbations(tmp_path):
    config = paper_config("cifar10", **{
        "verbose": 0, "batch_size": 32, "stage1.epochs": 1, "stage2.epochs": 1, "stage2.batch_size": 16,
        "stage2.rampup_epochs": 1, "stage2.rampdown_epochs": 1})
    with tfds.testing.mock_data(num_examples=120):
        results = run_experiment(config, str(tmp_path))
    assert results["dataset"] == "cifar10" and len(results["history"]["stage2"]["loss"]) == 1
    assert np.isfinite(results["test_accuracy"])


def test_semi_supervised_resnet14_has_dropout_in_every_unit_and_noise_on_top():
    config = paper_config("cifar10")

    class Data:  # what build_semi_supervised_classifier reads
        image_shape, num_classes = (32, 32, 3), 10

    model = build_semi_supervised_classifier(config, Data())
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(dropouts) == 6 and {layer.rate for layer in dropouts} == {0.5}  # 3 stages x 2 units
    assert all(layer.name.endswith("_dropout") for layer in dropouts)
    (noise,) = [layer for layer in model.layers if isinstance(layer, keras.layers.GaussianNoise)]
    assert noise.stddev == 0.15 and model.get_layer("logits").input is noise.output


def _write_release_tree(root, per_class=(6, 2, 2, 2), size=40):
    """A tiny Clothing1M release layout: 14 classes, `per_class` images per split (train, clean, val, test)."""
    rng = np.random.RandomState(0)
    lines = {"noisy_label_kv.txt": [], "clean_label_kv.txt": []}
    lists = {name: [] for name in ("noisy_train_key_list.txt", "clean_train_key_list.txt", "clean_val_key_list.txt",
                                   "clean_test_key_list.txt")}
    for split, (list_name, count) in enumerate(zip(lists, per_class)):
        for label in range(14):
            for number in range(count):
                key = f"images/{split}/{label:02d}/{number}.png"
                (root / key).parent.mkdir(parents=True, exist_ok=True)
                color = np.array([label * 18, 255 - label * 18, (label * 57) % 256])
                pixels = np.clip(color + rng.randint(-20, 21, size=(size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / key)
                lists[list_name].append(key)
                lines["noisy_label_kv.txt" if split == 0 else "clean_label_kv.txt"].append(f"{key} {label}")
    for name, content in {**lines, **lists}.items():
        (root / name).write_text("".join(f"{line}\n" for line in content))
    return root


@pytest.fixture(scope="module")
def release_tree(tmp_path_factory):
    return _write_release_tree(tmp_path_factory.mktemp("clothing1m"))


def _cut_clothing_config(name, release_tree):
    """The preset with its epochs cut, tiny images, and ResNet-14 for ResNet-50 (one ResNet-50 Stage-2 step
    takes minutes on a loaded 2-core CPU). ResNet-50's ImageNet weights and pre-processing, in training and in
    the export, are tested in tests/models/test_resnet.py and tests/test_export.py."""
    return paper_config(name, **{
        "data.dir": str(release_tree), "data.image_size": (32, 32), "data.resize_size": (36, 36),
        "model.name": "resnet14", "model.weights_path": "", "model.input_preprocessing": "none", "verbose": 0,
        "batch_size": 28, "stage1.epochs": 1, "stage1.clean_epochs": 1,
        "stage2.batch_size": 28, "stage2.lr_patience": 1, "stage2.early_stopping_patience": 1,
        "stage2.epochs": 2, "stage1.clean_threshold": 0.0,
        "stage2.finetune_epochs": 1 if name == "clothing1m_clean" else 0})


@pytest.mark.parametrize("name", ["clothing1m", "clothing1m_clean"])
def test_clothing1m_presets_run_on_a_generated_release_tree(tmp_path, release_tree, name):
    results = run_experiment(_cut_clothing_config(name, release_tree), str(tmp_path))
    assert results["dataset"] == "clothing1m" and results["num_train"] == 14 * 6
    stage2 = results["history"]["stage2"]
    # Sub-epochs with plateau halving (logs the learning rate) and early stopping after 1 without improvement.
    assert 1 <= len(stage2["loss"]) <= 2 and "learning_rate" in stage2
    assert ("finetune" in results["history"]) == (name == "clothing1m_clean")
    # The export takes the decoded (resize_size) images and center-crops them as evaluation does.
    from tf_twostage.serving.prediction import load_export

    export = load_export(results["export_dir"])
    assert tuple(export.image_shape) == (36, 36, 3)
