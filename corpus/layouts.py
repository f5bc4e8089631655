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

import csv
import io
import json
import multiprocessing
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from mger.core.audio import SAMPLE_RATE, read_audio, resample, write_audio
from mger.core.config_corpus import SynthConfig
from mger.corpus.crema_d import AUDIO_DIR, DEMOGRAPHICS, EMOTIONS, SENTENCES
from mger.corpus.meld import CLIP_FOLDERS, write_clip
from mger.corpus.ravdess import STATEMENTS
from mger.corpus.synth import (
    SYNTH_MARKER,
    VAD,
    Speaker,
    _cue,
    _prosody,
    _transcript,
    check_out,
    speak,
    synthesize_corpus,
)

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
    sample_rate: int = SAMPLE_RATE  # the file's rate (spoken at 16 kHz, resampled when another)


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
        audio = spoken.audio
        if item.sample_rate != SAMPLE_RATE:
            audio = np.clip(resample(audio.astype(np.float32) / 32768.0, SAMPLE_RATE, item.sample_rate), -1.0, 1.0)
        write_audio(root / item.path, audio, item.sample_rate)
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


# --- MSP-Podcast, MELD and csv (readers: corpus/msp_podcast.py, corpus/meld.py, corpus/csv_corpus.py)

_MSP_CODES = {"N": "neu", "H": "hap", "A": "ang", "S": "sad", "U": "sur", "O": "oth", "X": "oth"}  # → prosody
_MSP_WEIGHTS = {"N": 0.33, "H": 0.2, "A": 0.15, "S": 0.15, "U": 0.07, "O": 0.05, "X": 0.05}
_MSP_SPLITS = ("Train", "Development", "Test1", "Train", "Train", "Test2")  # by speaker, in turn


def _draw(weights: dict[str, float], rng: np.random.Generator) -> str:
    codes = list(weights)
    p = np.array([weights[c] for c in codes])
    return codes[int(rng.choice(len(codes), p=p / p.sum()))]


