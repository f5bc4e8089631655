"""A synthetic corpus in the exact layout of IEMOCAP_full_release, spoken by eSpeak NG.

IEMOCAP is licensed and absent on most machines; this corpus exists everywhere and goes
through exactly the same reader (:mod:`mger.corpus.iemocap`).

Generative design
-----------------
* **Structure.** ``sessions`` sessions, each with two actors (one female, one male eSpeak
  voice variant, e.g. ``en-us+f3`` / ``en-us+m3``, different in every session, each with a
  fixed per-speaker offset of rate and pitch).  Each session has ``dialogs_per_session``
  dialogs (every third one scripted: ``Ses01M_script01_1``; the others improvised:
  ``Ses01F_impro01``; the prefix letter alternates and is *not* the speaker), each of
  ``turns_per_dialog`` turns alternating between the two actors.  Utterance ids are
  ``<dialog>_F000``/``<dialog>_M000``, numbered per speaker.
* **Labels.** Each turn draws an EmoEvaluation code: neu .24, hap .09, exc .12, ang .17,
  sad .16, fru .09, sur .03, xxx .08, oth .02 (so about 78% survive the default 4-class
  map).  Valence/activation/dominance are means of two annotators' integer ratings drawn
  around the code's typical point (anger: low valence, high activation and dominance...).
* **Emotion in prosody.** Every code has a base rate / pitch / pitch range / volume
  (:data:`PROSODY`): anger fast and loud, happiness and excitement high and wide, sadness
  slow, low, narrow and soft.  Per-speaker offsets and per-utterance Gaussian jitter make
  the acoustic cue imperfect; it separates activation better than valence.
* **Emotion in words.** An utterance of an emotion class uses a sentence from that class's
  pool with probability 0.55, another class's emotional sentence with 0.10 (a misleading
  text), and otherwise a neutral sentence; neutral turns use neutral text 90% of the time.
  Words separate valence better than activation: the two modalities are complementary.
* **Word-local cue.** With probability 0.35 (emotion classes) or 0.08 (others) one word of
  four or more letters is spoken through SSML ``<prosody>`` (anger: louder and higher;
  happiness: much higher; sadness: slower and softer; neutral: louder), a cue that only
  word-level pooling localises.
* **Transcripts.** Some lines carry IEMOCAP-style markers (``[LAUGHTER]``, ``[BREATHING]``)
  that are not spoken; some contain digits, hyphenated words and contractions as spoken.
* **Audio.** eSpeak's 22,050 Hz output is resampled to 16 kHz (the project's audio reader
  method), padded with 0.15–0.4 s of silence each side and given -60 dBFS Gaussian noise.
* **Ground truth** (``DIR/truth/words.jsonl``, outside the IEMOCAP tree): word start/end in
  seconds from eSpeak's WORD events (``sample`` field, exact).  eSpeak merges some short
  function words into one WORD event ("in the"); such a group is one truth entry whose
  ``word`` holds the words with a space.  Ends are the next WORD event or the first pause
  phoneme after the group, whichever comes first.  The ``.wdseg`` files split a merged
  group's span across its words in proportion to letters.

The same seed gives byte-identical files: every utterance draws from its own
``numpy.random.Generator`` seeded by (seed, utterance number).
"""

from __future__ import annotations

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

from mger.core.audio import SAMPLE_RATE, resample, write_audio
from mger.corpus.espeak import EVENT_PHONEME, EVENT_WORD, SAMPLE_RATE as ESPEAK_RATE, Event, Prosody, engine

