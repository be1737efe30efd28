"""The small-loss rules, the anchor-free transition and the selection quality, wired through a real Stage 1."""

import numpy as np
import pytest

from tf_twostage.runs.stage1 import FALLBACK_FLOOR, load_selection, select_labels
from tf_twostage.stage1.clusters import estimate_transition_by_clusters
from tf_twostage.stage1.quality import selection_quality
from tf_twostage.stage1.selection import corrected_posteriors, fill_empty_classes, select_confident_labels
from tf_twostage.stage1.small_loss import select_small_loss


def _select(stage1_run, **overrides):
    config, data, workdir, _ = stage1_run
    config = config.copy_and_resolve_references()
    for key, value in overrides.items():
        section, name = key.split(".")
        setattr(config[section], name, value)
    stats = select_labels(config, data, workdir)
    return stats, load_selection(workdir, data)


def test_quality_is_recorded_from_the_true_labels(stage1_run):
    _, data, _, probabilities = stage1_run
    stats, kept = _select(stage1_run, **{"stage1.rule": "confidence"})
    labels = data.train.labels
    expected = selection_quality(kept, labels, data.train.clean_labels, data.num_classes,
                                 probabilities[np.arange(len(labels)), labels])
    assert stats["quality"] == expected
    assert stats["quality"]["precision"] == pytest.approx(1.0 - stats["noise_rate_after"])
    assert len(stats["quality"]["per_class"]) == data.num_classes
    assert 0.0 <= stats["quality"]["auc"] <= 1.0


def test_small_loss_rule_reads_the_models_own_posterior(stage1_run):
    config, data, _, probabilities = stage1_run
    stats, kept = _select(stage1_run, **{"stage1.rule": "small_loss", "stage1.posterior": "corrected"})
    labels = data.train.labels
    floor = max(float(config.stage1.floor_fraction), FALLBACK_FLOOR)
    own = select_small_loss(probabilities, labels, 0.5)
    # A class the rule leaves empty gets the confidence rule's labels, and results list that fallback.
    fallback = select_confident_labels(probabilities, labels, float(config.stage1.threshold), floor,
                                       top_up="class")
    expected, filled = fill_empty_classes(own, fallback, labels, data.num_classes)
    np.testing.assert_array_equal(kept, expected)
    listed = [entry for entry in stats.get("fallbacks", []) if entry["option"].startswith("stage1.rule")]
    assert bool(filled) == bool(listed)
    assert stats["rule"] == "small_loss" and "estimated_transition_matrix" not in stats


def test_union_rule_with_the_cluster_transition(stage1_run):
    config, data, _, probabilities = stage1_run
    stats, kept = _select(stage1_run, **{"stage1.rule": "confident_or_small_loss", "stage1.posterior": "corrected",
                                         "stage1.transition": "clusters", "stage1.floor_fraction": 0.05,
                                         "stage1.small_loss_probability": 0.9})
    matrix = estimate_transition_by_clusters(probabilities, seed=int(config.seed))
    np.testing.assert_allclose(stats["estimated_transition_matrix"], matrix)
    labels = data.train.labels
    expected = (select_confident_labels(corrected_posteriors(probabilities, matrix), labels, 0.9, 0.05)
                | select_small_loss(probabilities, labels, 0.9))
    np.testing.assert_array_equal(kept, expected)
    assert stats["posterior"] == "corrected"
