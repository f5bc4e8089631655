"""Forced alignment with pocketsphinx 5 (its bundled US-English acoustic model and CMUdict).

Two passes per utterance: ``set_align_text`` + decode finds the word sequence with optional
silences (FSG search), then ``set_alignment`` + decode gives the word / phone / state
segmentation (10 ms frames).  A retry ladder widens the beams when a pass finds no path.
Pronunciation variants (``read(2)``) are stripped to the word.  Words missing from CMUdict
get an eSpeak NG pronunciation (:mod:`mger.alignment.g2p`) through ``add_word``; a word written
with letters outside ASCII is an entry of its own, pronounced from that spelling
(:func:`mger.alignment.normalize.written_forms`), its label the ASCII word.

Every utterance is aligned as if by a fresh decoder, so the segment table does not depend on
``align.n_jobs`` or on which worker got which utterances.  The model asks for batch CMN
(per-utterance cepstral mean), and a fresh decoder's first pass does use it; but after that
pass pocketsphinx 5.1.1 normalises live, with a mean carried over from what it decoded
before (a second pass over the same audio gets a different mean: ``get_cmn()``).  In its
source, ``end_utt`` flushes the feature buffer through ``feat_cmn`` with ``beginutt`` false,
which switches the feature module to live CMN for good.  ``reinit_feat()`` before every
decoding pass rebuilds the front end and feature module from the config (batch CMN,
initial mean), so each pass is normalised by its own utterance only.  Words added with
``add_word`` only extend the dictionary; they change no other word's result (tested).

Duration search (``duration_search``, on by default; :mod:`mger.alignment.senone_viterbi`): the first
pass's alignment is handed to a second decoder that scores every senone of every frame and writes
them to a senone log; a search of our own then aligns the same phones and states over those scores
with phone durations bounded by the speaking rate and frame energy as a second observation, optional
silences between all words.  Where it cannot run (no path at 100 frames/s, an unreadable log), or
with the setting off, pocketsphinx's own alignment is used with the checks below.

Energy check (``energy_check``, on by default; :mod:`mger.alignment.pauses`): when the alignment
labels loud frames as silence, the utterance is aligned again with its pauses cut out and no
optional silences, and the alignment that agrees better with the frame energy is kept.

Slow speech (``slow_speech``, on by default): an utterance with fewer than
:data:`SLOW_PHONE_RATE` phones per second of sound is analysed at :data:`SLOW_FRATE` frames
per second with the analysis window lengthened alike (``frate``, ``wlen``), both passes and
the energy check's; times are converted back with the longer frame step.  The audio itself
is never altered.  That alignment is kept unless it disagrees with the frame energy more than
the one at 100 frames/s.  Fast speech that finds no path at 100 frames/s (a phone shorter than
three frames) is aligned at :data:`FAST_FRATE` frames per second before it counts as a failure.
Onset refinement (``refine_onsets``, on by default;
:mod:`alignment.refine`) then gives stop closures back to their word (word-initial ones after a
short gap, word-final ones from the next word) and moves onsets after silence to where the sound
starts.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from mger.alignment import pauses, senone_viterbi
from mger.alignment.base import Alignment, AlignmentFailure, AlignResult, Segment, register
from mger.alignment.g2p import pronounce
from mger.alignment.normalize import written_forms
from mger.alignment.refine import refine_onsets
from mger.alignment.senone_viterbi import SenoneScores, read_senone_log
from mger.alignment.sphinx_segfiles import is_non_speech, strip_variant
from mger.alignment.word_classes import FILLER_VARIANTS, FILLERS
from mger.core.align_settings import PocketsphinxSettings
from mger.core.audio import SAMPLE_RATE, read_audio
from mger.core.manifest import Utterance

FRAME = 0.01  # seconds per pocketsphinx frame (frate 100)
WINDOW = 0.025625  # seconds per analysis window at frate 100 (the model's wlen)
# Frame t analyses samples [t*10 ms, t*10 ms + 25.6 ms): its centre is 12.8 ms after its start.
# A boundary between frames t-1 and t lies midway between their centres, 7.8 ms after t*10 ms,
# in theory.  Measured, the models take a frame for a word only once the word fills more of
# its window: with 7.8 ms, word onsets came out late by a signed median of +3.7 ms and
# offsets by +6.6 ms (2,286 words: a 210-utterance demo-style corpus and the held-out set
# pooled, never the held-out set alone).  3.8 ms centres the onsets (-0.3 ms) and
# leaves offsets +2.6 ms late; docs/alignment.md has the commands.
BOUNDARY_OFFSET = 0.0038
# Slow speech: an utterance with fewer than SLOW_PHONE_RATE phones per second of sound (frames
# more than pauses.QUIET_DB above its floor) is analysed at SLOW_FRATE frames per second, the
# window lengthened alike, so its phones take as many frames as at a normal rate and no audio
# is altered.  On the held-out set 95-125 wpm speech (5.8-9 phones/s) reached 83-86% within
# 50 ms; the demo corpus's median is 12 phones/s.  The slow-rate alignment is kept unless it
# disagrees with the frame energy more than the 100 frames/s one (mger.alignment.pauses.disagreement):
# kept always, one utterance's words cascaded 0.5 s late.  Chosen on both sets pooled (docs/alignment.md).
SLOW_PHONE_RATE = 9.0
SLOW_FRATE = 70
MIN_FRAMES_PER_PHONE = 3  # one frame per HMM state
# Fast speech: the models' phones have three states and no skips, so a phone takes at least three
# frames (30 ms at 100 frames/s); where eSpeak's 300 wpm speech has shorter phones, no beam finds
# a path (development set: en-us-nyc+kaukovalta at 300 wpm).  Such an utterance is aligned again
# at FAST_FRATE frames per second (20 ms per phone at least), window shortened alike, before the
# failure policy applies.
FAST_FRATE = 150
# Tried after the configured ladder when its widest rung is narrower: an utterance of an
# unusual voice (held-out en-gb-scotland+kaukovalta) found no path at 1e-200 and aligned at
# 1e-250.  A module default until params.yaml's ladder gains the rung.
LAST_RESORT_RUNG: tuple[float, float, float] = (1e-300, 1e-300, 1e-300)


def frame_step(frate: int) -> float:
    """Seconds between frames at ``frate`` frames per second (pocketsphinx rounds the shift to whole samples)."""
    return int(SAMPLE_RATE / frate + 0.5) / SAMPLE_RATE


def phone_rate(n_phones: int, db: np.ndarray) -> float:
    """Phones per second of sound: frames more than ``pauses.QUIET_DB`` above the floor (pauses left out)."""
    return n_phones / max(float(np.sum(~pauses.quiet_mask(db))) * FRAME, FRAME)


def _pcm(audio: np.ndarray) -> bytes:
    """16-bit PCM bytes of float audio, as the decoders take it."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()