LABEL_PROBS: dict[str, float] = {
    "neu": 0.24,
    "hap": 0.09,
    "exc": 0.12,
    "ang": 0.17,
    "sad": 0.16,
    "fru": 0.09,
    "sur": 0.03,
    "xxx": 0.08,
    "oth": 0.02,
}
# (rate words/min, pitch 0-99, range 0-99, volume 0-200)
PROSODY: dict[str, tuple[int, int, int, int]] = {
    "neu": (165, 45, 45, 100),
    "hap": (182, 61, 76, 115),
    "exc": (190, 64, 82, 125),
    "ang": (190, 52, 64, 150),
    "sad": (135, 36, 22, 75),
    "fru": (175, 48, 50, 125),
    "sur": (180, 68, 85, 115),
    "oth": (165, 50, 50, 100),
}
JITTER = (14.0, 7.0, 12.0, 18.0)
# Typical (valence, activation, dominance) per code, on IEMOCAP's 1-5 scale.
VAD: dict[str, tuple[float, float, float]] = {
    "neu": (3.0, 2.6, 2.9),
    "hap": (4.0, 3.1, 3.0),
    "exc": (3.9, 3.6, 3.3),
    "ang": (1.9, 3.7, 3.8),
    "sad": (2.0, 2.3, 2.3),
    "fru": (2.1, 3.2, 3.2),
    "sur": (3.4, 3.7, 2.8),
    "oth": (2.8, 3.0, 3.0),
    "xxx": (2.8, 3.0, 3.0),
}
CATEGORY_NAMES: dict[str, str] = {
    "neu": "Neutral",
    "hap": "Happiness",
    "exc": "Excited",
    "ang": "Anger",
    "sad": "Sadness",
    "fru": "Frustration",
    "sur": "Surprise",
    "oth": "Other",
}
WORD_CUE: dict[str, str] = {
    "ang": 'volume="+80%" pitch="+25%"',
    "hap": 'pitch="+55%"',
    "exc": 'pitch="+60%"',
    "sad": 'rate="-25%" volume="-25%"',
    "neu": 'volume="+45%"',
}
MARKERS = ("[LAUGHTER]", "[BREATHING]", "[GARBAGE]")

NEUTRAL_TEXT = (
    "Excuse me, is this the line for the license forms?",
    "I need to fill out this form first.",
    "The office closes at 5 o'clock today.",
    "Can you tell me where the next window is?",
    "I moved here from Chicago last year.",
    "We should talk about the schedule for next week.",
    "My brother is coming over on Sunday.",
    "I left the keys on the kitchen table.",
    "The train leaves at a quarter past nine.",
    "Do you want to get some lunch later?",
    "I think the meeting is on the second floor.",
    "She said she would call me back tomorrow.",
    "We need to buy milk and bread.",
    "The report is due on Friday afternoon.",
    "I have been working here for three years.",
    "Let me check my calendar.",
    "It is a twenty-minute drive from here.",
    "He parked the car across the street.",
    "They are painting the house next door.",
    "I'll send you the address by email.",
    "Could you pass me that folder?",
    "The store on the corner sells newspapers.",
    "We're going to visit my parents in June.",
    "I don't know what time it is.",
    "The package should arrive on Monday.",
    "I was reading a book about the ocean.",
    "Where did you put the phone charger?",
    "My sister works at the hospital downtown.",
    "We have 2 tickets for the show.",
    "The bus was a little late this morning.",
)
EMOTION_TEXT: dict[str, tuple[str, ...]] = {
    "ang": (
        "This is absolutely ridiculous and I am sick of it.",
        "I hate waiting in this stupid line.",
        "You never listen to a word I say!",
        "Get out of my way right now.",
        "That is completely unacceptable.",
        "I am furious with you.",
        "Don't you dare talk to me like that!",
        "You lied to me again!",
        "This is the worst service I have ever seen.",
        "I'm so angry I can't even think.",
        "Stop blaming me for your mistakes!",
        "How could you be so careless?",
        "Leave me alone, I mean it!",
        "I have had enough of your excuses.",
        "What the hell is wrong with you?",
    ),
    "hap": (
        "This is wonderful news!",
        "I love it, thank you so much!",
        "We won, I can't believe we won!",
        "You look absolutely beautiful tonight.",
        "I'm so happy for you both.",
        "That was the best day of my life.",
        "I got the job, isn't that amazing?",
        "We're getting married in the spring!",
        "What a fantastic surprise!",
        "I'm so excited to see you again.",
        "Everything worked out perfectly.",
        "You made me laugh so hard.",
        "Congratulations, you really deserve it!",
        "I feel great about this.",
        "Let's celebrate tonight!",
    ),
    "sad": (
        "I really miss him.",
        "She passed away last winter.",
        "I feel so lonely without you.",
        "Nothing matters anymore.",
        "I'm sorry, I just can't do this.",
        "We lost the house.",
        "I cried all night.",
        "He never came back home.",
        "I don't think I'll ever be happy again.",
        "Everyone left and I was alone.",
        "It's hopeless, there's nothing we can do.",
        "I wish things were different.",
        "My dog died yesterday.",
        "I'm so tired of everything.",
        "I failed again.",
    ),
    "sur": (
        "Oh my god, really?",
        "Wait, you did what?",
        "I had no idea you were here!",
        "No way, that can't be true!",
        "Are you serious right now?",
    ),
}
TEXT_POOL: dict[str, str] = {"ang": "ang", "hap": "hap", "exc": "hap", "sad": "sad", "sur": "sur", "fru": "ang"}

