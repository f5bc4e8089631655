"""``mger synth --layout <corpus>``: the synthetic corpus in each real corpus's layout.

One writer per layout, one signature (:data:`LayoutWriter`): ``write(out, cfg, force) -> int``
(the number of utterances written), registered in :data:`LAYOUTS` under the name its reader
registers (``prepare.corpus``).  ``iemocap`` is :func:`mger.corpus.synth.synthesize_corpus`
unchanged (``make demo``); the others reuse its eSpeak utterance generation
(:func:`mger.corpus.synth.speak`, the emotion prosody of :func:`mger.corpus.synth._prosody`,
per-speaker voices and offsets) and its safety marker (``.mger-synth.json``,
:func:`mger.corpus.synth.check_out`: synth never replaces a folder it did not write).

Size: a non-IEMOCAP layout has as many speakers and utterances as the IEMOCAP layout of the
same ``synth`` params (:func:`layout_size`: two speakers per session, a session's turns split
between them).  Every speaker is spoken in a fresh process, so the same seed gives
byte-identical files whatever ``n_jobs`` is (eSpeak keeps global state across calls).
Each output also holds ``truth/words.jsonl`` (eSpeak's word times, keyed by the reader's
utterance id), outside the corpus's own tree.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from mger.core.audio import SAMPLE_RATE, write_audio
from mger.core.config_corpus import SynthConfig
from mger.corpus.synth import SYNTH_MARKER, Speaker, _cue, _prosody, check_out, speak, synthesize_corpus

LayoutWriter = Callable[[Path, SynthConfig, bool], int]


def layout_size(cfg: SynthConfig) -> tuple[int, int]:
    """(speakers, utterances per speaker) of a non-IEMOCAP layout for ``cfg``: those of the
    IEMOCAP layout of the same params (two speakers per session, a session's turns split
    between them; the defaults: 10 speakers × 84)."""
    return 2 * cfg.sessions, max(1, cfg.dialogs_per_session * cfg.turns_per_dialog // 2)


@dataclass(frozen=True)
class Planned:
    """One utterance a layout writer speaks: its file (relative to the corpus root), the id
    its reader gives it, the synth emotion code that sets its prosody (a key of
    :data:`mger.corpus.synth.PROSODY`: neu hap exc ang sad fru sur oth) and its words."""

    path: str
    utt_id: str
    code: str
    text: str


def voices(genders: list[str], seed: int) -> list[Speaker]:
    """One eSpeak voice per speaker (``F``/``M``: ``en-us+f1..5`` / ``en-us+m1..7`` in turn),
    each with its own fixed rate and pitch offset, as the IEMOCAP layout's actors."""
    out, counts = [], {"F": 0, "M": 0}
    for i, gender in enumerate(genders):
        rng = np.random.default_rng([seed, i, 17])
        k = counts[gender]
        counts[gender] += 1
        voice = f"en-us+f{k % 5 + 1}" if gender == "F" else f"en-us+m{k % 7 + 1}"
        out.append(Speaker(gender, voice, rng.uniform(-10, 10), rng.uniform(-6, 6)))
    return out


def _speak_speaker(root: Path, seed: int, index: int, speaker: Speaker, plan: list[Planned]) -> tuple[list[str], float]:
    """Speak one speaker's utterances into ``root`` (in a fresh process: see the module doc);
    return (truth JSON lines, audio seconds)."""
    truth, seconds = [], 0.0
    for k, item in enumerate(plan):
        rng = np.random.default_rng([seed, index, k, 23])
        cue_word, cue = _cue(item.code, item.text, rng)
        spoken = speak(item.text, speaker, _prosody(item.code, speaker, rng), cue_word, cue, rng)
        write_audio(root / item.path, spoken.audio)
        truth.append(json.dumps({"utt_id": item.utt_id, "words": [w.__dict__ for w in spoken.words]}))
        seconds += len(spoken.audio) / SAMPLE_RATE
    return truth, seconds


