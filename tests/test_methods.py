"""Every comparison method runs end to end through the same runner (smoke preset)."""

import numpy as np
import pytest

from tf_twostage.runs.experiment import METHODS, run_experiment
from tests.test_experiment import _smoke_config


@pytest.mark.parametrize("method", ["improved_baseline", "forward", "backward", "bootstrap_soft",
                                    "bootstrap_hard", "stage1_only", "stage2_all_labels"])
def test_method_runs_end_to_end_and_reports_its_accuracy(tmp_path, method):
    results = run_experiment(_smoke_config(method=method), str(tmp_path))
    assert results["method"] == method
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert (tmp_path / "results.json").exists()
    if method in ("improved_baseline", "stage1_only"):
        assert 0.0 < results["stage1"]["kept_fraction"] < 1.0


def test_forward_correction_reports_its_estimated_matrix_and_corrected_labels(tmp_path):
    results = run_experiment(_smoke_config(method="forward"), str(tmp_path))
    baseline = results["baseline"]
    assert baseline["transition_source"] == "estimated"
    matrix = np.asarray(baseline["transition_matrix"])
    assert matrix.shape == (10, 10)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
    from PIL import Image

    with Image.open(tmp_path / "plots" / "transition_matrices.png") as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # a real figure, not a blank image
    stats = baseline["corrected_labels"]
    assert stats["argmax_correct_fraction"] + stats["argmax_incorrect_fraction"] == pytest.approx(1.0)


def test_true_transition_matrix_is_used_and_labeled_as_an_upper_bound(tmp_path):
    config = _smoke_config(method="backward", **{"baselines.transition": "true"})
    baseline = run_experiment(config, str(tmp_path))["baseline"]
    assert baseline["transition_source"] == "true (upper bound)"
    assert baseline["transition_matrix"][2][7] == pytest.approx(0.6)


def test_every_method_is_listed_in_the_error_for_an_unknown_one(tmp_path):
    with pytest.raises(ValueError, match="method must be one of ce, two_stage, improved_baseline"):
        run_experiment(_smoke_config(method="mixup"), str(tmp_path))
    assert len(METHODS) == 9
