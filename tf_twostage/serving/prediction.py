"""Classify images with an exported SavedModel: load an export, find image files, decode, batch, CSV rows.

Everything goes through the SavedModel's own signatures (`tf_twostage.serving.export`), so what this module
predicts is what TF Serving would answer. Image files are sent as encoded bytes to `serving_bytes` when
the export has it; otherwise (and for files that endpoint cannot decode) they are decoded here exactly as
the export decodes bytes (`export.decode_image_bytes`: the model's channels, bilinear antialiased
resize to its H x W, uint8) and sent to `serving_default`. GIF and BMP decoders have no one-channel
output, so for a grayscale model those are decoded as RGB and converted to grayscale first.

File order is deterministic: inputs in the order given, each folder walked recursively and sorted.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tf_twostage.utils import io_utils
from tf_twostage.config import load_run_config
from tf_twostage.data.files import IMAGE_EXTENSIONS, check_on_bad_file
from tf_twostage.serving.evaluation import check_output_file
from tf_twostage.serving.export import BYTES_ENDPOINT, CLASS_NAMES_FILE, EXPORT_DIR, IMAGE_ENDPOINT, decode_image_bytes

SAVED_MODEL_FILE = "saved_model.pb"
CSV_COLUMNS = ("path", "class_id", "class_name", "probability")

_VERSION = re.compile(r"^[0-9]+$")


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedExport:
    """A SavedModel written by `tf_twostage.serving.export`, loaded, with what its signatures say about it.

    Attributes:
      version_dir: the SavedModel folder (a version folder `<model>/<version>/`).
      image_shape: `(H, W, C)` of the uint8 images `serving_default` takes.
      class_names: one name per class (the export's `assets/class_names.txt`; the ids as text if absent).
      accepts_bytes: whether the export has the `serving_bytes` endpoint for encoded images.
    """

    version_dir: str
    image_shape: tuple
    class_names: tuple
    accepts_bytes: bool
    saved_model: object = dataclasses.field(repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def predict_images(self, images, batch_size: int = 256) -> np.ndarray:
        """Probabilities `[N, C]` (float32) of uint8 images `[N, H, W, C]` through `serving_default`."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise ValueError(
                f"the SavedModel {self.version_dir} takes uint8 images of shape (N, *{self.image_shape}), "
                f"got {images.dtype} images of shape {images.shape}"
            )
        signature = self.saved_model.signatures[IMAGE_ENDPOINT]
        outputs = [
            signature(image=tf.constant(images[start : start + batch_size]))["probabilities"].numpy()
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(outputs) if outputs else np.zeros((0, self.num_classes), np.float32)

    def predict_encoded(self, contents: Sequence[bytes]) -> np.ndarray:
        """Probabilities `[N, C]` of encoded images (JPEG/PNG/GIF/BMP bytes) through `serving_bytes`.

        Raises tf.errors.InvalidArgumentError when any of them cannot be decoded.
        """
        if not self.accepts_bytes:
            raise ValueError(f"the SavedModel {self.version_dir} has no {BYTES_ENDPOINT} endpoint")
        signature = self.saved_model.signatures[BYTES_ENDPOINT]
        return signature(image_bytes=tf.constant(list(contents), tf.string))["probabilities"].numpy()


def find_export_version(path: str) -> str:
    """The SavedModel folder `path` names: `path` itself, or its highest numbered version sub-folder.

    Raises:
      FileNotFoundError: `path` is missing, or holds neither a SavedModel nor numbered versions of one.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"SavedModel folder {path!r} does not exist")
    if os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
        return path
    versions = [
        int(name) for name in os.listdir(path)
        if _VERSION.match(name) and os.path.isfile(os.path.join(path, name, SAVED_MODEL_FILE))
    ]
    if not versions:
        raise FileNotFoundError(
            f"{path!r} is neither a SavedModel (no {SAVED_MODEL_FILE}) nor a model folder of numbered "
            "versions (<model>/<version>/saved_model.pb)"
        )
    return os.path.join(path, str(max(versions)))


def newest_export(workdir: str) -> str:
    """The highest version under `workdir/export/<data.name>/`, the run's own model folder."""
    config = load_run_config(workdir)
    model_dir = os.path.join(workdir, EXPORT_DIR, config.data.name)
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(
            f"the run {workdir!r} has no export in {model_dir}: finish the run or use bin/export.py, "
            "or pass the SavedModel folder itself"
        )
    return find_export_version(model_dir)


def load_export(path: str) -> LoadedExport:
    """Loads the SavedModel at `path` (a version folder, or a model folder: its highest version).

    Raises:
      FileNotFoundError: no SavedModel there; ValueError: it lacks the `serving_default` contract
        (uint8 `image` [None, H, W, C] in, `probabilities` out).
    """
    version_dir = find_export_version(path)
    try:
        saved_model = tf.saved_model.load(version_dir)
    except Exception as error:  # pylint: disable=broad-except  (a damaged saved_model.pb or variables)
        first_line = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ValueError(f"cannot load the SavedModel {version_dir}: {first_line[:300]}. Its files are damaged: "
                         "export it again (bin/export.py)") from None
    signatures = dict(saved_model.signatures)
    if IMAGE_ENDPOINT not in signatures:
        raise ValueError(
            f"the SavedModel {version_dir} has no {IMAGE_ENDPOINT!r} signature (it has: {sorted(signatures)})"
        )
    image_shape = _image_input_shape(signatures[IMAGE_ENDPOINT], version_dir)
    num_classes = _num_classes(signatures[IMAGE_ENDPOINT], version_dir)
    return LoadedExport(
        version_dir=version_dir,
        image_shape=image_shape,
        class_names=_read_class_names(version_dir, num_classes),
        accepts_bytes=BYTES_ENDPOINT in signatures,
        saved_model=saved_model,
    )


def _image_input_shape(signature, version_dir: str) -> tuple:
    _, inputs = signature.structured_input_signature
    spec = inputs.get("image")
    shape = None if spec is None else spec.shape
    if (spec is None or spec.dtype != tf.uint8 or shape.rank != 4
            or any(d is None for d in shape[1:]) or shape[-1] not in (1, 3)):
        raise ValueError(
            f"the SavedModel {version_dir} signature {IMAGE_ENDPOINT!r} must take uint8 'image' of shape "
            f"[None, H, W, C] with C in (1, 3), it takes {inputs}"
        )
    return tuple(int(d) for d in shape[1:])


def _num_classes(signature, version_dir: str) -> int:
    spec = signature.structured_outputs.get("probabilities")
    if spec is None or spec.shape.rank != 2 or spec.shape[-1] is None:
        raise ValueError(
            f"the SavedModel {version_dir} signature {IMAGE_ENDPOINT!r} must return 'probabilities' "
            f"[None, C], it returns {signature.structured_outputs}"
        )
    return int(spec.shape[-1])


def _read_class_names(version_dir: str, num_classes: int) -> tuple:
    path = os.path.join(version_dir, "assets", CLASS_NAMES_FILE)
    if not os.path.isfile(path):
        return tuple(str(c) for c in range(num_classes))
    with open(path, encoding="utf-8") as file:
        names = tuple(file.read().splitlines())
    if len(names) != num_classes:
        raise ValueError(f"{path} names {len(names)} classes but the SavedModel predicts {num_classes}")
    return names


def find_image_files(inputs: Sequence[str]) -> List[str]:
    """The files to classify: each input file as given, each folder's image files (recursive, sorted).

    Files named directly are kept whatever their extension; in folders, only names ending in
    `IMAGE_EXTENSIONS` (any case) are taken. A file reached twice is listed once.

    Raises:
      FileNotFoundError: an input does not exist; ValueError: no inputs, or no image files among them.
    """
    if isinstance(inputs, (str, bytes)) or not inputs:
        raise ValueError(f"give at least one image file or folder to classify, got {inputs!r}")
    found, seen = [], set()
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            candidates = sorted(
                os.path.join(folder, name)
                for folder, _, names in os.walk(item)
                for name in names
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.exists(item):
            candidates = [item]
        else:
            raise FileNotFoundError(f"image file or folder {item!r} does not exist")
        for path in candidates:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                found.append(path)
    if not found:
        raise ValueError(
            f"no image files ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) found in {list(inputs)!r}"
        )
    return found


def decode_for_model(content: bytes, image_shape: Sequence[int]) -> np.ndarray:
    """Encoded image bytes -> uint8 `image_shape`, as the export's `serving_bytes` decodes them.

    Raises tf.errors.InvalidArgumentError for bytes that are no decodable image.
    """
    try:
        return decode_image_bytes(tf.constant(content), image_shape).numpy()
    except tf.errors.InvalidArgumentError:
        if image_shape[-1] != 1:
            raise
    # GIF and BMP decoders give no 1-channel output: decode RGB, convert, re-encode losslessly.
    rgb = tf.io.decode_image(content, channels=3, expand_animations=False)
    gray = tf.image.rgb_to_grayscale(rgb)
    return decode_image_bytes(tf.io.encode_png(gray), image_shape).numpy()


@dataclasses.dataclass(frozen=True)
class FilePredictions:
    """Probabilities of the files that could be classified, and why the others could not."""

    paths: tuple
    probabilities: np.ndarray  # float32 [len(paths), C]
    skipped: tuple  # (path, reason) pairs, in input order
    endpoints: tuple  # the signatures that were called, sorted


def classify_files(export: LoadedExport, paths: Sequence[str], on_bad_file: str = "skip",
                   batch_size: int = 64) -> FilePredictions:
    """Classifies image files with `export`, `batch_size` files per call.

    Args:
      on_bad_file: "skip" leaves out files that cannot be read or decoded (listed in `skipped`);
        "error" raises on the first one.

    Raises:
      ValueError: a bad file under "error" (naming it and why), a bad argument, or no file classifiable.
    """
    check_on_bad_file(on_bad_file)
    _check_batch_size(batch_size)
    paths = list(paths)
    kept_paths, outputs, skipped, endpoints = [], [], [], set()
    for start in range(0, len(paths), batch_size):
        readable, contents = [], []
        for path in paths[start : start + batch_size]:
            content, problem = _read_file(path)
            if problem is None:
                readable.append(path)
                contents.append(content)
            else:
                skipped.append((path, problem))
        if readable:
            probabilities, good, bad, endpoint = _classify_contents(export, readable, contents)
            kept_paths.extend(good)
            outputs.append(probabilities)
            skipped.extend(bad)
            endpoints.add(endpoint)
        if skipped and on_bad_file == "error":
            path, problem = min(skipped, key=lambda item: paths.index(item[0]))
            raise ValueError(f"cannot classify {path!r}: {problem} (use on_bad_file=skip to leave such files out)")
    if not kept_paths:
        path, problem = skipped[0] if skipped else (None, None)
        raise ValueError(f"none of the {len(paths)} files could be classified (the first: {path!r}, {problem})")
    order = {path: position for position, path in enumerate(paths)}
    skipped.sort(key=lambda item: order[item[0]])
    return FilePredictions(tuple(kept_paths), np.concatenate(outputs), tuple(skipped), tuple(sorted(endpoints)))


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _check_top_k(top_k, num_classes: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k <= num_classes:
        raise ValueError(f"top_k must be an integer in [1, {num_classes}] (the number of classes), got {top_k!r}")


def _read_file(path: str) -> Tuple[Optional[bytes], Optional[str]]:
    try:
        with open(path, "rb") as file:
            content = file.read()
    except OSError as error:
        return None, f"unreadable ({error.strerror or error})"
    return (content, None) if content else (None, "empty")


def _classify_contents(export: LoadedExport, paths: list, contents: list):
    """(probabilities, classified paths, [(path, reason)] not decodable, endpoint used) for one batch."""
    if export.accepts_bytes:
        try:
            return export.predict_encoded(contents), list(paths), [], BYTES_ENDPOINT
        except tf.errors.InvalidArgumentError:
            pass  # some file of the batch does not decode there: decode each here to find it
    images, good, bad = [], [], []
    for path, content in zip(paths, contents):
        try:
            images.append(decode_for_model(content, export.image_shape))
            good.append(path)
        except tf.errors.OpError:
            bad.append((path, "not a decodable image (JPEG, PNG, GIF or BMP)"))
    if not images:
        return np.zeros((0, export.num_classes), np.float32), good, bad, IMAGE_ENDPOINT
    return export.predict_images(np.stack(images)), good, bad, IMAGE_ENDPOINT


def prediction_rows(predictions: FilePredictions, class_names: Sequence[str], top_k: int = 1) -> List[list]:
    """CSV rows, header first: path, class_id, class_name, probability, then for each rank k in
    2..top_k class_id_k, class_name_k, probability_k. Ties go to the lower class id, as `classes` does."""
    _check_top_k(top_k, len(class_names))
    header = list(CSV_COLUMNS)
    for rank in range(2, top_k + 1):
        header += [f"class_id_{rank}", f"class_name_{rank}", f"probability_{rank}"]
    rows = [header]
    for path, probabilities in zip(predictions.paths, predictions.probabilities):
        row = [path]
        for class_id in np.argsort(-probabilities, kind="stable")[:top_k]:
            row += [int(class_id), class_names[class_id], f"{float(probabilities[class_id]):.6f}"]
        rows.append(row)
    return rows


def classify_images(inputs: Sequence[str], *, saved_model: Optional[str] = None, workdir: Optional[str] = None,
                    output: Optional[str] = None, top_k: int = 1, on_bad_file: str = "skip",
                    batch_size: int = 64) -> dict:
    """Classifies the image files and folders `inputs` with a SavedModel and writes a CSV.

    Args:
      saved_model: a SavedModel version folder, or a model folder (its highest version is used).
      workdir: instead of `saved_model`, a run's workdir: its newest export.
      output: the CSV file to write (atomically); None writes the CSV to standard output.
      top_k, on_bad_file, batch_size: see `prediction_rows` and `classify_files`.

    Returns a summary: `version_dir`, `endpoints`, `num_classified`, `skipped` [(path, reason)], `output`.
    Nothing is written when it raises (ValueError, FileNotFoundError).
    """
    if (saved_model is None) == (workdir is None):
        raise ValueError(f"give exactly one of saved_model or workdir, got saved_model={saved_model!r}, "
                         f"workdir={workdir!r}")
    check_on_bad_file(on_bad_file)
    _check_batch_size(batch_size)
    if output is not None:
        check_output_file(output)
    paths = find_image_files(inputs)
    export = load_export(saved_model if saved_model is not None else newest_export(workdir))
    _check_top_k(top_k, export.num_classes)
    predictions = classify_files(export, paths, on_bad_file, batch_size)
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(prediction_rows(predictions, export.class_names, top_k))
    if output is None:
        sys.stdout.write(text.getvalue())
        sys.stdout.flush()
    else:
        with io_utils.atomic_path(output, suffix=".csv") as temporary:
            with open(temporary, "w", encoding="utf-8", newline="") as file:
                file.write(text.getvalue())
    return {
        "version_dir": export.version_dir,
        "endpoints": list(predictions.endpoints),
        "num_classified": len(predictions.paths),
        "skipped": list(predictions.skipped),
        "output": output,
    }
