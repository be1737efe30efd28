"""bin/evaluate.py and bin/predict.py on a real smoke run: the numbers agree with the run, the export and the
in-memory classifier; bad input exits 2 naming the value and writes nothing."""

import concurrent.futures
import csv
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.conftest import smoke_config as _smoke_config
from tf_twostage.data.prepare import prepare_data
from tf_twostage.data.source import UNKNOWN_LABEL
from tf_twostage.serving.evaluation import (
    classification_metrics,
    evaluate_model,
    label_metrics,
    predict_probabilities,
    saved_model_probabilities,
)
from tf_twostage.runs.experiment import run_experiment
from tf_twostage.serving.export import BYTES_ENDPOINT, IMAGE_ENDPOINT, export_classifier
from tf_twostage.models import build_classifier
from tf_twostage.serving.prediction import (
    classify_files,
    classify_images,
    decode_for_model,
    find_export_version,
    find_image_files,
    load_export,
)
from tests.conftest import make_split

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One smoke run (method ce), its data and its final classifier loaded back from the weights file."""
    workdir = tmp_path_factory.mktemp("run")
    config = _smoke_config()
    results = run_experiment(config, str(workdir))
    data = prepare_data(config)
    classifier = build_classifier(config.model, data.image_shape, data.num_classes, config.seed)
    classifier.load_weights(str(workdir / "final" / "classifier.weights.h5"))
    model_dir = str(workdir / "export" / "mnist5k")
    return {"workdir": workdir, "results": results, "data": data, "classifier": classifier,
            "model_dir": model_dir, "export": load_export(model_dir)}


@pytest.fixture(scope="module")
def images(run, tmp_path_factory):
    """Test images of six classes as files: grayscale PNGs in nested folders, an RGB PNG given on its own,
    a GIF and an RGB BMP (decoders without one-channel output), a broken .png and a text file."""
    folder = tmp_path_factory.mktemp("images")
    test = run["data"].test
    positions = [int(np.flatnonzero(test.labels == c)[0]) for c in (3, 1, 4, 7, 9, 0)]
    arrays = test.images[positions]
    (folder / "photos" / "b" / "c").mkdir(parents=True)
    files = {
        folder / "photos" / "a.png": tf.io.encode_png(arrays[0]).numpy(),
        folder / "photos" / "b" / "c" / "d.png": tf.io.encode_png(arrays[1]).numpy(),
        folder / "photos" / "b" / "e.png": tf.io.encode_png(arrays[2]).numpy(),
        folder / "rgb.png": tf.io.encode_png(np.repeat(arrays[3], 3, axis=-1)).numpy(),
        folder / "photos" / "b" / "f.GIF": None,
        folder / "photos" / "g.bmp": None,
        folder / "photos" / "b" / "broken.png": b"this is not an image",
        folder / "photos" / "notes.txt": b"ignored: not an image extension",
    }
    for path, content in files.items():
        if content is not None:
            path.write_bytes(content)
    Image.fromarray(arrays[4][..., 0]).save(folder / "photos" / "b" / "f.GIF")
    Image.fromarray(np.repeat(arrays[5], 3, axis=-1)).save(folder / "photos" / "g.bmp")
    # The order predict reports: the folder (--images) walked and sorted, then the file given as an argument.
    expected = {
        str(folder / "photos" / "a.png"): arrays[0],
        str(folder / "photos" / "b" / "c" / "d.png"): arrays[1],
        str(folder / "photos" / "b" / "e.png"): arrays[2],
        str(folder / "photos" / "b" / "f.GIF"): arrays[4],
        str(folder / "photos" / "g.bmp"): arrays[5],
        str(folder / "rgb.png"): arrays[3],
    }
    return {"folder": folder, "expected": expected, "broken": str(folder / "photos" / "b" / "broken.png")}


def _program(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", name), *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.fixture(scope="module")
def programs(run, images, tmp_path_factory):
    """Every program invocation of this module, run at once (each pays TensorFlow's start-up)."""
    out = tmp_path_factory.mktemp("out")
    workdir, photos = str(run["workdir"]), str(images["folder"] / "photos")
    rgb = str(images["folder"] / "rgb.png")
    invocations = {
        "evaluate_workdir": ("evaluate.py", f"--workdir={workdir}"),
        "evaluate_saved_model": ("evaluate.py", f"--saved_model={run['model_dir']}", "--config=configs/smoke.py",
                                 "--split=validation", f"--output={out / 'validation.json'}"),
        "evaluate_missing_workdir": ("evaluate.py", f"--workdir={out / 'no_such_run'}"),
        "evaluate_unknown_split": ("evaluate.py", f"--workdir={workdir}", "--split=bogus"),
        "predict": ("predict.py", f"--workdir={workdir}", f"--images={photos}", rgb, "--top_k=3",
                    f"--output={out / 'predictions.csv'}"),
        "predict_strict": ("predict.py", f"--saved_model={run['model_dir']}", photos, "--on_bad_file=error",
                           f"--output={out / 'strict.csv'}"),
    }
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = {name: pool.submit(_program, *args) for name, args in invocations.items()}
        done = {name: future.result() for name, future in futures.items()}
    done["out"] = out
    return done


def _in_memory_probabilities(run, images):
    return run["classifier"](run["data"].preprocessor(tf.constant(images)), training=False).numpy()


def test_evaluate_workdir_reports_the_run_test_accuracy(run, programs):
    done = programs["evaluate_workdir"]
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((run["workdir"] / "evaluation" / "test.json").read_text())
    results = run["results"]
    assert report["model"] == str(run["workdir"] / "final" / "classifier.weights.h5")
    assert report["accuracy"] == results["test_accuracy"] and report["reference"] == "clean"
    assert report["clean"]["per_class_accuracy"] == results["test_per_class_accuracy"]
    assert report["clean"]["confusion_matrix"] == results["test_confusion_matrix"]
    assert report["noisy"] is None and report["num_examples"] == 1000
    assert f"accuracy against the clean labels: {100 * results['test_accuracy']:.2f}%" in done.stdout
    assert "| class | name | clean images | clean accuracy |" in done.stdout and "confusion matrix" in done.stdout


def test_evaluate_saved_model_on_validation_matches_the_in_memory_classifier(run, programs):
    done = programs["evaluate_saved_model"]
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((programs["out"] / "validation.json").read_text())
    assert report["model"] == os.path.join(run["model_dir"], "1") and report["model_kind"] == "saved_model"
    validation = run["data"].validation
    predicted = predict_probabilities(run["classifier"], validation, run["data"].preprocessor).argmax(axis=1)
    noisy = classification_metrics(validation.labels, predicted, 10)
    clean = classification_metrics(validation.clean_labels, predicted, 10)
    assert report["noisy"] == dict(noisy, num_examples=400) and report["clean"] == dict(clean, num_examples=400)
    assert report["accuracy"] == clean["accuracy"] != noisy["accuracy"]  # 24% of the labels are flipped
    assert "noisy accuracy" in done.stdout and "clean accuracy" in done.stdout


def test_saved_model_and_in_memory_classifier_agree_on_the_test_split(run):
    data = run["data"]
    served = saved_model_probabilities(run["export"], data.test, 256)
    in_memory = predict_probabilities(run["classifier"], data.test, data.preprocessor)
    np.testing.assert_allclose(served, in_memory, atol=1e-6)
    np.testing.assert_array_equal(served.argmax(axis=1), in_memory.argmax(axis=1))
    report = evaluate_model("test", workdir=str(run["workdir"]), saved_model=run["model_dir"])
    assert report["accuracy"] == run["results"]["test_accuracy"]
    assert report["output"] == str(run["workdir"] / "evaluation" / "test.saved_model.json")
    assert json.loads((run["workdir"] / "evaluation" / "test.saved_model.json").read_text()) == report


@pytest.mark.parametrize("invocation, named", [
    ("evaluate_missing_workdir", "no_such_run"),
    ("evaluate_unknown_split", "'bogus'"),
])
def test_evaluate_bad_input_exits_2_naming_the_value(run, programs, invocation, named):
    done = programs[invocation]
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and named in done.stderr
    assert not (programs["out"] / "no_such_run").exists()
    assert not (run["workdir"] / "evaluation" / "bogus.json").exists()
    if invocation == "evaluate_unknown_split":
        assert "test, validation, train" in done.stderr


def test_evaluate_saved_model_needs_to_know_the_data(run):
    with pytest.raises(ValueError, match="give the config or the run's workdir"):
        evaluate_model("test", saved_model=run["model_dir"])


def test_predict_csv_matches_the_in_memory_classifier_and_counts_the_skipped_file(run, images, programs):
    done = programs["predict"]
    assert done.returncode == 0, done.stderr[-3000:]
    with open(programs["out"] / "predictions.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    expected = images["expected"]
    assert [row["path"] for row in rows] == list(expected)  # sorted walk, text file ignored, broken one skipped
    arrays = np.stack(list(expected.values()))
    in_memory = _in_memory_probabilities(run, arrays)
    served = run["export"].predict_images(arrays)
    np.testing.assert_allclose(served, in_memory, atol=1e-6)
    assert [int(row["class_id"]) for row in rows] == in_memory.argmax(axis=1).tolist()
    assert [row["class_name"] for row in rows] == [str(c) for c in in_memory.argmax(axis=1)]
    np.testing.assert_allclose([float(row["probability"]) for row in rows], served.max(axis=1), atol=1e-6)
    for row, probabilities in zip(rows, served):
        top3 = [int(row["class_id"]), int(row["class_id_2"]), int(row["class_id_3"])]
        assert top3 == np.argsort(-probabilities, kind="stable")[:3].tolist()
        assert float(row["probability"]) >= float(row["probability_2"]) >= float(row["probability_3"])
    assert f"skipped {images['broken']}" in done.stderr
    assert "classified 6 images" in done.stderr and "skipped 1 files" in done.stderr


def test_predict_on_bad_file_error_exits_2_without_writing_the_csv(images, programs):
    done = programs["predict_strict"]
    assert done.returncode == 2, done.stderr[-3000:]
    assert "error: " in done.stderr and images["broken"] in done.stderr
    assert not (programs["out"] / "strict.csv").exists()
    assert not [name for name in os.listdir(programs["out"]) if name.startswith(".tmp-")]


def test_decoding_converts_channels_as_the_training_pipeline_sees_them(images):
    for path, array in images["expected"].items():  # grayscale and RGB PNG, GIF, RGB BMP
        with open(path, "rb") as file:
            content = file.read()
        np.testing.assert_array_equal(decode_for_model(content, SHAPE), array, err_msg=path)
        np.testing.assert_array_equal(decode_for_model(content, (28, 28, 3)), np.repeat(array, 3, axis=-1))
    upscaled = np.kron(next(iter(images["expected"].values())), np.ones((2, 2, 1), np.uint8))
    resized = decode_for_model(tf.io.encode_png(upscaled).numpy(), SHAPE)
    assert resized.shape == SHAPE and resized.dtype == np.uint8
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_for_model(b"this is not an image", SHAPE)


def test_bytes_endpoint_gives_the_uint8_endpoints_predictions(run, images, tmp_path):
    data = run["data"]
    with_bytes = load_export(export_classifier(run["classifier"], data.preprocessor, data.image_shape,
                                               data.dataset.class_names, str(tmp_path), "bytes", encoded_images=True))
    uint8_only = run["export"]
    assert with_bytes.accepts_bytes and not uint8_only.accepts_bytes
    pngs = [path for path in images["expected"] if path.endswith(".png")]
    served_bytes = classify_files(with_bytes, pngs)
    served_uint8 = classify_files(uint8_only, pngs)
    assert served_bytes.endpoints == (BYTES_ENDPOINT,) and served_uint8.endpoints == (IMAGE_ENDPOINT,)
    np.testing.assert_allclose(served_bytes.probabilities, served_uint8.probabilities, atol=1e-6)
    # A file that endpoint cannot take (broken; GIF, BMP for a grayscale model) sends its batch through decoding
    # here; batches of two: [a, broken] [d, e] [f.GIF, g.bmp] [rgb].
    everything = classify_files(with_bytes, find_image_files([str(images["folder"])]), batch_size=2)
    assert set(everything.paths) == set(images["expected"]) and everything.skipped == (
        (images["broken"], "not a decodable image (JPEG, PNG, GIF or BMP)"),)
    assert set(everything.endpoints) == {BYTES_ENDPOINT, IMAGE_ENDPOINT}


def test_finding_image_files(images, tmp_path):
    photos = str(images["folder"] / "photos")
    found = find_image_files([photos, os.path.join(photos, "a.png"), os.path.join(photos, "notes.txt")])
    assert found[-1].endswith("notes.txt") and len(found) == 7  # a named file is taken as given, once
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "empty" / "deeper" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no image files"):
        find_image_files([str(tmp_path / "empty")])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        find_image_files([str(tmp_path / "missing.png")])


def test_bad_predict_arguments_write_nothing(run, images, tmp_path):
    output = tmp_path / "out.csv"
    rgb = str(images["folder"] / "rgb.png")
    with pytest.raises(ValueError, match=r"top_k must be an integer in \[1, 10\].*got 11"):
        classify_images([rgb], saved_model=run["model_dir"], output=str(output), top_k=11)
    with pytest.raises(ValueError, match="on_bad_file must be one of error, skip; got 'ignore'"):
        classify_images([rgb], saved_model=run["model_dir"], output=str(output), on_bad_file="ignore")
    with pytest.raises(ValueError, match="exactly one of saved_model or workdir"):
        classify_images([rgb], saved_model=run["model_dir"], workdir=str(run["workdir"]), output=str(output))
    with pytest.raises(ValueError, match="none of the 1 files could be classified"):
        classify_images([images["broken"]], saved_model=run["model_dir"], output=str(output))
    assert not output.exists() and not os.listdir(tmp_path)


def test_export_versions_resolve_to_the_highest_complete_one(tmp_path):
    model_dir = tmp_path / "model"
    for version in ("2", "10"):
        (model_dir / version).mkdir(parents=True)
        (model_dir / version / "saved_model.pb").write_bytes(b"")
    (model_dir / "11").mkdir()  # no saved_model.pb: not a version
    (model_dir / "99-notes").mkdir()
    assert find_export_version(str(model_dir)) == str(model_dir / "10")
    assert find_export_version(str(model_dir / "2")) == str(model_dir / "2")
    with pytest.raises(FileNotFoundError, match="neither a SavedModel"):
        find_export_version(str(model_dir / "11"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_export_version(str(tmp_path / "nowhere"))


def test_label_metrics_use_clean_labels_where_known():
    split = make_split(num_examples=8, num_classes=4)  # clean labels 0, 1, 2, 3, 0, 1, 2, 3
    predictions = np.array([0, 1, 2, 3, 0, 0, 0, 0])
    noisy_labels = np.array([0, 1, 2, 3, 1, 1, 1, 1])
    partly_known = np.array([0, 1, 2, 3, 0, 0, UNKNOWN_LABEL, UNKNOWN_LABEL])
    train = label_metrics(predictions, split.with_labels(noisy_labels, clean_labels=partly_known), "train")
    assert train["noisy"]["accuracy"] == 0.5 and train["noisy"]["num_examples"] == 8
    assert train["clean"]["accuracy"] == 1.0 and train["clean"]["num_examples"] == 6
    validation = label_metrics(predictions, split.with_labels(noisy_labels), "validation")
    assert validation["clean"]["accuracy"] == 5 / 8 and validation["clean"]["per_class_accuracy"] == [1, 0.5, 0.5, 0.5]
    unknown = dataclasses.replace(split, clean_labels=None).with_labels(noisy_labels)
    assert label_metrics(predictions, unknown, "train")["clean"] is None
    test = label_metrics(predictions, split, "test")  # the test labels are the clean ones
    assert test["noisy"] is None and test["clean"]["accuracy"] == 5 / 8
    with pytest.raises(ValueError, match="split must be one of test, validation, train; got 'dev'"):
        label_metrics(predictions, split, "dev")
