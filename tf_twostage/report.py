"""Tables and a Markdown report of finished runs: the paper's Table 3 (accuracy) and Table 2 (labels).

The table maths are pure functions of run dicts `{"results": <results.json>, "config": <config.json>
or None, "name": <optional, for messages>}`, so a benchmark can reuse them on results it holds:

- `summarize_runs(runs)`: one row per (method, noise setting) with the seeds, test accuracies, mean
  and population std; `format_accuracy_table(rows)` prints them as methods x noise settings (Table 3).
- `summarize_selection(runs)`: per noise setting, the fractions of training images with a correct,
  an incorrect or no label in the noisy training set, after forward correction (argmax, sampling) and
  after Stage 1, mean and std over seeds; `format_selection_table(rows)` prints them (Table 2).
- `format_results_table(results)`: one row per run (what the runner prints).

`write_report(paths, output_dir)` finds run folders (`find_run_dirs`), reads them (`load_run`), draws
each run's plots (`tf_twostage.plots`) into `output_dir/plots/` and writes `output_dir/report.md`.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from typing import Iterable, List, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_twostage import io_utils, plots
from tf_twostage.config import load_run_config
from tf_twostage.data.prepare import PreparedData, prepare_data
from tf_twostage.data.source import UNKNOWN_LABEL, decode_image_file
from tf_twostage.stage1.run import load_selection

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
STAGE2_ALGORITHMS = ("pi", "temporal_ensembling")
# Rows and columns in the paper's order; names not listed follow, alphabetically.
METHOD_ORDER = ("ce", "improved_baseline", "forward", "backward", "bootstrap_soft", "bootstrap_hard",
                "stage1_only", "stage2_all_labels", "two_stage_pi", "two_stage_temporal_ensembling")
NOISE_ORDER = ("none", "symmetric", "uniform", "asymmetric", "matrix")
NOISY_SET, FORWARD_ARGMAX, FORWARD_SAMPLING, AFTER_STAGE1 = (
    "original noisy training set", "after forward correction (argmax)", "after forward correction (sampling)",
    "after Stage 1")
SELECTION_ORDER = (NOISY_SET, FORWARD_ARGMAX, FORWARD_SAMPLING, AFTER_STAGE1)
ACCURACY_ROW_KEYS = ("method", "noise_type", "noise_rate", "seeds", "accuracies", "mean", "std")
SELECTION_ROW_KEYS = ("noise_type", "noise_rate", "labels", "seeds", "correct", "incorrect", "no_label")
SELECTION_PARTS = ("correct", "incorrect", "no_label")
MAX_GRID_CLASSES = 20  # the image grid shows at most this many classes (the first ones)


class _RunFacts(NamedTuple):
    where: str
    method: str
    dataset: str
    noise_type: str
    noise_rate: float
    seed: int
    accuracy: float


def _where(run) -> str:
    if isinstance(run, Mapping):
        return str(run.get("name") or run.get("dir") or "a run")
    return "a run"


def _is_number(value) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def _fraction(value, what: str) -> float:
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def method_label(results: Mapping, config: Optional[Mapping] = None) -> str:
    """The row name of a run: results' `method`, but `two_stage_<stage2.algorithm>` for `two_stage`."""
    method = results.get("method")
    if not isinstance(method, str) or not method:
        raise ValueError(f"results 'method' must be a non-empty string, got {method!r}")
    if method != "two_stage":
        return method
    stage2 = (config or {}).get("stage2") or {}
    algorithm = stage2.get("algorithm")
    if algorithm is None:
        raise ValueError("method two_stage needs the config's stage2.algorithm (config.json next to "
                         "results.json) to name its row two_stage_pi or two_stage_temporal_ensembling")
    if algorithm not in STAGE2_ALGORITHMS:
        raise ValueError(f"stage2.algorithm must be one of {', '.join(STAGE2_ALGORITHMS)}, got {algorithm!r}")
    return f"two_stage_{algorithm}"


