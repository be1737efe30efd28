"""From a config to the data an experiment trains on: load, add label noise, hold out validation."""

from __future__ import annotations

import dataclasses
from typing import Optional

from tf_twostage.data import noise as noise_lib
from tf_twostage.data.datasets import load_dataset
from tf_twostage.data.pipelines import stratified_holdout
from tf_twostage.data.preprocess import Preprocessor, fit_preprocessor
from tf_twostage.data.source import DatasetSplits, ImageSplit


@dataclasses.dataclass(frozen=True, eq=False)
class PreparedData:
    """The splits of one run. `train` and `validation` carry noisy labels (clean ones beside them)."""

    dataset: DatasetSplits
    train: ImageSplit
    validation: ImageSplit
    test: ImageSplit
    clean: Optional[ImageSplit]
    noise: noise_lib.NoiseReport
    preprocessor: Preprocessor

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def image_shape(self) -> tuple:
        """The shape of the images the model takes (after a crop, see `raw_image_shape`)."""
        return self.preprocessor.output_shape(self.dataset.image_shape)

    @property
    def raw_image_shape(self) -> tuple:
        """The shape of the decoded images (`data.resize_size` when set), what a SavedModel takes."""
        return self.dataset.image_shape


def prepare_data(config) -> PreparedData:
    """Loads `config.data`, corrupts the training labels per `config.noise` and splits validation.

    The noise is drawn per example from (seed, index) by the same function that works inside
    `tf.data`, so the noisy labels do not depend on order or batching. The validation set is 10% of
    the *noisy* training set (stratified by noisy label), unless the dataset gives its own.
    """
    dataset = load_dataset(config.data)
    for split_name in ("train", "test"):
        if len(getattr(dataset, split_name)) == 0:
            raise ValueError(
                f"dataset {dataset.name!r} has no {split_name} images; a run needs at least one "
                f"(data.name={config.data.name}, data.dir={config.data.dir!r})"
            )
    train = dataset.train
    noisy, report = noise_lib.apply_noise_config(
        config.noise, train.labels, train.index, dataset.num_classes, dataset.name, config.seed
    )
    clean_labels = train.clean_labels
    if clean_labels is None and config.noise.type != "none":
        clean_labels = train.labels  # synthetic noise on a user's labels: they become the reference
    train = train.with_labels(noisy, clean_labels=clean_labels)
    if dataset.validation is not None:
        validation = dataset.validation
    else:
        kept, held_out = stratified_holdout(train.labels, config.data.val_fraction, config.seed)
        train, validation = train.subset(kept), train.subset(held_out)
    if len(train) == 0:
        raise ValueError(
            f"dataset {dataset.name!r} has no training images left after holding out data.val_fraction="
            f"{config.data.val_fraction}; lower it (it must leave at least one training image)"
        )
    crop_size = tuple(config.data.image_size) if tuple(config.data.get("resize_size", ()) or ()) else None
    preprocessor = fit_preprocessor(train, bool(config.data.subtract_mean), config.seed, crop_size)
    return PreparedData(
        dataset=dataset,
        train=train,
        validation=validation,
        test=dataset.test,
        clean=dataset.clean,
        noise=report,
        preprocessor=preprocessor,
    )
