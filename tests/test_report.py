"""Report: the table maths on hand-made results, and bin/report.py on real smoke runs (tables, plots, errors)."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tf_twostage.reporting import plots
from tf_twostage.reporting.tables import (
    format_accuracy_table,
    format_results_table,
    format_selection_table,
    merge_rows,
    method_label,
    summarize_runs,
    summarize_selection,
)
from tf_twostage.reporting.run_report import find_run_dirs, load_run, write_report
from tests.conftest import smoke_config as _smoke_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLOT_KINDS = ("transition_matrix", "kept_per_class", "kept_dropped_images", "learning_curves")


def _run(method="ce", accuracy=0.9, seed=0, noise_type="asymmetric", rate=0.6, algorithm=None, dataset="mnist5k",
         realized_rate=None, stage1=None, corrected=None, name=None):
    """A hand-made run dict: results.json (and config.json) as the tables read them."""
    results = {"method": method, "dataset": dataset, "seed": seed, "test_accuracy": accuracy,
               "noise": {"type": noise_type, "rate": rate, "realized_rate": realized_rate},
               "stage1": stage1, "baseline": None if corrected is None else {"corrected_labels": corrected},
               "wall_seconds": 1.0}
    config = None if algorithm is None else {"stage2": {"algorithm": algorithm}}
    return {"results": results, "config": config, "name": name or f"{method}_{algorithm}_{noise_type}{rate}_s{seed}"}


# ---- Table 3: accuracy ------------------------------------------------------------------------------


def _row(method, noise_type="asymmetric", rate=0.6, mean=0.5):
    return {"method": method, "noise_type": noise_type, "noise_rate": rate, "seeds": [0], "accuracies": [mean],
            "mean": mean, "std": 0.0}


def test_merged_rows_replace_recomputed_cells_keep_the_others_in_the_papers_order():
    earlier = [_row("two_stage_pi", mean=0.8), _row("ce", "none", 0.0, 0.94), _row("ce", mean=0.6),
               _row("improved_baseline", mean=0.84)]
    newer = [_row("improved_baseline", mean=0.9), _row("improved_baseline", "none", 0.0, 0.95)]
    merged = merge_rows(earlier, newer, ("method", "noise"))
    assert [(row["method"], row["noise_type"], row["mean"]) for row in merged] == [
        ("ce", "none", 0.94), ("ce", "asymmetric", 0.6), ("improved_baseline", "none", 0.95),
        ("improved_baseline", "asymmetric", 0.9), ("two_stage_pi", "asymmetric", 0.8)]
    assert merge_rows([], newer, ("method", "noise")) == sorted(newer, key=lambda row: row["noise_type"] != "none")


def test_merged_selection_rows_sort_by_noise_then_the_papers_label_order():
    def labels_row(noise_type, labels, correct):
        return {"noise_type": noise_type, "noise_rate": 0.2, "labels": labels, "correct": correct}

    earlier = [labels_row("asymmetric", "after Stage 1", 0.7), labels_row("symmetric", "after Stage 1", 0.5)]
    newer = [labels_row("symmetric", "original noisy training set", 0.8),
             labels_row("symmetric", "after Stage 1", 0.6)]
    merged = merge_rows(earlier, newer, ("noise", "labels"))
    assert [(row["noise_type"], row["labels"], row["correct"]) for row in merged] == [
        ("symmetric", "original noisy training set", 0.8), ("symmetric", "after Stage 1", 0.6),
        ("asymmetric", "after Stage 1", 0.7)]


def test_merging_a_row_without_its_key_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="lacks 'floor_fraction'"):
        merge_rows([_row("ce")], [], ("floor_fraction", "noise"))

def test_accuracy_rows_hold_seeds_accuracies_mean_and_population_std():
    rows = summarize_runs([_run(accuracy=0.8, seed=2), _run(accuracy=0.6, seed=0), _run(accuracy=0.7, seed=1)])
    assert rows == [{"method": "ce", "noise_type": "asymmetric", "noise_rate": 0.6, "seeds": [0, 1, 2],
                     "accuracies": [0.6, 0.7, 0.8], "mean": pytest.approx(0.7),
                     "std": pytest.approx(np.std([0.6, 0.7, 0.8]))}]
    assert rows[0]["std"] == pytest.approx(0.0816496, abs=1e-6)  # population, not sample (0.1)


def test_two_stage_rows_are_named_after_the_stage2_algorithm_and_ordered_like_the_paper():
    runs = [_run("two_stage", 0.8, algorithm="temporal_ensembling"), _run("two_stage", 0.7, algorithm="pi"),
            _run("forward", 0.65), _run("ce", 0.5), _run("ce", 0.9, noise_type="none", rate=0.0),
            _run("ce", 0.85, noise_type="symmetric", rate=0.2)]
    rows = summarize_runs(runs)
    assert [(row["method"], row["noise_type"]) for row in rows] == [
        ("ce", "none"), ("ce", "symmetric"), ("ce", "asymmetric"), ("forward", "asymmetric"),
        ("two_stage_pi", "asymmetric"), ("two_stage_temporal_ensembling", "asymmetric")]
    assert method_label({"method": "two_stage"}, {"stage2": {"algorithm": "pi"}}) == "two_stage_pi"
    assert method_label({"method": "bootstrap_soft"}) == "bootstrap_soft"


def test_accuracy_table_is_methods_by_noise_settings_with_na_for_missing_cells():
    table = format_accuracy_table(summarize_runs([
        _run("ce", 0.60, seed=0), _run("ce", 0.62, seed=1), _run("ce", 0.95, seed=0, noise_type="none", rate=0.0),
        _run("ce", 0.93, seed=1, noise_type="none", rate=0.0),
        _run("two_stage", 0.80, seed=0, algorithm="pi"), _run("two_stage", 0.84, seed=1, algorithm="pi")]))
    lines = table.splitlines()
    assert lines[0] == "| method | none 0 | asymmetric 0.6 |"
    assert lines[2] == "| ce | 94.0 +- 1.0 | 61.0 +- 1.0 |"
    assert lines[3] == "| two_stage_pi | n/a | 82.0 +- 2.0 |"


def test_accuracy_table_gives_n_when_the_seed_counts_differ():
    table = format_accuracy_table(summarize_runs([_run("ce", 0.6, seed=0), _run("ce", 0.8, seed=1),
                                                  _run("forward", 0.7, seed=0)]))
    assert "| ce | 70.0 +- 10.0 (n=2) |" in table
    assert "| forward | 70.0 (n=1) |" in table


@pytest.mark.parametrize("run, message", [
    (_run("two_stage"), "needs the config's stage2.algorithm"),
    (_run("two_stage", algorithm="mean_teacher"), "stage2.algorithm must be one of pi, temporal_ensembling, "
                                                  "got 'mean_teacher'"),
    (_run(accuracy=1.5, name="run7"), "run7: results 'test_accuracy' must be a number in [0, 1], got 1.5"),
    (_run(accuracy=float("nan")), "test_accuracy' must be a number"),
    (_run(seed="0"), "results 'seed' must be an integer, got '0'"),
    (_run(rate=-0.1), "results noise 'rate' must be a number in [0, 1], got -0.1"),
    ({"name": "bare", "results": None}, "bare: a run must be a dict whose 'results' is the results.json dict"),
])
def test_bad_runs_are_refused_naming_the_value(run, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        summarize_runs([run])


def test_two_runs_of_one_cell_and_seed_or_several_datasets_are_refused():
    with pytest.raises(ValueError, match=r"two runs of ce at asymmetric 0.6 with seed 0: a and b"):
        summarize_runs([_run(name="a"), _run(name="b")])
    with pytest.raises(ValueError, match=r"several datasets \(cifar10, mnist5k\)"):
        summarize_runs([_run(), _run(dataset="cifar10")])
    with pytest.raises(ValueError, match="no runs"):
        summarize_runs([])


def test_accuracy_table_refuses_rows_that_lack_keys():
    with pytest.raises(ValueError, match="lacks seeds, accuracies"):
        format_accuracy_table([{"method": "ce", "noise_type": "none", "noise_rate": 0.0, "mean": 0.9, "std": 0.0}])
    with pytest.raises(ValueError, match="no accuracy rows"):
        format_accuracy_table([])


def test_results_table_still_prints_one_row_per_run():
    table = format_results_table([_run(stage1={"kept_fraction": 0.5}, realized_rate=0.24)["results"]])
    assert "| ce " in table and "asymmetric 0.6" in table and "50.0%" in table and "0.240" in table


# ---- Table 2: labels ---------------------------------------------------------------------------------

CORRECTED = {"argmax_correct_fraction": 0.8, "argmax_incorrect_fraction": 0.2,
             "sampling_correct_fraction": 0.7, "sampling_incorrect_fraction": 0.3}


def _stage1(kept, incorrect):
    return {"kept_fraction": kept, "kept_correct_fraction": kept - incorrect, "kept_incorrect_fraction": incorrect}


def test_selection_rows_of_the_noisy_set_forward_correction_and_stage1():
    runs = [
        _run("ce", realized_rate=0.24, seed=0), _run("ce", realized_rate=0.26, seed=1),
        _run("forward", realized_rate=0.24, seed=0, corrected=CORRECTED),
        # Both Stage-2 algorithms share Stage 1 at a seed: averaged within the seed, one value per seed.
        _run("two_stage", algorithm="pi", realized_rate=0.24, seed=0, stage1=_stage1(0.5, 0.01)),
        _run("two_stage", algorithm="temporal_ensembling", realized_rate=0.24, seed=0, stage1=_stage1(0.5, 0.01)),
        _run("two_stage", algorithm="pi", realized_rate=0.26, seed=1, stage1=_stage1(0.4, 0.03)),
    ]
    rows = summarize_selection(runs)
    assert [row["labels"] for row in rows] == ["original noisy training set", "after forward correction (argmax)",
                                                "after forward correction (sampling)", "after Stage 1"]
    noisy, argmax, sampling, stage1 = rows
    assert noisy["seeds"] == [0, 1]
    assert noisy["correct"] == {"mean": pytest.approx(0.75), "std": pytest.approx(0.01)}
    assert noisy["incorrect"]["mean"] == pytest.approx(0.25) and noisy["no_label"]["mean"] == 0.0
    assert argmax["seeds"] == [0] and argmax["correct"]["mean"] == 0.8 and argmax["incorrect"]["mean"] == 0.2
    assert sampling["correct"]["mean"] == 0.7 and sampling["no_label"] == {"mean": 0.0, "std": 0.0}
    assert stage1["seeds"] == [0, 1]
    assert stage1["correct"]["mean"] == pytest.approx((0.49 + 0.37) / 2)
    assert stage1["incorrect"] == {"mean": pytest.approx(0.02), "std": pytest.approx(0.01)}
    assert stage1["no_label"]["mean"] == pytest.approx(0.55)
    table = format_selection_table(rows)
    assert "| asymmetric 0.6 | original noisy training set | 75.00 +- 1.00 | 25.00 +- 1.00 | 0.00 +- 0.00 | 2 |" \
        in table
    assert "| asymmetric 0.6 | after forward correction (argmax) | 80.00 | 20.00 | 0.00 | 1 |" in table
    assert "| asymmetric 0.6 | after Stage 1 | 43.00 +- 6.00 | 2.00 +- 1.00 | 55.00 +- 5.00 | 2 |" in table


def test_stage1_row_comes_from_two_stage_runs_and_else_from_other_stage1_methods():
    improved = _run("improved_baseline", stage1=_stage1(0.6, 0.05))
    two_stage = _run("two_stage", algorithm="pi", stage1=_stage1(0.5, 0.01))
    assert summarize_selection([improved, two_stage])[0]["no_label"]["mean"] == pytest.approx(0.5)
    assert summarize_selection([improved])[0]["no_label"]["mean"] == pytest.approx(0.4)


def test_selection_rows_without_data_are_left_out():
    assert summarize_selection([_run("ce", realized_rate=None)]) == []
    rows = summarize_selection([_run("ce", realized_rate=0.2, noise_type="symmetric", rate=0.2),
                                _run("ce", realized_rate=None, noise_type="none", rate=0.0)])
    assert [(row["noise_type"], row["labels"]) for row in rows] == [("symmetric", "original noisy training set")]


def test_stage1_without_true_labels_reports_only_the_unlabeled_part():
    rows = summarize_selection([_run("two_stage", algorithm="pi", stage1={"kept_fraction": 0.3})])
    assert rows[0]["correct"] is None and rows[0]["incorrect"] is None
    assert rows[0]["no_label"]["mean"] == pytest.approx(0.7)
    assert "| after Stage 1 | n/a | n/a | 70.00 | 1 |" in format_selection_table(rows)


def test_selection_refuses_bad_fractions_naming_the_run_and_key():
    with pytest.raises(ValueError, match=r"fw: results baseline corrected_labels 'sampling_correct_fraction' must "
                                         r"be a number in \[0, 1\], got None"):
        summarize_selection([_run("forward", name="fw", corrected={**CORRECTED, "sampling_correct_fraction": None})])
    with pytest.raises(ValueError, match=r"results stage1 'kept_fraction' must be a number in \[0, 1\], got 2"):
        summarize_selection([_run(stage1={"kept_fraction": 2})])
    with pytest.raises(ValueError, match="no selection rows"):
        format_selection_table([])


# ---- Run folders and plot helpers ----------------------------------------------------------------------

def _write_run(folder, run):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as file:
        json.dump(run["results"], file)
    with open(os.path.join(folder, "config.json"), "w") as file:
        json.dump(run["config"] or {}, file)


def test_run_folders_from_workdirs_parent_folders_and_globs(tmp_path):
    for name in ("b_seed1", "a_seed0"):
        _write_run(tmp_path / "runs" / name, _run())
    (tmp_path / "runs" / "not_a_run").mkdir()
    os.makedirs(tmp_path / "unfinished")
    (tmp_path / "unfinished" / "config.json").write_text("{}")
    runs = str(tmp_path / "runs")
    assert find_run_dirs([runs]) == [os.path.join(runs, "a_seed0"), os.path.join(runs, "b_seed1")]
    assert find_run_dirs([os.path.join(runs, "*seed1"), os.path.join(runs, "b_seed1")]) == [
        os.path.join(runs, "b_seed1")]
    assert load_run(str(tmp_path / "unfinished"))["skipped"].startswith("no results.json")
    with pytest.raises(ValueError, match="does not exist"):
        find_run_dirs([str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="matches no folder"):
        find_run_dirs([str(tmp_path / "nothing*")])
    with pytest.raises(ValueError, match="is not a folder"):
        find_run_dirs([str(tmp_path / "runs" / "a_seed0" / "results.json")])


def test_malformed_results_make_a_skipped_run_not_a_crash(tmp_path):
    _write_run(tmp_path / "bad", _run(accuracy="high"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    assert "test_accuracy' must be a number" in load_run(str(tmp_path / "bad"))["skipped"]
    assert "cannot be read" in load_run(str(tmp_path / "broken"))["skipped"]


def test_plot_file_stems_are_safe_and_distinct():
    from tf_twostage.reporting.run_report import _file_stems

    assert _file_stems(["a/b c", "a_b_c", "x", "|"]) == ["a_b_c", "a_b_c_2", "x", "run"]


def test_examples_per_class_are_chosen_deterministically_within_each_group():
    labels = np.arange(40) % 4
    kept = np.arange(40) < 32  # 8 kept and 2 dropped per class
    first = plots.choose_examples_per_class(labels, kept, 5, per_group=3, seed=0)
    assert len(first) == 5 and all(len(k) == 3 and len(d) == 2 for k, d in first[:4])
    assert all(kept[k].all() and not kept[d].any() and (labels[np.r_[k, d]] == c).all()
               for c, (k, d) in enumerate(first[:4]))
    assert len(first[4][0]) == 0 and len(first[4][1]) == 0  # a class without examples: empty groups
    again = plots.choose_examples_per_class(labels, kept, 5, per_group=3, seed=0)
    assert all(np.array_equal(a, b) for pair_a, pair_b in zip(first, again) for a, b in zip(pair_a, pair_b))


# ---- Acceptance: real smoke runs, bin/report.py ---------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Two two-stage seeds, one ce and one forward run (one tiny epoch each), plus an unfinished folder."""
    from tf_twostage.runs.experiment import run_experiment

    runs = tmp_path_factory.mktemp("runs")
    settings = {
        "two_stage_seed0": {"method": "two_stage", "seed": 0},
        "two_stage_seed1": {"method": "two_stage", "seed": 1},
        "ce_seed0": {"method": "ce"},
        "forward_seed0": {"method": "forward", "baselines.transition": "true"},
    }
    results = {name: run_experiment(_smoke_config(**overrides), str(runs / name))
               for name, overrides in settings.items()}
    (runs / "unfinished").mkdir()
    (runs / "unfinished" / "config.json").write_text("{}")
    return runs, results


