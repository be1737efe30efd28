"""`label_health.md` and its plots: what `bin/find_label_issues.py` tells a person about their labels.

- `plots/label_quality_per_class.png`: per given class, its examples and how many are not flagged
  (split into right / wrong where the true labels are known);
- `plots/confused_pairs.png`: the estimated noise transition matrix between the classes of the most
  confused pairs (beside the realized one when the true labels are known);
- `plots/top_suspects.png`: per class (those with the most issues first), its most trusted examples
  and its top suspects, captioned with the given and suggested label.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from tf_twostage.reporting import plots
from tf_twostage.utils import io_utils

PLOTS_DIR = "plots"
MAX_GRID_CLASSES = 10
MAX_MATRIX_CLASSES = 12


def write_label_health_report(folder: str, health: Mapping, issues, labels, class_names: Sequence[str],
                              image_of: Optional[Callable[[int], np.ndarray]] = None, true_labels=None,
                              per_group: int = 5, summary: Optional[Mapping] = None) -> str:
    """Writes `folder/label_health.md` and `folder/plots/*.png`; returns the Markdown file's path.

    Args:
      health: `label_health(...)`'s dict. issues: `find_label_issues(...)`'s `LabelIssues`.
      labels: the given labels `[N]`. class_names: C names.
      image_of: position -> uint8 image `[H, W, C]` (for the grid of suspects; None: no grid).
      true_labels: `[N]` true labels where known (synthetic noise), else None.
      summary: extra lines for the top of the page (rule, source of the predictions, ...).
    """
    labels = np.asarray(labels)
    names = [str(name) for name in class_names]
    plot_dir = os.path.join(folder, PLOTS_DIR)
    os.makedirs(plot_dir, exist_ok=True)
    figures = []

    per_class = []
    for row in health["per_class"]:
        members = labels == row["class"]
        entry = {"class": row["class"], "labeled": row["labeled"],
                 "kept": int(np.count_nonzero(members & ~issues.is_issue))}
        if true_labels is not None:
            right = true_labels == labels
            entry["kept_correct"] = int(np.count_nonzero(members & ~issues.is_issue & right))
            entry["kept_incorrect"] = entry["kept"] - entry["kept_correct"]
        per_class.append(entry)
    path = os.path.join(plot_dir, "label_quality_per_class.png")
    plots.plot_kept_per_class(path, per_class, names, title=f"labels not flagged as issues (rule {issues.rule})")
    figures.append(("Labels per class, and those not flagged", path))

    classes = _confused_classes(health, len(names))
    if classes and "estimated_transition" in health:
        estimated = np.asarray(health["estimated_transition"])[np.ix_(classes, classes)]
        matrices, titles = [estimated], ["estimated T[true, given]"]
        if true_labels is not None:
            realized = np.zeros((len(names), len(names)))
            np.add.at(realized, (true_labels, labels), 1.0)
            realized /= np.maximum(realized.sum(axis=1, keepdims=True), 1.0)
            matrices.append(realized[np.ix_(classes, classes)])
            titles.append("realized (true labels known)")
        path = os.path.join(plot_dir, "confused_pairs.png")
        plots.plot_matrices(path, matrices, titles, [names[c] for c in classes])
        figures.append(("Noise between the most confused classes", path))

    if image_of is not None and issues.num_issues:
        path = os.path.join(plot_dir, "top_suspects.png")
        _plot_suspects(path, issues, labels, names, image_of, true_labels, per_group)
        figures.append(("Most trusted (left) and most suspect (right) examples per class", path))

    lines = ["# Label health", ""]
    for key, value in (summary or {}).items():
        lines.append(f"- {key}: {value}")
    lines += [
        f"- examples: {health['num_examples']}, classes: {health['num_classes']}",
        f"- estimated noise rate: {health['estimated_noise_rate']:.3f}",
        f"- flagged as label issues: {issues.num_issues} ({issues.num_issues / max(1, len(labels)):.1%})",
        "",
        "## Per class", "",
        "| class | labeled | flagged | estimated wrong | label quality | mean P(label) |",
        "|---|---|---|---|---|---|",
    ]
    flagged = np.bincount(labels[issues.is_issue], minlength=len(names))
    for row in health["per_class"]:
        quality = "" if row["label_quality"] is None else f"{row['label_quality']:.3f}"
        confidence = "" if row["mean_self_confidence"] is None else f"{row['mean_self_confidence']:.3f}"
        lines.append(f"| {row['name']} | {row['labeled']} | {flagged[row['class']]} | "
                     f"{row['estimated_issues']} ({row['estimated_issue_fraction']:.1%}) | {quality} | {confidence} |")
    lines += ["", "## Most confused pairs", "",
              "| true class | given label | estimated count | flip rate | share of given label |",
              "|---|---|---|---|---|"]
    for pair in health["confused_pairs"]:
        lines.append(f"| {pair['true_name']} | {pair['given_name']} | {pair['count']} | {pair['flip_rate']:.3f} | "
                     f"{pair['share_of_given']:.3f} |")
    if not health["confused_pairs"]:
        lines.append("| (none estimated) | | | | |")
    lines.append("")
    for title, path in figures:
        lines += [f"## {title}", "", f"![{title}]({os.path.relpath(path, folder)})", ""]
    report = os.path.join(folder, "label_health.md")
    with io_utils.atomic_path(report) as temporary:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write("\n".join(lines))
    return report


def _confused_classes(health: Mapping, num_classes: int) -> list:
    """The classes of the most confused pairs, at most `MAX_MATRIX_CLASSES`, in class order."""
    if num_classes <= MAX_MATRIX_CLASSES:
        return list(range(num_classes))
    chosen = []
    for pair in health["confused_pairs"]:
        for c in (pair["true"], pair["given"]):
            if c not in chosen and len(chosen) < MAX_MATRIX_CLASSES:
                chosen.append(c)
    return sorted(chosen)


def _plot_suspects(path: str, issues, labels, names, image_of, true_labels, per_group: int) -> None:
    flagged_counts = np.bincount(labels[issues.is_issue], minlength=len(names))
    classes = [int(c) for c in np.argsort(-flagged_counts, kind="stable") if flagged_counts[c] > 0][:MAX_GRID_CLASSES]
    quality = issues.label_quality
    rows = []
    for c in sorted(classes):
        members = np.flatnonzero(labels == c)
        order = members[np.lexsort((members, quality[members]))]
        suspects = [p for p in order if issues.is_issue[p]][:per_group]
        trusted = [p for p in order[::-1] if not issues.is_issue[p]][:per_group]

        def item(position, suggest):
            caption = f"{names[labels[position]]}->{names[issues.suggested_label[position]]}" if suggest else names[c]
            wrong = true_labels is not None and true_labels[position] != labels[position]
            return image_of(int(position)), caption, bool(wrong)

        rows.append((names[c], [item(p, False) for p in trusted], [item(p, True) for p in suspects]))
    plots.plot_image_grid(path, rows, per_group, "given label (->suggested); red: known to be wrong",
                          headings=("most trusted", "top suspects"))
