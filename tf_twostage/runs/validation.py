"""Which examples score a run while it trains, which epoch that score keeps, and what it predicts.

`results.json["validation"]` says what was measured, on which examples, the value, which epoch it
selected and how it was used. The choice (`validation.source`):

- `clean`: the clean subset (`data.clean`), scored against its clean labels: an unbiased estimate of test
  accuracy. `auto` picks it whenever the data has one and Stage 2 does not fine-tune on it.
- `noisy`: the held-out noisy validation split (10% of the noisy training set). Its accuracy against the
  noisy labels selects the epoch (under class-conditional noise whose flips stay below the true class's
  share it rises and falls with the clean accuracy); the value reported is that accuracy corrected with a
  transition matrix (`tf_twostage.baselines.transition.estimated_clean_accuracy`), because the plain noisy
  accuracy is far below test accuracy under heavy noise (about half of it at symmetric 0.5). The matrix is
  confident learning's (`tf_twostage.stage1.label_issues.confident_transition`) from the scored model's own
  predictions on (up to 50,000 of) the training images: on the mnist5k benchmark's finished runs it put the
  value 2.6 points from test accuracy on average, where the anchor points of earlier versions were 8.7 off
  (they read a model's hesitations as label noise and reported 100% for a model at 58%). The correction also
  multiplies the sampling error (`standard_error`, bootstrap): on 400 images at symmetric 0.5 about
  +-5.6 points even with the true matrix, so a clean subset, however small, is the better score.
  A corrected value more uncertain than `MAX_STANDARD_ERROR`, or above 100% by more than two standard
  errors, is reported with `reliable: false`, a `warning` and a logged warning (`corrected_value_doubt`).
  When the dataset's own validation set is clean (Clothing1M's `clean_val` list: its labels are its clean
  labels), `noisy` scores that set against its clean labels, uncorrected, and reports `source: clean`:
  correcting a clean accuracy as if it were noisy would distort it.
- `refined`: the validation images whose labels Stage 1 kept (the paper's improved baseline). Chosen by
  the model being scored, it overstates accuracy (97% for a model at 80% on the test set): kept for the
  paper's recipes, never a default.

The score reaches Keras as the standard `val_accuracy`, so the learning-rate plateau, early stopping and
`BestEpochKeeper` all follow the same choice.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
from absl import logging

from tf_twostage.config.base import eval_batch_size
from tf_twostage.baselines.transition import estimated_accuracy_standard_error, estimated_clean_accuracy
from tf_twostage.data.prepare import PreparedData
from tf_twostage.data.source import ImageSplit
from tf_twostage.models.ensemble import ensemble_members
from tf_twostage.stage1.label_issues import confident_transition
from tf_twostage.stage1.selection import transition_problem
from tf_twostage.training.best_epoch import BestEpochKeeper
from tf_twostage.training.metrics import evaluate_classifier, predict_probabilities

VALIDATION_SOURCES = ("auto", "noisy", "clean", "refined")
MAX_TRANSITION_EXAMPLES = 50_000  # training images whose predictions estimate the correcting matrix


@dataclasses.dataclass
class ValidationPlan:
    """The validation examples of one training stage and the callback that keeps its selected epoch."""

    source: str
    split: ImageSplit
    positions: Optional[np.ndarray]
    examples: str
    keeper: BestEpochKeeper
    # Stage 2's further networks (stage2.ensemble_size > 1): one keeper each, of the same kind (`member_keepers`).
    others: list = dataclasses.field(default_factory=list)

    def member_keepers(self, members: int) -> list:
        """`members` keepers, `keeper` first, one per network of an ensemble; each keeps its own network's epoch."""
        like = self.keeper
        self.others = [BestEpochKeeper(like.monitor, keep=like.keep, num_examples=like.num_examples)
                       for _ in range(int(members) - 1)]
        return [self.keeper, *self.others]

    @property
    def num_examples(self) -> int:
        return len(self.split) if self.positions is None else len(self.positions)

    def scored_split(self) -> ImageSplit:
        return self.split if self.positions is None else self.split.subset(self.positions)


def has_clean_subset(data: PreparedData) -> bool:
    return data.clean is not None and len(data.clean) > 0


def validation_is_clean(data: PreparedData) -> bool:
    """The dataset gave its own validation set, with clean labels (Clothing1M's `clean_val` list)."""
    given = getattr(data.dataset, "validation", None)
    return (given is not None and data.validation is given and len(given) > 0 and given.has_clean_labels
            and bool(np.array_equal(given.labels, given.clean_labels)))