_TOKEN = re.compile(r"\S+")


@dataclass(frozen=True)
class Speaker:
    gender: str
    voice: str
    rate_offset: float
    pitch_offset: float


@dataclass(frozen=True)
class TruthWord:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Spoken:
    """One synthesized utterance: 16 kHz int16 audio and its word truth (seconds)."""

    audio: np.ndarray
    words: list[TruthWord]


def spoken_tokens(transcript: str) -> list[str]:
    """The words eSpeak speaks: transcript tokens without markers, punctuation stripped."""
    out = []
    for tok in _TOKEN.findall(transcript):
        if tok.startswith("[") and tok.endswith("]"):
            continue
        word = tok.strip('.,!?;:"')
        if any(c.isalnum() for c in word):
            out.append(word)
    return out


def _ssml(transcript: str, cue_word: int | None, cue: str) -> tuple[str, list[int]]:
    """The string given to eSpeak and each spoken token's 0-based char offset in it."""
    parts: list[str] = []
    offsets: list[int] = []
    pos = 0
    k = 0
    for tok in _TOKEN.findall(transcript):
        if tok.startswith("[") and tok.endswith("]"):
            continue
        if parts:
            parts.append(" ")
            pos += 1
        word = tok.strip('.,!?;:"')
        if not any(c.isalnum() for c in word):
            parts.append(tok)
            pos += len(tok)
            continue
        lead = tok.index(word)
        if k == cue_word:
            open_tag = f"<prosody {cue}>"
            piece = tok[:lead] + open_tag + word + "</prosody>" + tok[lead + len(word) :]
            offsets.append(pos + lead + len(open_tag))
        else:
            piece = tok
            offsets.append(pos + lead)
        parts.append(piece)
        pos += len(piece)
        k += 1
    return "".join(parts), offsets


def word_groups(events: list[Event], offsets: list[int], words: list[str]) -> list[tuple[str, int, int]]:
    """Group tokens by eSpeak WORD events: [(words joined by spaces, start sample, end sample)].

    A WORD event at text position p owns the tokens whose offset lies in [p-1, next event's
    p-1) and the PHONEME events that carry its text position.  The start is the WORD event's
    sample, except where eSpeak emits the event before the previous word's last phoneme has
    begun ("coming|over": at the start of the NG, 84 ms early); then the word's own first
    phoneme is the start.  The end is the first pause phoneme after the word's last phoneme,
    or the next word's start, whichever comes first.
    """
    word_idx = [i for i, ev in enumerate(events) if ev.type == EVENT_WORD]
    if not word_idx:
        return []
    positions = [events[i].text_position - 1 for i in word_idx] + [10**9]
    last_sample = max(ev.sample for ev in events)
    found: list[tuple[str, int, int | None]] = []  # (words, start, first pause after the word)
    prev_last_phone = -1
    for g, ev_i in enumerate(word_idx):
        lo, hi = positions[g], positions[g + 1]
        members = [w for w, off in zip(words, offsets) if (lo <= off or g == 0) and off < hi]
        own = [
            i
            for i, ev in enumerate(events)
            if ev.type == EVENT_PHONEME and ev.text_position == lo + 1 and not ev.phoneme.startswith("_")
        ]
        if not members:
            continue
        start = events[ev_i].sample
        if own and start <= prev_last_phone:
            start = events[own[0]].sample
        pause = None
        if own:
            prev_last_phone = events[own[-1]].sample
            pause = next(
                (ev.sample for ev in events[own[-1] + 1 :] if ev.type == EVENT_PHONEME and ev.phoneme.startswith("_")),
                None,
            )
        found.append((" ".join(members), start, pause))
    groups = []
    for g, (members, start, pause) in enumerate(found):
        nxt = found[g + 1][1] if g + 1 < len(found) else last_sample
        end = min(pause, nxt) if pause is not None else nxt
        groups.append((members, start, max(end, start + 1)))
    return groups