def _time(frame: int, step: float = FRAME) -> float:
    """Seconds of the boundary before ``frame`` (see :data:`BOUNDARY_OFFSET`; it scales with the frame step)."""
    return frame * step + BOUNDARY_OFFSET * step / FRAME if frame > 0 else 0.0


def _realign(
    path, scores: SenoneScores, audio: np.ndarray, n_words: int, weight: float
) -> tuple[list[Segment], list[Segment]] | None:
    """Words and phones of :func:`senone_viterbi.realign` over pocketsphinx's state-level alignment ``path``
    (its words, their phones and each phone's state senones) and its senone ``scores``, the duration
    term weighted by ``weight``; None if the
    path does not hold the transcript's words or a phone has other than three states."""
    words, labels, senones, word_of = [], [], [], []
    for entry in path:  # word → phone → state, as in _align_pcm
        name = strip_variant(entry.name)
        if is_non_speech(name):
            continue
        for phone in entry:
            labels.append(phone.name)
            senones.append([int(state.name) for state in phone])
            word_of.append(len(words))
        words.append(name)
    if len(words) != n_words or any(len(s) != 3 for s in senones):
        return None
    db = pauses.frame_db(audio)
    try:
        spans = senone_viterbi.realign(
            scores,
            np.array(senones),
            np.array([k == 0 or word_of[k] != word_of[k - 1] for k in range(len(word_of))]),
            np.array([name in senone_viterbi.VOWELS for name in labels]),
            pauses.loud_mask(db),
            pauses.quiet_mask(db),
            np.array([words[i] in FILLERS for i in word_of]),
            weight=weight,
        )
    except ValueError:
        return None
    phone_segs = [Segment(_time(int(a)), _time(int(b)), name, i) for (a, b), name, i in zip(spans, labels, word_of)]
    word_segs = []
    for i, name in enumerate(words):
        own = [p for p in phone_segs if p.word == i]
        word_segs.append(Segment(own[0].start, own[-1].end, name))
    return word_segs, phone_segs