def run_facts(run: Mapping) -> _RunFacts:
    """Checks a run dict and returns what the tables need; a ValueError names the run and the bad value."""
    where = _where(run)
    if not isinstance(run, Mapping) or not isinstance(run.get("results"), Mapping):
        raise ValueError(f"{where}: a run must be a dict whose 'results' is the results.json dict, got {run!r:.200}")
    results = run["results"]
    try:
        method = method_label(results, run.get("config"))
        noise = results.get("noise")
        if not isinstance(noise, Mapping):
            raise ValueError(f"results 'noise' must be a dict with 'type' and 'rate', got {noise!r}")
        if not isinstance(noise.get("type"), str) or not noise["type"]:
            raise ValueError(f"results noise 'type' must be a non-empty string, got {noise.get('type')!r}")
        rate = _fraction(noise.get("rate"), "results noise 'rate'")
        seed = results.get("seed")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"results 'seed' must be an integer, got {seed!r}")
        dataset = results.get("dataset")
        if not isinstance(dataset, str) or not dataset:
            raise ValueError(f"results 'dataset' must be a non-empty string, got {dataset!r}")
        accuracy = _fraction(results.get("test_accuracy"), "results 'test_accuracy'")
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    return _RunFacts(where, method, dataset, noise["type"], rate, int(seed), accuracy)


def _single_dataset(facts: Sequence[_RunFacts]) -> None:
    if not facts:
        raise ValueError("no runs to summarize")
    datasets = sorted({fact.dataset for fact in facts})
    if len(datasets) > 1:
        raise ValueError(f"runs of several datasets ({', '.join(datasets)}): summarize each dataset on its own")


def _method_key(method: str):
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def _noise_key(noise_type: str, rate: float):
    known = NOISE_ORDER.index(noise_type) if noise_type in NOISE_ORDER else len(NOISE_ORDER)
    return (known, noise_type, rate)


def noise_setting(noise_type: str, rate: float) -> str:
    """A noise setting as a column title: `asymmetric 0.6`, `none 0`."""
    return f"{noise_type} {rate:g}"


def summarize_runs(runs: Sequence[Mapping]) -> List[dict]:
    """Test accuracy per (method, noise setting) over seeds, in the paper's order.

    Each row: `{"method", "noise_type", "noise_rate", "seeds", "accuracies", "mean", "std"}` with the
    seeds ascending, their accuracies in the same order, and `std` the population std (`np.std`). All
    runs must be of one dataset; two runs of the same method, noise setting and seed are an error.
    """
    facts = [run_facts(run) for run in runs]
    _single_dataset(facts)
    cells = {}
    for fact in facts:
        cell = cells.setdefault((fact.method, fact.noise_type, fact.noise_rate), {})
        if fact.seed in cell:
            raise ValueError(
                f"two runs of {fact.method} at {noise_setting(fact.noise_type, fact.noise_rate)} with seed "
                f"{fact.seed}: {cell[fact.seed].where} and {fact.where}; report them separately")
        cell[fact.seed] = fact
    rows = []
    for method, noise_type, rate in sorted(cells, key=lambda key: (_method_key(key[0]), _noise_key(*key[1:]))):
        by_seed = cells[(method, noise_type, rate)]
        seeds = sorted(by_seed)
        accuracies = [by_seed[seed].accuracy for seed in seeds]
        rows.append({"method": method, "noise_type": noise_type, "noise_rate": rate, "seeds": seeds,
                     "accuracies": accuracies, "mean": float(np.mean(accuracies)),
                     "std": float(np.std(accuracies))})
    return rows


def _check_rows(rows: Sequence[Mapping], keys: Sequence[str], what: str) -> None:
    if not rows:
        raise ValueError(f"no {what} rows to format")
    for row in rows:
        missing = [key for key in keys if key not in row] if isinstance(row, Mapping) else list(keys)
        if missing:
            raise ValueError(f"{what} row {row!r:.200} lacks {', '.join(missing)}")


def _mean_std(mean: float, std: float, count: int, decimals: int) -> str:
    text = f"{100 * mean:.{decimals}f}"
    return text + (f" +- {100 * std:.{decimals}f}" if count > 1 else "")