def _report_program(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", "report.py"), *args],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def report(smoke_runs, tmp_path_factory):
    runs, results = smoke_runs
    output = tmp_path_factory.mktemp("report")
    done = _report_program(f"--output={output}", str(runs))
    assert done.returncode == 0, done.stderr[-3000:]
    return output, (output / "report.md").read_text(), results


def test_report_holds_the_accuracy_table_with_one_row_per_method(report):
    _, text, results = report
    accuracies = [results[f"two_stage_seed{seed}"]["test_accuracy"] for seed in (0, 1)]
    assert "| method | asymmetric 0.6 |" in text
    assert f"| ce | {100 * results['ce_seed0']['test_accuracy']:.1f} (n=1) |" in text
    assert f"| forward | {100 * results['forward_seed0']['test_accuracy']:.1f} (n=1) |" in text
    assert f"| two_stage_pi | {100 * np.mean(accuracies):.1f} +- {100 * np.std(accuracies):.1f} (n=2) |" in text


def test_report_holds_the_label_table_with_every_row_that_has_data(report):
    _, text, results = report
    realized = [results[f"two_stage_seed{seed}"]["noise"]["realized_rate"] for seed in (0, 1)]
    correct = 100 * (1 - np.mean(realized))
    assert f"| asymmetric 0.6 | original noisy training set | {correct:.2f} +- " in text
    for labels in ("after forward correction (argmax)", "after forward correction (sampling)"):
        assert f"| asymmetric 0.6 | {labels} | " in text and text.count(f"| {labels} |") == 1
    kept = [results[f"two_stage_seed{seed}"]["stage1"]["kept_fraction"] for seed in (0, 1)]
    assert f"| after Stage 1 | " in text and f"{100 * (1 - np.mean(kept)):.2f} +- " in text


def test_report_lists_runs_and_the_skipped_folder(report):
    _, text, _ = report
    for name in ("two_stage_seed0", "two_stage_seed1", "ce_seed0", "forward_seed0"):
        assert f"| {name} |" in text
    assert "4 finished run(s), 1 skipped" in text
    assert re.search(r"- `[^`]*unfinished`: no results.json", text)


def _assert_real_picture(path):
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), float)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    colours = np.unique(pixels[..., 0] * 65536 + pixels[..., 1] * 256 + pixels[..., 2])
    assert pixels.std() > 10 and len(colours) > 10, f"{path} looks blank"


