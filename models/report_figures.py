"""The report's figures (:mod:`mger.models.report`), each written atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mger.core.reporting import save_figure_atomic
from mger.models.report_cells import widest_interval
from mger.models.report_rows import Experiment, encoder_cell, is_audio_only

# --- figures, each written atomically -------------------------------------------------------------


def plot_layer_weights(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for k, m in enumerate(rows):
        lw = m["layer_weights"]
        layers = lw["layers"]
        colour = f"C{k % 10}"
        for r in lw["per_fold"]:
            ax.plot(layers, r["weights"], "o", color=colour, alpha=0.35, markersize=4)
        ax.plot(layers, lw["mean"], "-", color=colour, label=m["experiment"])
        ax.set_xticks(layers)
        ax.axhline(1 / len(layers), color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("encoder layer (hidden state; 0 = transformer input)")
    ax.set_ylabel("softmax weight")
    ax.set_title("Learned layer weights: folds and seeds (points), mean (line), equal (dotted)", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


def save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        save_figure_atomic(fig, path, dpi=120)
    finally:
        plt.close(fig)


def plot_confusion(m: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(m["confusion"], float)
    norm = cm / cm.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(cm)):
        for j in range(len(cm)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(cm)), m["classes"])
    ax.set_yticks(range(len(cm)), m["classes"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{m['experiment']} (best by validation UA):\ntest recall per class, all folds and seeds", fontsize=9)
    fig.tight_layout()
    save(fig, path)


def plot_bars(rows: list[dict], path: Path, title: str, name) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1), 3.5))
    if rows:
        ua = np.array([100 * m["ua"]["mean"] for m in rows])
        ci = 100 * np.array([widest_interval(m)[:2] for m in rows]).T
        ax.bar(range(len(rows)), ua, yerr=np.abs(ci - ua), color="#4c72b0", capsize=3)
        ax.set_xticks(range(len(rows)), [name(m) for m in rows], rotation=30, ha="right")
    ax.set_ylabel("test UA (%), widest 95% CI")
    ax.set_title(title)
    fig.tight_layout()
    save(fig, path)


def plot_figures(rows: list[Experiment], best: Experiment, figures: Path) -> None:
    """The best system's confusion matrix and the UA bars by granularity and by fusion type."""
    plot_confusion(best.metrics, figures / "confusion_best.png")
    audio = [e.metrics for e in rows if is_audio_only(e.metrics)]
    plot_bars(
        audio,
        figures / "ua_by_granularity.png",
        "Test UA by speech granularity (audio only)",
        lambda m: (
            "+".join(m["speech_levels"])
            + {"frozen": "", "fine-tuned": " (ft)"}.get(encoder_cell(m), f" ({encoder_cell(m)})")
        ),
    )
    fusion = [e.metrics for e in rows if not is_audio_only(e.metrics)]
    plot_bars(fusion, figures / "ua_by_fusion.png", "Test UA by fusion type", lambda m: m["experiment"])