def format_accuracy_table(rows: Sequence[Mapping]) -> str:
    """Markdown: methods x noise settings, cells `mean +- std` of test accuracy in %, `n/a` where no run.

    When the cells have different numbers of seeds, each cell also says its `(n=...)`.
    """
    _check_rows(rows, ACCURACY_ROW_KEYS, "accuracy")
    settings = sorted({(row["noise_type"], row["noise_rate"]) for row in rows}, key=lambda s: _noise_key(*s))
    methods = sorted({row["method"] for row in rows}, key=_method_key)
    counts = {len(row["seeds"]) for row in rows}
    cells = {(row["method"], row["noise_type"], row["noise_rate"]): row for row in rows}
    lines = ["| method | " + " | ".join(noise_setting(*setting) for setting in settings) + " |",
             "|---" * (len(settings) + 1) + "|"]
    for method in methods:
        texts = []
        for setting in settings:
            row = cells.get((method, *setting))
            if row is None:
                texts.append("n/a")
                continue
            text = _mean_std(row["mean"], row["std"], len(row["seeds"]), 1)
            texts.append(text + (f" (n={len(row['seeds'])})" if len(counts) > 1 else ""))
        lines.append(f"| {method} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def _selection_parts(results: Mapping) -> Iterable[tuple]:
    """(row name, (correct, incorrect, no label)) for each Table-2 row this run has data for."""
    noise = results.get("noise") or {}
    if noise.get("realized_rate") is not None:
        rate = _fraction(noise["realized_rate"], "results noise 'realized_rate'")
        yield NOISY_SET, (1.0 - rate, rate, 0.0)
    corrected = (results.get("baseline") or {}).get("corrected_labels")
    if corrected is not None:
        for name, prefix in ((FORWARD_ARGMAX, "argmax"), (FORWARD_SAMPLING, "sampling")):
            correct = _fraction(corrected.get(f"{prefix}_correct_fraction"),
                                f"results baseline corrected_labels '{prefix}_correct_fraction'")
            incorrect = _fraction(corrected.get(f"{prefix}_incorrect_fraction"),
                                  f"results baseline corrected_labels '{prefix}_incorrect_fraction'")
            yield name, (correct, incorrect, 0.0)
    stage1 = results.get("stage1") or {}
    if stage1.get("kept_fraction") is not None:
        kept = _fraction(stage1["kept_fraction"], "results stage1 'kept_fraction'")
        correct, incorrect = (
            None if stage1.get(key) is None else _fraction(stage1[key], f"results stage1 '{key}'")
            for key in ("kept_correct_fraction", "kept_incorrect_fraction"))
        yield AFTER_STAGE1, (correct, incorrect, 1.0 - kept)


def _stats_over_seeds(per_seed: Mapping[int, list], part: int) -> Optional[dict]:
    """Mean and population std over seeds of one part; duplicates of a seed are averaged first."""
    values = []
    for seed in sorted(per_seed):
        known = [triple[part] for triple in per_seed[seed] if triple[part] is not None]
        if known:
            values.append(float(np.mean(known)))
    return {"mean": float(np.mean(values)), "std": float(np.std(values))} if values else None


def summarize_selection(runs: Sequence[Mapping]) -> List[dict]:
    """The paper's Table 2 per noise setting: fractions of the training images with a correct, an
    incorrect or no label, mean and population std over seeds.

    Rows (left out where no run has the data): the original noisy training set (from results
    `noise.realized_rate`, measured over the training set before the validation hold-out), after
    forward correction by argmax and by sampling (`baseline.corrected_labels` of forward runs), after
    Stage 1 (`stage1`: kept correct / kept incorrect / 1 - kept_fraction; from the two_stage runs of the
    noise setting, or where there are none from the other methods that run Stage 1: improved_baseline,
    stage1_only). Runs of one seed that give the same row (two-stage runs with pi and temporal
    ensembling share Stage 1) are averaged first.
    Each row: `{"noise_type", "noise_rate", "labels", "seeds", "correct", "incorrect", "no_label"}`,
    the last three `{"mean", "std"}` or None when unknown (Stage 1 without the true labels).
    """
    facts = [run_facts(run) for run in runs]
    _single_dataset(facts)
    table = {}
    for run, fact in zip(runs, facts):
        try:
            parts = list(_selection_parts(run["results"]))
        except (ValueError, AttributeError) as error:
            raise ValueError(f"{fact.where}: {error}") from error
        for name, triple in parts:
            ours = name != AFTER_STAGE1 or fact.method.startswith("two_stage")
            table.setdefault((fact.noise_type, fact.noise_rate, name), ({}, {}))[0 if ours else 1].setdefault(
                fact.seed, []).append(triple)
    rows = []
    for key in sorted(table, key=lambda k: (_noise_key(k[0], k[1]), SELECTION_ORDER.index(k[2]))):
        per_seed = table[key][0] or table[key][1]  # Stage 1 of the two-stage method, else of another
        row = {"noise_type": key[0], "noise_rate": key[1], "labels": key[2], "seeds": sorted(per_seed)}
        row.update({part: _stats_over_seeds(per_seed, i) for i, part in enumerate(SELECTION_PARTS)})
        rows.append(row)
    return rows


def format_selection_table(rows: Sequence[Mapping]) -> str:
    """Markdown: one line per (noise setting, labels) with % correct / incorrect / no label and the seeds."""
    _check_rows(rows, SELECTION_ROW_KEYS, "selection")
    lines = ["| noise | training labels | correct | incorrect | no label | seeds |", "|---|---|---|---|---|---|"]
    for row in rows:
        count = len(row["seeds"])
        cells = ["n/a" if row[part] is None else _mean_std(row[part]["mean"], row[part]["std"], count, 2)
                 for part in SELECTION_PARTS]
        lines.append(f"| {noise_setting(row['noise_type'], row['noise_rate'])} | {row['labels']} | "
                     + " | ".join(cells) + f" | {count} |")
    return "\n".join(lines)


def format_results_table(results: Sequence[dict]) -> str:
    """One Markdown row per run: method, dataset, noise, realized rate, labels kept, test accuracy."""
    header = ["method", "dataset", "seed", "noise", "realized rate", "kept labels", "test accuracy", "wall s"]
    rows = []
    for result in results:
        noise = result["noise"]
        realized = noise.get("realized_rate")
        stage1 = result.get("stage1") or {}
        kept = stage1.get("kept_fraction")
        rows.append([
            result["method"],
            result["dataset"],
            str(result["seed"]),
            f"{noise['type']} {noise['rate']:g}",
            "n/a" if realized is None else f"{realized:.3f}",
            "all" if kept is None else f"{100 * kept:.1f}%",
            f"{100 * result['test_accuracy']:.2f}%",
            f"{result['wall_seconds']:.1f}",
        ])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)