def speak(
    transcript: str, speaker: Speaker, prosody: Prosody, cue_word: int | None, cue: str, rng: np.random.Generator
) -> Spoken:
    """Synthesize a transcript; pad, add noise, resample to 16 kHz; exact word truth."""
    text, offsets = _ssml(transcript, cue_word, cue)
    audio22, events = engine().synthesize(text, speaker.voice, prosody, ssml=True)
    groups = word_groups(events, offsets, spoken_tokens(transcript))
    lead, trail = rng.uniform(0.15, 0.4, size=2)
    speech = resample(audio22.astype(np.float32) / 32768.0, ESPEAK_RATE, SAMPLE_RATE)
    pad_a, pad_b = int(lead * SAMPLE_RATE), int(trail * SAMPLE_RATE)
    signal = np.concatenate([np.zeros(pad_a, np.float32), speech, np.zeros(pad_b, np.float32)])
    signal = signal + rng.normal(0.0, 1e-3, size=signal.shape).astype(np.float32)
    pcm = np.clip(np.round(signal * 32767.0), -32768, 32767).astype(np.int16)
    offset = pad_a / SAMPLE_RATE
    words = [TruthWord(w, round(offset + s / ESPEAK_RATE, 5), round(offset + e / ESPEAK_RATE, 5)) for w, s, e in groups]
    return Spoken(pcm, words)


def wdseg_rows(words: list[TruthWord], duration: float) -> list[tuple[int, int, str]]:
    """Sphinx word segmentation rows (start frame, end frame, WORD) in 10 ms frames."""
    spans: list[tuple[float, float, str]] = []
    for group in words:
        parts = group.word.split(" ")
        letters = np.array([max(1, sum(c.isalnum() for c in p)) for p in parts], float)
        edges = group.start + (group.end - group.start) * np.concatenate([[0], np.cumsum(letters) / letters.sum()])
        spans += [(edges[i], edges[i + 1], parts[i].upper()) for i in range(len(parts))]
    last = int(round(duration * 100)) - 1
    rows: list[tuple[int, int, str]] = []
    cursor = 0
    for start, end, label in spans:
        s, e = int(round(start * 100)), int(round(end * 100)) - 1
        if s > cursor:
            rows.append((cursor, s - 1, "<s>" if not rows else "<sil>"))
        rows.append((s, max(s, e), label))
        cursor = max(s, e) + 1
    rows.append((cursor, max(cursor, last), "</s>"))
    return rows


def format_wdseg(rows: list[tuple[int, int, str]], rng: np.random.Generator) -> str:
    lines = [" SFrm  EFrm    SegAScr Word"]
    total = 0
    for s, e, word in rows:
        score = -int(rng.integers(3000, 9000)) * (e - s + 1)
        total += score
        lines.append(f"{s:6d} {e:5d} {score:10d} {word}")
    lines.append(f" Total score:   {total:10d}")
    return "\n".join(lines) + "\n"