def resolve_source(config, data: PreparedData, refined_available: bool) -> str:
    """`validation.source` with `auto` resolved (and `refined` without a Stage 1 turned into `noisy`)."""
    source = config.validation.source
    if source not in VALIDATION_SOURCES:
        raise ValueError(f"validation.source must be one of {', '.join(VALIDATION_SOURCES)}; got {source!r}")
    fine_tuned_on_clean = int(config.stage2.finetune_epochs) > 0 and config.method in (
        "two_stage", "stage2_all_labels")
    if source == "auto":
        return "clean" if has_clean_subset(data) and not fine_tuned_on_clean else "noisy"
    if source == "clean" and not has_clean_subset(data):
        raise ValueError(f"validation.source=clean needs a clean subset, but dataset {data.dataset.name!r} has "
                         "none (set data.clean, or validation.source=auto)")
    if source == "refined" and not refined_available:
        return "noisy"  # a method without Stage 1 has no refined set: its plain counterpart
    return source


def plan_validation(config, data: PreparedData, refined_positions=None, anneals: bool = False) -> ValidationPlan:
    """The validation set `config.validation` asks for, with a `BestEpochKeeper` for it.

    `anneals`: the schedule is designed to end at its last epoch (Stage 2's ramp-down), so the best epoch
    replaces it only when it scores more than two standard errors higher (`best_beats_last`): on mnist5k
    the noisy maximum of Stage 2 was 2.2 points below its last epoch (symmetric 0.5). Cross-entropy on
    noisy labels memorizes them instead, and its best epoch is kept outright: keeping the last epoch
    would have cost 1.6 to 6.8 points on the own-data benchmark (seed 0, `ce` and `improved_baseline`;
    pair 0.4: 80.3% vs 73.5%, where the noisy validation scores differed by 4.3 points).
    """
    source = resolve_source(config, data, refined_positions is not None)

    def keeper(count: int) -> BestEpochKeeper:
        return BestEpochKeeper("val_accuracy", keep=str(config.validation.keep),
                               num_examples=count if anneals else 0)

    if source == "clean":
        return ValidationPlan(source, data.clean, None,
                              f"the {len(data.clean)} images of the clean subset, with their clean labels",
                              keeper(len(data.clean)))
    if source == "refined":
        positions = np.asarray(refined_positions, np.int64)
        return ValidationPlan(source, data.validation, positions,
                              f"the {len(positions)} of {len(data.validation)} noisy validation images whose "
                              "labels Stage 1 kept (chosen by the Stage-1 model: overstates accuracy)",
                              keeper(len(positions)))
    if validation_is_clean(data):
        return ValidationPlan("clean", data.validation, None,
                              f"the {len(data.validation)} images of the dataset's own clean validation set, with "
                              "their clean labels", keeper(len(data.validation)))
    return ValidationPlan(source, data.validation, None,
                          f"the {len(data.validation)} held-out noisy training images (data.val_fraction="
                          f"{config.data.val_fraction:g}), with their noisy labels", keeper(len(data.validation)))


def correcting_transition(config, data: PreparedData, classifier) -> np.ndarray:
    """T estimated by confident learning from `classifier`'s predictions on the training images (a
    seeded sample of `MAX_TRANSITION_EXAMPLES` when there are more), against their noisy labels."""
    train = data.train
    if len(train) > MAX_TRANSITION_EXAMPLES:
        positions = np.random.default_rng(int(config.seed)).choice(len(train), MAX_TRANSITION_EXAMPLES, replace=False)
        train = train.subset(np.sort(positions))
    probabilities = predict_probabilities(classifier, train, data.preprocessor, eval_batch_size(config))
    return confident_transition(train.labels, probabilities)


MAX_STANDARD_ERROR = 0.05  # a corrected score more uncertain than +-5 points is reported with a warning


def corrected_value_doubt(unclipped: float, standard_error: float, num_examples: int) -> Optional[str]:
    """Why a corrected noisy validation accuracy should not be trusted, or None.

    Two signs: a standard error above `MAX_STANDARD_ERROR` (the correction divides by about
    1 - flip rate - flip rate / (C-1), 9x at symmetric 0.8 on 10 classes: 400 noisy mnist5k images gave
    +-14 to +-61 points there, and values up to 57 points from test accuracy: 100% for a model at 43%),
    and an unclipped estimate more than two standard errors above 100% (the matrix over-states the flips).
    """
    if unclipped > 1.0 + 2 * standard_error:
        return (f"the corrected accuracy came out at {unclipped:.1%}, above 100% by more than two standard errors: "
                "the estimated transition matrix over-states the label noise; score on a clean subset (data.clean)")
    if standard_error > MAX_STANDARD_ERROR:
        return (f"its standard error is {standard_error:.1%} (the correction of heavy label noise multiplies the "
                f"sampling error of the {num_examples} noisy validation images); score on a clean subset (data.clean)")
    return None