# ---- Run folders -------------------------------------------------------------------------------------

def _is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, RESULTS_FILE)) or os.path.isfile(os.path.join(path, CONFIG_FILE))


def find_run_dirs(paths: Sequence[str]) -> List[str]:
    """Run folders named by `paths`, in the given order, each once.

    A path is a run's workdir (it holds results.json or config.json), a folder whose sub-folders are
    runs (those sub-folders, sorted; other sub-folders are ignored), or a glob of either. A folder that
    is neither counts as a run (it is reported as skipped). A missing path is a ValueError.
    """
    if isinstance(paths, str):
        paths = [paths]
    found = []
    for path in paths:
        matches = sorted(glob.glob(path)) if re.search(r"[*?\[]", path) else [path]
        if not matches:
            raise ValueError(f"{path!r} matches no folder")
        for match in matches:
            if not os.path.exists(match):
                raise ValueError(f"{match!r} does not exist")
            if not os.path.isdir(match):
                raise ValueError(f"{match!r} is not a folder (give run workdirs or folders of runs)")
            children = [] if _is_run_dir(match) else [
                os.path.join(match, name) for name in sorted(os.listdir(match))
                if os.path.isdir(os.path.join(match, name)) and _is_run_dir(os.path.join(match, name))]
            found.extend(children or [match])
    unique = {}
    for path in found:
        unique.setdefault(os.path.realpath(path), os.path.normpath(path))
    return list(unique.values())