def _add_filler_variants(dec) -> None:
    """Alternative filler pronunciations (``mm(2)`` ...), added to every new decoder alike."""
    for word, variants in FILLER_VARIANTS.items():
        if dec.lookup_word(word) is None:
            continue  # only words CMUdict has: the variants extend its entry
        n = 2
        while dec.lookup_word(f"{word}({n})") is not None:
            n += 1
        for k, pron in enumerate(variants):
            dec.add_word(f"{word}({n + k})", pron, k == len(variants) - 1)


@register("pocketsphinx")
class PocketsphinxAligner:
    """One decoder per instance; build one per worker process."""

    name = "pocketsphinx"

    def __init__(self, settings: PocketsphinxSettings = PocketsphinxSettings()) -> None:
        self.settings = settings
        self.ladder = tuple(settings.ladder) + (
            (LAST_RESORT_RUNG,) if min(settings.ladder[-1]) > min(LAST_RESORT_RUNG) else ()
        )
        self._decoders: dict[tuple[int, bool, int, bool], object] = {}
        self._added: dict[str, str] = {}
        self._senone_logs: str | None = None

    def _decoder(self, rung: int, silences: bool = True, frate: int = 100, senones: bool = False):
        """The decoder of a ladder rung; ``silences=False``: no optional silences between words; ``frate``:
        frames per second (window scaled alike); ``senones``: scores every senone of every frame and
        writes them to a senone log (:meth:`_duration_search`)."""
        key = (rung, silences, frate, senones)
        if key not in self._decoders:
            from pocketsphinx import Decoder, set_loglevel

            set_loglevel("FATAL")
            beam, wbeam, pbeam = self.ladder[rung]
            self._decoders[key] = dec = Decoder(
                samprate=SAMPLE_RATE,
                bestpath=False,
                beam=beam,
                wbeam=wbeam,
                pbeam=pbeam,
                silprob=self.settings.silprob,
                remove_noise=self.settings.remove_noise,
                loglevel="FATAL",
                lm=None,  # alignment searches only; with the default LM every add_word cost ~0.2 s
                fsgusefiller=silences,
                frate=frate,
                wlen=WINDOW * 100 / frate,
                nfft=1 << int(np.ceil(np.log2(WINDOW * 100 / frate * SAMPLE_RATE + 2))),
                **({"compallsen": True, "senlogdir": self._senone_dir()} if senones else {}),
            )
            _add_filler_variants(dec)
        dec = self._decoders[key]
        for word, pron in self._added.items():
            if dec.lookup_word(word) is None:
                dec.add_word(word, pron, True)
        return dec

    def _ensure_words(self, forms: Sequence[tuple[str, str]]) -> dict[str, str]:
        """Make every written form a dictionary entry; return the entries added (form → phones).

        A form the dictionary lacks gets eSpeak's pronunciation of it; a written form that is
        not its dictionary word (``inés`` for ``ines``, see :func:`written_forms`) also gets
        the word's own CMUdict pronunciation as a variant (``inés(2)``), so the decoder picks
        the one the speaker used."""
        dec = self._decoder(0)
        unknown: dict[str, str] = {}
        for word, form in dict.fromkeys(forms):
            if form in self._added:
                unknown[form] = self._added[form]
            elif dec.lookup_word(form) is None:
                pron = " ".join(pronounce(form))
                listed = dec.lookup_word(word) if form != word else None
                if not pron:  # eSpeak gave nothing for the spelling: the ASCII word's own entry
                    pron, listed = listed or "", None
                if not pron:
                    raise KeyError(f"no pronunciation for {form!r}")
                self._added[form] = unknown[form] = pron
                if listed and listed != pron:
                    self._added[f"{form}(2)"] = listed
        return unknown

    def align(self, utt: Utterance) -> AlignResult:
        forms = written_forms(utt.text)
        words, keys = [w for w, _ in forms], [f for _, f in forms]
        if not words and utt.text_source == "none":  # e.g. an MSP-Podcast segment without a transcript
            return AlignmentFailure(utt.utt_id, "no text (text_source none): nothing to align words to")
        if not words:
            return AlignmentFailure(utt.utt_id, "no speakable words in the transcript (empty or markers only)")
        try:
            unknown = self._ensure_words(forms)
        except KeyError as err:
            return AlignmentFailure(utt.utt_id, f"out-of-dictionary word without pronunciation: {err}")
        audio = read_audio(utt.wav)
        n_frames = len(audio) // int(SAMPLE_RATE * FRAME)
        n_phones = sum(len((self._decoder(0).lookup_word(k) or "").split()) for k in keys)
        if n_frames < MIN_FRAMES_PER_PHONE * n_phones:
            return AlignmentFailure(
                utt.utt_id,
                f"audio too short for the transcript ({len(audio) / SAMPLE_RATE:.2f}s for {n_phones} phones)",
                unknown,
            )
        notes = [f"eSpeak pronunciation for {w!r}: {p}" for w, p in unknown.items()]
        text = " ".join(keys)
        found = self._duration_search(text, audio, len(words)) if self.settings.duration_search else None
        if found is None:
            found = self._pocketsphinx_search(text, audio, len(words), n_phones)
        if isinstance(found, str):
            return AlignmentFailure(utt.utt_id, found, unknown)
        w_segs, p_segs, more = found
        w_segs = [dataclasses.replace(s, label=w) for s, w in zip(w_segs, words)]  # labels are dictionary words
        if self.settings.refine_onsets:
            w_segs, p_segs = refine_onsets(w_segs, p_segs, audio, SAMPLE_RATE)
        return Alignment(
            utt.utt_id, len(audio) / SAMPLE_RATE, w_segs, p_segs, notes=notes + more, unknown_words=unknown
        )

    def _pocketsphinx_search(
        self, text: str, audio: np.ndarray, n_words: int, n_phones: int
    ) -> tuple[list[Segment], list[Segment], list[str]] | str:
        """Pocketsphinx's own alignment: 100 frames/s (then :data:`FAST_FRATE`), the energy check, slow
        speech; (words, phones, notes), or the reason there is none."""
        db = pauses.frame_db(audio)
        found = self._align_at(text, audio, n_words, 100)
        if found is None:
            fast = self._align_at(text, audio, n_words, FAST_FRATE)
            if fast is None:
                return f"no alignment path after {len(self.ladder)} beam settings at 100 and {FAST_FRATE} frames/s"
            found = (fast[0], fast[1], [f"no path at 100 frames/s: aligned at {FAST_FRATE} frames/s"] + fast[2])
        rate = phone_rate(n_phones, db)
        if self.settings.slow_speech and rate < SLOW_PHONE_RATE:
            slow = self._align_at(text, audio, n_words, SLOW_FRATE)
            # kept unless it disagrees with the energy more (a cascade the longer frames started)
            if slow is not None and sum(pauses.disagreement(db, slow[0])) <= sum(pauses.disagreement(db, found[0])):
                found = (
                    slow[0],
                    slow[1],
                    [f"slow speech ({rate:.1f} phones/s): aligned at {SLOW_FRATE} frames/s"] + slow[2],
                )
        return found

    def _duration_search(
        self, text: str, audio: np.ndarray, n_words: int
    ) -> tuple[list[Segment], list[Segment], list[str]] | None:
        """(words, phones, notes) from :mod:`mger.alignment.senone_viterbi` at 100 frames/s; None where no
        rung gives pocketsphinx a path that can be scored and read (the caller then uses its own search).

        The first pass (word sequence, silences, pronunciation variants) runs on the ordinary decoder;
        its alignment is handed to a decoder that scores every senone of every frame (``compallsen``)
        and writes them to its senone log, which gives the phones' states and their scores.  A rung
        whose scoring fails (no log, an unreadable one, a path that does not match the transcript)
        goes on to the next rung, as the ladder does."""
        pcm = _pcm(audio)
        for rung in range(len(self.ladder)):
            dec = self._decoder(rung)
            if not self._word_pass(dec, text, pcm):
                continue
            scored = self._score_senones(rung, dec.get_alignment(), pcm)
            found = _realign(*scored, audio, n_words, self.settings.duration_weight) if scored is not None else None
            if found is not None:
                notes = ["aligned over senone scores with phone durations and frame energy"]
                return found[0], found[1], notes + ([f"aligned on retry {rung} (wider beams)"] if rung else [])
        return None

    def _score_senones(self, rung: int, alignment, pcm: bytes) -> tuple[object, SenoneScores] | None:
        """The state-level alignment of ``alignment`` and its senone scores, from the scoring decoder of
        ``rung``; None if the decoder or its log fails (the log folder is removed after the pass)."""
        folder = Path(self._senone_dir())
        shutil.rmtree(folder, ignore_errors=True)  # nothing left from an earlier pass
        folder.mkdir(parents=True)
        try:
            scorer = self._decoder(rung, senones=True)
            scorer.set_alignment(alignment)
            self._decode_whole(scorer, pcm)
            logs = sorted(folder.glob("*.sen"))
            path = scorer.get_alignment()
            if path is None or len(logs) != 1:
                return None
            return path, read_senone_log(logs[0])
        except (RuntimeError, OSError, ValueError):
            return None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _senone_dir(self) -> str:
        """The folder the scoring decoders write their senone logs to.  It exists only during a scoring
        pass (:meth:`_score_senones` makes and removes it), so worker processes that exit without
        running finalizers leave nothing behind."""
        if self._senone_logs is None:
            self._senone_logs = tempfile.mkdtemp(prefix="mger-senones-")  # a unique name
        return self._senone_logs

    def _align_at(
        self, text: str, audio: np.ndarray, n_words: int, frate: int
    ) -> tuple[list[Segment], list[Segment], list[str]] | None:
        """(words, phones, notes) at ``frate`` frames per second: the ladder, then the energy check."""
        found = self._ladder(text, audio, n_words, silences=True, frate=frate)
        if found is None:
            return None
        (w_segs, p_segs), rung = found
        notes = [f"aligned on retry {rung} (wider beams)"] if rung else []
        if self.settings.energy_check:
            w_segs, p_segs, note = self._energy_check(text, audio, w_segs, p_segs, frate)
            notes += [note] if note else []
        return w_segs, p_segs, notes

    def _ladder(
        self, text: str, audio: np.ndarray, n_words: int, silences: bool, frate: int = 100
    ) -> tuple[tuple[list[Segment], list[Segment]], int] | None:
        """(words, phones) and the rung that aligned them, trying rungs in order; None if none did."""
        pcm = _pcm(audio)
        for rung in range(len(self.ladder)):
            result = self._align_pcm(self._decoder(rung, silences, frate), text, pcm, n_words, frame_step(frate))
            if result is not None:
                return result, rung
        return None

    def _energy_check(
        self, text: str, audio: np.ndarray, words: list[Segment], phones: list[Segment], frate: int = 100
    ) -> tuple[list[Segment], list[Segment], str | None]:
        """The alignment, or the pause-cut one where it agrees better with the energy (and a note saying so);
        the second pass runs at the first one's frame rate."""
        db = pauses.frame_db(audio)
        first = pauses.disagreement(db, words)
        if first[0] < pauses.TRIGGER_FRAMES:
            return words, phones, None
        kept = pauses.kept_frames(db)
        found = self._ladder(text, pauses.cut_audio(audio, kept), len(words), silences=False, frate=frate)
        if found is None:
            return words, phones, None
        (cut_words, cut_phones), _ = found
        new_words, new_phones = pauses.trim_edges(
            pauses.map_back(cut_words, kept, BOUNDARY_OFFSET), pauses.map_back(cut_phones, kept, BOUNDARY_OFFSET), db
        )
        second = pauses.disagreement(db, new_words)
        if sum(second) >= sum(first):
            return words, phones, None
        return (
            new_words,
            new_phones,
            (
                f"energy check: {first[0]} loud frames labelled silence; re-aligned "
                f"with pauses cut ({sum(first)} → {sum(second)} frames at odds with energy)"
            ),
        )

    @staticmethod
    def _decode_whole(dec, pcm: bytes) -> None:
        """One decoding pass over the whole utterance, with nothing carried over from earlier passes."""
        dec.reinit_feat()  # batch CMN from the initial mean again (see the module docstring)
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()

    @classmethod
    def _word_pass(cls, dec, text: str, pcm: bytes) -> bool:
        """The first pass (``set_align_text``: word sequence, optional silences, pronunciation variants),
        then ``set_alignment`` for the state-level pass; False where it finds no path."""
        dec.set_align_text(text)
        cls._decode_whole(dec, pcm)
        if dec.hyp() is None:
            return False
        dec.set_alignment()
        return True

    @classmethod
    def _align_pcm(
        cls, dec, text: str, pcm: bytes, n_words: int, step: float = FRAME
    ) -> tuple[list[Segment], list[Segment]] | None:
        if not cls._word_pass(dec, text, pcm):
            return None
        cls._decode_whole(dec, pcm)
        alignment = dec.get_alignment()
        if alignment is None:
            return None
        words: list[Segment] = []
        phones: list[Segment] = []
        for entry in alignment:
            name = strip_variant(entry.name)
            if is_non_speech(name):
                continue
            idx = len(words)
            words.append(Segment(_time(entry.start, step), _time(entry.start + entry.duration, step), name))
            phones += [Segment(_time(p.start, step), _time(p.start + p.duration, step), p.name, idx) for p in entry]
        return (words, phones) if len(words) == n_words else None
