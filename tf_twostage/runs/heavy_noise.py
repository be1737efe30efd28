"""`stage1.heavy_noise_rate`: another selection when most labels are wrong, decided from the data.

At symmetric noise 0.8 on mnist5k (20% of the labels right) the preset's ranking, the clean posterior
corrected by the cluster transition estimate, kept 5.9% of the images at 59% precision (ROC AUC 0.68),
and two-stage scored 61.6 +- 6.9. The pre-trained network's own (noisy) posterior propagated over the
images' neighbour graph ranks far better there (AUC 0.94), and a floor scaled to the right labels fills
the classes: 15% kept at 85% precision (README "The heavy-noise switch"). At lower noise the same
selection is worse (propagation at asymmetric 0.6: 85.5% test vs 95.6%), so it is switched on only when
the transition matrix estimated from the pre-trained posteriors (`tf_twostage.stage1.clusters`, whatever
`stage1.transition` says: anchors cannot see flip rates above 0.5) implies a noise rate above
`stage1.heavy_noise_rate` (0: never). No clean label is read.

Under the switch: `stage1.posterior=noisy`, `stage1.propagation=pixels` and a floor of `HEAVY_FLOOR_SHARE`
of the labels the estimate says are right (1 - rate; at 0.8, 15% of each class), to the nearest
`HEAVY_FLOOR_STEP` and never below the configured floor. The step keeps float rounding out of the floor:
unrounded, oneDNN on vs off moved the estimate of one run by 0.014 and its kept share by 1.1 points. Stage 1
spreads the noisy labels themselves (`stage1.heavy_noise_input=labels`), not the network's posterior, and further
than `stage1.propagation_alpha` (0.9) does (`stage1.heavy_noise_alpha`, 0.99): each label is scored by the vote of
the image's look-alikes, which no training and no float rounding moves, where the network is right on only
about half of the images (mnist5k, symmetric 0.8, seeds 0-2: 15% kept at 92.4% precision, the same set with oneDNN
on and off; the posterior at 0.9: 84.7%, 62 of 547 labels swapped on one seed; at 0.99: 90.8%). The second
selection round (`stage2.rounds=2`) ranks the same way but with its Stage-2 model's posterior at
`stage1.propagation_alpha`: that model is right far more often, and at 0.99 the round kept fewer labels than
Stage 1 (15.0% on the mean) at 95.3% precision against 15.8% at 95.8% (README "The heavy-noise switch").
Stage 2 then trains with the pre-training's dropout (`model.dropout`) where `stage2.dropout` sets a lower
one: on 15% of the labels, 15% of them wrong, the less regularized model fitted more of the wrong ones
(mnist5k, symmetric 0.8, seeds 0-2: second-round precision 94.4% at Stage-2 dropout 0.2 vs 95.5% at 0.5;
README "The mnist5k preset since 2026-11-30"). And it starts from the architecture's seeded initialization
(or `model.weights_path`'s weights), not the pre-trained ones (`stage2.heavy_noise_init_from_stage1`, False):
those fitted mostly wrong labels, and the float rounding of the pre-training travelled with them into Stage 2.
From the same Stage-1 sets (mnist5k, symmetric 0.8, seeds 0-2) oneDNN on vs off then ended 0.0 / 1.1 / 0.2
points apart against 0.3 / 0.7 / 1.4, at the same mean (88.2%); seeds 3-4 91.5 / 89.5% against 90.6 / 89.0%
(README "The heavy-noise switch"). Its last round averages at least `stage2.heavy_noise_ensemble_size` (3) networks,
trained from seeds S, S+1, S+2 (`stage2.ensemble_size`): one network's accuracy on 15% of the labels moved with its
seed about as much as with the float rounding (seed 1: 88.2 / 89.6 / 90.1%); averaged, the same Stage-1 sets
scored 90.6 +- 1.2 against 89.6 +- 1.4, oneDNN on vs off 0.5 / 0.2 / 0.1 points apart against 0.4 / 0.8 / 0.3.
"""

from __future__ import annotations

from typing import Optional

from tf_twostage.stage1.clusters import estimate_transition_by_clusters, estimated_noise_rate

HEAVY_FLOOR_SHARE = 0.75  # the floor: this share of the labels the estimate says are right ...
HEAVY_FLOOR_STEP = 0.05  # ... to the nearest 5% of the class
STAGE1_ONLY = ("propagation_alpha", "propagation_input")  # overrides the second round does not take


