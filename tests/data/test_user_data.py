"""Tests for a user's own data (image-folder trees and CSV files) on tiny trees of real images."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from tf_twostage.data.user_data import load_user_data


def _pixels(name: str, channels: int = 3) -> np.ndarray:
    """A smooth 12x12 image, distinct per name (smooth so that JPEG keeps it close)."""
    color = np.random.RandomState(sum(map(ord, name))).randint(0, 160, size=channels)
    ramp = np.arange(12)[:, None, None] * 4 + np.arange(12)[None, :, None] * 3
    image = (color + ramp).astype(np.uint8)
    return image[..., 0] if channels == 1 else image


def _write_image(path, channels: int = 3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image_format = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.fromarray(_pixels(path.name, channels)).save(path, format=image_format, quality=95)


def _load(kind, root, **kwargs):
    kwargs.setdefault("image_size", (12, 12))
    return load_user_data(kind, str(root), **kwargs)


# --- folder trees -------------------------------------------------------------------------------


@pytest.fixture(name="folder_root")
def fixture_folder_root(tmp_path):
    """train/{cat,dog,emu}, clean/{cat}, test/{cat,dog} with nested, upper-case and ignored files."""
    root = tmp_path / "data"
    for relative in [
        "train/dog/b.png",
        "train/dog/sub/a.PNG",
        "train/cat/c.jpg",
        "train/cat/d.png",
        "train/emu/e.png",
        "clean/cat/f.png",
        "test/dog/g.png",
        "test/cat/h.png",
    ]:
        _write_image(root / relative)
    (root / "train/cat/notes.txt").write_text("not an image")
    _write_image(root / "train/.ipynb_checkpoints/x.png")
    (root / "train/cat/._c.jpg").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork
    return root


def test_folder_classes_labels_and_clean_labels(folder_root):
    splits = _load("folder", folder_root, train="train", test="test", clean="clean")

    assert splits.name == "folder"
    assert splits.class_names == ("cat", "dog", "emu")
    train_files = ["cat/c.jpg", "cat/d.png", "dog/b.png", "dog/sub/a.PNG", "emu/e.png"]
    assert list(splits.train.paths) == [os.path.realpath(folder_root / "train" / f) for f in train_files]
    assert splits.train.labels.tolist() == [0, 0, 1, 1, 2]
    assert splits.train.clean_labels is None
    assert splits.clean.labels.tolist() == [0] and splits.clean.clean_labels.tolist() == [0]
    assert splits.test.labels.tolist() == [0, 1] and splits.test.clean_labels.tolist() == [0, 1]
    assert splits.validation is None and not splits.train.in_memory


def test_folder_ids_count_up_over_train_clean_test(folder_root):
    splits = _load("folder", folder_root, train="train", test="test", clean="clean")

    assert splits.train.index.tolist() == [0, 1, 2, 3, 4]
    assert splits.clean.index.tolist() == [5]
    assert splits.test.index.tolist() == [6, 7]


def test_folder_images_decode_to_what_was_written(folder_root):
    splits = _load("folder", folder_root, train="train", test="test")

    examples = list(splits.train.to_dataset().as_numpy_iterator())
    assert [int(e["label"]) for e in examples] == splits.train.labels.tolist()
    for path, example in zip(splits.train.paths, examples):
        assert example["image"].dtype == np.uint8 and example["image"].shape == (12, 12, 3)
        error = np.abs(example["image"].astype(int) - _pixels(os.path.basename(path)).astype(int))
        assert error.max() == 0 if path.lower().endswith(".png") else error.mean() < 4, path


def test_grayscale_images_resized_to_image_size(folder_root):
    splits = _load("folder", folder_root, train="train", test="test", channels=1, image_size=(6, 9))

    image = next(splits.test.to_dataset().as_numpy_iterator())["image"]
    assert splits.image_shape == (6, 9, 1) and image.shape == (6, 9, 1) and image.dtype == np.uint8


def test_folder_class_names_given_keep_their_order(folder_root):
    names = ("emu", "dog", "cat")
    splits = _load("folder", folder_root, train="train", test="test", class_names=names)

    assert splits.num_classes == 3
    assert splits.train.labels.tolist() == [2, 2, 1, 1, 0]


def test_a_given_class_without_training_images_is_refused(folder_root):
    with pytest.raises(ValueError, match="1 of 4 classes have no training images: 'yak'"):
        _load("folder", folder_root, train="train", test="test", class_names=("emu", "dog", "cat", "yak"))


def test_test_class_folder_unknown_to_training_is_named(folder_root):
    _write_image(folder_root / "test/zebra/z.png")

    with pytest.raises(ValueError, match="data.test has class folder 'zebra'.*training classes"):
        _load("folder", folder_root, train="train", test="test")


def test_folder_without_images_is_refused(folder_root):
    (folder_root / "empty/cat").mkdir(parents=True)

    with pytest.raises(ValueError, match="data.clean 'empty' holds no images"):
        _load("folder", folder_root, train="train", test="test", clean="empty")


def test_missing_source_is_named(folder_root):
    with pytest.raises(ValueError, match="data.test 'tset'.*not an existing folder"):
        _load("folder", folder_root, train="train", test="tset")


def test_source_outside_data_dir_is_refused(folder_root):
    with pytest.raises(ValueError, match="'../elsewhere'.*outside the data root"):
        _load("folder", folder_root, train="train", test="../elsewhere")


def test_symlinked_image_outside_data_dir_is_refused(folder_root, tmp_path):
    _write_image(tmp_path / "secret.png")
    (folder_root / "train/cat/link.png").symlink_to(tmp_path / "secret.png")

    with pytest.raises(ValueError, match="link.png.*outside the data root"):
        _load("folder", folder_root, train="train", test="test")


def test_unknown_kind_lists_the_allowed_ones(folder_root):
    with pytest.raises(ValueError, match="folder, csv; got 'tfrecord'"):
        _load("tfrecord", folder_root, train="train", test="test")


def test_bad_channels_value_is_named(folder_root):
    with pytest.raises(ValueError, match="channels must be 1 or 3; got 4"):
        _load("folder", folder_root, train="train", test="test", channels=4)


# --- CSV files ---------------------------------------------------------------------------------


@pytest.fixture(name="csv_root")
def fixture_csv_root(tmp_path):
    """Images under img/ and train.csv (with header), test.csv and clean.csv (without)."""
    root = tmp_path / "data"
    for name in ["a.png", "b.png", "c.jpg", "d.png", "e.png", "f.png", "g.png"]:
        _write_image(root / "img" / name)
    (root / "train.csv").write_text("path,label\nimg/c.jpg,dog\nimg/a.png,cat\n\nimg/b.png,dog\n")
    (root / "test.csv").write_text("img/d.png,cat\nimg/e.png,dog\n")
    (root / "clean.csv").write_text(f"{root / 'img/f.png'},dog\n")  # absolute, inside the root
    return root


def test_csv_string_labels_become_sorted_class_names(csv_root):
    splits = _load("csv", csv_root, train="train.csv", test="test.csv", clean="clean.csv")

    assert splits.name == "csv" and splits.class_names == ("cat", "dog")
    assert [os.path.basename(p) for p in splits.train.paths] == ["a.png", "b.png", "c.jpg"]
    assert splits.train.labels.tolist() == [0, 1, 1] and splits.train.clean_labels is None
    assert splits.clean.labels.tolist() == [1] and splits.clean.clean_labels.tolist() == [1]
    assert splits.test.labels.tolist() == [0, 1] and splits.test.clean_labels.tolist() == [0, 1]
    ids = np.concatenate([splits.train.index, splits.clean.index, splits.test.index])
    assert ids.tolist() == list(range(6))


def test_csv_images_decode_to_what_was_written(csv_root):
    splits = _load("csv", csv_root, train="train.csv", test="test.csv")

    for path, example in zip(splits.test.paths, splits.test.to_dataset().as_numpy_iterator()):
        np.testing.assert_array_equal(example["image"], _pixels(os.path.basename(path)))


def test_csv_integer_labels_count_classes_over_all_sources(csv_root):
    (csv_root / "train.csv").write_text("img/a.png,0\nimg/b.png,2\n")
    (csv_root / "test.csv").write_text("img/d.png,4\n")

    # Classes 0..4 are counted over all sources; 1, 3 and 4 have no training image: refused, since a
    # label only in the test split (4) can never be predicted.
    with pytest.raises(ValueError, match=r"3 of 5 classes have no training images \(its labels occur only in the "
                                         r"test split\): '1', '3', '4' \(1 test images\)"):
        _load("csv", csv_root, train="train.csv", test="test.csv")
    (csv_root / "train.csv").write_text("img/a.png,0\nimg/b.png,2\nimg/c.jpg,1\n")
    (csv_root / "test.csv").write_text("img/d.png,2\n")
    splits = _load("csv", csv_root, train="train.csv", test="test.csv")
    assert splits.class_names == ("0", "1", "2")
    assert splits.train.labels.tolist() == [0, 2, 1] and splits.test.labels.tolist() == [2]


def test_csv_labels_may_be_names_or_ids_of_given_class_names(csv_root):
    (csv_root / "train.csv").write_text("img/a.png,bird\nimg/b.png,0\nimg/c.jpg,1\n")

    names = ["cat", "dog", "bird"]
    splits = _load("csv", csv_root, train="train.csv", test="test.csv", class_names=names)

    assert splits.train.labels.tolist() == [2, 0, 1] and splits.test.labels.tolist() == [0, 1]


def test_csv_unknown_test_label_is_named(csv_root):
    (csv_root / "test.csv").write_text("img/d.png,cat\nimg/e.png,zebra\n")

    with pytest.raises(ValueError, match=r"data.test has unknown label 'zebra' \(for 'img/e.png'\)"):
        _load("csv", csv_root, train="train.csv", test="test.csv")


def test_csv_label_id_out_of_range_is_named(csv_root):
    (csv_root / "test.csv").write_text("img/d.png,2\n")

    with pytest.raises(ValueError, match=r"unknown label '2'.*\[0, 2\)"):
        _load("csv", csv_root, train="train.csv", test="test.csv", class_names=["cat", "dog"])


def test_csv_mixing_ids_and_names_without_class_names_is_refused(csv_root):
    (csv_root / "test.csv").write_text("img/d.png,1\n")

    with pytest.raises(ValueError, match="mix integer ids"):
        _load("csv", csv_root, train="train.csv", test="test.csv")


def test_csv_row_with_wrong_field_count_is_named(csv_root):
    (csv_root / "train.csv").write_text("img/a.png,cat\nimg/b.png,dog,extra\n")

    with pytest.raises(ValueError, match=r"train.csv line 2: expected 2 non-empty fields.*'extra'"):
        _load("csv", csv_root, train="train.csv", test="test.csv")


def test_csv_with_only_a_header_is_refused(csv_root):
    (csv_root / "test.csv").write_text("path,label\n")

    with pytest.raises(ValueError, match="data.test 'test.csv' holds no images"):
        _load("csv", csv_root, train="train.csv", test="test.csv")


def test_csv_path_escaping_data_dir_is_refused(csv_root, tmp_path):
    _write_image(tmp_path / "outside.png")
    (csv_root / "test.csv").write_text("img/d.png,cat\nimg/../../outside.png,dog\n")

    with pytest.raises(ValueError, match=r"'img/../../outside.png'.*outside the data root"):
        _load("csv", csv_root, train="train.csv", test="test.csv")


def test_missing_csv_is_named(csv_root):
    with pytest.raises(ValueError, match="data.clean 'clean2.csv'.*not an existing CSV file"):
        _load("csv", csv_root, train="train.csv", test="test.csv", clean="clean2.csv")


def _break_images(root):
    (root / "img/b.png").write_bytes(b"\x89PN")  # truncated inside the PNG signature
    (root / "img/c.jpg").write_bytes(b"")
    rows = ["img/a.png,cat", "img/b.png,dog", "img/c.jpg,dog", "img/missing.png,cat", "img/g.png,dog"]
    (root / "train.csv").write_text("\n".join(rows) + "\n")


def test_bad_files_raise_naming_the_first_and_the_count(csv_root):
    _break_images(csv_root)

    with pytest.raises(ValueError, match=r"3 of 5 .*img/b.png' is not an image.*data.on_bad_file=skip"):
        _load("csv", csv_root, train="train.csv", test="test.csv")


def test_bad_files_are_skipped_keeping_the_ids_of_the_others(csv_root, caplog):
    _break_images(csv_root)

    with caplog.at_level(logging.WARNING):
        splits = _load("csv", csv_root, train="train.csv", test="test.csv", on_bad_file="skip")

    assert [os.path.basename(p) for p in splits.train.paths] == ["a.png", "g.png"]
    assert splits.train.index.tolist() == [0, 3] and splits.test.index.tolist() == [5, 6]
    assert "Skipped 3 of 5" in caplog.text


def test_unknown_on_bad_file_value_lists_the_allowed_ones(csv_root):
    with pytest.raises(ValueError, match="error, skip; got 'warn'"):
        _load("csv", csv_root, train="train.csv", test="test.csv", on_bad_file="warn")