def _csv_line(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def write_msp_podcast(out: Path, cfg: SynthConfig, force: bool = False) -> int:
    """MSP-Podcast's layout: ``Audios/MSP-PODCAST_{podcast}_{segment}.wav`` (one podcast per
    speaker), ``Labels/labels_consensus.csv`` (classes N H A S U and the O/X rows the reader
    drops; ratings 1-7; the last speaker's SpkrID/Gender ``Unknown`` when there are 3 or
    more), ``Transcripts/<stem>.txt`` for about four segments in five (no bracket markers:
    automatic transcripts have none).  Partitions by speaker: Train, Development, Test1, ..."""
    t0 = time.perf_counter()
    fresh_output(out, "msp_podcast", cfg.seed, force, own=lambda n: n in ("Audios", "Labels", "Transcripts"))
    n_spk, per = layout_size(cfg)
    genders = ["F" if i % 2 == 0 else "M" for i in range(n_spk)]
    plans: list[list[Planned]] = []
    rows = ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"]
    (out / "Transcripts").mkdir()
    for i in range(n_spk):
        unknown = n_spk >= 3 and i == n_spk - 1
        spk, gender = ("Unknown", "Unknown") if unknown else (str(100 + i), "Female" if genders[i] == "F" else "Male")
        plan = []
        for k in range(per):
            rng = np.random.default_rng([cfg.seed, i, k, 31])
            code = _draw(_MSP_WEIGHTS, rng)
            stem = f"MSP-PODCAST_{i + 1:04d}_{k + 1:04d}"
            text = _transcript(_MSP_CODES[code], rng, cfg.max_sentences_per_turn)
            plan.append(Planned(f"Audios/{stem}.wav", stem, _MSP_CODES[code], text))
            val, act, dom = (float(np.clip(1.5 * x - 0.5 + rng.normal(0, 0.4), 1, 7)) for x in VAD[_MSP_CODES[code]])
            rows.append(f"{stem}.wav,{code},{act:.1f},{val:.1f},{dom:.1f},{spk},{gender},{_MSP_SPLITS[i % 6]}\n")
            if rng.random() < 0.8:
                words = " ".join(w for w in text.split() if not w.startswith("["))
                (out / "Transcripts" / f"{stem}.txt").write_text(words.lower() + "\n", encoding="utf-8")
        plans.append(plan)
    n, seconds = speak_layout(out, cfg.seed, voices(genders, cfg.seed), plans)
    (out / "Labels").mkdir()
    (out / "Labels" / "labels_consensus.csv").write_text("".join(rows), encoding="utf-8")
    announce("msp_podcast", n, n_spk, seconds, t0, out)
    return n


_MELD_NAMES = ("Chandler", "Joey", "Monica", "Rachel", "Ross", "Phoebe", "Janice", "Gunther", "Mike", "Carol")
_MELD_GENDERS = ("M", "M", "F", "F", "M", "F", "F", "M", "M", "F")
_MELD_CODES = {"neutral": "neu", "joy": "hap", "surprise": "sur", "anger": "ang", "sadness": "sad"}
_MELD_CODES |= {"disgust": "oth", "fear": "oth"}
_MELD_WEIGHTS = {"neutral": 0.4, "joy": 0.17, "surprise": 0.1, "anger": 0.12, "sadness": 0.11}
_MELD_WEIGHTS |= {"disgust": 0.05, "fear": 0.05}
_MELD_SPLITS = ("train", "dev", "test", "train", "train")  # by dialogue, in turn
MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"


def _meld_quirk(text: str, rng: np.random.Generator) -> str:
    """The release's mis-encodings, on about half the apostrophes: ``\\x92`` or ``â€™`` for ’."""
    if "'" not in text or rng.random() < 0.5:
        return text
    return text.replace("'", "\x92" if rng.random() < 0.5 else "\u00e2\u20ac\u2122")


def write_meld(out: Path, cfg: SynthConfig, force: bool = False) -> int:
    """MELD.Raw's layout: ``{train,dev,test}_sent_emo.csv`` and the clips ``dia{D}_utt{U}.mp4``
    (AAC in mp4, through PyAV) in ``train_splits/``, ``dev_splits_complete/`` and
    ``output_repeated_splits_test/``.  Speakers two by two hold dialogues of up to 6 turns (fewer
    when the corpus is tiny, so that there are at least 3 dialogues);
    dialogues go to train, dev, test in turn; some apostrophes are written mis-encoded as in
    the release (the reader repairs them)."""
    t0 = time.perf_counter()
    folders = set(CLIP_FOLDERS.values()) | {f"{s}_sent_emo.csv" for s in CLIP_FOLDERS}
    fresh_output(out, "meld", cfg.seed, force, own=lambda n: n in folders)
    n_spk, per = layout_size(cfg)
    n_spk -= n_spk % 2
    plans: list[list[Planned]] = [[] for _ in range(n_spk)]
    rows: dict[str, list[str]] = {s: [MELD_HEADER] for s in CLIP_FOLDERS}
    dialogue_ids = dict.fromkeys(CLIP_FOLDERS, 0)
    d, turns = 0, max(1, min(6, n_spk * per // 3))  # at least 3 dialogues: every split gets one
    for pair in range(n_spk // 2):
        for start in range(0, 2 * per, turns):
            split = _MELD_SPLITS[d % len(_MELD_SPLITS)]
            dia, d = dialogue_ids[split], d + 1
            dialogue_ids[split] += 1
            for u in range(min(turns, 2 * per - start)):
                i = 2 * pair + (start + u) % 2
                rng = np.random.default_rng([cfg.seed, i, start + u, 37])
                emotion = _draw(_MELD_WEIGHTS, rng)
                code = _MELD_CODES[emotion]
                text = _transcript(code, rng, cfg.max_sentences_per_turn)
                plans[i].append(
                    Planned(f"{CLIP_FOLDERS[split]}/dia{dia}_utt{u}.wav", f"{split}_dia{dia}_utt{u}", code, text)
                )
                sentiment = {"neutral": "neutral", "joy": "positive", "surprise": "positive"}.get(emotion, "negative")
                times = [f"00:{u:02d}:0{1 + u % 8},000", f"00:{u:02d}:0{2 + u % 8},500"]
                row = [str(len(rows[split])), _meld_quirk(text, rng), _MELD_NAMES[i % 10], emotion, sentiment]
                rows[split].append(_csv_line(row + [str(dia), str(u), "1", str(pair + 1), *times]))
    genders = [_MELD_GENDERS[i % 10] for i in range(n_spk)]
    n, seconds = speak_layout(out, cfg.seed, voices(genders, cfg.seed), plans)
    for plan in plans:
        for item in plan:
            wav = out / item.path
            write_clip(wav.with_suffix(".mp4"), read_audio(wav))
            wav.unlink()
    for split, lines in rows.items():
        (out / f"{split}_sent_emo.csv").write_text("".join(lines), encoding="utf-8")
    announce("meld", n, n_spk, seconds, t0, out)
    return n


_CSV_CODES = ("neu", "hap", "ang", "sad")


def write_csv(out: Path, cfg: SynthConfig, force: bool = False) -> int:
    """A corpus listed in one table: ``corpus.csv`` (``utt_id,wav,label,speaker,gender,text``;
    wav paths relative to the table, ``wav/<speaker>/<utt_id>.wav``); labels neu hap ang sad
    in turn.  ``prepare.root`` is ``<out>/corpus.csv``."""
    t0 = time.perf_counter()
    fresh_output(out, "csv", cfg.seed, force, own=lambda n: n in ("wav", "corpus.csv"))
    n_spk, per = layout_size(cfg)
    genders = ["F" if i % 2 == 0 else "M" for i in range(n_spk)]
    plans: list[list[Planned]] = []
    lines = [_csv_line(["utt_id", "wav", "label", "speaker", "gender", "text"])]
    for i in range(n_spk):
        plan = []
        for k in range(per):
            rng = np.random.default_rng([cfg.seed, i, k, 41])
            code = _CSV_CODES[(i + k) % len(_CSV_CODES)]
            uid, text = f"spk{i:02d}_{k:03d}", _transcript(code, rng, cfg.max_sentences_per_turn)
            plan.append(Planned(f"wav/spk{i:02d}/{uid}.wav", uid, code, text))
            lines.append(_csv_line([uid, f"wav/spk{i:02d}/{uid}.wav", code, f"spk{i:02d}", genders[i], text]))
        plans.append(plan)
    n, seconds = speak_layout(out, cfg.seed, voices(genders, cfg.seed), plans)
    (out / "corpus.csv").write_text("".join(lines), encoding="utf-8")
    announce("csv", n, n_spk, seconds, t0, out)
    return n


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


# --- CREMA-D (reader: mger.corpus.crema_d) ------------------------------------------------
# Our choice: the two emotions without a synth prosody of their own borrow the closest one
# (disgust: frustration's; fear: surprise's, high and wide).  The level (LO MD HI XX) is a
# name only: it does not change the prosody.
CREMA_D_PROSODY = {"ANG": "ang", "DIS": "fru", "FEA": "sur", "HAP": "hap", "NEU": "neu", "SAD": "sad"}
CREMA_D_LEVELS = ("XX", "LO", "MD", "HI")


def crema_d_plan(n_speakers: int, per_speaker: int) -> tuple[list[str], list[str], list[list[Planned]]]:
    """(actor ids 1001.., genders M/F in turn, each actor's files): emotions in turn (balanced),
    each with the next of the 12 prompts; level XX for the first 72 files of an actor (every
    sentence × emotion once), then LO, MD, HI (unlike the real corpus, on every sentence)."""
    if n_speakers > 91 or per_speaker > 72 * len(CREMA_D_LEVELS):
        raise ValueError(
            f"synth --layout crema_d: {n_speakers} actors x {per_speaker} files; CREMA-D names allow at most "
            f"91 actors (1001..1091) x {72 * len(CREMA_D_LEVELS)} files (synth.sessions, dialogs, turns)"
        )
    emotions, sentences = list(EMOTIONS), list(SENTENCES)
    actors = [str(1001 + a) for a in range(n_speakers)]
    plans = []
    for a, actor in enumerate(actors):
        plan = []
        for i in range(per_speaker):
            emo = emotions[(i + a) % 6]
            sent = sentences[(i // 6 + a) % 12]
            stem = f"{actor}_{sent}_{emo}_{CREMA_D_LEVELS[i // 72]}"
            plan.append(Planned(f"{AUDIO_DIR}/{stem}.wav", stem, CREMA_D_PROSODY[emo], SENTENCES[sent]))
        plans.append(plan)
    return actors, ["M" if a % 2 == 0 else "F" for a in range(n_speakers)], plans


def write_crema_d(out: Path, cfg: SynthConfig, force: bool = False) -> int:
    """CREMA-D's layout: ``AudioWAV/{actor}_{SENTENCE}_{EMOTION}_{LEVEL}.wav`` (16 kHz, as the
    release) and ``VideoDemographics.csv`` (``ActorID,Age,Sex,Race,Ethnicity``)."""
    t0 = time.perf_counter()
    actors, genders, plans = crema_d_plan(*layout_size(cfg))
    fresh_output(out, "crema_d", cfg.seed, force, own=lambda name: name in (AUDIO_DIR, DEMOGRAPHICS))
    rng = np.random.default_rng([cfg.seed, 31])
    rows = ["ActorID,Age,Sex,Race,Ethnicity"] + [
        f"{actor},{int(rng.integers(20, 75))},{'Male' if g == 'M' else 'Female'},Unknown,Not Hispanic"
        for actor, g in zip(actors, genders)
    ]
    (out / DEMOGRAPHICS).write_text("\n".join(rows) + "\n", encoding="utf-8")
    n, seconds = speak_layout(out, cfg.seed, voices(genders, cfg.seed), plans)
    announce("crema_d", n, len(actors), seconds, t0, out)
    return n


# --- RAVDESS (reader: mger.corpus.ravdess) -------------------------------------------------
# Our choice, as for CREMA-D: calm borrows "other"'s prosody (a neutral-like one), fearful
# excitement's (high, fast), disgust frustration's, surprised surprise's.  Intensity is a name only.
RAVDESS_PROSODY = {
    "01": "neu",
    "02": "oth",
    "03": "hap",
    "04": "sad",
    "05": "ang",
    "06": "exc",
    "07": "fru",
    "08": "sur",
}
RAVDESS_RATE = 48000  # the release's audio rate


def ravdess_plan(n_speakers: int, per_speaker: int) -> list[list[Planned]]:
    """Each actor's audio-only speech files: the 8 emotions in turn (balanced), then the
    statement, the intensity (neutral: normal only) and the repetition, so every name is new
    (past the release's 60 files an actor, repetitions go on: 03, 04, ...)."""
    if n_speakers > 24 or per_speaker > 99 * 32:
        raise ValueError(
            f"synth --layout ravdess: {n_speakers} actors x {per_speaker} files; RAVDESS names allow at most "
            "24 actors (Actor_01..Actor_24) x 3168 files (synth.sessions, dialogs, turns)"
        )
    plans = []
    for a in range(n_speakers):
        actor, plan = f"{a + 1:02d}", []
        for i in range(per_speaker):
            emo = f"{(i + a) % 8 + 1:02d}"
            statement = f"{(i // 8) % 2 + 1:02d}"
            intensity, rep = ("01", i // 16 + 1) if emo == "01" else (f"{(i // 16) % 2 + 1:02d}", i // 32 + 1)
            stem = f"03-01-{emo}-{intensity}-{statement}-{rep:02d}-{actor}"
            plan.append(
                Planned(f"Actor_{actor}/{stem}.wav", stem, RAVDESS_PROSODY[emo], STATEMENTS[statement], RAVDESS_RATE)
            )
        plans.append(plan)
    return plans


def write_ravdess(out: Path, cfg: SynthConfig, force: bool = False) -> int:
    """RAVDESS's layout: ``Actor_XX/03-01-EE-II-SS-RR-XX.wav`` (audio-only speech, 48 kHz as
    the release; odd actors male voices, even female)."""
    t0 = time.perf_counter()
    n_speakers, per_speaker = layout_size(cfg)
    plans = ravdess_plan(n_speakers, per_speaker)
    fresh_output(out, "ravdess", cfg.seed, force, own=lambda name: re.fullmatch(r"Actor_\d\d", name) is not None)
    genders = ["M" if (a + 1) % 2 else "F" for a in range(n_speakers)]
    n, seconds = speak_layout(out, cfg.seed, voices(genders, cfg.seed), plans)
    announce("ravdess", n, n_speakers, seconds, t0, out)
    return n


LAYOUTS: dict[str, LayoutWriter] = {
    "iemocap": write_iemocap,
    "msp_podcast": write_msp_podcast,
    "meld": write_meld,
    "crema_d": write_crema_d,
    "ravdess": write_ravdess,
    "csv": write_csv,
}


def write_layout(cfg: SynthConfig, out: str | Path | None = None, force: bool = False) -> int:
    """``mger synth``: write ``cfg.layout``'s synthetic corpus under ``out`` (default ``cfg.out``)."""
    if cfg.layout not in LAYOUTS:
        raise ValueError(f"synth.layout: {cfg.layout!r} is not a layout (known: {', '.join(LAYOUTS)})")
    return LAYOUTS[cfg.layout](Path(out or cfg.out), cfg, force)
