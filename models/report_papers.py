"""The papers' tables in the report (:mod:`mger.models.report`): our rows in Zhao et al.'s and
Sun et al.'s row order, and the published IEMOCAP figures in their own block."""

from __future__ import annotations

import re

from mger.core.config import FinetuneConfig
from mger.models.modules import aux_tasks
from mger.models.report_cells import SD_NOTE, ci_cell, mean_sd
from mger.models.report_rows import Experiment, encoder_cell, inputs_read, speech_store

# Published IEMOCAP figures, for orientation only: pretrained encoders on real IEMOCAP speech, not
# the synthetic demo corpus or random-init encoders.  We read the abstracts only: the full texts
# (arXiv 2207.04697, 2302.13661) are public but were not obtainable here.
PUBLISHED = [
    (
        "Sun, He & Han, ICASSP 2023",
        "wav2vec 2.0 + BERT, K-layer multi-head attention fusion with two auxiliary tasks, both encoders fine-tuned",
        "WA 78.42, UA 79.71",
    ),
    (
        "Zhao, Wang & Wang, Interspeech 2022",
        "wav2vec 2.0 + BERT, multi-granularity co-attention early fusion + late fusion",
        "not quoted here (we could not check the figures)",
    ),
]


# --- the papers' tables, in their row order --------------------------------------------------------

Match = tuple[str, dict]  # (row name, the metrics fields a row must have)
ZHAO_ROWS: list[Match] = [
    *[
        (f"wav2vec 2.0, {lv} level", {"model": "audio", "speech_levels": [lv]})
        for lv in ("frame", "phone", "syllable", "word")
    ],
    ("wav2vec 2.0, multi-granularity", {"model": "multigranular"}),
    ("BERT", {"model": "text"}),
    ("co-attention, one level", {"model": "coattention", "n_levels": 1}),
    ("co-attention, multi-granularity", {"model": "coattention", "n_levels": "many"}),
    ("late fusion", {"model": "late"}),
    ("co-attention + late fusion (full system)", {"model": "combined"}),
]
SUN_ROWS: list[Match] = [
    ("BERT", {"model": "text"}),
    ("Wav2vec2", {"model": "audio", "speech_levels": ["frame"]}),
    ("BERT+Wav2vec2+FC", {"model": "fc"}),
    ("BERT+Wav2vec2+CA", {"model": "mha_aux", "aux": []}),
    ("+CA+Aux1 (matching)", {"model": "mha_aux", "aux": ["matching"]}),
    ("+CA+Aux2 (unimodal)", {"model": "mha_aux", "aux": ["unimodal"]}),
    ("+CA+Aux1&2", {"model": "mha_aux", "aux": ["matching", "unimodal"]}),
    ("end to end (encoders fine-tuned with the fusion head)", {"end_to_end": True}),
]


def _matches(m: dict, want: dict) -> bool:
    if m.get("end_to_end") and "end_to_end" not in want:  # its own row only
        return False
    for key, value in want.items():
        if key == "n_levels":
            n = len(m["speech_levels"])
            if (value == 1) != (n == 1):
                return False
        elif key == "aux":
            if aux_tasks(m) != value:
                return False
        elif m.get(key) != value:
            return False
    return True


def _reads(m: dict, models: dict[str, str]) -> str:
    """Which speech store and encoder a row reads, and in which state (``– (text only)`` for text)."""
    if inputs_read(m)[1] is None:
        return "– (text only)"
    return f"{speech_store(m)} store: {models.get(speech_store(m), 'encoder not in params')}, {inputs_read(m)[0]}"


def _paper_row(label: str, m: dict, models: dict[str, str]) -> str:
    """The paper's row name, or, where the row reads another speech encoder than the paper's
    wav2vec 2.0 (e.g. eGeMAPS), that encoder's name in its place, the paper's name beside it."""
    model = models.get(speech_store(m), speech_store(m))
    if inputs_read(m)[1] is None or "wav2vec2" in re.sub(r"[^a-z0-9]", "", model.lower()):
        return label
    for paper in ("wav2vec 2.0", "Wav2vec2"):
        if paper in label:
            return f"{label.replace(paper, model)} (in the paper's {paper} row)"
    return label