def test_report_embeds_the_four_plot_kinds_as_real_pictures(report):
    output, text, _ = report
    links = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", text)
    assert len(links) == len(set(links))
    for link in links:
        _assert_real_picture(output / link)
    for kind in PLOT_KINDS:
        assert f"plots/two_stage_seed0_{kind}.png" in links, kind
    assert "plots/ce_seed0_learning_curves.png" in links and "plots/forward_seed0_transition_matrix.png" in links
    assert "plots/ce_seed0_kept_per_class.png" not in links  # ce has no Stage 1
    assert "not drawn" not in text
    assert not [name for name in os.listdir(output / "plots") if name.startswith(".tmp-")]


def test_a_folder_without_results_is_exit_2_and_writes_nothing(tmp_path):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    output = tmp_path / "out"
    done = _report_program(f"--output={output}", str(tmp_path / "runs"))
    assert done.returncode == 2
    assert "error: no usable runs among 1 folder(s)" in done.stderr and "no results.json" in done.stderr
    assert not output.exists()


def test_two_copies_of_a_run_are_refused_before_anything_is_written(smoke_runs, tmp_path):
    runs, _ = smoke_runs
    for copy in ("first", "second"):
        os.makedirs(tmp_path / "runs" / copy)
        for name in ("results.json", "config.json"):
            shutil.copy(runs / "ce_seed0" / name, tmp_path / "runs" / copy / name)
    with pytest.raises(ValueError, match="two runs of ce at asymmetric 0.6 with seed 0: first and second"):
        write_report([str(tmp_path / "runs")], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_library_report_of_one_run_uses_the_data_it_is_given(smoke_runs, tmp_path, monkeypatch):
    """What the runner calls at the end of a run: write_report([workdir], workdir-like folder, prepared=...)."""
    from tf_twostage.reporting import run_report as report_lib
    from tf_twostage.config import load_run_config
    from tf_twostage.data.prepare import prepare_data

    runs, _ = smoke_runs
    workdir = str(runs / "two_stage_seed0")
    data = prepare_data(load_run_config(workdir))

    def refuse(config):
        raise AssertionError("prepare_data called although the data were given")

    monkeypatch.setattr(report_lib, "prepare_data", refuse)
    path = write_report([workdir], str(tmp_path), prepared={workdir + "/": data})
    text = open(path).read()
    assert path == str(tmp_path / "report.md") and text.startswith("# Report of 1 run\n")
    for kind in PLOT_KINDS:  # one run: file names without the run's name
        assert f"(plots/{kind}.png)" in text
    assert "not drawn" not in text


def test_selection_table_has_the_quality_columns_of_stage1():
    quality = {"precision": 0.99, "recall": 0.9, "auc": 0.98, "per_class": []}
    runs = [_run("two_stage", algorithm="pi", realized_rate=0.2, seed=seed,
                 stage1={**_stage1(0.5, 0.01), "quality": {**quality, "precision": precision}})
            for seed, precision in ((0, 0.99), (1, 0.97))]
    rows = summarize_selection(runs)
    noisy, stage1 = rows
    assert noisy["precision"]["mean"] == pytest.approx(0.8) and noisy["recall"]["mean"] == 1.0
    assert noisy["auc"] is None
    assert stage1["precision"] == {"mean": pytest.approx(0.98), "std": pytest.approx(0.01)}
    table = format_selection_table(rows)
    assert "| seeds | precision | recall | ROC AUC |" in table
    assert "| 2 | 98.00 +- 1.00 | 90.00 +- 0.00 | 98.00 +- 0.00 |" in table
    assert "| 2 | 80.00 +- 0.00 | 100.00 +- 0.00 | n/a |" in table
    # Rows of an older results file, without the quality keys, still print.
    old = [{key: value for key, value in row.items() if key not in ("precision", "recall", "auc")} for row in rows]
    assert format_selection_table(old).count("| n/a | n/a | n/a |") == 2


def test_report_lists_each_runs_validation_score_and_its_warning(report):
    from tf_twostage.reporting.run_report import format_validation

    _, text, results = report
    assert "## Validation score" in text
    for name in ("two_stage_seed0", "ce_seed0"):
        assert f"- {name}: {format_validation(results[name]['validation'])}" in text
    line = format_validation({"value": 1.0, "standard_error": 0.2, "source": "noisy", "measured": "corrected",
                              "kept_epoch": 3, "last_epoch": 5, "warning": "its standard error is 20.0%"})
    assert line == ("100.0% +- 20.0% (noisy: corrected; kept epoch 3 of 5). Not to be trusted: its standard error "
                    "is 20.0%")
