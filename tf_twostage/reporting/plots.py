"""Figures of a run (matplotlib Agg, no display needed), each written atomically as a PNG.

- `plot_matrices`: transition matrices as heat maps (the paper's Figure 3);
- `plot_kept_per_class`: noisy labels per class and how many Stage 1 kept (correct / incorrect);
- `plot_image_grid`: a few kept and dropped training images per class (the paper's Figure 4), with
  `choose_examples_per_class` picking them deterministically;
- `plot_learning_curves`: the per-epoch history of every stage.

The functions take plain arrays and dicts; reading them from a run's folder is `run_report.py`'s job.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from tf_twostage.utils import io_utils  # noqa: E402

MAX_ANNOTATED_CLASSES = 12  # matrices up to this size print their values in the cells
KEPT_COLOR, CORRECT_COLOR, INCORRECT_COLOR, LABELED_COLOR = "tab:blue", "tab:green", "tab:red", "0.75"


def _save(figure, path: str) -> None:
    """Writes `figure` to `path` as PNG (temporary name, then rename) and closes it."""
    with io_utils.atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)


def plot_matrices(path: str, matrices: Sequence, titles: Sequence[str], class_names: Sequence[str]) -> None:
    """Transition matrices side by side as heat maps (rows: clean class, columns: noisy), like the
    paper's Figure 3, values printed in the cells of small matrices; written atomically as PNG."""
    count = len(matrices)
    figure, axes = plt.subplots(1, count, figsize=(4.2 * count, 4.0), squeeze=False)
    for axis, matrix, title in zip(axes[0], matrices, titles):
        matrix = np.asarray(matrix, float)
        image = axis.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
        axis.set_title(title)
        axis.set_xlabel("noisy label")
        axis.set_ylabel("clean label")
        ticks = np.arange(len(class_names))
        axis.set_xticks(ticks, class_names, rotation=90, fontsize=7)
        axis.set_yticks(ticks, class_names, fontsize=7)
        figure.colorbar(image, ax=axis, fraction=0.046)
        if len(matrix) <= MAX_ANNOTATED_CLASSES:
            for (row, column), value in np.ndenumerate(matrix):
                if value >= 0.005:
                    axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                              color="black" if value > 0.6 else "white")
    figure.tight_layout()
    _save(figure, path)


def plot_kept_per_class(path: str, per_class: Sequence[Mapping], class_names: Sequence[str],
                        title: str = "labels kept by Stage 1") -> None:
    """Per noisy-label class: how many labels it has (grey) and how many Stage 1 kept, split into
    correct (green) and incorrect (red) where the clean labels are known (else one blue bar).

    `per_class` is `selection_stats.json`'s list: dicts with `class`, `labeled`, `kept` and optionally
    `kept_correct`, `kept_incorrect`.
    """
    if not per_class:
        raise ValueError("per_class is empty: no class to plot")
    for row in per_class:
        missing = [key for key in ("class", "labeled", "kept") if key not in row]
        if missing:
            raise ValueError(f"per_class row {row!r} lacks {', '.join(missing)}")
    classes = np.array([int(row["class"]) for row in per_class])
    labeled = np.array([row["labeled"] for row in per_class], float)
    kept = np.array([row["kept"] for row in per_class], float)
    known = all("kept_correct" in row and "kept_incorrect" in row for row in per_class)
    positions = np.arange(len(classes))
    width = 0.4
    figure, axis = plt.subplots(figsize=(max(6.0, 0.6 * len(classes)), 4.0))
    axis.bar(positions - width / 2, labeled, width, color=LABELED_COLOR, label="noisy labels")
    if known:
        correct = np.array([row["kept_correct"] for row in per_class], float)
        incorrect = np.array([row["kept_incorrect"] for row in per_class], float)
        axis.bar(positions + width / 2, correct, width, color=CORRECT_COLOR, label="kept, correct")
        axis.bar(positions + width / 2, incorrect, width, bottom=correct, color=INCORRECT_COLOR,
                 label="kept, incorrect")
    else:
        axis.bar(positions + width / 2, kept, width, color=KEPT_COLOR, label="kept")
    names = [class_names[c] if 0 <= c < len(class_names) else str(c) for c in classes]
    axis.set_xticks(positions, names, rotation=90 if max(len(n) for n in names) > 3 else 0, fontsize=8)
    axis.set_xlabel("noisy label")
    axis.set_ylabel("training images")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def choose_examples_per_class(noisy_labels, kept, num_classes: int, per_group: int, seed: int = 0) -> list:
    """Deterministically picks up to `per_group` kept and `per_group` dropped positions per noisy class.

    Returns one `(kept_positions, dropped_positions)` pair of sorted int arrays per class.
    """
    noisy_labels = np.asarray(noisy_labels)
    kept = np.asarray(kept)
    if kept.dtype != np.bool_ or kept.shape != noisy_labels.shape:
        raise ValueError(f"kept must be a boolean mask shaped like the labels {noisy_labels.shape}, "
                         f"got dtype {kept.dtype} shape {kept.shape}")
    if per_group < 1:
        raise ValueError(f"per_group must be >= 1, got {per_group}")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(num_classes):
        groups = []
        for mask in (kept, ~kept):
            positions = np.flatnonzero(mask & (noisy_labels == label))
            if len(positions) > per_group:
                positions = np.sort(rng.choice(positions, per_group, replace=False))
            groups.append(positions)
        chosen.append(tuple(groups))
    return chosen


