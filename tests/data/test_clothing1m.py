"""Tests for the Clothing1M loader on a tiny release-layout tree of real PNG/JPEG files."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from tf_twostage.data.clothing1m import CLASS_NAMES, load_clothing1m
from tf_twostage.data.source import UNKNOWN_LABEL

# key -> (noisy label or None, clean label or None)
_LABELS = {
    "images/0/00/3.png": (4, None),
    "images/0/00/1.png": (1, 2),
    "images/0/01/2.jpg": (0, None),
    "images/1/00/5.png": (13, 13),
    "images/2/00/6.png": (None, 7),
    "images/2/00/7.png": (None, 8),
    "images/3/00/8.png": (None, 9),
    "images/4/00/9.png": (None, 10),
    "images/4/00/10.png": (None, 11),
}
_KEY_LISTS = {
    "noisy_train_key_list.txt": [
        "images/0/00/3.png",
        "images/0/00/1.png",
        "images/0/01/2.jpg",
        "images/1/00/5.png",
    ],
    "clean_train_key_list.txt": ["images/2/00/7.png", "images/2/00/6.png"],
    "clean_val_key_list.txt": ["images/3/00/8.png"],
    "clean_test_key_list.txt": ["images/4/00/9.png", "images/4/00/10.png", "images/1/00/5.png"],
}


def _pixels(key: str) -> np.ndarray:
    """A smooth 12x12 RGB image, distinct per key (smooth so that JPEG keeps it close)."""
    color = np.random.RandomState(sum(map(ord, key))).randint(0, 160, size=3)
    ramp = np.arange(12)[:, None, None] * 4 + np.arange(12)[None, :, None] * 3
    return (color + ramp).astype(np.uint8)


def _write_lines(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))


@pytest.fixture(name="data_dir")
def fixture_data_dir(tmp_path):
    """A Clothing1M layout under tmp_path/clothing1m with 12x12 images."""
    root = tmp_path / "clothing1m"
    for key in _LABELS:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_pixels(key)).save(root / key, quality=95)
    noisy_lines = [f"{key} {noisy}" for key, (noisy, _) in _LABELS.items() if noisy is not None]
    clean_lines = [f"{key} {clean}" for key, (_, clean) in _LABELS.items() if clean is not None]
    _write_lines(root / "noisy_label_kv.txt", noisy_lines)
    _write_lines(root / "clean_label_kv.txt", clean_lines)
    for name, keys in _KEY_LISTS.items():
        _write_lines(root / name, keys)
    return root


def test_splits_have_the_listed_keys_labels_and_clean_labels(data_dir):
    splits = load_clothing1m(str(data_dir), image_size=(12, 12))

    assert splits.name == "clothing1m"
    assert splits.class_names == CLASS_NAMES and splits.num_classes == 14
    for split, list_name in [
        (splits.train, "noisy_train_key_list.txt"),
        (splits.clean, "clean_train_key_list.txt"),
        (splits.validation, "clean_val_key_list.txt"),
        (splits.test, "clean_test_key_list.txt"),
    ]:
        keys = sorted(_KEY_LISTS[list_name])
        assert not split.in_memory and split.image_shape == (12, 12, 3)
        assert list(split.paths) == [os.path.realpath(data_dir / key) for key in keys]
        noisy = split is splits.train
        expected = [_LABELS[key][0 if noisy else 1] for key in keys]
        assert split.labels.tolist() == expected
        if noisy:
            clean = [_LABELS[key][1] for key in keys]
            assert split.clean_labels.tolist() == [UNKNOWN_LABEL if c is None else c for c in clean]
        else:
            assert split.clean_labels.tolist() == expected
    assert splits.train.labels.tolist() == [1, 4, 0, 13]  # images/0/00/1, 0/00/3, 0/01/2, 1/00/5
    assert splits.train.clean_labels.tolist() == [2, UNKNOWN_LABEL, UNKNOWN_LABEL, 13]


def test_index_is_unique_across_splits_and_counts_up_in_split_order(data_dir):
    splits = load_clothing1m(str(data_dir), image_size=(12, 12))

    ids = np.concatenate([s.index for s in (splits.train, splits.clean, splits.validation, splits.test)])
    assert ids.tolist() == list(range(10))


def test_class_names_come_from_the_category_file_when_present(data_dir):
    names = [f"class {i}" for i in range(14)]
    _write_lines(data_dir / "category_names_eng.txt", names)

    assert load_clothing1m(str(data_dir), image_size=(12, 12)).class_names == tuple(names)


def test_to_dataset_decodes_the_written_images(data_dir):
    splits = load_clothing1m(str(data_dir), image_size=(12, 12))

    examples = list(splits.train.to_dataset().as_numpy_iterator())
    keys = sorted(_KEY_LISTS["noisy_train_key_list.txt"])
    assert [int(e["index"]) for e in examples] == splits.train.index.tolist()
    for key, example in zip(keys, examples):
        assert example["image"].dtype == np.uint8 and example["image"].shape == (12, 12, 3)
        error = np.abs(example["image"].astype(int) - _pixels(key).astype(int))
        if key.endswith(".png"):
            assert error.max() == 0, key
        else:  # JPEG is lossy
            assert error.mean() < 4, key
    assert [int(e["clean_label"]) for e in examples] == splits.train.clean_labels.tolist()


def test_images_are_resized_to_image_size(data_dir):
    splits = load_clothing1m(str(data_dir), image_size=(8, 10))

    image = next(iter(splits.test.to_dataset()))["image"]
    assert splits.image_shape == (8, 10, 3) and image.shape == (8, 10, 3)


def test_missing_layout_files_are_listed_with_the_expected_layout(data_dir):
    (data_dir / "clean_val_key_list.txt").unlink()
    (data_dir / "noisy_label_kv.txt").unlink()

    with pytest.raises(ValueError, match="noisy_label_kv.txt, clean_val_key_list.txt") as error:
        load_clothing1m(str(data_dir))
    assert "expected layout" in str(error.value)


def test_missing_data_dir_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        load_clothing1m(str(tmp_path / "nowhere"))


def test_key_without_label_is_named(data_dir):
    _write_lines(data_dir / "clean_val_key_list.txt", ["images/3/00/8.png", "images/0/01/2.jpg"])

    pattern = r"clean_val_key_list.txt.*clean_label_kv.txt.*images/0/01/2.jpg"
    with pytest.raises(ValueError, match=pattern):
        load_clothing1m(str(data_dir))


def test_malformed_label_line_is_named(data_dir):
    with open(data_dir / "clean_label_kv.txt", "a") as file:
        file.write("images/4/00/9.png 14\n")

    with pytest.raises(ValueError, match=r"clean_label_kv.txt line 8.*'images/4/00/9.png 14'"):
        load_clothing1m(str(data_dir))


def test_key_escaping_data_dir_is_refused(data_dir):
    outside = data_dir.parent / "outside.png"
    Image.fromarray(_pixels("x")).save(outside)
    with open(data_dir / "clean_label_kv.txt", "a") as file:
        file.write("images/../../outside.png 3\n")
    _write_lines(data_dir / "clean_test_key_list.txt", ["images/../../outside.png"])

    with pytest.raises(ValueError, match=r"'images/../../outside.png'.*outside the data root"):
        load_clothing1m(str(data_dir))


def test_symlink_escaping_data_dir_is_refused(data_dir):
    outside = data_dir.parent / "outside"
    outside.mkdir()
    Image.fromarray(_pixels("x")).save(outside / "8.png")
    (data_dir / "images/3/00/8.png").unlink()
    (data_dir / "images/3/00/8.png").symlink_to(outside / "8.png")

    with pytest.raises(ValueError, match="outside the data root"):
        load_clothing1m(str(data_dir))


def _break_files(data_dir):
    (data_dir / "images/0/00/3.png").write_bytes(b"")  # empty
    (data_dir / "images/0/01/2.jpg").write_bytes(b"\xff\xd8")  # truncated before the JPEG magic ends
    (data_dir / "images/2/00/6.png").write_text("<html>not found</html>")  # not an image
    (data_dir / "images/4/00/10.png").unlink()  # missing


def test_bad_files_raise_naming_the_first_and_the_count(data_dir):
    _break_files(data_dir)

    with pytest.raises(ValueError, match=r"2 of 4 .*images/0/00/3.png' is empty.*data.on_bad_file=skip"):
        load_clothing1m(str(data_dir))


def test_bad_files_are_skipped_keeping_the_ids_of_the_others(data_dir, caplog):
    _break_files(data_dir)

    with caplog.at_level(logging.WARNING):
        splits = load_clothing1m(str(data_dir), image_size=(12, 12), on_bad_file="skip")

    assert splits.train.index.tolist() == [0, 3]  # 0/00/1.png and 1/00/5.png remain
    assert splits.clean.index.tolist() == [5]
    assert splits.validation.index.tolist() == [6]
    assert splits.test.index.tolist() == [7, 9]  # 1/00/5.png and 4/00/9.png remain
    assert "Skipped 2 of 4" in caplog.text
    assert len(list(splits.train.to_dataset())) == 2


def test_unknown_on_bad_file_value_lists_the_allowed_ones(data_dir):
    with pytest.raises(ValueError, match="error, skip; got 'ignore'"):
        load_clothing1m(str(data_dir), on_bad_file="ignore")
