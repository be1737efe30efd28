"""SavedModel export: reloaded in a fresh process (TensorFlow and numpy only), it equals the in-memory model."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_twostage.training.trainer import CrossEntropyTrainer
from tf_twostage.data.preprocess import Preprocessor
from tf_twostage.serving.export import CLASS_NAMES_FILE, export_classifier
from tf_twostage.models import build_mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN_DIR = os.path.dirname(sys.executable)
SHAPE = (28, 28, 1)
CLASS_NAMES = tuple(f"class {i}" for i in range(10))

# Run by a fresh interpreter: loads the SavedModel with TensorFlow alone, as a serving client would.
_CLIENT = r"""
import sys
import numpy as np
import tensorflow as tf

export_dir, images_file, png_file, out_file = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
images = np.load(images_file)
served = loaded.signatures["serving_default"](image=tf.constant(images))
with open(png_file, "rb") as file:
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant([file.read()]))
np.savez(out_file, probabilities=served["probabilities"].numpy(), classes=served["classes"].numpy(),
         bytes_probabilities=from_bytes["probabilities"].numpy(), bytes_classes=from_bytes["classes"].numpy(),
         project_modules=np.array([name for name in sys.modules if name.startswith("tf_twostage")], dtype=str))
"""


def _tiny_classifier_and_preprocessor():
    keras.utils.set_random_seed(3)
    classifier = build_mlp(SHAPE, len(CLASS_NAMES), hidden_units=(8,), dropout=0.0)
    mean = np.random.RandomState(1).uniform(0.2, 0.8, size=SHAPE).astype(np.float32)
    return classifier, Preprocessor(mean)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny MLP with a non-trivial mean image exported (with the bytes endpoint), and reloaded elsewhere."""
    folder = tmp_path_factory.mktemp("export")
    classifier, preprocessor = _tiny_classifier_and_preprocessor()
    images = np.random.RandomState(2).randint(0, 256, size=(6, *SHAPE)).astype(np.uint8)
    version_dir = export_classifier(classifier, preprocessor, SHAPE, CLASS_NAMES, str(folder / "models"), "tiny",
                                    encoded_images=True)
    np.save(folder / "images.npy", images)
    (folder / "image.png").write_bytes(tf.io.encode_png(images[0]).numpy())
    client = subprocess.run(
        [sys.executable, "-c", _CLIENT, version_dir, str(folder / "images.npy"), str(folder / "image.png"),
         str(folder / "served.npz")],
        capture_output=True, text=True, cwd=str(folder), env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert client.returncode == 0, client.stderr[-3000:]
    with np.load(folder / "served.npz") as served:
        served = dict(served)
    expected = classifier(preprocessor(tf.constant(images)), training=False).numpy()
    return {"folder": folder, "version_dir": version_dir, "images": images, "expected": expected,
            "served": served, "classifier": classifier, "preprocessor": preprocessor}


def test_reloaded_model_in_a_fresh_process_matches_the_in_memory_classifier(exported):
    served, expected = exported["served"], exported["expected"]
    assert served["project_modules"].size == 0  # the client never imported the package
    assert served["probabilities"].dtype == np.float32 and served["probabilities"].shape == (6, 10)
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)
    assert served["classes"].dtype == np.int64
    np.testing.assert_array_equal(served["classes"], expected.argmax(axis=1))


def test_mean_image_changes_the_prediction(exported):
    """The mean subtraction really happens inside the graph (a model without it gives other outputs)."""
    without_mean = exported["classifier"](Preprocessor(None)(tf.constant(exported["images"]))).numpy()
    assert np.abs(without_mean - exported["served"]["probabilities"]).max() > 1e-3


def test_bytes_endpoint_decodes_a_png_like_the_uint8_endpoint(exported):
    served = exported["served"]
    np.testing.assert_allclose(served["bytes_probabilities"][0], exported["expected"][0], atol=1e-5)
    assert served["bytes_classes"][0] == served["classes"][0]


