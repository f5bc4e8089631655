"""``mger report``: reports/results.md and PNG figures, from the experiments listed in params.

Only experiments named in ``train.experiments`` / ``train.finetuned_experiments`` are read
(``mger report --experiment a,b``: only those).  A metrics file is refused (one line naming
it) when it is missing, was written without provenance, names a feature store whose
fingerprint is no longer the one on disk or that was built from another segment table or
manifest than the current ones, or names predictions other than the ones on disk (the
``predictions_sha256`` written with it): a table never mixes results of different features or
runs.  Everything is computed from the saved
per-utterance predictions (:mod:`mger.models.stats`): CIs, pooled and per-class figures, the
improvised/scripted breakdown and the paired tests of each ablation step, Holm-adjusted within each
table; a sentence claims a difference only where the adjusted p < 0.05.

Nothing here looks at test results to choose: the "best system" is the one with the highest
*validation* UA; test figures are only displayed.  Published IEMOCAP numbers sit in their own
block, never beside the rows of another corpus; with the synthetic corpus the block says so.

This module assembles results.md from its parts: the rows and their loading checks
(:mod:`mger.models.report_rows`), the cells and Holm-adjusted findings
(:mod:`mger.models.report_cells`), the papers' tables (:mod:`mger.models.report_papers`) and the
figures (:mod:`mger.models.report_figures`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from mger.core.config import Params
from mger.core.manifest import read_manifest
from mger.core.reporting import StageError, write_json, write_text_atomic
from mger.models.modules import aux_tasks
from mger.models.registry import model_kind
from mger.models.report_cells import SD_NOTE, ci_cell, findings, mean_sd, p_cells, paired_tests, pct, widest_interval
from mger.models.report_corpus import protocol_sentence, results_title, run_protocol
from mger.models.report_figures import plot_figures, plot_layer_weights
from mger.models.report_papers import paper_lines, published_lines
from mger.models.report_rows import (  # noqa: F401  re-exported: the report's rows are read through this module
    Experiment,
    encoder_cell,
    features_state,
    inputs_read,
    is_audio_only,
    is_fusion,
    joint_experiments,
    joint_names,
    load_experiments,
    report_names,
    row_label,
    row_spec,
    same_model,
    speech_store,
)
from mger.models.stats import METHOD, format_p
from mger.models.wer import transcript_lines

# --- the ablation steps with paired tests ---------------------------------------------------------


def ablation_pairs(rows: list[Experiment]) -> list[tuple[str, Experiment, Experiment]]:
    """(step, baseline, system) for each step the report tests: text vs each fusion, frozen vs
    fine-tuned, mha without vs with each auxiliary task, single vs multi-granularity."""
    pairs = []

    def by_features(e: Experiment, model: str) -> list[Experiment]:  # same encoders (a text row: any store)
        return [
            x
            for x in rows
            if x.metrics["model"] == model
            and features_state(x.metrics) == features_state(e.metrics)
            and (model == "text" or speech_store(x.metrics) == speech_store(e.metrics))
        ]

    for e in rows:
        m = e.metrics
        if is_fusion(m):
            pairs += [("text vs fusion", t, e) for t in by_features(e, "text")]
        if m["model"] == "mha_aux" and aux_tasks(m):
            pairs += [
                ("mha without vs with auxiliary tasks", b, e)
                for b in by_features(e, "mha_aux")
                if not aux_tasks(b.metrics)
                and b.metrics["speech_levels"] == m["speech_levels"]
                and b.metrics.get("layers") == m.get("layers")
                and bool(b.metrics.get("end_to_end")) == bool(m.get("end_to_end"))  # end to end vs end to end
            ]
        if m["model"] == "multigranular":
            pairs += [
                ("single vs multi-granularity", a, e)
                for a in by_features(e, "audio")
                if len(a.metrics["speech_levels"]) == 1 and a.metrics["speech_levels"][0] in m["speech_levels"]
            ]
    frozen = {same_model(e.metrics): e for e in rows if features_state(e.metrics) == "frozen"}
    pairs += [
        ("frozen vs fine-tuned", frozen[same_model(e.metrics)], e)
        for e in rows
        if features_state(e.metrics) == "fine-tuned" and same_model(e.metrics) in frozen
    ]
    return pairs


def ablation_lines(rows: list[Experiment]) -> list[str]:
    lines = [
        "## Ablation steps with paired tests",
        "",
        "Δ = system − baseline on the same test utterances, folds and seeds (fold-averaged, points); p: "
        "two-sided approximate randomisation (one swap per utterance shared by every seed); Holm: the p "
        "adjusted by Holm's method over all steps of this table (UA and WA columns each one family). A step "
        "is a claim only where its Holm-adjusted p < 0.05.",
        "",
        "| step | baseline | system | Δ UA | p (UA) | Holm p (UA) | Δ WA | p (WA) | Holm p (WA) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    steps = ablation_pairs(rows)
    tests = paired_tests([(system, base) for _, base, system in steps])
    for (step, base, system), test in zip(steps, tests):
        if isinstance(test, str):
            lines.append(f"| {step} | {base.name} | {system.name} | not paired: {test} | | | | | |")
            continue
        lines.append(
            f"| {step} | {base.name} | {system.name} | {100 * test['ua']['delta']:+.2f} | "
            f"{p_cells(test['ua']['p'], test['ua']['p_holm'])} | {100 * test['wa']['delta']:+.2f} | "
            f"{p_cells(test['wa']['p'], test['wa']['p_holm'])} |"
        )
    names = [(system.name, base.name) for _, base, system in steps]
    return lines + ["", findings(names, tests, "ua"), "", findings(names, tests, "wa"), ""]


# --- the report -------------------------------------------------------------------------------------


def _roots(params: Params) -> list[Path]:
    """The corpus folders of prepare (each of prepare.corpora, else prepare.root; a csv corpus's
    folder is its table's)."""
    roots = [Path(c.root) for c in params.prepare.corpora.values()] or [Path(params.prepare.root)]
    return [r.parent if r.is_file() else r for r in roots]


def synthetic_corpus(params: Params) -> bool:
    """Whether prepare's corpus is the synthetic demo corpus (`mger synth` writes truth/ beside its
    tree, in every layout); with several corpora, whether any is."""
    return any((r / "truth" / "words.jsonl").is_file() for r in _roots(params))


def reads_iemocap(params: Params) -> bool:
    """Whether prepare reads IEMOCAP (prepare.corpus, or one of prepare.corpora): the published
    IEMOCAP block belongs to such reports only."""
    sources = [c.corpus for c in params.prepare.corpora.values()] or [params.prepare.corpus]
    return "iemocap" in sources


def _corpus_line(params: Params, m: dict) -> str:
    roots = [c.root for c in params.prepare.corpora.values()] or [params.prepare.root]  # prepare.corpora: each
    where = ", ".join(f"`{r}`" for r in roots)
    line = f"Corpus: {where}, {m['n_utterances']} utterances, classes {', '.join(m['classes'])}."
    if synthetic_corpus(params):
        line += (
            " This is the synthetic demo corpus (eSpeak NG voices): its figures say "
            "whether the pipeline works, not how well the papers' systems recognise human emotion, and are "
            "not comparable to any published result."
        )
    align = Path(params.align.report)
    if align.is_file():
        a = json.loads(align.read_text(encoding="utf-8"))
        line += (
            f" Alignment ({a['backend']}): {a['aligned']} aligned, {a['uniform_fallback']} by the uniform fallback "
            f"(marked), {a['dropped']} dropped; {a.get('silence_or_noise', 0)} of the failures were silence or "
            f"noise ({align})."
        )
    return line


PROTOCOLS = {  # split.protocol → its words in the report
    "loso": "leave one group out",
    "predefined": "the corpus's own partitions",
    "speaker_folds": "speaker-independent folds",
    "cross_corpus": "cross-corpus (train on one corpus, test on another)",
}


def manifest_lines(params: Params, metrics: dict) -> list[str]:
    """The corpus (or corpora), protocol and class map, and the manifest's counts per partition
    and class: what the table's numbers are about (from ``prepare.manifest``, its
    data-quality report for the class map)."""
    path = Path(params.prepare.manifest)
    if not path.is_file():
        return []
    utts = read_manifest(path)
    corpora = sorted({u.corpus for u in utts})
    protocol = run_protocol(params, metrics)["protocol"]
    quality = Path(params.prepare.report)
    maps = {}
    if quality.is_file():
        q = json.loads(quality.read_text(encoding="utf-8"))
        sections = q.get("corpora") or {q.get("corpus", ", ".join(corpora)): q}
        maps = {name: sec.get("class_map", {}) for name, sec in sections.items()}
    named = params.prepare.class_map if isinstance(params.prepare.class_map, str) else "custom"
    lines = [
        f"Corpus: {', '.join(corpora)}. Protocol: {PROTOCOLS.get(protocol, protocol)} (`split.protocol: {protocol}`). "
        f"Class map: {named if not params.prepare.corpora else 'per corpus'}"
        + "".join(
            f"; {name}: "
            + ", ".join(f"{c} ← {'/'.join(sorted(k for k, v in m.items() if v == c))}" for c in sorted(set(m.values())))
            for name, m in maps.items()
        )
        + ".",
        "",
    ]
    classes = sorted({u.label for u in utts})
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for u in utts:
        row = counts.setdefault((u.corpus, u.partition or "–"), dict.fromkeys(classes, 0))
        row[u.label] += 1
    lines += [f"| corpus | partition | {' | '.join(classes)} | all |", "|---|---|" + "---|" * (len(classes) + 1)]
    for (corpus, part), row in sorted(counts.items()):
        lines.append(f"| {corpus} | {part} | {' | '.join(str(row[c]) for c in classes)} | {sum(row.values())} |")
    return lines + [""]


def _seeds_line(m: dict) -> str:
    n = len(m["seeds"])
    note = " (fewer than the 3 seeds real-data settings default to: a demo setting)" if n < 3 else ""
    return f"Training seeds: {m['seeds']}{note}; the validation speakers of each fold do not depend on them."


def validation_lines(rows: list[Experiment]) -> list[str]:
    """Each fold's validation speakers and how they were chosen (:mod:`mger.core.splits`), one
    line per fold (a row whose folds validated on other speakers, such as an end-to-end row, gets
    its own lines), any split warning, and which rows' validation UA is cross-fitted."""
    by_split: dict[str, list[str]] = {}
    for e in rows:
        folds = {f: entry.get("val_speakers", []) for f, entry in e.metrics["folds"].items()}
        by_split.setdefault(json.dumps(folds, sort_keys=True), []).append(e.name)
    entries = [entry for e in rows for entry in e.metrics["folds"].values()]
    how = sorted({entry["validation"] for entry in entries if entry.get("validation")})
    lines = [
        "Validation speakers (carved from each fold's training data by fold and `split.seed`"
        + (f"; {'; '.join(how)}" if how else "")
        + "):",
        "",
    ]
    for i, (folds, names) in enumerate(sorted(by_split.items(), key=lambda kv: -len(kv[1]))):
        if len(by_split) > 1:
            lines.append(f"- {'most experiments' if i == 0 else 'experiments ' + ', '.join(names)}:")
        indent = "  " if len(by_split) > 1 else ""
        split = json.loads(folds)
        lines += [
            f"{indent}- fold {f}: validation {', '.join(split[f]) or 'not recorded'}"
            for f in sorted(split, key=lambda f: (len(f), f))
        ]
    lines.append("")
    for warning in sorted({entry["split_warning"] for entry in entries if entry.get("split_warning")}):
        lines += [f"**Warning**: {warning}.", ""]
    crossed = [e.name for e in rows if e.metrics.get("validation_scoring", "").startswith("cross-fitted")]
    if crossed:
        lines += [
            f"Validation UA of {', '.join(crossed)} is cross-fitted: fusion weights fitted on one half of the "
            "validation utterances score the other half (test predictions use weights fitted on all of them).",
            "",
        ]
    return lines


def reference_of(e: Experiment, rows: list[Experiment]) -> Experiment | None:
    """The linear probe on the same inputs (speech, text or both; same encoders and speech store)
    as ``e``: a fusion row's reference is the bimodal probe on its store, never a unimodal one."""
    m = e.metrics
    if m["model"] == "probe":
        return None
    inputs = model_kind(m["model"]).reads
    probes = _probes(rows, inputs, m)
    # the probe on the model's own levels (e.g. openSMILE functionals), else on the utterance level, else any
    for wanted in (m["speech_levels"], ["utterance"]):
        same = [x for x in probes if x.metrics["speech_levels"] == wanted or inputs == "text"]
        if same:
            return same[0]
    return probes[0] if probes else None


def _probes(rows: list[Experiment], inputs: str, like: dict) -> list[Experiment]:
    """Every linear probe on ``inputs`` (speech, text or both) of the features ``like`` reads."""
    want = inputs_read(
        {"model": "probe", "probe": inputs, "features": like.get("features"), "speech_store": speech_store(like)}
    )
    return [
        x
        for x in rows
        if x.metrics["model"] == "probe" and x.metrics["probe"] == inputs and inputs_read(x.metrics) == want
    ]


def reference_lines(rows: list[Experiment]) -> list[str]:
    """Per speech features: the best audio-only model and the best fusion model, each chosen by
    validation UA, against its linear probe on the same inputs (paired tests on test, Holm-adjusted
    over this table)."""
    lines = [
        "## The best models against their linear-probe references",
        "",
        "Per speech features, the audio-only and the fusion model with the highest **validation** UA, "
        "against the linear probe on the same inputs (an audio model: the speech probe on its store; a "
        "fusion model: the speech + text probe on its store), by paired approximate randomisation on the "
        "test predictions; Δ in UA points; Holm: adjusted over this table.",
        "",
        "| speech features | group | best by validation | reference | Δ UA | p | Holm p |",
        "|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, dict[str, list[Experiment]]] = {}
    for e in rows:
        group = "audio only" if is_audio_only(e.metrics) else "fusion" if is_fusion(e.metrics) else None
        if group:
            groups.setdefault(inputs_read(e.metrics), {}).setdefault(group, []).append(e)
    best: list[tuple[str, Experiment]] = []
    for _, by_group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        for group, members in sorted(by_group.items()):
            best.append((group, max(members, key=lambda e: (e.metrics["validation"]["ua"]["mean"], e.name))))
    pairs = [(e, ref) for _, e in best if (ref := reference_of(e, rows)) is not None]
    tested = paired_tests(pairs)
    tests = iter(tested)
    for group, e in best:
        ref = reference_of(e, rows)
        if ref is None:
            what = "bimodal (speech + text)" if group == "fusion" else "speech"
            lines.append(
                f"| {encoder_cell(e.metrics)} | {group} | {e.name} | no {what} probe on these inputs | – | – | – |"
            )
            continue
        test = next(tests)
        cells = (
            f"not paired ({test}) | – | –"
            if isinstance(test, str)
            else f"{100 * test['ua']['delta']:+.2f} | {p_cells(test['ua']['p'], test['ua']['p_holm'])}"
        )
        lines.append(f"| {encoder_cell(e.metrics)} | {group} | {e.name} | {ref.name} | {cells} |")
    return lines + ["", findings([(e.name, ref.name) for e, ref in pairs], tested), ""]


def main_table(rows: list[Experiment]) -> list[str]:
    """The main table, and the sentence naming the differences to the probes that hold after Holm."""
    pairs = [(e, ref) for e in rows if (ref := reference_of(e, rows)) is not None]
    tests = dict(zip((e.name for e, _ in pairs), zip(pairs, paired_tests(pairs))))
    lines = [
        "| experiment | system | speech features | WA | UA | UA 95% CI (widest; which) | F1 | validation UA | "
        "Δ UA vs its probe (p, Holm p; probe) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in rows:
        m = e.metrics
        if e.name not in tests:
            versus = "reference" if m["model"] == "probe" else "–"
        else:
            (_, ref), test = tests[e.name]
            versus = (
                f"not paired ({test})"
                if isinstance(test, str)
                else f"{100 * test['ua']['delta']:+.2f} (p {format_p(test['ua']['p'])}, Holm "
                f"{format_p(test['ua']['p_holm'])}; {ref.name})"
            )
        lines.append(
            f"| {e.name} | {row_label(m)} | {encoder_cell(m)} | {mean_sd(m['wa'])} | {mean_sd(m['ua'])} | "
            f"{ci_cell(m)} | {mean_sd(m['f1'])} | {mean_sd(m['validation']['ua'])} | {versus} |"
        )
    found = findings([(e.name, ref.name) for e, ref in pairs], [t for _, t in tests.values()])
    return lines + ["", found]


def detail_lines(rows: list[Experiment]) -> list[str]:
    """Pooled metrics and per-class recall; improvised vs scripted only where the metrics hold
    that breakdown (IEMOCAP rows, ``extras.improvised``)."""
    classes = rows[0].metrics["classes"]
    kinds_known = any("by_improvised" in e.metrics for e in rows)
    head = f"| experiment | pooled WA | pooled UA | {' | '.join('recall ' + c for c in classes)} |"
    lines = [
        "## Pooled over folds, per-class recall" + (", improvised vs scripted" if kinds_known else ""),
        "",
        "Pooled: all folds' test utterances at once (mean over seeds); recall per class pooled likewise."
        + (
            " Improvised / scripted: pooled WA and UA over the test utterances of each kind (n utterances). "
            "Scripted IEMOCAP sessions repeat the same lines across sessions, which favours text under "
            "leave-one-session-out."
            if kinds_known
            else ""
        ),
        "",
        head + (" improvised WA / UA (n) | scripted WA / UA (n) |" if kinds_known else ""),
        "|---|---|---|" + "---|" * len(classes) + ("---|---|" if kinds_known else ""),
    ]
    for e in rows:
        m = e.metrics
        recall = " | ".join(pct(m["per_class_recall"][c]) for c in classes)
        line = f"| {e.name} | {pct(m['pooled']['wa'])} | {pct(m['pooled']['ua'])} | {recall} |"
        if kinds_known:
            kinds = [m.get("by_improvised", {}).get(k) for k in ("improvised", "scripted")]
            cells = [f"{pct(k['wa'])} / {pct(k['ua'])} ({k['n']})" if k else "–" for k in kinds]
            line += f" {cells[0]} | {cells[1]} |"
        lines.append(line)
    return lines + [""]


def interval_lines(rows: list[Experiment]) -> list[str]:
    """Every row's three 95% intervals of fold-averaged UA, and which is the widest."""
    lines = [
        "## Intervals of test UA",
        "",
        "Three 95% intervals of fold-averaged UA (%): (1) bootstrap over test utterances within folds, "
        "**conditional on the trained models** (it ignores training variance and that utterances of one "
        "dialogue or speaker are alike); (2) the bootstrap over whole dialogues within folds (a speaker where "
        "no dialogue is known; the unit is named), the same resample for every seed; (3) a t-interval over "
        "folds, seeds averaged first (n_folds − 1 degrees of freedom), which carries training variance and "
        "the variation between folds. The main table shows the widest.",
        "",
        "| experiment | UA | utterances (conditional) | clustered (unit) | t over folds | widest |",
        "|---|---|---|---|---|---|",
    ]
    for e in rows:
        m = e.metrics

        def cell(key: str) -> str:
            ci = m["ua"].get(key)
            return f"[{pct(ci[0])}, {pct(ci[1])}]" if ci else "–"

        unit = f" ({m['clustered_by']}s)" if m["ua"].get("ci95_clustered") else ""
        lines.append(
            f"| {e.name} | {mean_sd(m['ua'])} | {cell('ci95')} | {cell('ci95_clustered')}{unit} | "
            f"{cell('ci95_folds')} | {widest_interval(m)[2]} |"
        )
    return lines + [""]


def write_report(params: Params, only: Sequence[str] | None = None) -> Path:
    """reports/results.md, its figures and the headline figures DVC compares
    (``report.metrics``); ``only``: report these experiments alone."""
    rows = load_experiments(params, only)
    if not rows:
        raise StageError("train.experiments and train.finetuned_experiments are empty: nothing to report")
    figures = Path(params.report.figures)
    best = max(rows, key=lambda e: (e.metrics["validation"]["ua"]["mean"], e.name))
    table = main_table(rows)
    lines = _report_lines(params, rows, best, table, figures)
    plot_figures(rows, best, figures)
    out = Path(params.report.out)
    write_text_atomic(out, "\n".join(lines))
    write_json(params.report.metrics, headline(rows, best))
    print("\n".join(table))
    print(
        f"report: {len(rows)} experiments → {out}, figures in {figures}, headline figures in "
        f"{params.report.metrics}; best by validation UA: {best.name}"
    )
    return out


def _report_lines(
    params: Params, rows: list[Experiment], best: Experiment, table: list[str], figures: Path
) -> list[str]:
    """results.md's lines: the corpus, the main ``table``, the best system by validation, then
    each section."""
    first = rows[0].metrics
    models = {name: cfg.model for name, cfg in params.features.speech_stores.items()}
    return [
        results_title(params, first),  # cross-corpus: trained on X, tested on Y (models/report_corpus.py)
        "",
        _corpus_line(params, first),
        "",
        *manifest_lines(params, first),
        f"{protocol_sentence(params, first)} {_seeds_line(first)} WA = overall accuracy, "
        f"UA = mean per-class recall, F1 = macro-F1, all in %; WA, UA, F1 and validation UA: {SD_NOTE}. "
        f"Statistics: {METHOD}.",
        "",
        *validation_lines(rows),
        *table,
        "",
        "Δ UA vs its probe: the paired difference (points; approximate-randomisation p, and p adjusted by Holm's "
        "method over this column) to the linear probe on the same inputs and encoders (standardised logistic "
        "regression on utterance means, C chosen on validation; models/probe.py). A model that does not beat "
        "its probe has not earned its complexity. UA 95% CI: the widest of the row's three intervals (utterances: "
        "bootstrap conditional on the trained models; dialogues / speakers: clustered bootstrap; folds t: "
        't-interval over folds), see "Intervals of test UA".',
        "",
        *transcript_lines(  # WER beside the table, and the gold-vs-ASR pairs (docs/transcripts.md)
            params.transcribe.report, params.transcribe.source, [(e.metrics, e.predictions) for e in rows]
        ),
        f"Best system by **validation** UA (the test folds choose nothing): {best.name} (validation UA "
        f"{mean_sd(best.metrics['validation']['ua'])}; its test UA {mean_sd(best.metrics['ua'])}, {SD_NOTE}).",
        "",
        *reference_lines(rows),
        *ablation_lines(rows),
        *interval_lines(rows),
        *paper_lines(rows, models, params.finetune),
        *detail_lines(rows),
        *(published_lines(synthetic_corpus(params)) if reads_iemocap(params) else []),
        *layer_weight_lines(rows, figures),
        "![confusion of the best system by validation UA](figures/confusion_best.png)",
        "![granularity](figures/ua_by_granularity.png)",
        "![fusion](figures/ua_by_fusion.png)",
        "",
    ]


def headline(rows: list[Experiment], best: Experiment) -> dict:
    """The figures DVC compares across runs (``report.metrics``, ``dvc exp show``), in %: the
    best row by validation UA, then each row's test UA and WA and validation UA (means over folds)."""

    def figures(m: dict) -> dict:
        test = {"test_ua": round(100 * m["ua"]["mean"], 2), "test_wa": round(100 * m["wa"]["mean"], 2)}
        return test | {"val_ua": round(100 * m["validation"]["ua"]["mean"], 2)}

    return {"best_by_validation": {"experiment": best.name} | figures(best.metrics)} | {
        e.name: figures(e.metrics) for e in rows
    }


def layer_weight_lines(rows: list[Experiment], figures: Path) -> list[str]:
    """Rows that learned a weighted sum of encoder layers (``layer_weights: learned``): their
    mean softmax weight per stored layer, and ``layer_weights.png`` (every fold and seed as a
    point, the mean as a line); nothing when no row did."""
    weighted = [e for e in rows if e.metrics.get("layer_weights", {}).get("mode") == "learned"]
    if not weighted:
        return []
    lines = [
        "## Learned layer weights",
        "",
        "Softmax weights of the encoder layers each classifier learned with its own weights (SUPERB's "
        "weighted sum; hidden state 0 = the transformer's input), at its best validation epoch: the "
        "mean over folds and seeds (every one in the metrics JSON and the figure).",
        "",
        "| experiment | mean weight per layer (hidden state: weight) | heaviest |",
        "|---|---|---:|",
    ]
    for e in weighted:
        lw = e.metrics["layer_weights"]
        cells = ", ".join(f"{i}: {w:.3f}" for i, w in zip(lw["layers"], lw["mean"]))
        lines.append(f"| {e.name} | {cells} | {lw['layers'][int(np.argmax(lw['mean']))]} |")
    lines += ["", "![learned layer weights](figures/layer_weights.png)", ""]
    plot_layer_weights([e.metrics for e in weighted], figures / "layer_weights.png")
    return lines
