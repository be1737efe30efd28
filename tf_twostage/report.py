"""Human-readable tables of results (Markdown, so they paste into issues and reports)."""

from __future__ import annotations

from typing import Sequence


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
