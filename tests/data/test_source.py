import numpy as np
import pytest

from tf_twostage.data.source import UNKNOWN_LABEL, ImageSplit, check_images, check_labels
from tests.conftest import make_split


def test_labels_outside_class_range_are_refused_with_the_value():
    with pytest.raises(ValueError, match=r"must be in \[0, 3\), got 7 at position 1"):
        check_labels([0, 7, 1], 3)
    with pytest.raises(ValueError, match=r"got -1"):
        check_labels([-1], 3)


def test_non_integer_labels_are_refused_but_integral_floats_pass():
    with pytest.raises(ValueError, match="must be integers"):
        check_labels(np.array([0.5, 1.0]), 3)
    with pytest.raises(ValueError, match="must be integers"):
        check_labels(np.array(["a", "b"]), 3)
    assert check_labels(np.array([0.0, 2.0]), 3).dtype == np.int64


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 4, 4, 1), np.float32), "dtype uint8"),
        (np.zeros((2, 4, 4), np.uint8), "rank 4"),
        (np.zeros((2, 4, 4, 2), np.uint8), "rank 4"),
    ],
)
def test_images_of_wrong_dtype_or_rank_are_refused(images, message):
    with pytest.raises(ValueError, match=message):
        check_images(images)


def test_split_needs_exactly_one_of_images_or_paths():
    with pytest.raises(ValueError, match="exactly one"):
        ImageSplit(labels=[0], index=[0], num_classes=2, image_shape=(2, 2, 1))


def test_split_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        ImageSplit(labels=[0, 1], index=[0, 1], num_classes=2, image_shape=(2, 2, 1),
                   images=np.zeros((3, 2, 2, 1), np.uint8))


def test_subset_keeps_index_labels_and_images_together():
    split = make_split(10, 2)
    part = split.subset([7, 2])
    assert part.index.tolist() == [7, 2]
    assert part.labels.tolist() == [1, 0]
    assert part.images[:, 0, 0, 0].tolist() == [7, 2]


def test_dataset_yields_every_example_in_order_with_index_and_clean_label():
    split = make_split(6, 3).with_labels(np.array([1, 1, 1, 0, 0, 0]))
    examples = list(split.to_dataset().as_numpy_iterator())
    assert [e["index"] for e in examples] == list(range(6))
    assert [e["label"] for e in examples] == [1, 1, 1, 0, 0, 0]
    assert [e["clean_label"] for e in examples] == [0, 1, 2, 0, 1, 2]
    assert examples[4]["image"].dtype == np.uint8 and examples[4]["image"][0, 0, 0] == 4


def test_unknown_clean_labels_travel_as_minus_one():
    split = make_split(4, 2)
    split = ImageSplit(labels=split.labels, index=split.index, num_classes=2, image_shape=split.image_shape,
                       images=split.images)
    assert not split.has_clean_labels
    assert {e["clean_label"] for e in split.to_dataset().as_numpy_iterator()} == {UNKNOWN_LABEL}
