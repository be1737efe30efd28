"""The tables of finished runs: the paper's Table 3 (accuracy) and Table 2 (labels), and the runner's table.

Pure functions of run dicts `{"results": <results.json>, "config": <config.json> or None, "name":
<optional, for messages>}`, so a benchmark can reuse them on results it holds; reading run folders,
drawing plots and writing report.md is `tf_twostage.reporting.run_report`'s job.

- `summarize_runs(runs)`: one row per (method, noise setting) with the seeds, test accuracies, mean
  and population std; `format_accuracy_table(rows)` prints them as methods x noise settings (Table 3).
- `summarize_selection(runs)`: per noise setting, the fractions of training images with a correct,
  an incorrect or no label in the noisy training set, after forward correction (argmax, sampling) and
  after Stage 1, mean and std over seeds, with the selection quality (precision, recall, ROC AUC of the
  ranking; `tf_twostage.stage1.quality`); `format_selection_table(rows)` prints them (Table 2).
- `format_results_table(results)`: one row per run (what the runner prints).
- `merge_rows(earlier, newer, order)`: a table's rows from an earlier results file updated by newer ones
  (a benchmark that reruns some cells keeps the rows of the others).
- `method_label`, `run_facts`, `noise_setting`: a run's row name, its checked facts, a column title.
"""

from __future__ import annotations

import math
from typing import Iterable, List, Mapping, NamedTuple, Optional, Sequence

import numpy as np

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
# Selection quality as the label-noise literature reports it (tf_twostage.stage1.quality): precision (share
# of the labels given to training that are right), recall (share of the right labels given), ranking ROC AUC.
QUALITY_PARTS = ("precision", "recall", "auc")


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
        yield NOISY_SET, (1.0 - rate, rate, 0.0, 1.0 - rate, 1.0, None)
    corrected = (results.get("baseline") or {}).get("corrected_labels")
    if corrected is not None:
        for name, prefix in ((FORWARD_ARGMAX, "argmax"), (FORWARD_SAMPLING, "sampling")):
            correct = _fraction(corrected.get(f"{prefix}_correct_fraction"),
                                f"results baseline corrected_labels '{prefix}_correct_fraction'")
            incorrect = _fraction(corrected.get(f"{prefix}_incorrect_fraction"),
                                  f"results baseline corrected_labels '{prefix}_incorrect_fraction'")
            yield name, (correct, incorrect, 0.0, None, None, None)
    stage1 = results.get("stage1") or {}
    if stage1.get("kept_fraction") is not None:
        kept = _fraction(stage1["kept_fraction"], "results stage1 'kept_fraction'")
        correct, incorrect = (
            None if stage1.get(key) is None else _fraction(stage1[key], f"results stage1 '{key}'")
            for key in ("kept_correct_fraction", "kept_incorrect_fraction"))
        quality = stage1.get("quality") or {}
        measured = tuple(None if quality.get(key) is None else _fraction(quality[key], f"results stage1 quality '{key}'")
                         for key in QUALITY_PARTS)
        yield AFTER_STAGE1, (correct, incorrect, 1.0 - kept) + measured


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
        row.update({part: _stats_over_seeds(per_seed, i) for i, part in enumerate(SELECTION_PARTS + QUALITY_PARTS)})
        rows.append(row)
    return rows


def format_selection_table(rows: Sequence[Mapping]) -> str:
    """Markdown: one line per (noise setting, labels) with % correct / incorrect / no label and the seeds."""
    _check_rows(rows, SELECTION_ROW_KEYS, "selection")
    lines = ["| noise | training labels | correct | incorrect | no label | seeds | precision | recall | ROC AUC |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        count = len(row["seeds"])
        cells, quality = ([
            "n/a" if row.get(part) is None else _mean_std(row[part]["mean"], row[part]["std"], count, 2)
            for part in parts] for parts in (SELECTION_PARTS, QUALITY_PARTS))
        lines.append(f"| {noise_setting(row['noise_type'], row['noise_rate'])} | {row['labels']} | "
                     + " | ".join(cells) + f" | {count} | " + " | ".join(quality) + " |")
    return "\n".join(lines)


def merge_rows(earlier: Sequence[Mapping], newer: Sequence[Mapping], order: Sequence[str]) -> List[dict]:
    """The rows of `newer` plus those of `earlier` that `newer` does not recompute, sorted by `order`.

    `order` names what identifies a row and how rows sort, most significant first: `"noise"` (the noise
    setting, `noise_type` and `noise_rate`, in the paper's order), `"method"` (the paper's order),
    `"labels"` (Table 2's order) or any other row key (its value). E.g. Table 3 is `("method", "noise")`,
    Table 2 `("noise", "labels")`. A row of `earlier` lacking a key is an error naming it.
    """
    def key(row):
        parts = []
        for field in order:
            needed = ("noise_type", "noise_rate") if field == "noise" else (field,)
            missing = [name for name in needed if name not in row]
            if missing:
                raise ValueError(f"row {dict(row)} lacks {', '.join(map(repr, missing))} (rows are keyed by "
                                 f"{', '.join(order)})")
            if field == "noise":
                parts.append(_noise_key(row["noise_type"], row["noise_rate"]))
            elif field == "method":
                parts.append(_method_key(row["method"]))
            elif field == "labels":
                parts.append((SELECTION_ORDER.index(row["labels"]), "") if row["labels"] in SELECTION_ORDER
                             else (len(SELECTION_ORDER), row["labels"]))
            else:
                parts.append(row[field])
        return tuple(parts)

    fresh = {key(row): dict(row) for row in newer}
    kept = {key(row): dict(row) for row in earlier if key(row) not in fresh}
    merged = {**kept, **fresh}
    return [merged[k] for k in sorted(merged)]


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
