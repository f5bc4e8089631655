"""The held-out and development alignment sets: voices, rates and sentence styles the demo corpus
never uses (their evaluation, which aligns them: :mod:`mger.pipeline.heldout`).

The demo corpus (:mod:`mger.corpus.synth`) speaks its own sentence pools with ``en-us+f1..f5``
and ``en-us+m1..m7``, so its align-eval figure is partly tuned to those voices.  This set is
for *checking only*, never for tuning (docs/alignment.md):

* **voices**: every English voice of the eSpeak wheel (``en``, ``en-029``, ``en-gb-scotland``,
  ``en-gb-x-gbclan``, ``en-gb-x-gbcwmd``, ``en-gb-x-rp``, ``en-us``, ``en-us-nyc``) crossed
  with every voice variant the wheel ships, minus the pairs the demo can use; utterance *i*
  takes language *i* mod 8 and variant *i* mod (number of variants), so with at least as
  many utterances as variants every language and every variant speaks (a demo pair moves on
  to the next language).  ``en-shaw`` reads
  the Shavian alphabet, not Latin text, and is left out;
* **rates** from 95 to 300 words per minute, cycled (slow to fast);
* **sentences** (:data:`SENTENCES`) with names, acronyms spelled letter by letter, numbers,
  dates and clock times, contractions, hyphenated words, the fillers um / uh / mm / hmm, and
  non-ASCII names.  Ordinals written in digits ("3rd"), four-digit years read as "nineteen
  ninety" and thousands with commas are left out: today's transcript normaliser expands
  them differently from how eSpeak reads them, a normaliser matter this set would only
  repeat.

Layout under ``out`` (default ``data/heldout``)::

    wav/<utt>.wav   manifest.jsonl   truth/words.jsonl (rows carry "voice" and "rate")

``dev=True`` builds the *development* set instead (:data:`DEV_SENTENCES`, :data:`DEV_SEED`,
language and rate cycles shifted by :data:`DEV_SHIFT`: no sentence and no voice in common with
the held-out set), on which alignment changes are diagnosed; the held-out set only checks them.
The same arguments give byte-identical files: one fresh eSpeak process speaks everything
in order (eSpeak keeps synthesis state across calls).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from mger.core.audio import SAMPLE_RATE, write_audio
from mger.core.manifest import Utterance, write_manifest
from mger.corpus.espeak import Prosody

LANGUAGES = ("en", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp", "en-us", "en-us-nyc")
RATES = (95, 125, 150, 175, 205, 240, 300)
DEMO_VOICES = frozenset([f"en-us+f{i}" for i in range(1, 6)] + [f"en-us+m{i}" for i in range(1, 8)])

SENTENCES = (
    "Um, I told Marcus we'd meet at the station around 4:30.",
    "Hmm, that's not what Priya said on Tuesday.",
    "The FBI and the IRS both sent letters to my old address.",
    "Uh, could you spell that for me? It's B-R-O-W-N.",
    "Mm, I'm not sure the U.S. office is open on March 3.",
    "She's a well-known author from New Orleans.",
    "We moved into a two-bedroom apartment in 2019.",
    "José and Zoë are coming over for dinner tonight.",
    "François said the café near the museum closed last fall.",
    "I can't believe it's already forty-five minutes past ten.",
    "Hmm, let me think about it for a second.",
    "They've ordered 12 boxes and 250 envelopes.",
    "Björn's brother works for IBM in Stockholm.",
    "Um, um, I don't really know what to tell you.",
    "My grandmother was born on July 4 in a small town in Ohio.",
    "The meeting's been moved to 9:15, uh, tomorrow morning.",
    "Renée wouldn't have left without saying goodbye.",
    "Mm, that sounds like a pretty good deal to me.",
    "We'll need a follow-up appointment with Dr Nakamura.",
    "The BBC reported a 20 percent drop in sales.",
    "He's the editor-in-chief of a student newspaper.",
    "Uh, I think Siobhan and Kwame already left.",
    "You'd better call the DMV before Friday.",
    "Hmm, I wasn't expecting the package until the 15 of May.",
    "Our flight to São Paulo leaves at 7:45.",
    "Well, um, it's a long story, actually.",
    "Müller scored twice in the second half.",
    "Mm, the soup's a little too salty, isn't it?",
    "The NBA finals start on June 6 this year.",
    "I've got a twenty-four-hour shift at the hospital.",
    "Uh, sorry, what was your name again? Aleksandr?",
    "She couldn't find the USB cable anywhere.",
    "Hmm, Chloé might know where the keys are.",
    "We're meeting Ngozi and Tomás at the old fire station.",
    "It'll take about 3 weeks, give or take.",
    "Um, the self-checkout machine isn't working again.",
)

# A development set in the same styles, with its own sentences, seed and voice/rate pairing:
# alignment changes are diagnosed on it (and on the demo-style corpus), never on the held-out
# set, which only checks them (``--dev``; docs/alignment.md).
DEV_SENTENCES = (
    "Uh, I left my keys at Danielle's place on Sunday.",
    "Hmm, the NASA launch was pushed back to 6:20.",
    "Mm, I think the ATM on Fifth Street is broken.",
    "Um, could you ask Rahul to call me after lunch?",
    "The CIA and the NSA declined to comment.",
    "We've been living in Chicago since 2016.",
    "Zoltán and Inés met at a conference in Lisbon.",
    "She's a part-time nurse at the children's hospital.",
    "Hmm, it's already twenty-five past eight.",
    "They'll deliver 40 chairs and 8 tables by noon.",
    "Uh, I'm not sure what Gabriel meant by that.",
    "Mm, I'd rather stay home and watch a movie.",
    "Um, um, we haven't decided where to go yet.",
    "My uncle was born on April 9 in a village near Kraków.",
    "The train's been delayed until 10:40, um, apparently.",
    "Søren couldn't have known about the surprise party.",
    "Hmm, that's a really nice jacket, isn't it?",
    "Let's book a check-up with Dr Okafor next week.",
    "The UN announced a 15 percent cut in funding.",
    "He's a twenty-year-old student from Nairobi.",
    "Uh, I guess Mateo and Aisha are still at work.",
    "You'd better tell the HR office by Monday.",
    "Mm, I didn't get the email until the 21 of June.",
    "Our bus to Zürich leaves at 8:05.",
    "Well, uh, it wasn't my idea, to be honest.",
    "Núñez missed a penalty in the first half.",
    "Hmm, the coffee's a bit too strong, don't you think?",
    "The NFL draft starts on April 25 this year.",
    "I've got a three-hour exam on Thursday morning.",
    "Um, sorry, how do you spell your last name? Krzysztof?",
    "He couldn't find the PDF file on his laptop.",
    "Mm, Anaïs might know the password.",
    "We're picking up Oluwaseun and Joaquín at the airport.",
    "It'll cost about 60 dollars, more or less.",
    "Uh, the drive-through window is closed today.",
    "Hmm, I'll have to double-check my calendar.",
)
DEV_SEED = 31
DEV_SHIFT = 53  # the dev set's language and rate cycles start there: utterance i has the held-out
# set's variant i but language i + 5 and rate i + 4 (mod 8 and 7), so few (voice, rate) pairs recur


def voices(n: int, shift: int = 0) -> list[str]:
    """Voice of each of ``n`` utterances: variant *i* mod V, language (*i* + ``shift``) mod 8,
    moved on to the next language where that pair is one the demo can use (so every variant
    still speaks)."""
    import espeakng_loader

    variants = sorted(os.listdir(os.path.join(espeakng_loader.get_data_path(), "voices", "!v")))
    out: list[str] = []
    for i in range(n):
        variant = variants[i % len(variants)]
        j = i + shift
        k = next(
            k for k in range(len(LANGUAGES)) if f"{LANGUAGES[(j + k) % len(LANGUAGES)]}+{variant}" not in DEMO_VOICES
        )
        out.append(f"{LANGUAGES[(j + k) % len(LANGUAGES)]}+{variant}")
    return out


def n_variants() -> int:
    """How many voice variants the eSpeak wheel ships (a full set needs at least this many utterances)."""
    import espeakng_loader

    return len(os.listdir(os.path.join(espeakng_loader.get_data_path(), "voices", "!v")))


def speak_utterance(
    out: Path, final: Path, i: int, text: str, voice: str, rate: int, seed: int, prefix: str = "Heldout"
) -> tuple[Utterance, str]:
    """Speak one sentence into ``out``; return its manifest row (wav under ``final``) and truth JSON line."""
    from mger.corpus.synth import Speaker, speak

    rng = np.random.default_rng([seed, i])
    prosody = Prosody(rate=rate, pitch=int(rng.integers(30, 71)), range=int(rng.integers(30, 80)))
    spoken = speak(text, Speaker("X", voice, 0.0, 0.0), prosody, None, "", rng)
    utt_id = f"{prefix}_{i:03d}"
    write_audio(out / "wav" / f"{utt_id}.wav", spoken.audio)
    duration = len(spoken.audio) / SAMPLE_RATE
    utt = Utterance(
        utt_id=utt_id,
        corpus="heldout",
        wav=str(final / "wav" / f"{utt_id}.wav"),
        duration=round(duration, 4),
        speaker=voice,
        gender="",
        text=text,
        text_source="gold",
        label="neu",
        label_raw="neu",
        group="heldout",
        partition="",
        valence=None,
        activation=None,
        dominance=None,
    )
    truth = json.dumps(
        {"utt_id": utt_id, "voice": voice, "rate": rate, "words": [dataclasses.asdict(w) for w in spoken.words]},
        ensure_ascii=False,
    )
    return utt, truth


def _build(
    out: Path,
    final: Path,
    n: int,
    seed: int,
    sentences: tuple[str, ...] = SENTENCES,
    shift: int = 0,
    prefix: str = "Heldout",
) -> tuple[int, float]:
    """Write the whole set into ``out``, to be renamed ``final`` (runs in a fresh process)."""
    (out / "wav").mkdir(parents=True)
    (out / "truth").mkdir()
    rows, truth = [], []
    for i, voice in enumerate(voices(n, shift)):
        rate = RATES[(i + shift) % len(RATES)]
        utt, line = speak_utterance(out, final, i, sentences[i % len(sentences)], voice, rate, seed, prefix)
        rows.append(utt)
        truth.append(line)
    write_manifest(out / "manifest.jsonl", rows)
    (out / "truth" / "words.jsonl").write_text("\n".join(truth) + "\n", encoding="utf-8")
    return len(rows), sum(u.duration for u in rows)


def build_heldout(out: str | Path = "data/heldout", n: int | None = None, seed: int = 29, dev: bool = False) -> int:
    """Build the held-out set under ``out`` (replaced atomically); return the number of utterances.

    ``n`` defaults to three times the number of sentences, and at least the number of voice
    variants, so that every variant speaks.  ``dev``: the development set instead
    (:data:`DEV_SENTENCES`, seed :data:`DEV_SEED`, voices and rates shifted by :data:`DEV_SHIFT`).
    """
    t0 = time.perf_counter()
    out = Path(out)
    n = n or max(3 * len(SENTENCES), n_variants())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ctx = multiprocessing.get_context("spawn")
    seed, sentences, shift = (DEV_SEED, DEV_SENTENCES, DEV_SHIFT) if dev else (seed, SENTENCES, 0)
    prefix = "Dev" if dev else "Heldout"
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        count, seconds = pool.submit(_build, tmp, out, n, seed, sentences, shift, prefix).result()
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(
        f"{'dev' if dev else 'heldout'}: {count} utterances, {len(set(voices(count, shift)))} voices, "
        f"{seconds / 60:.1f} min of audio in {time.perf_counter() - t0:.1f}s → {out}"
    )
    return count


DEMO_STYLE = dict(seed=13, sessions=5, dialogs_per_session=2, turns_per_dialog=28)


def build_demo_style(out: str | Path) -> None:
    """The demo's own kind of corpus, smaller (seed 13, 5 sessions x 2 dialogs x 28 turns; 4-class
    manifest: 210 utterances), for judging a change on both sets at once."""
    from mger.corpus.readers import prepare_corpus
    from mger.corpus.synth import synthesize_corpus

    out = Path(out)
    synthesize_corpus(out / "corpus", **DEMO_STYLE)
    prepare_corpus("iemocap", out / "corpus", out / "manifest.jsonl", out / "data_quality.json", "4class", quiet=True)
    (out / "truth").mkdir(exist_ok=True)
    (out / "corpus" / "truth" / "words.jsonl").replace(out / "truth" / "words.jsonl")


def set_kind(out: Path) -> str | None:
    """``dev`` or ``heldout``: which set the folder holds (by its first utterance id); None if none."""
    truth = out / "truth" / "words.jsonl"
    if not truth.is_file():
        return None
    with truth.open(encoding="utf-8") as fh:
        first = json.loads(fh.readline() or "{}").get("utt_id", "")
    return "dev" if first.startswith("Dev_") else "heldout"
