"""tf_twostage: learning image classifiers from noisy labels in two stages, with TensorFlow/Keras.

The pieces a notebook needs are importable from the top level:

    from tf_twostage import load_mnist5k, transition_matrix, add_label_noise, supervised_dataset
    from tf_twostage import find_label_issues, label_health  # numpy in, numpy out

They are loaded on first use (PEP 562), so `import tf_twostage` itself does not import TensorFlow: the
programs set TensorFlow's logging before it loads, and the numpy-only functions stay light.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "build_augmenter": "tf_twostage.data.augment",
    "load_dataset": "tf_twostage.data.datasets",
    "load_mnist5k": "tf_twostage.data.datasets",
    "add_label_noise": "tf_twostage.data.noise",
    "corrupt_labels": "tf_twostage.data.noise",
    "transition_matrix": "tf_twostage.data.noise",
    "class_balanced_positions": "tf_twostage.data.pipelines",
    "evaluation_dataset": "tf_twostage.data.pipelines",
    "semi_supervised_stream": "tf_twostage.data.pipelines",
    "stratified_holdout": "tf_twostage.data.pipelines",
    "supervised_dataset": "tf_twostage.data.pipelines",
    "prepare_data": "tf_twostage.data.prepare",
    "Preprocessor": "tf_twostage.data.preprocess",
    "fit_preprocessor": "tf_twostage.data.preprocess",
    "DatasetSplits": "tf_twostage.data.source",
    "ImageSplit": "tf_twostage.data.source",
    "build_classifier": "tf_twostage.models",
    "LabelIssues": "tf_twostage.stage1.label_issues",
    "find_label_issues": "tf_twostage.stage1.label_issues",
    "label_health": "tf_twostage.stage1.label_issues",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tf_twostage' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