def _vad(code: str, rng: np.random.Generator) -> tuple[tuple[float, float, float], list[tuple[int, int, int]]]:
    centre = np.array(VAD[code])
    ratings = [tuple(int(x) for x in np.clip(np.round(centre + rng.normal(0, 0.6, 3)), 1, 5)) for _ in range(2)]
    mean = tuple(float(np.mean([r[i] for r in ratings])) for i in range(3))
    return mean, ratings  # type: ignore[return-value]


def _categorical(code: str, rng: np.random.Generator) -> list[str]:
    names = list(CATEGORY_NAMES.values())
    if code == "xxx":  # no majority: three different opinions
        return list(rng.choice(names, size=3, replace=False))
    main = CATEGORY_NAMES[code]
    other = str(rng.choice(names))
    return [main, main, other]


def _prosody(code: str, speaker: Speaker, rng: np.random.Generator) -> Prosody:
    base_code = code if code in PROSODY else str(rng.choice(["neu", "hap", "ang", "sad", "fru"]))
    rate, pitch, prange, vol = (b + rng.normal(0, j) for b, j in zip(PROSODY[base_code], JITTER))
    return Prosody(
        rate=int(np.clip(rate + speaker.rate_offset, 90, 300)),
        pitch=int(np.clip(pitch + speaker.pitch_offset, 5, 95)),
        range=int(np.clip(prange, 5, 99)),
        volume=int(np.clip(vol, 40, 190)),
    )


def _transcript(code: str, rng: np.random.Generator, max_sentences: int = 1) -> str:
    """One turn's words: a sentence of the label's pool (or a neutral one), 1 to
    ``max_sentences`` of them (more only draw after the first, so 1 gives the demo's corpus)."""
    text = _sentence(code, rng)
    if max_sentences > 1:
        text = " ".join([text, *(_sentence(code, rng) for _ in range(int(rng.integers(max_sentences))))])
    if rng.random() < 0.06:
        marker = "[LAUGHTER]" if code in ("hap", "exc") else str(rng.choice(MARKERS))
        text = f"{marker} {text}" if rng.random() < 0.5 else f"{text} {marker}"
    return text


def _sentence(code: str, rng: np.random.Generator) -> str:
    pool = TEXT_POOL.get(code)
    u = rng.random()
    if code == "neu" or pool is None:
        emotional = u < 0.10
        pool = str(rng.choice(["ang", "hap", "sad"])) if emotional else None
    elif u >= 0.55:
        pool = str(rng.choice([p for p in ("ang", "hap", "sad") if p != pool])) if u < 0.65 else None
    sentences = EMOTION_TEXT[pool] if pool else NEUTRAL_TEXT
    return str(sentences[int(rng.integers(len(sentences)))])


def _cue(code: str, transcript: str, rng: np.random.Generator) -> tuple[int | None, str]:
    p = 0.35 if code in ("ang", "hap", "exc", "sad") else 0.08
    words = spoken_tokens(transcript)
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if rng.random() >= p or not candidates:
        return None, ""
    return int(rng.choice(candidates)), WORD_CUE.get(code, WORD_CUE["neu"])


def _speakers(session: int, seed: int) -> dict[str, Speaker]:
    rng = np.random.default_rng([seed, session, 7])
    return {
        "F": Speaker("F", f"en-us+f{(session - 1) % 5 + 1}", rng.uniform(-10, 10), rng.uniform(-6, 6)),
        "M": Speaker("M", f"en-us+m{(session - 1) % 7 + 1}", rng.uniform(-10, 10), rng.uniform(-6, 6)),
    }


def dialog_names(session: int, n: int) -> list[str]:
    """``Ses01F_impro01``, ``Ses01M_impro02``, ``Ses01F_script01_1``, ... (prefix letter alternates)."""
    names = []
    impro = script = 0
    for i in range(n):
        letter = "FM"[i % 2]
        if i % 3 == 2:
            script += 1
            names.append(f"Ses{session:02d}{letter}_script{(script + 1) // 2:02d}_{(script - 1) % 2 + 1}")
        else:
            impro += 1
            names.append(f"Ses{session:02d}{letter}_impro{impro:02d}")
    return names