def _read_json(path: str):
    try:
        return io_utils.read_json(path)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{os.path.basename(path)} cannot be read: {error}") from error


def load_run(run_dir: str, name: Optional[str] = None) -> dict:
    """`{"name", "dir", "results", "config", "skipped"}` of a run folder.

    `skipped` is None for a usable run, else the reason (no results.json, unreadable or malformed).
    """
    run = {"name": name or os.path.basename(os.path.abspath(run_dir)), "dir": run_dir, "results": None,
           "config": None, "skipped": None}
    if not os.path.isfile(os.path.join(run_dir, RESULTS_FILE)):
        run["skipped"] = "no results.json (an unfinished run, or not a run)"
        return run
    try:
        run["results"] = _read_json(os.path.join(run_dir, RESULTS_FILE))
        if os.path.isfile(os.path.join(run_dir, CONFIG_FILE)):
            run["config"] = _read_json(os.path.join(run_dir, CONFIG_FILE))
        run_facts(run)
    except ValueError as error:
        run["skipped"] = str(error)
    return run


def _run_names(run_dirs: Sequence[str]) -> List[str]:
    """Short distinct names: the folder's name for one run, else the path below their common folder."""
    absolute = [os.path.abspath(path) for path in run_dirs]
    if len(absolute) == 1:
        return [os.path.basename(absolute[0])]
    common = os.path.commonpath(absolute)
    return [os.path.relpath(path, common) for path in absolute]


def _file_stems(names: Sequence[str]) -> List[str]:
    """File-name-safe, distinct stems of run names (`a/b c` -> `a_b_c`; a clash gets `_2`, `_3`, ...)."""
    stems, taken = [], set()
    for name in names:
        stem = base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"
        count = 1
        while stem in taken:
            count += 1
            stem = f"{base}_{count}"
        taken.add(stem)
        stems.append(stem)
    return stems


def _class_names(run_dir: str, num_classes: int) -> List[str]:
    """Class names from the run's exported SavedModel (assets/class_names.txt), else the class ids."""
    versions = glob.glob(os.path.join(run_dir, "export", "*", "*", "assets", "class_names.txt"))
    for path in sorted(versions, key=lambda p: (len(p), p), reverse=True):
        with open(path, encoding="utf-8") as file:
            names = [line.rstrip("\n") for line in file if line.strip()]
        if len(names) == num_classes:
            return names
    return [str(label) for label in range(num_classes)]


# ---- Plots of one run --------------------------------------------------------------------------------

def _per_class_stats(run: Mapping) -> Optional[list]:
    """Stage 1's per-class counts: stage1/selection_stats.json, else results' `stage1`."""
    path = os.path.join(run["dir"], "stage1", "selection_stats.json")
    stats = None
    if os.path.isfile(path):
        try:
            stats = _read_json(path)
        except ValueError:
            stats = None
    if not isinstance(stats, Mapping):
        stats = run["results"].get("stage1") or {}
    return stats.get("per_class") or None


def _image_item(split, position: int, class_names: Sequence[str]) -> tuple:
    """(image, caption, wrong) of one training example for the image grid."""
    if split.in_memory:
        image = split.images[position]
    else:
        image = decode_image_file(tf.constant(str(split.paths[position])), split.image_shape).numpy()
    noisy = int(split.labels[position])
    caption, wrong = class_names[noisy], False
    if split.clean_labels is not None and int(split.clean_labels[position]) != UNKNOWN_LABEL:
        clean = int(split.clean_labels[position])
        caption, wrong = f"{class_names[noisy]} (true {class_names[clean]})", clean != noisy
    return image, caption, wrong