def heavy_noise_overrides(config, rate: float) -> dict:
    """The `stage1` keys the switch sets for an estimated noise `rate`."""
    right = max(0.0, 1.0 - float(rate))
    floor = round(round(HEAVY_FLOOR_SHARE * right / HEAVY_FLOOR_STEP) * HEAVY_FLOOR_STEP, 4)
    return {"posterior": "noisy", "propagation": "pixels",
            "floor_fraction": max(float(config.stage1.floor_fraction), floor),
            "propagation_alpha": float(config.stage1.heavy_noise_alpha),
            "propagation_input": str(config.stage1.heavy_noise_input)}


def stage2_overrides(config) -> dict:
    """The `stage2` keys the switch sets: Stage 2's own dropout gives way to the pre-training's, when lower,
    Stage 2 starts from the architecture's seeded initialization (or `model.weights_path`'s), not the pre-trained
    weights, unless `stage2.heavy_noise_init_from_stage1` says otherwise, and its last round averages at least
    `stage2.heavy_noise_ensemble_size` networks."""
    overrides = {}
    own = config.stage2.dropout
    if own is not None and float(own) < float(config.model.dropout):
        overrides["dropout"] = float(config.model.dropout)
    if config.stage2.init_from_stage1 and not config.stage2.heavy_noise_init_from_stage1:
        overrides["init_from_stage1"] = False
    if int(config.stage2.heavy_noise_ensemble_size) > int(config.stage2.ensemble_size):
        overrides["ensemble_size"] = int(config.stage2.heavy_noise_ensemble_size)
    return overrides


def settings(section: str, values: dict) -> str:
    """`values` as the flags that set them: "stage2.dropout=0.5, stage2.init_from_stage1=False"."""
    return ", ".join(f"{section}.{key}={value}" if isinstance(value, (bool, str)) else f"{section}.{key}={value:g}"
                     for key, value in values.items())


def with_overrides(config, overrides: dict):
    """A copy of `config` with `overrides` set under `stage1`."""
    copy = config.copy_and_resolve_references()
    for key, value in overrides.items():
        copy.stage1[key] = value
    return copy


def cluster_transition(config, probabilities):
    """The transition matrix the switch reads: the cluster estimate of `probabilities` (seeded by the run)."""
    return estimate_transition_by_clusters(probabilities, seed=int(config.seed))


def heavy_noise_decision(config, transition, noisy_labels) -> Optional[dict]:
    """None when the switch is off (`stage1.heavy_noise_rate` = 0); else the noise rate that `transition`
    (`cluster_transition` of the pre-trained posteriors) implies, whether it is above the switch's rate
    (`switched`), and the `stage1` overrides applied when it is."""
    above = float(config.stage1.heavy_noise_rate)
    if above <= 0:
        return None
    rate = estimated_noise_rate(transition, noisy_labels)
    switched = rate > above
    return {"estimated_noise_rate": rate, "heavy_noise_rate": above, "switched": bool(switched),
            "overrides": heavy_noise_overrides(config, rate) if switched else {}}


def switch_reason(decision: dict) -> str:
    """Why the switch fired, for the fallback records of the stages it changes."""
    return (f"the noise rate estimated from the pre-trained posteriors is {decision['estimated_noise_rate']:.2f}, "
            f"above {decision['heavy_noise_rate']:g}")


def selection_config(config, stats: dict):
    """The config the second selection round (`stage2.rounds=2`) ranks with: `config`, or, when Stage 1's
    statistics (`stats["heavy_noise"]`) say it switched, with the switch's overrides but those of Stage 1 alone
    (`STAGE1_ONLY`: the round spreads its model's posterior at the configured `propagation_alpha`)."""
    decision = stats.get("heavy_noise") or {}
    if not decision.get("switched"):
        return config
    return with_overrides(config, {key: value for key, value in decision["overrides"].items()
                                   if key not in STAGE1_ONLY})


def training_config(config, stats: dict):
    """(the config Stage 2 trains with, the `stage2` overrides it got): `config` and none, or, when Stage 1's
    statistics say the switch fired, a copy with `stage2_overrides` of the config as it is now (Stage-2 keys
    may change after the selection was recorded)."""
    overrides = stage2_overrides(config) if (stats.get("heavy_noise") or {}).get("switched") else {}
    if not overrides:
        return config, {}
    copy = config.copy_and_resolve_references()
    for key, value in overrides.items():
        copy.stage2[key] = value
    return copy, overrides
