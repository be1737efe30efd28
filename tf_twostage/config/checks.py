"""Checks a config before any work starts, so a bad value fails at once with a clear message.

Every message names the key, the bad value and what is allowed ("noise.rate must be in [0, 1], got 1.5").
`check_override_keys` does the same for `--config.KEY=VALUE` command-line overrides of keys the config
lacks, which the flag parser would otherwise report as a bare `AttributeError`.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from tf_twostage.data.datasets import DATASET_NAMES
from tf_twostage.data.noise import NOISE_TYPES, parse_mapping
from tf_twostage.training.distribution import STRATEGY_NAMES
from tf_twostage.models import MODEL_NAMES
from tf_twostage.models.ensemble import MAX_MEMBERS
from tf_twostage.stage1.callback import RANKINGS
from tf_twostage.stage1.selection import POSTERIORS
from tf_twostage.training.optimizers import OPTIMIZER_NAMES
from tf_twostage.training.precision import DTYPE_POLICIES
from tf_twostage.training.best_epoch import KEEP_CHOICES
from tf_twostage.stage1.selection import RESELECT_KEEP, TOP_UP_POOLS
from tf_twostage.stage1.clusters import TRANSITION_ESTIMATES
from tf_twostage.stage1.propagation import PROPAGATION_INPUTS, PROPAGATION_SOURCES
from tf_twostage.stage1.label_issues import RULES as LABEL_ISSUE_RULES

STAGE2_ALGORITHMS = ("pi", "temporal_ensembling")
CONSISTENCY_NORMALIZATIONS = ("classes", "paper")  # tf_twostage.runs.stage2
EPOCH_UNITS = ("all", "labeled")  # tf_twostage.runs.stage2
INPUT_PREPROCESSING = ("none", "imagenet")  # tf_twostage.models.resnet
BAD_FILE_POLICIES = ("error", "skip")
STAGE1_LOSSES = ("cross_entropy", "gce")  # runs.stage1.pretraining_loss
STAGE1_RULES = ("auto", "confidence", "clean_set", "small_loss", "confident_or_small_loss")  # runs.stage1.RULES
TRANSITION_SOURCES = ("estimated", "true")  # tf_twostage.runs.baselines.TRANSITION_SOURCES
VERBOSITY = (0, 1, 2)
VALIDATION_SOURCES = ("auto", "noisy", "clean", "refined")  # tf_twostage.runs.validation.VALIDATION_SOURCES
_OVERRIDE = re.compile(r"--?config\.([^=]+)")


def validate_config(config, methods: Sequence[str]) -> None:
    """Raises ValueError naming the first bad key, its value and what is allowed."""
    _one_of("method", config.method, methods)
    _one_of("data.name", config.data.name, DATASET_NAMES)
    _one_of("noise.type", config.noise.type, NOISE_TYPES)
    _one_of("stage2.algorithm", config.stage2.algorithm, STAGE2_ALGORITHMS)
    _one_of("model.name", config.model.name, MODEL_NAMES)
    _one_of("stage1.optimizer", config.stage1.optimizer, OPTIMIZER_NAMES)
    _one_of("stage1.ranking", config.stage1.ranking, RANKINGS)
    _one_of("stage1.loss", config.stage1.loss, STAGE1_LOSSES)
    _one_of("stage1.rule", config.stage1.rule, STAGE1_RULES)
    _one_of("stage1.top_up", config.stage1.top_up, TOP_UP_POOLS)
    _one_of("stage1.posterior", config.stage1.posterior, POSTERIORS)
    _one_of("stage1.transition", config.stage1.transition, TRANSITION_ESTIMATES)
    _one_of("stage1.propagation", config.stage1.propagation, PROPAGATION_SOURCES)
    _one_of("stage1.propagation_input", config.stage1.propagation_input, PROPAGATION_INPUTS)
    _one_of("stage1.heavy_noise_input", config.stage1.heavy_noise_input, PROPAGATION_INPUTS)
    _one_of("baselines.transition", config.baselines.transition, TRANSITION_SOURCES)
    _one_of("distribution.strategy", config.distribution.strategy, STRATEGY_NAMES)
    _one_of("data.on_bad_file", config.data.on_bad_file, BAD_FILE_POLICIES)
    _one_of("verbose", config.verbose, VERBOSITY)
    _one_of("validation.source", config.validation.source, VALIDATION_SOURCES)
    _one_of("validation.keep", config.validation.keep, KEEP_CHOICES)
    _integer("seed", config.seed, minimum=0)
    _integer("batch_size", config.batch_size, minimum=1)
    _check_data(config.data)
    _check_noise(config.noise)
    _integer("augment.translate_px", config.augment.translate_px, minimum=0)
    _check_model(config.model)
    _check_stage1(config.stage1)
    _check_stage2(config.stage2)
    _check_train(config.train)
    for key in ("batch_size", "stage2.batch_size"):  # a micro-batch holds at least one example
        size = config.batch_size if key == "batch_size" else config.stage2.batch_size
        if _is_int(size) and size < config.train.micro_batches:
            raise ValueError(f"train.micro_batches={config.train.micro_batches} is more than {key}={size}: each "
                             "micro-batch needs at least one example (micro_batches <= the batch size)")
    _in_range("baselines.filter_percentile", config.baselines.filter_percentile, 0.0, 100.0)
    _in_range("baselines.beta_soft", config.baselines.beta_soft, 0.0, 1.0)
    _in_range("baselines.beta_hard", config.baselines.beta_hard, 0.0, 1.0)
    _integer("label_issues.folds", config.label_issues.folds, minimum=2)
    _one_of("label_issues.rule", config.label_issues.rule, ("auto",) + LABEL_ISSUE_RULES)


def _check_train(train) -> None:
    _one_of("train.dtype_policy", train.dtype_policy, DTYPE_POLICIES)
    if not isinstance(train.jit_compile, bool):
        raise ValueError(f"train.jit_compile must be true or false; got {train.jit_compile!r}")
    _integer("train.eval_batch_size", train.eval_batch_size, minimum=0)
    _integer("train.micro_batches", train.micro_batches, minimum=1)


def _check_data(data) -> None:
    _in_range("data.val_fraction", data.val_fraction, 0.0, 0.99)
    _image_size("data.image_size", data.image_size)
    resize = tuple(data.resize_size or ())
    if resize:
        _image_size("data.resize_size", resize)
        if data.name not in ("clothing1m", "folder", "csv"):
            raise ValueError(f"data.resize_size is for datasets read from image files (clothing1m, folder, csv); "
                             f"got {resize!r} with data.name={data.name}")
        if resize[0] < data.image_size[0] or resize[1] < data.image_size[1]:
            raise ValueError(f"data.resize_size {resize!r} must be at least data.image_size "
                             f"{tuple(data.image_size)!r} (images are resized to it, then cropped)")
    _one_of("data.channels", data.channels, (1, 3))
    names = tuple(data.class_names or ())
    if names and (len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names)):
        raise ValueError(f"data.class_names must be distinct non-empty strings (or empty to infer them), "
                         f"got {names!r}")
    if data.name in ("folder", "csv"):
        for key in ("dir", "train", "test"):
            if not data[key]:
                raise ValueError(f"data.name={data.name} needs data.{key}; it is empty")
    if data.name == "clothing1m" and not data.dir:
        raise ValueError("data.name=clothing1m needs data.dir, the root of the Clothing1M release")


def _check_noise(noise) -> None:
    _in_range("noise.rate", noise.rate, 0.0, 1.0)
    if noise.type == "none" and noise.rate:
        raise ValueError(f"noise.type is 'none' but noise.rate is {noise.rate}; set the rate to 0")
    if noise.type == "matrix" and not noise.matrix_file:
        raise ValueError("noise.type=matrix needs noise.matrix_file (a C x C .npy or .csv file)")
    if noise.type == "asymmetric" and noise.mapping:
        parse_mapping(noise.mapping)  # names the bad part; class ranges are checked with the data


def _check_model(model) -> None:
    _in_range("model.dropout", model.dropout, 0.0, 0.99)
    units = tuple(model.hidden_units or ())
    if not units or not all(_is_int(u) and u >= 1 for u in units):
        raise ValueError(f"model.hidden_units must be one or more integers >= 1, got {model.hidden_units!r}")
    for key in ("input_noise", "top_noise", "weight_decay"):
        _at_least(f"model.{key}", model[key], 0.0)
    _one_of("model.input_preprocessing", model.input_preprocessing, INPUT_PREPROCESSING)
    if model.name != "resnet50":
        if model.input_preprocessing != "none":
            raise ValueError(f"model.input_preprocessing={model.input_preprocessing} needs model.name=resnet50 "
                             f"(ImageNet pre-processing goes with ImageNet weights); got model.name={model.name}")
        if model.weights_path:
            raise ValueError(f"model.weights_path is for model.name=resnet50; got {model.weights_path!r} with "
                             f"model.name={model.name}")


def _check_stage1(stage1) -> None:
    _integer("stage1.epochs", stage1.epochs, minimum=1)
    _integer("stage1.target_steps", stage1.target_steps, minimum=0)
    _positive("stage1.learning_rate", stage1.learning_rate)
    _in_range("stage1.momentum", stage1.momentum, 0.0, 0.999)
    _integer("stage1.lr_patience", stage1.lr_patience, minimum=0)
    _in_range("stage1.lr_factor", stage1.lr_factor, 0.001, 0.999)
    _at_least("stage1.min_lr", stage1.min_lr, 0.0)
    _integer("stage1.average_last", stage1.average_last, minimum=1)
    _integer("stage1.kfold", stage1.kfold, minimum=2)
    _in_range("stage1.threshold", stage1.threshold, 0.0, 1.0)
    if not _is_number(stage1.gce_q) or not 0.0 < stage1.gce_q <= 1.0:
        raise ValueError(f"stage1.gce_q must be in (0, 1], got {stage1.gce_q!r}")
    _in_range("stage1.floor_fraction", stage1.floor_fraction, 0.0, 1.0)
    _in_range("stage1.heavy_noise_rate", stage1.heavy_noise_rate, 0.0, 1.0)
    _in_range("stage1.clean_threshold", stage1.clean_threshold, 0.0, 1.0)
    _in_range("stage1.small_loss_probability", stage1.small_loss_probability, 0.0, 1.0)
    _integer("stage1.clean_epochs", stage1.clean_epochs, minimum=1)
    _integer("stage1.clean_batch_size", stage1.clean_batch_size, minimum=1)
    _integer("stage1.propagation_neighbours", stage1.propagation_neighbours, minimum=1)
    # A sigma of 8 already spreads a pixel over the whole 32-pixel side the graph compares at (4 sigma).
    _in_range("stage1.propagation_blur", stage1.propagation_blur, 0.0, 8.0)
    for key in ("propagation_alpha", "heavy_noise_alpha"):
        if not _is_number(stage1[key]) or not 0.0 <= stage1[key] < 1.0:
            raise ValueError(f"stage1.{key} must be in [0, 1), got {stage1[key]!r}")
    if stage1.propagation_input == "labels" and stage1.propagation == "none":
        raise ValueError("stage1.propagation_input=labels spreads the noisy labels over the images' neighbour graph, "
                         "which stage1.propagation=none does not build: set stage1.propagation=pixels, or "
                         "stage1.propagation_input=posterior")


def _check_stage2(stage2) -> None:
    _integer("stage2.epochs", stage2.epochs, minimum=1)
    _integer("stage2.target_steps", stage2.target_steps, minimum=0)
    batch_size = stage2.batch_size
    if not _is_int(batch_size) or batch_size < 2 or batch_size % 2:
        raise ValueError(f"stage2.batch_size must be an even integer >= 2 (half labeled, half unlabeled), "
                         f"got {batch_size!r}")
    _positive("stage2.learning_rate", stage2.learning_rate)
    _integer("stage2.rampup_epochs", stage2.rampup_epochs, minimum=0)
    _integer("stage2.rampdown_epochs", stage2.rampdown_epochs, minimum=0)
    for key in ("max_weight_pi", "max_weight_te", "fixed_weight", "input_noise", "top_noise"):
        _at_least(f"stage2.{key}", stage2[key], 0.0)
    _in_range("stage2.ensemble_momentum", stage2.ensemble_momentum, 0.0, 0.999)
    _in_range("stage2.weight_ema", stage2.weight_ema, 0.0, 0.9999)
    _integer("stage2.translate_px", stage2.translate_px, minimum=0)
    _integer("stage2.finetune_epochs", stage2.finetune_epochs, minimum=0)
    _one_of("stage2.rounds", stage2.rounds, (1, 2))
    for key in ("ensemble_size", "heavy_noise_ensemble_size"):
        _integer(f"stage2.{key}", stage2[key], minimum=1)
        if stage2[key] > MAX_MEMBERS:
            raise ValueError(f"stage2.{key} must be at most {MAX_MEMBERS} (networks trained one after the other), "
                             f"got {stage2[key]!r}")
    _in_range("stage2.reselect_threshold", stage2.reselect_threshold, 0.0, 1.0)
    _one_of("stage2.reselect_keep", stage2.reselect_keep, RESELECT_KEEP)
    if stage2.dropout is not None:
        _in_range("stage2.dropout", stage2.dropout, 0.0, 0.99)
    _one_of("stage2.consistency_normalization", stage2.consistency_normalization, CONSISTENCY_NORMALIZATIONS)
    _one_of("stage2.epoch_unit", stage2.epoch_unit, EPOCH_UNITS)
    _integer("stage2.lr_patience", stage2.lr_patience, minimum=0)
    _in_range("stage2.lr_factor", stage2.lr_factor, 0.001, 0.999)
    _at_least("stage2.min_lr", stage2.min_lr, 0.0)
    _integer("stage2.early_stopping_patience", stage2.early_stopping_patience, minimum=0)
    if stage2.lr_patience and (stage2.rampup_epochs or stage2.rampdown_epochs):
        raise ValueError(f"stage2.lr_patience={stage2.lr_patience} halves a constant learning rate; set "
                         f"stage2.rampup_epochs and stage2.rampdown_epochs to 0 (got {stage2.rampup_epochs} and "
                         f"{stage2.rampdown_epochs}) or stage2.lr_patience to 0")
    _positive("stage2.finetune_learning_rate", stage2.finetune_learning_rate)


def check_override_keys(argv: Sequence[str], config=None) -> None:
    """Raises ValueError naming the first `--config.KEY=VALUE` argument whose KEY the config lacks.

    `config` defaults to `tf_twostage.config.base_config()`, whose keys every preset shares. Meant for the
    programs' flag parsing, before absl hands the override to the (locked) ConfigDict.
    """
    if config is None:
        from tf_twostage.config import base_config  # pylint: disable=import-outside-toplevel

        config = base_config()
    for argument in argv:
        match = _OVERRIDE.match(argument)
        if not match:
            continue
        node, path = config, []
        for part in match.group(1).split("."):
            part = re.sub(r"\[[^]]*\]$", "", part)  # `key[0]` overrides one element of a tuple
            keys = sorted(node.keys()) if hasattr(node, "keys") else []
            if part not in keys:
                where = ".".join(path) or "the config"
                allowed = f"{where} has the keys {', '.join(keys)}" if keys else f"{where} is not a section"
                raise ValueError(f"unknown config key {'.'.join(path + [part])!r} in {argument!r}; {allowed}")
            node, path = node[part], path + [part]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _one_of(key: str, value, allowed: Sequence) -> None:
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(str(a) for a in allowed)}; got {value!r}")


def _integer(key: str, value, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _in_range(key: str, value, low: float, high: float) -> None:
    if not _is_number(value) or not low <= value <= high:
        raise ValueError(f"{key} must be in [{low:g}, {high:g}], got {value!r}")


def _at_least(key: str, value, low: float) -> None:
    if not _is_number(value) or value < low:
        raise ValueError(f"{key} must be a finite number >= {low:g}, got {value!r}")


def _positive(key: str, value) -> None:
    if not _is_number(value) or value <= 0:
        raise ValueError(f"{key} must be a finite number > 0, got {value!r}")


def _image_size(key: str, value) -> None:
    size = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(size) != 2 or not all(_is_int(d) and d >= 1 for d in size):
        raise ValueError(f"{key} must be two integers >= 1 (height, width), got {value!r}")