def _plot_image_grid(run: Mapping, path: str, per_group: int, data: Optional[PreparedData] = None) -> None:
    """Kept versus dropped images per class; rebuilds the run's data (same noisy labels) unless given."""
    config = load_run_config(run["dir"])
    data = data or prepare_data(config)
    kept = load_selection(run["dir"], data)
    names = list(data.dataset.class_names)
    chosen = plots.choose_examples_per_class(data.train.labels, kept, data.num_classes, per_group, int(config.seed))
    rows = [(names[label],
             [_image_item(data.train, p, names) for p in kept_positions],
             [_image_item(data.train, p, names) for p in dropped_positions])
            for label, (kept_positions, dropped_positions) in enumerate(chosen[:MAX_GRID_CLASSES])]
    shown = "" if data.num_classes <= MAX_GRID_CLASSES else f", first {MAX_GRID_CLASSES} classes"
    plots.plot_image_grid(path, rows, per_group, f"{run['name']}: noisy label (true label); red: wrong{shown}")


def plot_run(run: Mapping, plots_dir: str, prefix: str = "", image_grids: bool = True,
             images_per_class: int = 4, data: Optional[PreparedData] = None) -> tuple:
    """Draws every plot the run's files allow; returns ([(caption, file name)], [notes on failures]).

    `data`: the run's `PreparedData` if the caller holds it (else the image grid rebuilds it).
    """
    results = run["results"]
    figures, notes = [], []
    noise = results.get("noise") or {}
    matrix = noise.get("realized_matrix")
    per_class = _per_class_stats(run)
    num_classes = len(matrix) if matrix else len(per_class) if per_class else len(
        results.get("test_per_class_accuracy") or [])
    class_names = _class_names(run["dir"], num_classes)

    def attempt(caption, kind, draw, errors=(ValueError, OSError)):
        file_name = f"{prefix}{kind}.png"
        try:
            draw(os.path.join(plots_dir, file_name))
        except errors as error:  # one plot that cannot be drawn must not cost the whole report
            notes.append(f"{caption}: not drawn ({type(error).__name__}: {error})")
            return
        figures.append((caption, file_name))

    if matrix:
        target = noise.get("target_matrix")
        matrices, titles = ([target, matrix], ["target", "realized"]) if target else ([matrix], ["realized"])
        attempt("realized transition matrix", "transition_matrix", lambda path: plots.plot_matrices(
            path, matrices, [f"{title} transition matrix" for title in titles], class_names))
    if per_class:
        attempt("labels kept by Stage 1 per class", "kept_per_class", lambda path: plots.plot_kept_per_class(
            path, per_class, class_names, f"{run['name']}\nlabels kept by Stage 1"))
    if image_grids and os.path.isfile(os.path.join(run["dir"], "stage1", "selection.npz")):
        # Rebuilding the data may fail for reasons of this machine (a dataset not on disk): note it.
        attempt("kept versus dropped training images", "kept_dropped_images",
                lambda path: _plot_image_grid(run, path, images_per_class, data), errors=(Exception,))
    history = results.get("history") or {}
    if any(isinstance(metrics, Mapping) and any(metrics.values()) for metrics in history.values()):
        attempt("learning curves", "learning_curves", lambda path: plots.plot_learning_curves(
            path, history, f"{run['name']} ({method_label(results, run.get('config'))})"))
    return figures, notes


# ---- The report --------------------------------------------------------------------------------------

def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def format_run_list(runs: Sequence[Mapping]) -> str:
    """Markdown: one line per run with its name, method label, dataset, noise, seed and accuracy."""
    lines = ["| run | method | dataset | noise | seed | test accuracy | labels kept |", "|---|---|---|---|---|---|---|"]
    for run in runs:
        fact = run_facts(run)
        kept = (run["results"].get("stage1") or {}).get("kept_fraction")
        lines.append(f"| {_cell(fact.where)} | {fact.method} | {_cell(fact.dataset)} | "
                     f"{noise_setting(fact.noise_type, fact.noise_rate)} | {fact.seed} | "
                     f"{100 * fact.accuracy:.2f}% | {'all' if kept is None else f'{100 * kept:.1f}%'} |")
    return "\n".join(lines)


