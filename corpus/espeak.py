"""eSpeak NG through its C API (ctypes), from the ``espeakng-loader`` wheel.

One place for the speech synthesizer the project uses twice: the synthetic corpus
(:mod:`mger.corpus.synth`) speaks with it, and the aligner asks it for pronunciations of
words no dictionary knows (:mod:`mger.alignment.g2p`).

The library is driven in synchronous mode (``AUDIO_OUTPUT_SYNCHRONOUS``) with phoneme
events switched on, so every call to :func:`synthesize` returns the audio and the list of
WORD / PHONEME events with their exact sample positions (22,050 Hz).  The library keeps
global state, so one :class:`Espeak` exists per process.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 22050

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 1
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SSML = 0x10

EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_SENTENCE = 2
EVENT_MARK = 3
EVENT_PLAY = 4
EVENT_END = 5
EVENT_MSG_TERMINATED = 6
EVENT_PHONEME = 7

PARAM_RATE = 1
PARAM_VOLUME = 2
PARAM_PITCH = 3
PARAM_RANGE = 4
PARAM_WORDGAP = 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Event:
    """One synthesis event. ``text_position`` is 1-based in the input string (bytes of UTF-8)."""

    type: int
    text_position: int
    length: int
    sample: int
    phoneme: str = ""


@dataclass(frozen=True)
class Prosody:
    """eSpeak parameters: rate in words/min, volume 0-200, pitch 0-99, range 0-99."""

    rate: int = 175
    volume: int = 100
    pitch: int = 50
    range: int = 50


class Espeak:
    """The process-wide eSpeak NG engine. Use :func:`engine` to get it."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), _INITIALIZE_PHONEME_EVENTS
        )
        if rate != SAMPLE_RATE:
            raise RuntimeError(f"espeak_Initialize returned {rate}, expected {SAMPLE_RATE} Hz")
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        self._chunks: list[np.ndarray] = []
        self._events: list[Event] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: ctypes does not
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    def _on_audio(self, wav: ctypes.POINTER(ctypes.c_short), n: int, events: ctypes.POINTER(_Event)) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            phoneme = ev.id.string.decode("ascii", "replace") if ev.type == EVENT_PHONEME else ""
            self._events.append(Event(ev.type, ev.text_position, ev.length, ev.sample, phoneme))
            i += 1
        return 0

    def _set_voice(self, voice: str, prosody: Prosody) -> None:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        for param, value in (
            (PARAM_RATE, prosody.rate),
            (PARAM_VOLUME, prosody.volume),
            (PARAM_PITCH, prosody.pitch),
            (PARAM_RANGE, prosody.range),
        ):
            self._lib.espeak_SetParameter(param, int(value), 0)

    def synthesize(
        self, text: str, voice: str, prosody: Prosody = Prosody(), ssml: bool = False, rand_seed: int = 1
    ) -> tuple[np.ndarray, list[Event]]:
        """Speak ``text``; return int16 samples at 22,050 Hz and the events in order."""
        data = text.encode("utf-8")
        with self._lock:
            self._set_voice(voice, prosody)
            self._chunks, self._events = [], []
            # Breathy voice variants draw noise from libc rand(): seed it so output is reproducible.
            self._lib.espeak_ng_SetRandSeed(ctypes.c_long(rand_seed))
            flags = _CHARS_UTF8 | (_SSML if ssml else 0)
            err = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed with code {err} on {text!r}")
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return audio.astype(np.int16), list(self._events)

    def phonemes(self, word: str, voice: str = "en-us") -> str:
        """eSpeak's own phoneme mnemonics for ``word`` (ASCII, phonemes separated by spaces)."""
        return self.phonemes_many([word], voice)[0]

    def phonemes_many(self, words: list[str], voice: str = "en-us") -> list[str]:
        """:meth:`phonemes` of each word, each spoken alone; the voice is set once (CMUdict in ~3 s)."""
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice {voice!r}")
            return [self._word_phonemes(word) for word in words]

    def _word_phonemes(self, word: str) -> str:
        buf = ctypes.c_char_p(word.encode("utf-8"))
        out: list[str] = []
        separator = ord(" ") << 8  # bits 8-23: separator between phonemes
        while buf.value:
            chunk = self._lib.espeak_TextToPhonemes(ctypes.byref(buf), _CHARS_UTF8, separator)
            if chunk:
                out.append(chunk.decode("utf-8", "replace"))
        return " ".join(out).strip()


@lru_cache(maxsize=1)
def engine() -> Espeak:
    """The process's one eSpeak NG engine (initialised on first use)."""
    return Espeak()
