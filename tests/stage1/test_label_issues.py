"""find_label_issues / label_health on tiny arrays: every rule, the edges, chunking, bad inputs, no TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tf_twostage import find_label_issues, label_health
from tf_twostage.stage1 import label_issues as lib
from tf_twostage.stage1.selection import select_confident_labels

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THRESHOLD_RULES = ("prune_by_class", "agreement")


def noisy_model_predictions(transition, per_class=150, spread=0.05, seed=0):
    """Labels drawn from `transition[true]` and the predictions of a model that learnt those noisy labels:
    each example's probabilities are its true class's row of `transition`, slightly perturbed."""
    rng = np.random.default_rng(seed)
    transition = np.asarray(transition, float)
    num_classes = len(transition)
    true = np.repeat(np.arange(num_classes), per_class)
    labels = np.array([rng.choice(num_classes, p=transition[c]) for c in true])
    probs = transition[true] * rng.uniform(1 - spread, 1 + spread, (len(true), num_classes)) + 1e-3
    probs /= probs.sum(axis=1, keepdims=True)
    return labels, probs.astype(np.float32), true


def pair_flips(num_classes, pairs, rate=None):
    """T with `source -> target` flips: `pairs` maps source to target (at `rate`) or to (target, rate)."""
    transition = np.eye(num_classes)
    for source, target in pairs.items():
        target, flip = target if rate is None else (target, rate)
        transition[source, source], transition[source, target] = 1 - flip, flip
    return transition


def test_posterior_rule_finds_pair_flips_above_one_half():
    # Class 0's labels mostly flipped to 1 (0.6), class 2's to 3 (0.3): the images of 0 labeled 1 are the
    # wrong ones, although the model predicts 1 for them; the correct minority labeled 0 stays.
    labels, probs, true = noisy_model_predictions(pair_flips(5, {0: (1, 0.6), 2: (3, 0.3)}))
    issues = find_label_issues(labels, probs, rule="posterior")
    wrong = labels != true
    assert issues.rule == "posterior" and not issues.note
    np.testing.assert_array_equal(issues.is_issue, wrong)
    np.testing.assert_array_equal(issues.suggested_label[wrong], true[wrong])
    np.testing.assert_allclose(issues.transition[0, :2], [0.4, 0.6], atol=0.05)
    # The threshold rules cannot (for the images of 0 the model's most likely label is 1).
    for rule in THRESHOLD_RULES:
        flagged = find_label_issues(labels, probs, rule=rule).is_issue
        hits = np.count_nonzero(flagged & wrong)
        assert 2 * hits / (flagged.sum() + wrong.sum()) < 0.9, rule


def test_health_estimates_the_flip_rates_and_noise_rate():
    labels, probs, true = noisy_model_predictions(pair_flips(4, {1: 2}, 0.3), per_class=200)
    health = label_health(labels, probs, ["a", "b", "c", "d"])
    top = health["confused_pairs"][0]
    assert (top["true_name"], top["given_name"]) == ("b", "c")
    assert top["flip_rate"] == pytest.approx(0.3, abs=0.05)
    assert health["estimated_noise_rate"] == pytest.approx(np.mean(labels != true), abs=0.02)
    assert health["per_class"][2]["estimated_issues"] == pytest.approx(np.sum((labels == 2) & (true != 2)), abs=8)
    assert health["estimator"] == "posterior"


def test_adaptive_picks_posterior_for_pair_flips_and_prune_by_class_for_symmetric_noise():
    labels, probs, _ = noisy_model_predictions(pair_flips(5, {0: (1, 0.6), 2: (3, 0.3)}))
    issues = find_label_issues(labels, probs)  # the default rule
    assert issues.rule == "posterior" and issues.note.startswith("adaptive: the estimated noise is directional")
    symmetric = np.full((5, 5), 0.3 / 4) + np.eye(5) * (0.7 - 0.3 / 4)
    labels, probs, true = noisy_model_predictions(symmetric, spread=0.3, seed=7)
    issues = find_label_issues(labels, probs)
    assert issues.rule == "prune_by_class" and "not directional" in issues.note
    np.testing.assert_array_equal(issues.is_issue, find_label_issues(labels, probs, rule="prune_by_class").is_issue)


@pytest.mark.parametrize("rule", ("adaptive", "posterior", "prune_by_noise_rate") + THRESHOLD_RULES)
def test_no_issue_when_confident_predictions_agree_with_every_label(rule):
    labels, probs, _ = noisy_model_predictions(np.eye(4), per_class=30)
    issues = find_label_issues(labels, probs, rule=rule)
    assert not issues.is_issue.any() and issues.num_issues == 0
    np.testing.assert_array_equal(issues.suggested_label, labels)


@pytest.mark.parametrize("rule", THRESHOLD_RULES + ("confidence",))
def test_every_label_wrong_is_flagged(rule):
    rng = np.random.default_rng(1)
    true = np.repeat(np.arange(4), 25)
    labels = (true + rng.integers(1, 4, len(true))) % 4  # every label moved to another class
    probs = np.full((len(true), 4), 0.02, np.float32)
    probs[np.arange(len(true)), true] = 0.94
    issues = find_label_issues(labels, probs, rule=rule, floor_fraction=0.0)
    if rule == "prune_by_class":  # as cleanlab: the confident joint's diagonal is at least 1 per class
        assert issues.num_issues == len(labels) - 4
        assert np.all(np.bincount(labels[~issues.is_issue], minlength=4) == 1)
    else:
        assert issues.is_issue.all()
    np.testing.assert_array_equal(issues.suggested_label[issues.is_issue], true[issues.is_issue])


@pytest.mark.parametrize("rule", lib.RULES)
def test_chunking_gives_the_result_of_one_pass(rule):
    labels, probs, _ = noisy_model_predictions(pair_flips(6, {0: 1, 3: 4}, 0.35), per_class=40, spread=0.4, seed=3)
    scores = np.clip(probs * 1.3, 0, 1)
    whole = find_label_issues(labels, probs, rule=rule, clean_scores=scores, chunk_size=10**6)
    for chunk in (1, 7, 64):
        chunked = find_label_issues(labels, probs, rule=rule, clean_scores=scores, chunk_size=chunk)
        for field in ("is_issue", "suggested_label", "ranked_issues"):
            np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field))
        np.testing.assert_allclose(chunked.label_quality, whole.label_quality, atol=1e-6)
    assert label_health(labels, probs, chunk_size=5) == label_health(labels, probs)


def test_prune_counts_keep_one_example_per_class_on_the_diagonal():
    # Given 0: all 5 confidently of true class 1; given 1: 1 of true 0, 5 of 1. Rows of the result: true class.
    counts = lib.prune_counts(np.array([[0.0, 5.0], [1.0, 5.0]]))
    np.testing.assert_array_equal(counts, [[1, 1], [4, 5]])


def test_prune_by_noise_rate_flags_the_examples_closest_to_the_class_they_came_from():
    # Class 0's labels: 30 of 120 came from class 1 (the model, trained elsewhere, sees class 1 in them);
    # class 2's: 20 of 100 came from class 3. The rule flags exactly those, pair by pair, by margin.
    rng = np.random.default_rng(4)
    true = np.concatenate([np.zeros(90, int), np.ones(30, int), np.ones(60, int), np.full(80, 2), np.full(20, 3),
                           np.full(70, 3)])
    labels = np.concatenate([np.zeros(120, int), np.ones(60, int), np.full(100, 2), np.full(70, 3)])
    probs = np.full((len(true), 4), 0.02) + rng.uniform(0, 0.01, (len(true), 4))
    probs[np.arange(len(true)), true] = np.where(labels == true, 0.8, 0.95)  # above t_1, t_3: counted
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    np.testing.assert_array_equal(lib.prune_counts(lib.estimate_issue_counts(labels, probs)[1])[[1, 3], [0, 2]],
                                  [30, 20])
    issues = find_label_issues(labels, probs, rule="prune_by_noise_rate")
    assert issues.rule == "prune_by_noise_rate"
    np.testing.assert_array_equal(issues.is_issue, labels != true)
    np.testing.assert_array_equal(issues.suggested_label[issues.is_issue], true[issues.is_issue])


def test_ranked_issues_lowest_quality_first():
    labels, probs, _ = noisy_model_predictions(pair_flips(5, {0: 1}, 0.3), per_class=60, spread=0.5, seed=2)
    issues = find_label_issues(labels, probs, rule="prune_by_class")
    assert issues.num_issues > 0
    assert np.all(np.diff(issues.label_quality[issues.ranked_issues]) >= 0)
    np.testing.assert_array_equal(np.sort(issues.ranked_issues), np.flatnonzero(issues.is_issue))


def test_confidence_rule_flags_exactly_what_the_papers_rule_drops():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.full(5, 0.3), 300).astype(np.float32)
    labels = rng.integers(0, 5, 300)
    for threshold, floor in ((0.9, 0.1), (0.5, 0.3), (0.99, 0.0)):
        kept = select_confident_labels(probs, labels, threshold, floor)
        issues = find_label_issues(labels, probs, rule="confidence", threshold=threshold, floor_fraction=floor)
        np.testing.assert_array_equal(issues.is_issue, ~kept)


def test_clean_set_rule_screens_with_the_scores():
    labels = np.array([0, 1, 2, 1])
    probs = np.full((4, 3), 1 / 3, np.float32)
    scores = np.array([[0.9, 0.1, 0.1], [0.2, 0.3, 0.9], [0.1, 0.1, 0.6], [0.5, 0.7, 0.0]])
    issues = find_label_issues(labels, probs, rule="clean_set", clean_scores=scores)
    np.testing.assert_array_equal(issues.is_issue, [False, True, False, False])
    np.testing.assert_array_equal(issues.ranked_issues, [1])
    with pytest.raises(ValueError, match="rule=clean_set needs clean_scores"):
        find_label_issues(labels, probs, rule="clean_set")


def test_posterior_falls_back_when_predictions_do_not_explain_the_labels():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.full(6, 5.0), 400).astype(np.float32)  # near uniform: no cluster per class
    labels = rng.integers(0, 6, 400)
    issues = find_label_issues(labels, probs, rule="posterior")
    assert issues.rule == "prune_by_class" and issues.note.startswith("posterior: the predictions do not cluster")
    np.testing.assert_array_equal(issues.is_issue, find_label_issues(labels, probs, rule="prune_by_class").is_issue)
    assert label_health(labels, probs)["estimator"] == "confident joint"


def test_max_weight_assignment_is_optimal():
    rng = np.random.default_rng(6)
    for size in (1, 2, 5, 8):
        weights = rng.random((size, size))
        best = max(weights[np.arange(size), list(p)].sum() for p in __import__("itertools").permutations(range(size)))
        columns = lib.max_weight_assignment(weights)
        assert sorted(columns) == list(range(size))
        assert weights[np.arange(size), columns].sum() == pytest.approx(best)


@pytest.mark.parametrize("labels, probs, message", [
    ([0, 1], [[0.5, 0.6], [0.5, 0.5]], "row 0 sums to 1.1"),
    ([0, 1], [[0.5, 0.5, 0.0]], "one entry per row of pred_probs (1), got 2"),
    ([0, 1], [0.5, 0.5], "2-D array"),
    ([0, 3], [[0.5, 0.5], [0.5, 0.5]], "class ids in [0, 2)"),
    ([0, -1], [[0.5, 0.5], [0.5, 0.5]], "got -1 at position 1"),
    ([0, 1], [[0.5, 0.5], [np.nan, 0.5]], "finite, got nan at row 1"),
    ([0, 1], [[1.5, -0.5], [0.5, 0.5]], "in [0, 1], got 1.5"),
    ([0.5, 1], [[0.5, 0.5], [0.5, 0.5]], "integer class ids, got 0.5"),
    ([0, 1], [[1, 0], [0, 1]], "floating-point"),
    ([0], [[1.0]], "at least 2 class columns"),
])
def test_bad_inputs_are_one_line_errors(labels, probs, message):
    with pytest.raises(ValueError) as error:
        find_label_issues(np.asarray(labels), np.asarray(probs, float) if np.asarray(probs).dtype.kind == "f"
                          else np.asarray(probs))
    assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ValueError, match="rule must be one of"):
        find_label_issues([0, 1], [[0.5, 0.5], [0.5, 0.5]], rule="nope")


def test_top_level_import_of_the_functions_loads_no_tensorflow():
    code = ("import sys; from tf_twostage import find_label_issues, label_health; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT}).stdout
    assert output.strip() == "[]"


def test_module_imports_no_tensorflow():
    # The file alone (as a user copying it, or a numpy-only process, would load it) needs numpy only.
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('label_issues', "
            f"{os.path.join(ROOT, 'tf_twostage', 'stage1', 'label_issues.py')!r}); "
            "module = importlib.util.module_from_spec(spec); sys.modules['label_issues'] = module; "
            "spec.loader.exec_module(module); import numpy as np; "
            "r = module.find_label_issues(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.9, 0.1]])); "
            "print(r.is_issue.tolist(), sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'tf_twostage')))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[False, False, True] []"


def _confident_noisy_set(transition, per_class=100, sure=0.9):
    """Labels drawn with exact counts from `transition` rows; the model puts `sure` on each true class."""
    num_classes = len(transition)
    clean = np.repeat(np.arange(num_classes), per_class)
    labels = np.concatenate([np.repeat(np.arange(num_classes), np.round(row * per_class).astype(int))
                             for row in np.asarray(transition)])
    probs = np.full((len(clean), num_classes), (1 - sure) / (num_classes - 1), np.float32)
    probs[np.arange(len(clean)), clean] = sure
    return labels, probs


def test_confident_transition_recovers_the_matrix_of_a_confident_model():
    transition = np.array([[0.7, 0.3, 0.0], [0.0, 0.9, 0.1], [0.2, 0.0, 0.8]])
    labels, probs = _confident_noisy_set(transition)
    np.testing.assert_allclose(lib.confident_transition(labels, probs), transition, atol=1e-12)
    # A flip rate above 0.5 is read as the counts say (the model is confident in the true class).
    above = np.array([[0.4, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    labels, probs = _confident_noisy_set(above)
    np.testing.assert_allclose(lib.confident_transition(labels, probs), above, atol=1e-12)


def test_confident_transition_does_not_read_a_models_hesitation_as_noise():
    labels, probs = _confident_noisy_set(np.eye(3))
    probs[::5] = [0.4, 0.3, 0.3]  # unsure on a fifth of the examples (of every class), labels all right
    estimate = lib.confident_transition(labels, probs)
    np.testing.assert_allclose(estimate, np.eye(3), atol=1e-12)
    # The cluster estimate takes the hesitant examples' spread for flips.
    assert np.min(np.diag(lib.estimate_transition(probs, seed=0))) < 0.99


def test_confident_transition_rejects_bad_input_in_one_line():
    labels, probs = _confident_noisy_set(np.eye(3))
    with pytest.raises(ValueError, match=r"labels must have one entry per row of pred_probs \(300\), got 299"):
        lib.confident_transition(labels[:-1], probs)
    with pytest.raises(ValueError, match=r"labels must be class ids in \[0, 3\)"):
        lib.confident_transition(np.where(labels == 2, 3, labels), probs)