def test_saved_model_cli_lists_the_serving_signature(exported):
    shown = subprocess.run(
        [os.path.join(BIN_DIR, "saved_model_cli"), "show", "--dir", exported["version_dir"], "--all"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    signature = shown.stdout.split("signature_def['serving_default']:")[1].split("signature_def[")[0]
    inputs, outputs = signature.split("contains the following output(s):")
    assert "inputs['image']" in inputs and "DT_UINT8" in inputs and "shape: (-1, 28, 28, 1)" in inputs
    assert "outputs['probabilities']" in outputs and "outputs['classes']" in outputs
    assert "signature_def['serving_bytes']" in shown.stdout


def test_class_names_are_an_asset_one_per_line(exported):
    path = os.path.join(exported["version_dir"], "assets", CLASS_NAMES_FILE)
    with open(path, encoding="utf-8") as file:
        assert tuple(file.read().splitlines()) == CLASS_NAMES


def test_versions_count_up_in_the_tf_serving_layout(tmp_path):
    classifier, preprocessor = _tiny_classifier_and_preprocessor()
    base = tmp_path / "models"
    first = export_classifier(classifier, preprocessor, SHAPE, CLASS_NAMES, str(base), "tiny")
    (base / "tiny" / "notes").mkdir()  # a non-integer folder is no version
    second = export_classifier(classifier, preprocessor, SHAPE, CLASS_NAMES, str(base), "tiny")
    assert (first, second) == (str(base / "tiny" / "1"), str(base / "tiny" / "2"))
    assert sorted(os.listdir(base / "tiny")) == ["1", "2", "notes"]  # no temporary folder left behind
    assert export_classifier(classifier, preprocessor, SHAPE, CLASS_NAMES, str(base), "tiny", version=7).endswith(
        os.path.join("tiny", "7"))
    with pytest.raises(FileExistsError, match="already exists"):
        export_classifier(classifier, preprocessor, SHAPE, CLASS_NAMES, str(base), "tiny", version=2)
    loaded = tf.saved_model.load(second)
    assert set(loaded.signatures) == {"serving_default"}  # no bytes endpoint unless asked


@pytest.mark.parametrize("change, message", [
    ({"class_names": CLASS_NAMES[:9]}, "there are 9 class names"),
    ({"class_names": ("a\nb",) + CLASS_NAMES[1:]}, "without line breaks"),
    ({"image_shape": (28, 28, 2)}, "C in \\(1, 3\\)"),
    ({"preprocessor": Preprocessor(np.zeros((3, 3, 1), np.float32))}, "does not fit image_shape"),
    ({"version": 0}, "version must be a positive integer"),
    ({"model_name": "a/b"}, "model_name must be a plain folder name"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, change, message):
    classifier, preprocessor = _tiny_classifier_and_preprocessor()
    arguments = dict(classifier=classifier, preprocessor=preprocessor, image_shape=SHAPE, class_names=CLASS_NAMES,
                     export_base=str(tmp_path / "models"), model_name="tiny")
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        export_classifier(**arguments)
    assert not (tmp_path / "models").exists()


def test_a_trainer_is_refused_with_a_pointer_to_its_classifier(tmp_path):
    classifier, preprocessor = _tiny_classifier_and_preprocessor()
    with pytest.raises(ValueError, match="trainer.classifier"):
        export_classifier(CrossEntropyTrainer(classifier), preprocessor, SHAPE, CLASS_NAMES, str(tmp_path), "tiny")


def _run_program(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", name), *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_program_exports_the_stage1_classifier_of_the_smoke_run(tmp_path):
    trained = _run_program("train_stage1.py", "--config=configs/smoke.py", f"--workdir={tmp_path}")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (tmp_path / "stage1" / "classifier.weights.h5").exists()
    done = _run_program("export.py", "--config=configs/smoke.py", f"--workdir={tmp_path}")
    assert done.returncode == 0, done.stderr[-2000:]
    version_dir = tmp_path / "export" / "mnist5k" / "1"
    assert str(version_dir) in done.stdout and os.listdir(tmp_path / "export" / "mnist5k") == ["1"]
    with open(version_dir / "assets" / CLASS_NAMES_FILE, encoding="utf-8") as file:
        assert len(file.read().splitlines()) == 10
    outputs = tf.saved_model.load(str(version_dir)).signatures["serving_default"](
        image=tf.zeros((2, *SHAPE), tf.uint8))
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)
    assert json.loads((tmp_path / "config.json").read_text())["data"]["name"] == "mnist5k"


def test_program_without_weights_fails_with_a_clear_message(tmp_path):
    done = _run_program("export.py", "--config=configs/smoke.py", f"--workdir={tmp_path}")
    assert done.returncode == 2
    assert "no classifier weights in" in done.stderr and "stage1/classifier.weights.h5" in done.stderr
    assert not (tmp_path / "export").exists()


def test_export_center_crops_and_applies_the_models_imagenet_preprocessing(tmp_path):
    """A crop pre-processor (data.resize_size) and an ImageNet-preprocessing ResNet-50: the SavedModel takes the
    decoded (larger) images and gives what the in-memory classifier gives on their center crops."""
    from tf_twostage.models import build_resnet50

    keras.utils.set_random_seed(4)
    classifier = build_resnet50((32, 32, 3), 3, input_preprocessing="imagenet")
    preprocessor = Preprocessor(None, crop_size=(32, 32))
    version_dir = export_classifier(classifier, preprocessor, (36, 36, 3), ("a", "b", "c"), str(tmp_path), "crop",
                                    encoded_images=True)
    images = np.random.RandomState(5).randint(0, 256, size=(3, 36, 36, 3)).astype(np.uint8)
    served = tf.saved_model.load(version_dir).signatures["serving_default"](image=tf.constant(images))
    expected = classifier(images[:, 2:34, 2:34, :].astype(np.float32) / 255.0, training=False)
    np.testing.assert_allclose(served["probabilities"].numpy(), np.asarray(expected), atol=1e-5)
    assert any(isinstance(layer, type(classifier.get_layer("imagenet_preprocessing"))) for layer in classifier.layers)
