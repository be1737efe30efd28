"""SavedModel export for TF Serving, with the pre-processing inside (docs/protocol.md section 7).

`export_classifier` writes `export_base/<model_name>/<version>/`, the layout TF Serving watches, with:

* `serving_default`: raw `uint8` images `[None, H, W, C]` (input `image`) -> `probabilities` (float32
  `[N, C]`) and `classes` (int64 `[N]`). The graph casts, divides by 255 and subtracts the training
  set's mean image, which is saved as a variable of the archive, exactly as `Preprocessor` does.
* `serving_bytes` (datasets read from image files): encoded JPEG/PNG/GIF/BMP bytes `[None]` (input
  `image_bytes`), decoded and resized to `(H, W)` as the training pipeline does, then the same outputs.
* `assets/class_names.txt`: one class name per line; line `i` names class id `i`.

The version folder appears in one rename of a finished temporary sibling (`.tmp-*`, a name TF Serving
ignores), so a server never loads a half-written version. The classifier is exported, never its trainer.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tf_twostage.config.compare import check_run_config
from tf_twostage.training.trainer import ClassifierTrainer
from tf_twostage.data import source
from tf_twostage.models.ensemble import average_ensemble
from tf_twostage.utils import io_utils, workdir_lock
from tf_twostage.utils.artifacts import EXPORT_DIR, FINAL_OUTCOME, FINAL_WEIGHTS
from tf_twostage.data.preprocess import Preprocessor

CLASS_NAMES_FILE = "class_names.txt"
IMAGE_ENDPOINT = "serving_default"
BYTES_ENDPOINT = "serving_bytes"
ENCODED_IMAGE_DATASETS = ("clothing1m", "folder", "csv")  # config data.name values read from image files

_VERSION = re.compile(r"^[0-9]+$")


def export_classifier(
    classifier: keras.Model,
    preprocessor: Preprocessor,
    image_shape: Sequence[int],
    class_names: Sequence[str],
    export_base: str,
    model_name: str,
    version: Optional[int] = None,
    encoded_images: bool = False,
) -> str:
    """Writes `classifier` with its pre-processing as a SavedModel for TF Serving; returns its folder.

    Args:
      classifier: the plain `keras.Model` mapping pre-processed images to softmax probabilities
        (not a trainer: pass `trainer.classifier`).
      preprocessor: the training run's `Preprocessor` (its mean image is stored in the archive).
      image_shape: `(H, W, C)` of the raw images the SavedModel takes, C in (1, 3) (larger than the
        classifier's input when the pre-processor crops: the export center-crops, as evaluation does).
      class_names: one name per class, in class-id order (no line breaks).
      export_base: the folder of models; the SavedModel goes to `export_base/model_name/version/`.
      model_name: the model's folder name (TF Serving's model name).
      version: a positive integer; default 1 + the largest existing integer version, else 1.
      encoded_images: also add the `serving_bytes` endpoint for encoded image bytes.

    Raises:
      ValueError: a bad argument (named with its value); FileExistsError: the version exists.
    """
    image_shape = _check_image_shape(image_shape)
    class_names = _check_class_names(class_names)
    _check_model_name(model_name)
    classifier = _check_classifier(classifier)
    input_shape = _check_input_shape(preprocessor, image_shape)
    mean_image = _check_mean_image(preprocessor, input_shape)
    _check_classifier_output(classifier, input_shape, len(class_names))

    model_dir = os.path.join(os.fspath(export_base), model_name)
    version = next_version(model_dir) if version is None else _check_version(version)
    version_dir = os.path.join(model_dir, str(version))
    if os.path.exists(version_dir):
        raise FileExistsError(f"export version {version_dir} already exists; pick another version")
    os.makedirs(model_dir, exist_ok=True)

    temporary = tempfile.mkdtemp(prefix=".tmp-", dir=model_dir)
    try:
        names_file = os.path.join(temporary, CLASS_NAMES_FILE)  # outside the SavedModel folder below
        with open(names_file, "w", encoding="utf-8") as file:
            file.write("".join(f"{name}\n" for name in class_names))
        archive = _build_archive(classifier, preprocessor, mean_image, image_shape, names_file, encoded_images)
        saved_model_dir = os.path.join(temporary, "saved_model")
        archive.write_out(saved_model_dir, verbose=False)
        try:
            os.rename(saved_model_dir, version_dir)
        except OSError as error:  # another export took this version meanwhile
            raise FileExistsError(f"could not create export version {version_dir}: {error}") from error
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    logging.info("exported %s (%d classes, endpoints: %s)", version_dir, len(class_names),
                 ", ".join(endpoint_names(encoded_images)))
    return version_dir


def export_from_workdir(config, workdir: str, weights_path: str, model_name: Optional[str] = None) -> str:
    """Rebuilds the classifier of `config`, loads `weights_path` and exports it under `workdir/export/`.

    The pre-processing (mean image) is re-derived from the data of `config` by `prepare_data`, so use
    the config the weights were trained with. Returns the version folder written.
    """
    from tf_twostage.data.prepare import prepare_data  # pylint: disable=import-outside-toplevel

    weights_path = os.fspath(weights_path)
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(f"classifier weights {weights_path} do not exist")
    if model_name is not None:
        _check_model_name(model_name)
    check_run_config(config, workdir, remedy="Give the config the run was trained with (the same preset and "
                     "--config.KEY overrides): weights trained under another config would be exported as if "
                     "they matched it")
    workdir_lock.acquire(workdir)  # not while a run writes into this workdir
    try:
        workdir_lock.remove_temporaries(os.path.join(workdir, EXPORT_DIR))
        data = prepare_data(config)
        classifier = run_classifier(config, data, workdir, weights_path)
        return export_classifier(
            classifier,
            data.preprocessor,
            data.raw_image_shape,
            data.dataset.class_names,
            os.path.join(workdir, EXPORT_DIR),
            model_name or config.data.name,
            encoded_images=config.data.name in ENCODED_IMAGE_DATASETS,
        )
    finally:
        workdir_lock.release(workdir)


def recorded_ensemble_size(workdir: Optional[str], weights_path: str) -> int:
    """How many networks `weights_path` holds: for a run's final weights, the `ensemble_size` its
    `final/outcome.json` records (`stage2.ensemble_size`, or what the heavy-noise switch set); for any
    other file (moved or copied elsewhere, `--weights`), what the file itself holds (`stored_ensemble_size`)."""
    record = os.path.join(workdir, FINAL_OUTCOME) if workdir else None
    final = os.path.join(workdir, FINAL_WEIGHTS) if workdir else None
    if record and os.path.abspath(os.fspath(weights_path)) == os.path.abspath(final) and os.path.isfile(record):
        return int(io_utils.read_json(record).get("ensemble_size", 1))
    return stored_ensemble_size(weights_path)


def stored_ensemble_size(weights_path: str) -> int:
    """How many networks a Keras weights file holds: an `average_ensemble`'s file has, at its top, its
    input, the `Average` layer and one model per network; any other file is one network (1). A file that
    cannot be read counts as 1: loading it then says what is wrong with it."""
    import h5py  # pylint: disable=import-outside-toplevel  (Keras' own dependency for .weights.h5)

    try:
        with h5py.File(os.fspath(weights_path), "r") as store:
            top = store.get("layers")
            names = [name for name in (top.keys() if isinstance(top, h5py.Group) else ())
                     if not name.startswith("input_layer")]
            networks = [name for name in names if isinstance(top[name].get("layers"), h5py.Group)]
    except (OSError, ValueError):
        return 1
    return len(networks) if "average" in names and len(networks) >= 2 and len(names) == len(networks) + 1 else 1


def run_classifier(config, data, workdir: Optional[str], weights_path: str) -> keras.Model:
    """The classifier of `config.model` with `weights_path` loaded: the average of as many networks as the
    weights hold (`recorded_ensemble_size`). Stage 2's noise and dropout layers have no weights: the plain
    architecture takes its weights."""
    from tf_twostage.models import build_classifier  # pylint: disable=import-outside-toplevel

    members = recorded_ensemble_size(workdir, weights_path)
    classifier = average_ensemble([build_classifier(config.model, data.image_shape, data.num_classes, config.seed)
                                   for _ in range(members)])
    load_classifier_weights(classifier, weights_path)
    return classifier


def load_classifier_weights(classifier: keras.Model, weights_path: str) -> None:
    """`classifier.load_weights`, with a damaged file or weights of another architecture as one line."""
    try:
        classifier.load_weights(weights_path)
    except Exception as error:  # pylint: disable=broad-except  (h5py OSError, Keras ValueError, ...)
        first_line = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ValueError(
            f"cannot load the classifier weights {weights_path}: {first_line[:300]}. The file is damaged or was "
            "saved for another model (check the config's model.* keys, or retrain)"
        ) from None


def next_version(model_dir: str) -> int:
    """1 + the largest integer-named folder in `model_dir` (TF Serving's versions), else 1."""
    if not os.path.isdir(model_dir):
        return 1
    versions = [
        int(name) for name in os.listdir(model_dir)
        if _VERSION.match(name) and os.path.isdir(os.path.join(model_dir, name))
    ]
    return max(versions, default=0) + 1


def endpoint_names(encoded_images: bool) -> tuple:
    return (IMAGE_ENDPOINT, BYTES_ENDPOINT) if encoded_images else (IMAGE_ENDPOINT,)


def _build_archive(classifier, preprocessor, mean_image, image_shape, names_file, encoded_images):
    height, width, channels = image_shape
    archive = keras.export.ExportArchive()
    archive.track(classifier)
    # Line i of the file names class i; the table carries the file into the SavedModel's assets/.
    names_table = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            names_file, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )
    archive.track(names_table)
    mean = None if mean_image is None else tf.Variable(mean_image, trainable=False, name="mean_image")

    def predict(image):
        scaled = preprocessor.center_crop(preprocessor.scale(image))  # float32, / 255, cropped, as in training
        if mean is not None:
            scaled = scaled - mean
        probabilities = tf.cast(classifier(scaled, training=False), tf.float32)
        return {
            "probabilities": probabilities,
            "classes": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }

    def serve_images(image):
        return predict(image)

    archive.add_endpoint(
        IMAGE_ENDPOINT, serve_images,
        input_signature=[tf.TensorSpec((None, height, width, channels), tf.uint8, name="image")],
    )
    if encoded_images:

        def serve_bytes(image_bytes):
            images = tf.map_fn(
                lambda data: decode_image_bytes(data, image_shape),
                image_bytes,
                fn_output_signature=tf.TensorSpec((height, width, channels), tf.uint8),
            )
            return predict(images)

        archive.add_endpoint(
            BYTES_ENDPOINT, serve_bytes,
            input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")],
        )
    return archive


