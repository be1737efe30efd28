"""Figures written next to a run's results (matplotlib, no display needed)."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tf_twostage import io_utils  # noqa: E402


def plot_matrices(path: str, matrices: Sequence, titles: Sequence[str], class_names: Sequence[str]) -> None:
    """Transition matrices side by side as heat maps (rows: clean class, columns: noisy), like the
    paper's Figure 3; written atomically as PNG."""
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
    figure.tight_layout()
    with io_utils.atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