def _tables_by_dataset(runs: Sequence[Mapping]) -> list:
    """[(dataset, accuracy table, selection table or None)]: every table error surfaces before writing."""
    datasets = sorted({run_facts(run).dataset for run in runs})
    tables = []
    for dataset in datasets:
        group = [run for run in runs if run_facts(run).dataset == dataset]
        selection = summarize_selection(group)
        tables.append((dataset, format_accuracy_table(summarize_runs(group)),
                       format_selection_table(selection) if selection else None))
    return tables


def write_report(run_dirs: Sequence[str], output_dir: str, image_grids: bool = True,
                 images_per_class: int = 4, prepared: Optional[Mapping[str, PreparedData]] = None) -> str:
    """Writes `output_dir/report.md` and its plots under `output_dir/plots/`; returns the report's path.

    `run_dirs` are run workdirs, folders of runs or globs (`find_run_dirs`). Runs without a usable
    results.json are listed as skipped. Raises ValueError, before writing anything, when no run is
    usable or the tables cannot be made (e.g. two runs of the same method, noise and seed). Plot file
    names start with the run's name when there are several runs. `image_grids=False` skips the
    kept/dropped image grids, which rebuild each run's data unless `prepared` maps the run's folder to
    its `PreparedData` (the runner passes `{workdir: data}`).
    """
    if isinstance(images_per_class, bool) or not isinstance(images_per_class, int) or images_per_class < 1:
        raise ValueError(f"images_per_class must be a positive integer, got {images_per_class!r}")
    dirs = find_run_dirs(run_dirs)
    if not dirs:
        raise ValueError("no run folders given")
    loaded = [load_run(path, name) for path, name in zip(dirs, _run_names(dirs))]
    usable = [run for run in loaded if run["skipped"] is None]
    skipped = [run for run in loaded if run["skipped"] is not None]
    if not usable:
        raise ValueError(f"no usable runs among {len(loaded)} folder(s): "
                         + "; ".join(f"{run['dir']}: {run['skipped']}" for run in skipped))
    tables = _tables_by_dataset(usable)
    run_list = format_run_list(usable)
    prepared = {os.path.realpath(folder): data for folder, data in (prepared or {}).items()}

    plots_dir = os.path.join(output_dir, PLOTS_DIR)
    several = len(usable) > 1
    lines = [f"# Report of {len(usable)} run{'s' if several else ''}", "",
             f"{len(usable)} finished run(s), {len(skipped)} skipped (listed at the end).", "",
             "## Runs", "", run_list, ""]
    lines += ["## Test accuracy (%), mean +- std over seeds (the paper's Table 3)", ""]
    for dataset, accuracy_table, _ in tables:
        lines += ([f"### {dataset}", ""] if len(tables) > 1 else []) + [accuracy_table, ""]
    lines += ["## Training labels: % of the training images with a correct, an incorrect or no label "
              "(the paper's Table 2)", ""]
    for dataset, _, selection_table in tables:
        lines += [f"### {dataset}", ""] if len(tables) > 1 else []
        lines += [selection_table or "No run records label statistics (they need the true training labels).", ""]
    lines += ["## Plots", ""]
    for run, stem in zip(usable, _file_stems([run["name"] for run in usable])):
        prefix = f"{stem}_" if several else ""
        figures, notes = plot_run(run, plots_dir, prefix, image_grids, images_per_class,
                                  prepared.get(os.path.realpath(run["dir"])))
        lines += [f"### {run['name']}", ""]
        lines += [f"![{caption}]({PLOTS_DIR}/{file_name})\n" for caption, file_name in figures]
        lines += [f"- {note}" for note in notes] + ([""] if notes else [])
        if not figures and not notes:
            lines += ["No plot: the run records no matrix, selection or history.", ""]
    if skipped:
        lines += ["## Skipped runs", ""] + [f"- `{run['dir']}`: {run['skipped']}" for run in skipped] + [""]
    path = os.path.join(output_dir, REPORT_FILE)
    with io_utils.atomic_path(path, suffix=".md") as temporary:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write("\n".join(lines).rstrip("\n") + "\n")
    return path
