"""``mger report``: reports/results.md (one table like the papers' ablations) and PNG figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.config import ReportConfig, TrainConfig

# Published IEMOCAP 4-class figures (leave-one-session-out), for orientation only: they come
# from pretrained encoders fine-tuned on IEMOCAP, not from the synthetic demo corpus.
PUBLISHED = {
    "mha_both": "Sun et al. 2023: WA 78.42 / UA 79.71",
    "combined": "Zhao et al. 2022: +1.3 UA over their best baseline",
}
ORDER = ("text", "audio", "multigranular", "coattention", "late", "combined", "mha_aux")


def _label(m: dict) -> str:
    levels = "+".join(m["speech_levels"])
    if m["model"] == "text":
        return f"text only ({m['text_level']})"
    if m["model"] == "audio":
        return f"audio only, {levels}"
    if m["model"] == "multigranular":
        return f"audio only, multi-granularity {levels}"
    if m["model"] == "mha_aux":
        aux = [name for name, on in (("matching", m["aux_matching"] > 0), ("unimodal", m["aux_unimodal"] > 0)) if on]
        return f"mha fusion ({levels}), auxiliary: {' + '.join(aux) if aux else 'none'}"
    return f"{m['model']} ({levels} + text)"


def _features(m: dict) -> str:
    return "fine-tuned" if m.get("features") == "finetuned" else "frozen"


def _same_model(m: dict) -> tuple:
    return (m["model"], tuple(m["speech_levels"]), m["text_level"], m["aux_matching"], m["aux_unimodal"])


def frozen_vs_finetuned(rows: list[dict]) -> list[str]:
    """Rows pairing each fine-tuned experiment with the frozen one of the same model."""
    frozen = {_same_model(m): m for m in rows if _features(m) == "frozen"}
    lines = []
    for m in rows:
        twin = frozen.get(_same_model(m)) if _features(m) == "fine-tuned" else None
        if twin:
            delta = 100 * (m["ua"]["mean"] - twin["ua"]["mean"])
            lines.append(f"| {_label(m)} | {twin['experiment']}: {_cell(twin['ua'])} | {m['experiment']}: "
                         f"{_cell(m['ua'])} | {delta:+.2f} |")
    if not lines:
        return []
    return ["## Frozen vs fine-tuned speech encoders", "",
            "Same classifier; fold k's fine-tuned features come from encoders fine-tuned on fold k's training "
            "sessions only. UA in %.", "",
            "| system | frozen UA | fine-tuned UA | Δ UA |", "|---|---|---|---|", *lines, ""]


def _cell(x: dict) -> str:
    return f"{100 * x['mean']:.2f} ± {100 * x['std']:.2f}"


def load_metrics(folder: str | Path) -> list[dict]:
    rows = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]
    return sorted(rows, key=lambda m: (ORDER.index(m["model"]) if m["model"] in ORDER else 99, _features(m) != "frozen",
                                       m["experiment"]))


def write_report(train: TrainConfig, cfg: ReportConfig) -> Path:
    rows = load_metrics(train.metrics_dir)
    if not rows:
        raise FileNotFoundError(f"no experiment metrics in {train.metrics_dir}: run `mger train` first")
    figures = Path(cfg.figures)
    figures.mkdir(parents=True, exist_ok=True)
    best = max(rows, key=lambda m: m["ua"]["mean"])
    lines = [
        "# Results", "",
        f"Leave-one-session-out, {rows[0]['n_utterances']} utterances, classes {', '.join(rows[0]['classes'])}; "
        f"mean ± std over the 5 folds (seeds {rows[0]['seeds']}). WA = overall accuracy, UA = mean per-class "
        "recall, F1 = macro-F1, all in %.", "",
        "| experiment | system | speech encoder | WA | UA | F1 | published (IEMOCAP) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        lines.append(f"| {m['experiment']} | {_label(m)} | {_features(m)} | {_cell(m['wa'])} | {_cell(m['ua'])} | "
                     f"{_cell(m['f1'])} | {PUBLISHED.get(m['experiment'], '')} |")
    table_end = len(lines)
    lines += ["", f"Best UA: {best['experiment']} ({_cell(best['ua'])}).", "", *frozen_vs_finetuned(rows),
              "![confusion](figures/confusion_best.png)", "![granularity](figures/ua_by_granularity.png)",
              "![fusion](figures/ua_by_fusion.png)", ""]
    _plot_confusion(best, figures / "confusion_best.png")
    audio = [m for m in rows if m["model"] in ("audio", "multigranular")]
    _plot_bars(audio, figures / "ua_by_granularity.png", "UA by speech granularity (audio only)",
               lambda m: "+".join(m["speech_levels"]))
    fusion = [m for m in rows if m["model"] not in ("audio", "multigranular")]
    _plot_bars(fusion, figures / "ua_by_fusion.png", "UA by fusion type", lambda m: m["experiment"])
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines[4:table_end]))
    print(f"report: {len(rows)} experiments → {out}, figures in {figures}")
    return out


def _plot_confusion(m: dict, path: Path) -> None:
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
    ax.set_title(f"{m['experiment']}: recall per class (all folds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_bars(rows: list[dict], path: Path, title: str, name) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows) + 1), 3.5))
    if rows:
        ax.bar(range(len(rows)), [100 * m["ua"]["mean"] for m in rows], yerr=[100 * m["ua"]["std"] for m in rows],
               color="#4c72b0", capsize=3)
        ax.set_xticks(range(len(rows)), [name(m) for m in rows], rotation=30, ha="right")
    ax.set_ylabel("UA (%)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
