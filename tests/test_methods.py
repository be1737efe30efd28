"""Every comparison method runs end to end through the same runner (smoke preset), one run per method."""

import numpy as np
import pytest

from tf_twostage.runs.experiment import METHODS, run_experiment
from tests.conftest import smoke_config

COMPARISON_METHODS = ("improved_baseline", "forward", "backward", "bootstrap_soft", "bootstrap_hard",
                      "stage1_only", "stage2_all_labels")


@pytest.fixture(scope="module")
def method_run(tmp_path_factory):
    """method -> (results, workdir): each method's smoke run, made once for every test of this module."""
    runs = {}

    def get(method):
        if method not in runs:
            workdir = tmp_path_factory.mktemp(method)
            runs[method] = (run_experiment(smoke_config(method=method), str(workdir)), workdir)
        return runs[method]

    return get


@pytest.mark.parametrize("method", COMPARISON_METHODS)
def test_method_runs_end_to_end_and_learns_above_chance(method, method_run):
    results, workdir = method_run(method)
    assert results["method"] == method
    # Ten classes: a constant prediction scores 0.1. One tiny epoch reaches ~0.5 (ce) down to ~0.17
    # (backward, whose estimated inverse matrix amplifies the early noise).
    assert results["test_accuracy"] > 0.12
    assert (workdir / "results.json").exists()
    if method in ("improved_baseline", "stage1_only"):
        assert 0.0 < results["stage1"]["kept_fraction"] < 1.0


def test_forward_correction_reports_its_estimated_matrix_and_corrected_labels(method_run):
    results, workdir = method_run("forward")
    baseline = results["baseline"]
    assert baseline["transition_source"] == "estimated"
    matrix = np.asarray(baseline["transition_matrix"])
    assert matrix.shape == (10, 10)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
    from PIL import Image

    with Image.open(workdir / "plots" / "transition_matrices.png") as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # a real figure, not a blank image
    stats = baseline["corrected_labels"]
    assert stats["argmax_correct_fraction"] + stats["argmax_incorrect_fraction"] == pytest.approx(1.0)


def test_true_transition_matrix_is_used_and_labeled_as_an_upper_bound(tmp_path):
    config = smoke_config(method="backward", **{"baselines.transition": "true"})
    baseline = run_experiment(config, str(tmp_path))["baseline"]
    assert baseline["transition_source"] == "true (upper bound)"
    assert baseline["transition_matrix"][2][7] == pytest.approx(0.6)


def test_every_method_is_listed_in_the_error_for_an_unknown_one(tmp_path):
    with pytest.raises(ValueError) as error:
        run_experiment(smoke_config(method="mixup"), str(tmp_path))
    assert "method must be one of" in str(error.value)
    for method in METHODS:
        assert method in str(error.value)
    assert set(COMPARISON_METHODS) <= set(METHODS)
