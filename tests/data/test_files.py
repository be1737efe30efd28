"""The load-time file check: missing, empty, non-image and truncated files, on real encoded images."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tf_twostage.data.files import verify_image_files

FORMATS = ("JPEG", "PNG", "GIF", "BMP")


def _encoded(image_format: str, **options) -> bytes:
    pixels = np.random.RandomState(0).randint(0, 256, (24, 20, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _with_exif_thumbnail(jpeg: bytes) -> bytes:
    """The JPEG with an APP1 segment holding a small JPEG (as EXIF thumbnails do): its own end marker
    comes early in the file, before the main image data."""
    thumbnail = _encoded("JPEG")
    payload = b"Exif\x00\x00" + thumbnail
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def _problem(tmp_path, data: bytes):
    path = tmp_path / "image.bin"
    path.write_bytes(data)
    try:
        verify_image_files([str(path)], "error")
    except ValueError as error:
        return str(error)
    return None


@pytest.mark.parametrize("image_format", FORMATS)
def test_complete_images_pass(tmp_path, image_format):
    assert _problem(tmp_path, _encoded(image_format)) is None


@pytest.mark.parametrize("image_format", FORMATS)
@pytest.mark.parametrize("keep", [0.5, -2])
def test_truncated_images_are_named_as_truncated(tmp_path, image_format, keep):
    data = _encoded(image_format)
    cut = data[: int(len(data) * keep)] if keep > 0 else data[:keep]
    with pytest.raises(tf.errors.InvalidArgumentError):  # what the pipeline would hit hours later
        tf.io.decode_image(cut, channels=3, expand_animations=False)
    assert "is truncated" in _problem(tmp_path, cut)


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_trailing_bytes_after_a_complete_image_are_tolerated_as_the_decoder_does(tmp_path, image_format):
    data = _encoded(image_format) + b"\x00" * 5000  # more than the tail that is read first
    tf.io.decode_image(data, channels=3, expand_animations=False)
    assert _problem(tmp_path, data) is None


def test_a_progressive_jpeg_passes(tmp_path):
    assert _problem(tmp_path, _encoded("JPEG", progressive=True)) is None


def test_a_jpeg_cut_after_its_thumbnail_is_truncated_although_the_thumbnail_ends(tmp_path):
    data = _with_exif_thumbnail(_encoded("JPEG"))
    assert tf.io.decode_image(data, channels=3).shape == (24, 20, 3)  # a valid JPEG
    assert _problem(tmp_path, data) is None
    assert "no JPEG end-of-image marker" in _problem(tmp_path, data[:-40])


def test_a_bmp_padded_beyond_its_declared_size_is_refused_as_the_decoder_refuses_it(tmp_path):
    data = _encoded("BMP") + b"\x00" * 10
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_image(data, channels=3, expand_animations=False)
    assert "declares" in _problem(tmp_path, data)


def test_missing_empty_non_image_and_truncated_files_are_counted_and_skipped(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_encoded("PNG"))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "page.jpg").write_text("<html>404</html>")
    (tmp_path / "cut.jpg").write_bytes(_encoded("JPEG")[:100])
    (tmp_path / "folder.png").mkdir()
    names = ["good.png", "empty.png", "page.jpg", "cut.jpg", "gone.png", "folder.png"]
    paths = [str(tmp_path / name) for name in names]

    keep = verify_image_files(paths, "skip")
    assert keep.tolist() == [True, False, False, False, False, False]
    with pytest.raises(ValueError, match=r"5 of 6 image files are missing, empty, truncated or not images; "
                                         r"the first: '.*empty.png' is empty"):
        verify_image_files(paths, "error")