def plot_image_grid(path: str, rows: Sequence, per_group: int, title: str = "",
                    headings: Sequence[str] = ("kept (labeled in Stage 2)", "dropped (unlabeled in Stage 2)")) -> None:
    """Kept (left) versus dropped (right) training images, one row per class, like the paper's Figure 4.

    `rows`: per class `(class_name, kept_items, dropped_items)`, each item `(image, caption, wrong)` with
    `image` uint8 `[H, W, C]` (all of one shape), `caption` the text above it and `wrong` True to print it
    in red (a noisy label known to be incorrect). `headings` name the left and right groups. Empty slots stay blank. The images are laid out in one
    mosaic (one `imshow`, not one axis per image: several times faster).
    """
    if not rows:
        raise ValueError("rows is empty: no class to show")
    if per_group < 1:
        raise ValueError(f"per_group must be >= 1, got {per_group}")
    images = [np.asarray(item[0]) for _, kept, dropped in rows for item in (*kept, *dropped)]
    if not images:
        raise ValueError("rows hold no image to show")
    shape = images[0].shape
    if len(shape) != 3 or shape[-1] not in (1, 3) or any(image.shape != shape for image in images):
        raise ValueError(f"images must all be [H, W, 1 or 3] of one shape, got {sorted({i.shape for i in images})}")
    height, width = shape[:2]
    pad, caption = max(2, width // 8), max(6, height // 3)  # pixels between images, above each for its caption
    cell_w, cell_h = width + pad, height + caption
    gap = 2 * cell_w // 3  # between the kept and the dropped group
    mosaic = np.full((len(rows) * cell_h, 2 * per_group * cell_w + gap, 3), 255, np.uint8)
    figure_width = 1.15 * (2 * per_group + 1)
    mosaic_height = 0.92 * figure_width * mosaic.shape[0] / mosaic.shape[1]  # inches, at the axis' width
    figure_height = mosaic_height + 0.7  # 0.3 in below (title), 0.4 in above (group headings)
    figure = plt.figure(figsize=(figure_width, figure_height))
    axis = figure.add_axes((0.07, 0.3 / figure_height, 0.92, mosaic_height / figure_height))
    texts = []
    for row, (class_name, kept_items, dropped_items) in enumerate(rows):
        top = row * cell_h + caption
        for left, items in ((0, kept_items), (per_group * cell_w + gap, dropped_items)):
            for column, (image, text, wrong) in enumerate(list(items)[:per_group]):
                x = left + column * cell_w
                mosaic[top:top + height, x:x + width] = np.broadcast_to(np.asarray(image), (height, width, 3))
                texts.append((x + width / 2, top - 1, text, INCORRECT_COLOR if wrong else "black", 7, "center"))
        texts.append((-pad, top + height / 2, class_name, "black", 8, "right"))
    axis.imshow(mosaic, interpolation="nearest")
    for x, y, text, color, size, align in texts:
        axis.text(x, y, text, color=color, fontsize=size, ha=align, va="bottom" if align == "center" else "center")
    axis.axis("off")
    middle = per_group * cell_w / mosaic.shape[1]
    figure.text(0.07 + 0.92 * middle / 2, 0.99, headings[0], ha="center", va="top", fontsize=10)
    figure.text(0.07 + 0.92 * (1 + middle + gap / mosaic.shape[1]) / 2, 0.99, headings[1],
                ha="center", va="top", fontsize=10)
    if title:
        figure.text(0.5, 0.005, title, ha="center", va="bottom", fontsize=9)
    _save(figure, path)


def _panel_of(metric: str) -> int:
    """0: losses, 1: accuracies, 2: everything else (learning rate, consistency weight)."""
    if "loss" in metric:
        return 0
    if "accuracy" in metric:
        return 1
    return 2


def plot_learning_curves(path: str, history: Mapping[str, Mapping[str, Sequence[float]]], title: str = "") -> None:
    """One row per stage (`history[stage][metric]` = per-epoch values): losses, accuracies, schedules."""
    stages = [(stage, metrics) for stage, metrics in history.items()
              if isinstance(metrics, Mapping) and any(len(values) for values in metrics.values())]
    if not stages:
        raise ValueError("history holds no per-epoch values to plot")
    panel_titles = ("loss", "accuracy", "schedules")
    figure, axes = plt.subplots(len(stages), 3, figsize=(13.0, 3.2 * len(stages)), squeeze=False)
    for row, (stage, metrics) in enumerate(stages):
        for metric in sorted(metrics):
            values = np.asarray(metrics[metric], float)
            if not values.size:
                continue
            axis = axes[row, _panel_of(metric)]
            axis.plot(np.arange(1, values.size + 1), values, marker="o", markersize=3, label=metric)
        for column, axis in enumerate(axes[row]):
            if not axis.lines:
                axis.axis("off")
                continue
            axis.set_title(f"{stage}: {panel_titles[column]}")
            axis.set_xlabel("epoch")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.legend(fontsize=7)
            axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)