def decode_image_bytes(data: tf.Tensor, image_shape: Sequence[int]) -> tf.Tensor:
    """TF function: encoded image bytes -> uint8 `image_shape`, decoded and resized as the pipelines do
    (`tf_twostage.data.source.decode_image_bytes`)."""
    return source.decode_image_bytes(data, image_shape)


def _check_image_shape(image_shape) -> tuple:
    try:
        shape = tuple(int(d) for d in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be (H, W, C) integers, got {image_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1 or shape[-1] not in (1, 3):
        raise ValueError(f"image_shape must be (H, W, C) with H, W >= 1 and C in (1, 3), got {image_shape!r}")
    return shape


def _check_class_names(class_names) -> tuple:
    if isinstance(class_names, (str, bytes)):
        raise ValueError(f"class_names must be a sequence of names, got the string {class_names!r}")
    names = tuple(class_names)
    if not names:
        raise ValueError("class_names must name at least one class, got none")
    for position, name in enumerate(names):
        if not isinstance(name, str) or not name or "\n" in name or "\r" in name:
            raise ValueError(
                f"class_names must be non-empty strings without line breaks, got {name!r} at position {position}"
            )
    return names


def _check_model_name(model_name) -> None:
    if (not isinstance(model_name, str) or not model_name or model_name in (".", "..")
            or "/" in model_name or "\\" in model_name or model_name.startswith(".tmp-")):
        raise ValueError(f"model_name must be a plain folder name, got {model_name!r}")


def _check_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(f"version must be a positive integer (TF Serving's version folder), got {version!r}")
    return int(version)


def _check_classifier(classifier) -> keras.Model:
    if isinstance(classifier, ClassifierTrainer):
        raise ValueError(
            f"export the classifier, not the trainer {type(classifier).__name__}: pass `trainer.classifier`"
        )
    if not isinstance(classifier, keras.Model):
        raise ValueError(f"classifier must be a keras.Model, got {type(classifier).__name__}")
    return classifier


def _check_input_shape(preprocessor, image_shape) -> tuple:
    """The classifier's input shape for raw images of `image_shape` (smaller when the pre-processing crops)."""
    if not isinstance(preprocessor, Preprocessor):
        raise ValueError(f"preprocessor must be a tf_twostage Preprocessor, got {type(preprocessor).__name__}")
    return preprocessor.output_shape(image_shape)


def _check_mean_image(preprocessor, image_shape) -> Optional[np.ndarray]:
    if preprocessor.mean_image is None:
        return None
    mean = np.asarray(preprocessor.mean_image, dtype=np.float32)
    try:
        mean = np.array(np.broadcast_to(mean, image_shape))
    except ValueError:
        raise ValueError(
            f"preprocessor.mean_image has shape {mean.shape}, which does not fit image_shape {image_shape}"
        ) from None
    if not np.all(np.isfinite(mean)):
        raise ValueError("preprocessor.mean_image has non-finite values")
    return mean


def _check_classifier_output(classifier, image_shape, num_classes) -> None:
    """One forward pass on a zero image: the classifier must take `image_shape` and give `[1, C]`."""
    try:
        output = classifier(tf.zeros((1, *image_shape), tf.float32), training=False)
    except Exception as error:  # pylint: disable=broad-except
        raise ValueError(f"the classifier does not accept images of shape {image_shape}: {error}") from error
    if isinstance(output, (dict, list, tuple)):
        raise ValueError(f"the classifier must return one tensor of probabilities, got {type(output).__name__}")
    shape = tuple(output.shape)
    if shape != (1, num_classes):
        raise ValueError(
            f"the classifier gives outputs of shape {shape[1:]} per image, but there are {num_classes} class names"
        )
