"""The comparison rows of the paper's Table 3 as runner methods: loss correction and bootstrapping.

Each trains the same classifier with the same pipeline and recipe as `ce`; only the loss differs.
Forward / backward correction need the noise transition matrix: estimated from a cross-entropy model
(anchor points with the 97th-percentile filter) or, as an upper bound, the true one
(`baselines.transition=true`, labeled as such in the results).
"""

from __future__ import annotations

import os

import numpy as np

from tf_twostage.config.base import eval_batch_size
from tf_twostage.utils import io_utils
from tf_twostage.reporting import plots
from tf_twostage.baselines.losses import (
    BackwardCorrectedCrossEntropy,
    ForwardCorrectedCrossEntropy,
    HardBootstrapping,
    SoftBootstrapping,
)
from tf_twostage.baselines.transition import corrected_label_statistics, estimate_transition_matrix
from tf_twostage.data.prepare import PreparedData
from tf_twostage.training.metrics import predict_probabilities
from tf_twostage.models import build_classifier
from tf_twostage.runs.pretrain import train_cross_entropy
from tf_twostage.runs.validation import plan_validation, validation_report


LOSS_METHODS = ("forward", "backward", "bootstrap_soft", "bootstrap_hard")
TRANSITION_SOURCES = ("estimated", "true")


def transition_for(config, data: PreparedData, strategy, workdir: str) -> tuple:
    """(matrix, source): the true matrix of the synthetic noise, or one estimated from a CE model."""
    source = config.baselines.transition
    if source not in TRANSITION_SOURCES:
        raise ValueError(f"baselines.transition must be one of {', '.join(TRANSITION_SOURCES)}; got {source!r}")
    if source == "true":
        if config.noise.type == "none" and not data.train.has_clean_labels:
            raise ValueError("baselines.transition=true needs synthetic noise (the true matrix is unknown)")
        return np.asarray(data.noise.target_matrix, np.float64), "true (upper bound)"
    with strategy.scope():
        estimator = build_classifier(config.model, data.image_shape, data.num_classes, config.seed)
        train_cross_entropy(estimator, data, config, workdir, stage_name="transition_estimate")
    probabilities = predict_probabilities(estimator, data.train, data.preprocessor, eval_batch_size(config))
    matrix = estimate_transition_matrix(probabilities, float(config.baselines.filter_percentile))
    return matrix, "estimated"


def run_loss_baseline(config, data: PreparedData, strategy, workdir: str) -> dict:
    """`method=forward|backward|bootstrap_soft|bootstrap_hard`: CE's recipe with the baseline's loss."""
    method, details = config.method, {}
    if method in ("forward", "backward"):
        matrix, source = transition_for(config, data, strategy, workdir)
        details.update(transition_source=source, transition_matrix=matrix.tolist())
        loss = (ForwardCorrectedCrossEntropy if method == "forward" else BackwardCorrectedCrossEntropy)(matrix)
    elif method == "bootstrap_soft":
        loss = SoftBootstrapping(float(config.baselines.beta_soft))
    elif method == "bootstrap_hard":
        loss = HardBootstrapping(float(config.baselines.beta_hard))
    else:
        raise ValueError(f"not a loss baseline: {method!r}; expected one of {', '.join(LOSS_METHODS)}")
    plan = plan_validation(config, data)
    with strategy.scope():
        classifier = build_classifier(config.model, data.image_shape, data.num_classes, config.seed)
        history = train_cross_entropy(classifier, data, config, workdir, [plan.keeper], loss=loss,
                                      validation_split=plan.split)
    # The true matrix corrects the validation accuracy too; an estimated one is left to validation_report's
    # own estimate from the trained model (the loss's came from a cross-entropy model).
    known = details.get("transition_source", "").startswith("true")
    validation = validation_report(config, data, classifier, plan, method,
                                   transition=np.asarray(details["transition_matrix"]) if known else None,
                                   transition_source="true (the synthetic noise's), as for the loss" if known else "")
    if method in ("forward", "backward") and data.train.has_clean_labels:
        plots.plot_matrices(
            os.path.join(workdir, "plots", "transition_matrices.png"),
            [data.noise.target_matrix, details["transition_matrix"]],
            ["true transition matrix", f"{details['transition_source']} matrix"],
            data.dataset.class_names,
        )
    if method == "forward" and data.train.has_clean_labels:
        # How forward correction's implied clean labels compare with the truth (paper's Table 2).
        details["corrected_labels"] = corrected_label_statistics(
            predict_probabilities(classifier, data.train, data.preprocessor, eval_batch_size(config)),
            data.train.labels, data.train.clean_labels, np.asarray(details["transition_matrix"]), seed=int(config.seed))
    return {"classifier": classifier, "baseline": details, "history": {"stage1": io_utils.history_json(history)},
            "validation": validation}
