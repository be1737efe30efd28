"""A Markdown report, with plots, of finished run folders: what `bin/report.py` and the runner write.

Kept apart from `tf_twostage.reporting.tables`, whose tables are pure functions of run dicts, because this side
touches files and heavy libraries: it finds run folders (`find_run_dirs`), reads their results.json
and config.json (`load_run`), draws each run's plots (`plot_run`, via `tf_twostage.reporting.plots`; the image
grids rebuild the run's data with TensorFlow) and writes `output_dir/report.md` with the run list
(`format_run_list`), the tables and the plots (`write_report`).
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import List, Mapping, Optional, Sequence

import tensorflow as tf

from tf_twostage.utils import io_utils
from tf_twostage.reporting import plots
from tf_twostage.config import load_run_config
from tf_twostage.data.prepare import PreparedData, prepare_data
from tf_twostage.data.source import UNKNOWN_LABEL, decode_image_file
from tf_twostage.reporting.tables import (
    format_accuracy_table,
    format_selection_table,
    method_label,
    noise_setting,
    run_facts,
    summarize_runs,
    summarize_selection,
)
from tf_twostage.utils.artifacts import load_selection
from tf_twostage.stage1.quality import format_per_class, format_quality

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
MAX_GRID_CLASSES = 20  # the image grid shows at most this many classes (the first ones)


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

def format_validation(validation: Mapping) -> str:
    """One line on a run's validation score: value +- standard error, source, kept epoch, any warning."""
    error = validation.get("standard_error")
    text = (f"{validation['value']:.1%}" + (f" +- {error:.1%}" if error is not None else "")
            + f" ({validation.get('source')}: {validation.get('measured')}; kept epoch {validation.get('kept_epoch')}"
            f" of {validation.get('last_epoch')})")
    if validation.get("warning"):
        text += f". Not to be trusted: {validation['warning']}"
    return text


def _propagated(stats: dict) -> str:
    """What a report line adds when the selection ranked with `stage1.propagation`'s posterior."""
    propagation = stats.get("propagation", "none")
    if propagation == "none":
        return ""
    alpha = f", alpha {stats['propagation_alpha']:g}" if "propagation_alpha" in stats else ""
    spread = "the noisy labels" if stats.get("propagation_input") == "labels" else "the posterior"
    return f" (ranked with {spread} propagated over {propagation}{alpha})"


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
    output_dir = os.fspath(output_dir) if output_dir is not None else ""
    if not output_dir.strip():
        raise ValueError(f"output must name a folder for report.md and plots/, got {output_dir!r}")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"output {output_dir!r} is an existing file; name a folder for report.md and plots/")
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
    quality_lines = [f"- {_cell(run['name'])}{_propagated(stage1)}: {format_quality(stage1['quality'])}; per class "
                     f"(precision / recall): {format_per_class(stage1['quality'])}"
                     for run in usable for stage1 in [run["results"].get("stage1") or {}] if stage1.get("quality")]
    if quality_lines:
        lines += ["## Stage-1 selection quality (the true training labels evaluate the kept set)", "",
                  *quality_lines, ""]
    second = [f"- {_cell(run['name'])}{_propagated(stats)}: threshold {stats['threshold']:g}"
              + (", at least Stage 1's count per class" if stats.get("keep") == "at_least_first" else "")
              + f", kept {stats['kept_fraction']:.1%} (Stage 1: "
              f"{stats['first_round_kept_fraction']:.1%}; {stats['added']} added, {stats['removed']} removed)"
              + (f"; {format_quality(stats['quality'])}" if stats.get("quality") else "")
              for run in usable for stats in [run["results"].get("stage2_reselection")] if stats]
    if second:
        lines += ["## Second selection round (stage2.rounds=2: the Stage-2 model re-selects the labels)", "",
                  *second, ""]
    averaged = [f"- {_cell(run['name'])}: the classifier averages {size} networks of the last Stage-2 round, trained "
                f"from seeds {run['results']['seed']} to {run['results']['seed'] + size - 1}"
                for run in usable for size in [int(run["results"].get("ensemble_size") or 1)] if size > 1]
    if averaged:
        lines += ["## An ensemble of Stage-2 networks (stage2.ensemble_size)", "", *averaged, ""]
    instead = [f"- {_cell(run['name'])}: {_cell(entry['stage'])}: {_cell(entry['option'])}: used "
               f"{_cell(entry['used'])} ({_cell(entry['reason'])})"
               for run in usable for entry in run["results"].get("fallbacks") or []]
    if instead:
        lines += ["## What ran instead of what was asked (results.json[\"fallbacks\"])", "", *instead, ""]
    scores = [f"- {_cell(run['name'])}: {format_validation(validation)}" for run in usable
              for validation in [run["results"].get("validation")] if validation and validation.get("value") is not None]
    if scores:
        lines += ["## Validation score (results.json[\"validation\"]: what it measured, and how far to trust it)", "",
                  *scores, ""]
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