def validation_report(config, data: PreparedData, classifier, plan: ValidationPlan, stage: str,
                      transition=None, transition_source: str = "") -> dict:
    """`results.json["validation"]` for the stage `plan` scored; `classifier` holds the kept weights.

    With `source=noisy` the value is the noisy accuracy corrected with `transition` (given when it is
    known: the true matrix of synthetic noise, `baselines.transition=true`), or else with the matrix
    `correcting_transition` estimates from `classifier`. A matrix that cannot be inverted leaves the
    plain noisy accuracy, listed in `fallbacks`.
    """
    keeper = plan.keeper
    report = {
        "stage": stage,
        "source": plan.source,
        "examples": plan.examples,
        "num_examples": plan.num_examples,
        "metric": "val_accuracy",
        "keep": keeper.keep,
        "selected_epoch": keeper.best_epoch + 1 if keeper.best_epoch >= 0 else None,
        "last_epoch": keeper.last_epoch + 1,
        "kept_epoch": keeper.kept_epoch + 1,
        "val_accuracy_at_selected_epoch": keeper.best_value if keeper.best_epoch >= 0 else None,
        "val_accuracy_at_last_epoch": keeper.last_value,
        "used_for": (f"val_accuracy selects the epoch whose weights are kept (keep={keeper.keep}"
                     + (": the best epoch when it beats the last by more than two standard errors, else the last "
                        "epoch, where the annealed schedule ends" if keeper.num_examples else "")
                     + ") and drives the learning-rate plateau / early stopping"),
        "fallbacks": [],
    }
    if keeper.keep == "last":
        report["used_for"] = "reported only: validation.keep=last keeps the last epoch"
    keepers = [keeper, *plan.others]
    if plan.others:  # an ensemble: the fields above are its first network's; the value scores the average
        report["members"] = [{"selected_epoch": k.best_epoch + 1 if k.best_epoch >= 0 else None,
                              "kept_epoch": k.kept_epoch + 1, "val_accuracy_at_selected_epoch":
                              k.best_value if k.best_epoch >= 0 else None, "val_accuracy_at_last_epoch": k.last_value}
                             for k in keepers]
        report["used_for"] += (f"; each of the {len(keepers)} networks of the ensemble keeps its own epoch (the "
                               "epoch fields above are the first network's, `members` lists all), and the value "
                               "scores their average")
    if not plan.num_examples:
        report.update(value=None, measured="nothing: no validation examples (the last epoch is kept)")
        return report
    scored = plan.scored_split()
    predictions = predict_probabilities(classifier, scored, data.preprocessor, eval_batch_size(config)).argmax(1)
    accuracy = float(np.mean(predictions == scored.labels))
    binomial_error = float(np.sqrt(accuracy * (1 - accuracy) / len(predictions)))
    if plan.source == "clean":
        report.update(measured="accuracy against the clean labels", value=accuracy, standard_error=binomial_error)
    elif plan.source == "refined":
        report.update(measured="accuracy against the kept noisy labels", value=accuracy, standard_error=binomial_error)
    else:
        report["noisy_accuracy"] = accuracy
        if transition is None:
            transition = correcting_transition(config, data, classifier)
            transition_source = (f"estimated by confident learning (calibrated confident joint) from the {stage} "
                                 "model's predictions on the training images")
        problem = transition_problem(transition)
        if problem is None:
            unclipped = estimated_clean_accuracy(predictions, scored.labels, transition, clip=False)
            error = estimated_accuracy_standard_error(predictions, scored.labels, transition, seed=int(config.seed))
            report.update(measured=("accuracy against the noisy labels, corrected with the transition matrix "
                                    f"{transition_source}: trace(N T^-1)"), value=float(np.clip(unclipped, 0, 1)),
                          unclipped_value=unclipped, standard_error=error,
                          transition_matrix=np.asarray(transition).tolist())
            doubt = corrected_value_doubt(unclipped, error, plan.num_examples)
            report["reliable"] = doubt is None
            if doubt is not None:
                report["warning"] = doubt
                logging.warning("%s: the validation score is not to be trusted: %s", stage, doubt)
        else:
            report.update(measured="accuracy against the noisy labels (uncorrected)", value=accuracy,
                          standard_error=binomial_error)
            report["fallbacks"].append({
                "stage": stage, "option": "validation value corrected with the transition matrix",
                "used": "the plain noisy validation accuracy", "reason": problem})
    networks = ensemble_members(classifier)
    if len(networks) == len(keepers) and all(k.last_weights is not None for k in keepers) and any(
            k.kept_epoch != k.last_epoch for k in keepers):
        # For benchmarks only (never used to choose): what keeping the last epoch would have scored.
        kept = [network.get_weights() for network in networks]
        for network, member_keeper in zip(networks, keepers):
            network.set_weights(member_keeper.last_weights)
        report["test_accuracy_last_epoch"] = evaluate_classifier(classifier, data.test, data.preprocessor,
                                                                 eval_batch_size(config))["accuracy"]
        for network, weights in zip(networks, kept):
            network.set_weights(weights)
    return report