def speak_layout(
    root: Path, seed: int, speakers: list[Speaker], plans: list[list[Planned]], n_jobs: int = 2
) -> tuple[int, float]:
    """Speak ``plans[i]`` with ``speakers[i]``, each speaker in a fresh process; write
    ``truth/words.jsonl`` (speaker order); return (utterances, audio seconds)."""
    ctx = multiprocessing.get_context("spawn")
    results: dict[int, tuple[list[str], float]] = {}
    with ProcessPoolExecutor(max_workers=max(1, n_jobs), mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = {
            pool.submit(_speak_speaker, root, seed, i, spk, plan): i
            for i, (spk, plan) in enumerate(zip(speakers, plans))
        }
        for fut in tqdm(as_completed(futures), total=len(futures), desc="synth", unit="speaker", file=sys.stderr):
            results[futures[fut]] = fut.result()
    lines = [line for i in sorted(results) for line in results[i][0]]
    (root / "truth").mkdir(parents=True, exist_ok=True)
    (root / "truth" / "words.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines), sum(r[1] for r in results.values())


def fresh_output(root: Path, layout: str, seed: int, force: bool, own: Callable[[str], bool]) -> None:
    """Check ``root`` may be replaced (:func:`mger.corpus.synth.check_out` with this layout's
    top-level entries ``own``), empty it and write the synth marker first."""
    check_out(root, force, own=lambda name: name in (SYNTH_MARKER, "truth") or own(name))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / SYNTH_MARKER).write_text(json.dumps({"layout": layout, "seed": seed}) + "\n", encoding="utf-8")


def announce(layout: str, n: int, speakers: int, seconds: float, t0: float, root: Path) -> None:
    print(
        f"synth --layout {layout}: {n} utterances, {speakers} speakers, {seconds / 60:.1f} min of audio "
        f"in {time.perf_counter() - t0:.1f}s → {root}"
    )


def write_iemocap(out: Path, cfg: SynthConfig, force: bool = False) -> int:
    """The IEMOCAP_full_release layout: :func:`mger.corpus.synth.synthesize_corpus` as before."""
    return synthesize_corpus(
        out=out,
        seed=cfg.seed,
        sessions=cfg.sessions,
        dialogs_per_session=cfg.dialogs_per_session,
        turns_per_dialog=cfg.turns_per_dialog,
        max_sentences_per_turn=cfg.max_sentences_per_turn,
        force=force,
    )


def _not_written(layout: str) -> LayoutWriter:
    def write(out: Path, cfg: SynthConfig, force: bool = False) -> int:
        raise NotImplementedError(
            f"mger synth --layout {layout}: this layout has no writer yet (issue #32); "
            f"written so far: {', '.join(k for k, w in LAYOUTS.items() if not getattr(w, 'stub', False))}"
        )

    write.stub = True  # type: ignore[attr-defined]
    return write


def write_crema_d(out: Path, cfg: SynthConfig, force: bool = False) -> int:
    """CREMA-D's layout (below, with its reader :mod:`mger.corpus.crema_d`)."""
    return _not_written("crema_d")(out, cfg, force)


def write_ravdess(out: Path, cfg: SynthConfig, force: bool = False) -> int:
    """RAVDESS's layout (below, with its reader :mod:`mger.corpus.ravdess`)."""
    return _not_written("ravdess")(out, cfg, force)


LAYOUTS: dict[str, LayoutWriter] = {
    "iemocap": write_iemocap,
    "msp_podcast": _not_written("msp_podcast"),
    "meld": _not_written("meld"),
    "crema_d": write_crema_d,
    "ravdess": write_ravdess,
    "csv": _not_written("csv"),
}


def write_layout(cfg: SynthConfig, out: str | Path | None = None, force: bool = False) -> int:
    """``mger synth``: write ``cfg.layout``'s synthetic corpus under ``out`` (default ``cfg.out``)."""
    if cfg.layout not in LAYOUTS:
        raise ValueError(f"synth.layout: {cfg.layout!r} is not a layout (known: {', '.join(LAYOUTS)})")
    return LAYOUTS[cfg.layout](Path(out or cfg.out), cfg, force)
