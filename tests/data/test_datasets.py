import numpy as np
import pytest
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

from tf_twostage.data.datasets import load_dataset, load_tfds


def test_mnist5k_has_a_fixed_clean_test_split_of_100_per_class(mnist5k):
    assert len(mnist5k.train) == 4000 and len(mnist5k.test) == 1000
    assert np.bincount(mnist5k.test.labels).tolist() == [100] * 10
    assert np.bincount(mnist5k.train.labels).tolist() == [400] * 10
    assert not set(mnist5k.train.index) & set(mnist5k.test.index)
    assert mnist5k.train.images.shape[1:] == (28, 28, 1) and mnist5k.train.images.dtype == np.uint8
    assert mnist5k.train.images.max() == 255
    assert mnist5k.train.has_clean_labels and mnist5k.test.has_clean_labels


def test_mnist5k_test_split_does_not_depend_on_the_run_seed(mnist5k):
    from tf_twostage.data.datasets import load_mnist5k

    np.random.seed(123)
    again = load_mnist5k()
    assert np.array_equal(again.test.index, mnist5k.test.index)


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_datasets_load_through_the_real_code_path(name, shape):
    with tfds.testing.mock_data(num_examples=30):
        data = load_dataset(ConfigDict({"name": name, "dir": "", "download": False}))
    assert data.image_shape == shape
    assert len(data.train) == 30 and len(data.test) == 30
    assert data.num_classes == 10
    assert len(set(data.train.index) | set(data.test.index)) == 60
    assert data.train.has_clean_labels


def test_unprepared_tfds_dataset_without_download_fails_fast_with_advice(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.download"):
        load_tfds("mnist", str(tmp_path), download=False)


def test_unknown_dataset_name_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"data.name must be one of mnist5k, .*; got 'imagenet'"):
        load_dataset(ConfigDict({"name": "imagenet"}))
