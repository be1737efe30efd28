"""tf_twostage: learning image classifiers from noisy labels in two stages, with TensorFlow/Keras.

The pieces a notebook needs are importable from the top level:

    from tf_twostage import load_mnist5k, transition_matrix, add_label_noise, supervised_dataset
"""

from tf_twostage.data.augment import build_augmenter
from tf_twostage.data.datasets import load_dataset, load_mnist5k
from tf_twostage.data.noise import add_label_noise, corrupt_labels, transition_matrix
from tf_twostage.data.pipelines import (
    class_balanced_positions,
    evaluation_dataset,
    semi_supervised_stream,
    stratified_holdout,
    supervised_dataset,
)
from tf_twostage.data.prepare import prepare_data
from tf_twostage.data.preprocess import Preprocessor, fit_preprocessor
from tf_twostage.data.source import DatasetSplits, ImageSplit
from tf_twostage.models import build_classifier

__version__ = "0.1.0"

__all__ = [
    "DatasetSplits",
    "ImageSplit",
    "Preprocessor",
    "add_label_noise",
    "build_augmenter",
    "build_classifier",
    "class_balanced_positions",
    "corrupt_labels",
    "evaluation_dataset",
    "fit_preprocessor",
    "load_dataset",
    "load_mnist5k",
    "prepare_data",
    "semi_supervised_stream",
    "stratified_holdout",
    "supervised_dataset",
    "transition_matrix",
]