@dataclass
class _Turn:
    utt_id: str
    code: str
    transcript: str
    start: float
    end: float
    vad: tuple[float, float, float]
    ratings: list[tuple[int, int, int]]
    categories: list[str]


def _write_dialog(root: Path, session: int, dialog: str, turns: list[_Turn]) -> None:
    sdir = root / f"Session{session}"
    emo = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    trans = []
    for t in turns:
        v, a, d = t.vad
        emo.append(f"[{t.start:.4f} - {t.end:.4f}]\t{t.utt_id}\t{t.code}\t[{v:.4f}, {a:.4f}, {d:.4f}]")
        for name, cat in zip(("C-E1", "C-E2", "C-E3"), t.categories):
            emo.append(f"{name}:\t{cat};\t()")
        for name, (rv, ra, rd) in zip(("A-E1", "A-E2"), t.ratings):
            emo.append(f"{name}:\tval {rv}; act {ra}; dom  {rd};\t()")
        emo.append("")
        trans.append(f"{t.utt_id} [{t.start:08.4f}-{t.end:08.4f}]: {t.transcript}")
    for sub, body in (("EmoEvaluation", emo), ("transcriptions", trans)):
        path = sdir / "dialog" / sub / f"{dialog}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(body) + "\n", encoding="utf-8")


def _synthesize_session(
    root: Path, seed: int, session: int, dialogs_per_session: int, turns_per_dialog: int, max_sentences: int = 1
) -> tuple[list[str], float]:
    """Write one session's files; return (truth JSON lines, audio seconds).

    Runs in a fresh process per session: eSpeak NG keeps global synthesis state (pitch
    flutter phase) across calls that no API resets, so a fresh engine per session is what
    makes the output independent of what the process spoke before.
    """
    codes, probs = list(LABEL_PROBS), np.array(list(LABEL_PROBS.values()))
    speakers = _speakers(session, seed)
    truth: list[str] = []
    audio_seconds = 0.0
    for d, dialog in enumerate(dialog_names(session, dialogs_per_session)):
        drng = np.random.default_rng([seed, session, d])
        who = "FM"[int(drng.integers(2))]
        counters = {"F": 0, "M": 0}
        cursor = float(drng.uniform(2.0, 6.0))
        turns = []
        for turn in range(turns_per_dialog):
            rng = np.random.default_rng([seed, session, d, turn])
            utt_id = f"{dialog}_{who}{counters[who]:03d}"
            counters[who] += 1
            code = str(rng.choice(codes, p=probs))
            transcript = _transcript(code, rng, max_sentences)
            cue_word, cue = _cue(code, transcript, rng)
            spoken = speak(transcript, speakers[who], _prosody(code, speakers[who], rng), cue_word, cue, rng)
            duration = len(spoken.audio) / SAMPLE_RATE
            sdir = root / f"Session{session}" / "sentences"
            write_audio(sdir / "wav" / dialog / f"{utt_id}.wav", spoken.audio)
            seg = sdir / "ForcedAlignment" / dialog / f"{utt_id}.wdseg"
            seg.parent.mkdir(parents=True, exist_ok=True)
            seg.write_text(format_wdseg(wdseg_rows(spoken.words, duration), rng), encoding="utf-8")
            truth.append(json.dumps({"utt_id": utt_id, "words": [w.__dict__ for w in spoken.words]}))
            vad, ratings = _vad(code, rng)
            turns.append(
                _Turn(
                    utt_id,
                    code,
                    transcript,
                    round(cursor, 4),
                    round(cursor + duration, 4),
                    vad,
                    ratings,
                    _categorical(code, rng),
                )
            )
            cursor += duration + float(rng.uniform(0.2, 1.5))
            who = "M" if who == "F" else "F"
            audio_seconds += duration
        _write_dialog(root, session, dialog, turns)
    return truth, audio_seconds


