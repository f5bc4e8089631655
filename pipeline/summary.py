"""``mger summary``: the closing lines of ``make demo``, read from the stage reports."""

from __future__ import annotations

import json
from pathlib import Path

from mger.core.config import Params


def _read(path: str | Path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def print_summary(params: Params) -> None:
    quality = _read(params.prepare.report)
    if quality is None:
        print(f"no data-quality report at {params.prepare.report}: run `dvc repro` first")
        return
    classes = ", ".join(f"{k} {v}" for k, v in quality["per_class"].items())
    sections = quality.get("corpora") or {quality.get("corpus", "corpus"): quality}
    for name, q in sections.items():
        per_group = ", ".join(f"{k}: {v}" for k, v in q.get("per_group", {}).items())
        print(f"{name} {q['root']}: {q['kept']} utterances kept; {q['dropped']} dropped; per group {per_group}")
    print(f"manifest: {quality['kept']} utterances ({classes}); {quality['dropped']} dropped")
    asr = _read(params.transcribe.report)
    if asr and asr.get("wer") and asr["wer"]["overall"]["wer"] is not None:
        o = asr["wer"]["overall"]
        ci = " (95% CI {:.1f}-{:.1f})".format(*(100 * x for x in o["wer_ci95"])) if o.get("wer_ci95") else ""
        print(
            f"ASR transcripts ({asr['backend']}): WER {100 * o['wer']:.1f}%{ci}, CER {100 * o['cer']:.1f}% against "
            f"the gold text, {asr['n_empty']} empty; the pipeline reads the {params.transcribe.source} text"
        )
    align = _read(params.align.report)
    if align:
        print(
            f"alignment ({align['backend']}): {align['aligned']} aligned, {align['uniform_fallback']} uniform "
            f"fallback, {align['dropped']} dropped ({align.get('silence_or_noise', 0)} failed as silence or noise); "
            f"{align['audio_seconds_per_wall_second']}x real time"
        )
    evaluation = _read(params.align_eval.report)
    if evaluation and evaluation.get("n_words"):
        print(
            f"alignment accuracy: {evaluation['n_words']} words, onset median {evaluation['onset_median_ms']} ms, "
            f"{evaluation['onset_within_50ms']:.1%} within 50 ms, {evaluation['onset_within_20ms']:.1%} within 20 ms"
        )
    corpus = _read(params.align_eval_corpus.report)
    if corpus and corpus.get("n_words"):
        print(
            f"alignment vs the corpus's own .wdseg ({corpus['backend']}): {corpus['n_words']} words in "
            f"{corpus['n_utterances']} utterances ({corpus['wdseg_missing']} .wdseg missing, "
            f"{corpus['wdseg_malformed']} malformed), onset median {corpus['onset_median_ms']} ms, "
            f"{corpus['onset_within_50ms']:.1%} within 50 ms, signed median {corpus['onset_signed_median_ms']} ms"
        )
    from mger.features.cache import FeatureStore
    from mger.features.store_paths import frozen_store_files

    for store in frozen_store_files(params.features):
        if store.is_file():
            try:
                fs = FeatureStore(store)
                rows = ", ".join(f"{lv} {fs.n_rows(lv)}" for lv in fs.levels)
            except Exception as err:  # a damaged store is one line here, the summary goes on
                print(f"features {store}: unreadable ({str(err).splitlines()[0]}); run `mger cache verify {store}`")
                continue
            print(f"features {store}: {len(fs.utt_ids)} utterances, model {fs.attrs['model']}; rows: {rows}")
            print(f"  size: {fs.size_line()}")
    for name in params.finetune.variant_names:  # each fine-tuning variant's own reports
        reports = Path(params.finetune.variant(name).reports)
        folds = [r for r in (_read(reports / f"fold-{k}.json") for k in params.finetune.folds) if r]
        if folds:
            scores = ", ".join(f"fold {r['fold']} {r['results']['speech']['val_ua']:.3f}" for r in folds)
            what = f"fine-tuned speech encoders{f' ({name})' if len(params.finetune.variants) > 1 else ''}"
            print(f"{what} ({len(folds)} folds, each without its test data): validation UA {scores}")
    results = Path(params.report.out)
    if results.is_file():
        lines = results.read_text(encoding="utf-8").splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("| experiment | system")), len(lines))
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
        print(f"results ({results}; statistics, paired tests and the other sections are there):")
        print("\n".join(lines[start:end]))
        print("\n".join(line for line in lines if line.startswith("Best system by")))