def paper_table(
    title: str,
    note: str,
    spec: list[Match],
    rows: list[Experiment],
    models: dict[str, str],
    k_sweep: bool = False,
) -> list[str]:
    """One paper's table layout, filled with this run's rows of each kind (frozen and fine-tuned),
    each saying which speech store and encoder it read (``models``: store name → encoder)."""
    lines = [
        f"## {title}",
        "",
        note,
        "",
        f"WA and UA: {SD_NOTE}; UA 95% CI: the widest of the row's three intervals (which one beside it).",
        "",
        "| row (paper) | experiment | reads (speech store: encoder, state) | WA | UA | UA 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    for label, want in spec:
        found = [e for e in rows if _matches(e.metrics, want)]
        sweep = k_sweep and want.get("aux") == ["matching", "unimodal"]
        if sweep:
            found.sort(key=lambda e: (e.metrics.get("layers") or 0, encoder_cell(e.metrics)))
        for e in found or [None]:
            if e is None:
                lines.append(f"| {label} | not run | | | | |")
                continue
            m = e.metrics
            name = _paper_row(label, m, models)
            name = f"{name}, K={m.get('layers')}" if sweep else name
            lines.append(
                f"| {name} | {e.name} | {_reads(m, models)} | {mean_sd(m['wa'])} | {mean_sd(m['ua'])} | {ci_cell(m)} |"
            )
    return lines + [""]


def variants_note(ft: FinetuneConfig) -> str:
    """With several fine-tuning variants: what each one is, for the Sun table ('' otherwise)."""
    if len(ft.variants) < 2:
        return ""
    parts = []
    for name in ft.variants:
        v = ft.variant(name)
        aux = [a for a, w in (("matching", v.fusion.aux_matching), ("unimodal", v.fusion.aux_unimodal)) if w > 0]
        what = (
            f"encoders fine-tuned end to end with the fusion head, auxiliary losses: {' + '.join(aux) or 'none'}"
            if v.objective == "fusion"
            else "each encoder fine-tuned alone (utterance objective)"
        )
        parts.append(f"*{name}*: {what}")
    return (
        " A fine-tuned row's speech-features cell names the fine-tuning variant its encoders come from: "
        + "; ".join(parts)
        + "."
    )


def paper_lines(rows: list[Experiment], models: dict[str, str], finetune: FinetuneConfig | None = None) -> list[str]:
    return [
        *paper_table(
            "Zhao, Wang & Wang (Interspeech 2022): the ablation in the paper's row order",
            "Our reading of the paper's system (docs/papers.md); this run's corpus and encoders, not the paper's. "
            "A row that reads another speech encoder than wav2vec 2.0 is named by that encoder.",
            ZHAO_ROWS,
            rows,
            models,
        ),
        *paper_table(
            "Sun, He & Han (ICASSP 2023): the table in the paper's row order, with the K sweep",
            "CA = the K-layer multi-head attention fusion; Aux1 = audio–text matching, Aux2 = unimodal "
            "heads (our reading, docs/papers.md). The K sweep is the +CA+Aux1&2 row at each K run. A row that "
            "reads another speech encoder than wav2vec 2.0 is named by that encoder."
            + (variants_note(finetune) if finetune else ""),
            SUN_ROWS,
            rows,
            models,
            k_sweep=True,
        ),
    ]


def published_lines(synthetic: bool) -> list[str]:
    """The published IEMOCAP figures in their own block; with the synthetic corpus it says that no
    row of this report may be set beside them."""
    lines = [
        "## Published IEMOCAP results (for orientation only; not comparable to the tables above)",
        "",
        *(
            [
                "**This report's corpus is synthetic** (eSpeak NG voices): none of its figures is an IEMOCAP "
                "result, and none may be set beside the figures below.",
                "",
            ]
            if synthetic
            else []
        ),
        "Pretrained encoders on real IEMOCAP speech, the systems as we read the papers' abstracts (the full "
        "texts, arXiv 2207.04697 and 2302.13661, were not obtainable here). The evaluation protocol "
        "(leave-one-session-out) is our reading: neither abstract states it. mger implements these systems "
        "in our reading; it has not reproduced these numbers.",
        "",
        "| paper | system | reported |",
        "|---|---|---|",
    ]
    return lines + [f"| {paper} | {system} | {figure} |" for paper, system, figure in PUBLISHED] + [""]