SYNTH_MARKER = ".mger-synth.json"  # written first into every corpus synth makes


def _synth_output(root: Path) -> bool:
    """Whether ``root`` is a corpus synth wrote: its marker only.  Folder names are no evidence
    (a trimmed IEMOCAP copy holds nothing but SessionN folders too)."""
    return (root / SYNTH_MARKER).is_file()


def check_out(root: Path, force: bool = False, own: Callable[[str], bool] | None = None) -> None:
    """Refuse to replace ``root`` unless it is absent, empty, an earlier synth output, or ``force``.

    ``own(name)``: whether a top-level entry is one this layout writes (default: the IEMOCAP
    layout's, :func:`_synth_entry`; the other layouts: :mod:`mger.corpus.layouts`)."""
    own = own or _synth_entry
    if root.is_symlink():  # replacing it would replace the link, or (rmtree) fail naming nothing
        raise ValueError(f"{root}: a symbolic link; give --out the folder itself ({root.resolve()})")
    if force or not root.exists():
        return
    if not root.is_dir():
        raise ValueError(f"{root}: exists and is not a folder; choose another --out")
    if any(root.iterdir()) and not _synth_output(root):
        raise ValueError(
            f"{root}: not empty and not an earlier `mger synth` output; synth would delete it: "
            "choose another --out, or pass --force to replace it"
        )
    if any(root.iterdir()):
        foreign = sorted(p.name for p in root.iterdir() if not own(p.name))
        if foreign:
            raise ValueError(
                f"{root}: an earlier `mger synth` output that also holds {', '.join(foreign[:3])}"
                f"{' ...' if len(foreign) > 3 else ''} (not synth's); synth would delete it: move it "
                "out, choose another --out, or pass --force"
            )


def _synth_entry(name: str) -> bool:
    """Whether a top-level entry of a synth output is one synth writes (its marker, truth/,
    SessionN/): anything else there was put by someone else."""
    return name in (SYNTH_MARKER, "truth") or re.fullmatch(r"Session[1-9]", name) is not None


def synthesize_corpus(
    out: str | Path,
    seed: int = 13,
    sessions: int = 5,
    dialogs_per_session: int = 6,
    turns_per_dialog: int = 28,
    n_jobs: int = 2,
    force: bool = False,
    max_sentences_per_turn: int = 1,
) -> int:
    """Write the corpus under ``out`` (replacing an earlier synth output there; any other
    non-empty folder only with ``force``); return the number of utterances.

    Sessions are synthesized in parallel, each in a fresh process (see
    :func:`_synthesize_session`), so the files are byte-identical for the same arguments.
    """
    t0 = time.perf_counter()
    root = Path(out)
    check_out(root, force)
    if root.exists():
        shutil.rmtree(root)
    (root / "truth").mkdir(parents=True)
    (root / SYNTH_MARKER).write_text(json.dumps({"seed": seed, "sessions": sessions}) + "\n", encoding="utf-8")
    ctx = multiprocessing.get_context("spawn")
    results: dict[int, tuple[list[str], float]] = {}
    with ProcessPoolExecutor(max_workers=max(1, n_jobs), mp_context=ctx, max_tasks_per_child=1) as pool:
        futures = {
            pool.submit(
                _synthesize_session, root, seed, s, dialogs_per_session, turns_per_dialog, max_sentences_per_turn
            ): s
            for s in range(1, sessions + 1)
        }
        for fut in tqdm(as_completed(futures), total=sessions, desc="synth", unit="session", file=sys.stderr):
            results[futures[fut]] = fut.result()
    lines = [line for s in sorted(results) for line in results[s][0]]
    (root / "truth" / "words.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    audio_seconds = sum(r[1] for r in results.values())
    print(
        f"synth: {len(lines)} utterances, {sessions * dialogs_per_session} dialogs, {sessions} sessions, "
        f"{audio_seconds / 60:.1f} min of audio in {time.perf_counter() - t0:.1f}s → {root}"
    )
    return len(lines)
