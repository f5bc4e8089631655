"""Transcript normalisation for dictionary-based aligners.

IEMOCAP transcripts carry markers (``[LAUGHTER]``, ``[BREATHING]``, ``[GARBAGE]``), casing,
punctuation, hyphenated words, digits and contractions.  :func:`normalize_transcript` returns
the lower-case words a pronouncing dictionary (CMUdict) knows how to look up:

* bracketed markers are removed (they are not speech);
* hyphens and slashes split words (``twenty-minute`` → ``twenty minute``);
* digits are spelled out as cardinals (``5`` → ``five``, ``1990`` → ``one thousand nine
  hundred ninety``), ``%`` → ``percent``, ``&`` → ``and``;
* clock times are read as times: ``10:30`` → ``ten thirty``, ``8:05`` → ``eight oh five``,
  ``9:00`` → ``nine o'clock``.  A speaker may also say ``eight zero five`` (eSpeak does), so
  the ``oh`` and ``o'clock`` of a time get written forms (``0``, ``00``) that
  :func:`written_forms` hands to the aligner, which pronounces them both ways;
* punctuation is stripped, except apostrophes inside words: contractions stay in their
  dictionary forms (``don't``, ``i'm``, ``we're``);
* letters outside ASCII are transliterated (NFKD, accents dropped, a few ligatures and
  letters spelled out: ``Café déjà vu, naïve señor`` → ``cafe deja vu naive senor``), so a
  non-English name stays one word instead of falling apart into fragments.

:func:`word_spans` also gives each word the character span of the transcript it came from,
so a text encoder that reads the transcript as written can pool its sub-tokens onto exactly
the words the aligner timed.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

_MARKER = re.compile(r"\[[^\]]*\]|<[^>]*>")
_TOKEN = re.compile(r"[a-z0-9']+|%|&")
_PIECE = re.compile(r"[^\s/\-\u2010-\u2015]+")  # whitespace, slashes and hyphens/dashes split words
_APOSTROPHE_MAP = {"’": "'", "‘": "'", "ʼ": "'"}
_APOSTROPHES = str.maketrans(_APOSTROPHE_MAP)
_SPELLED = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "þ": "th",
        "Þ": "Th",
        "ð": "d",
        "Ð": "D",
        "ı": "i",
    }
    | _APOSTROPHE_MAP
)
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_CLOCK = re.compile(r"(?<![\d:])([01]?\d|2[0-4]):([0-5]\d)(?![\d:])")
# The words of a time that are said in more than one way, and the written form that carries both.
_CLOCK_FORMS = {"oh": "0", "o'clock": "00"}


def number_words(n: int) -> list[str]:
    """Cardinal number in words, 0 <= n < 10**12."""
    if n < 0 or n >= 10**12:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + (number_words(n % 10) if n % 10 else [])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return number_words(n // size) + [name] + (number_words(rest) if rest else [])
    raise AssertionError("unreachable")


def _token_words(token: str) -> list[str]:
    if token == "%":
        return ["percent"]
    if token == "&":
        return ["and"]
    word = token.strip("'")
    if not word:
        return []
    if word.isdigit():
        return number_words(int(word[:12]))
    parts = re.findall(r"\d+|[a-z']+", word)
    out: list[str] = []
    for part in parts:
        out += number_words(int(part[:12])) if part.isdigit() else [part.strip("'")] if part.strip("'") else []
    return out


def to_ascii(text: str) -> str:
    """Transliterate to ASCII: a few letters spelled out, then NFKD with the accents dropped."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPELLED))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def clock_words(hours: int, minutes: int) -> list[str]:
    """A clock time in words: (8, 5) → eight oh five, (9, 0) → nine o'clock, (10, 30) → ten thirty."""
    if minutes == 0:
        return number_words(hours) + ["o'clock"]
    return number_words(hours) + (["oh"] if minutes < 10 else []) + number_words(minutes)


def _spell_clocks(text: str) -> str:
    return _CLOCK.sub(lambda m: " " + " ".join(clock_words(int(m.group(1)), int(m.group(2)))) + " ", text)


def normalize_token(token: str) -> list[str]:
    """Dictionary words for one whitespace-separated transcript token (may be empty)."""
    text = _MARKER.sub(" ", to_ascii(token).lower()).replace("-", " ").replace("/", " ")
    return [w for tok in _TOKEN.findall(_spell_clocks(text)) for w in _token_words(tok)]


class WordSpan(NamedTuple):
    """A dictionary word and the characters ``text[start:end]`` of the transcript it came from
    (words spelled out of one piece, like the digits ``1990``, share its span)."""

    word: str
    start: int
    end: int


def blank_markers(text: str) -> str:
    """``text`` with its markers (``[LAUGHTER]``, ``<sil>``) replaced by as many spaces, so the
    other characters keep their positions."""
    return _MARKER.sub(lambda m: " " * len(m.group()), text)


def word_spans(text: str) -> list[WordSpan]:
    """The dictionary words of a transcript with their character spans, in order."""
    return [
        WordSpan(w, m.start(), m.end())
        for m in _PIECE.finditer(blank_markers(text))
        for w in normalize_token(m.group())
    ]


def _latin(char: str) -> bool:
    """An apostrophe, or a letter that transliterates to ASCII letters (``é`` ``ø`` ``ß``; not ``ǃ`` or ``北``)."""
    return char == "'" or to_ascii(char).isalpha()


def written_forms(text: str) -> list[tuple[str, str]]:
    """(dictionary word, written form) of each word of a transcript, in order.

    The written form is the transcript's own spelling, lower case and without punctuation,
    where it has letters outside ASCII, all of them Latin letters with diacritics (or letters
    spelled out, ``ø`` ``ß``), and makes exactly one word of two letters or more (``Inés`` →
    ``("ines", "inés")``); otherwise the word itself (eSpeak would read ``北京`` or ``ñ`` as the
    characters' names).  A G2P should read the written form: eSpeak says
    ``Inés`` and ``ines`` differently (nine phones against four), and so may a speaker.
    The ``oh`` and ``o'clock`` of a clock time are written ``0`` and ``00`` (``zero`` or ``oh``).
    """
    out: list[tuple[str, str]] = []
    for m in _PIECE.finditer(blank_markers(text)):
        words = normalize_token(m.group())
        form = re.sub(r"[^\w']", "", m.group().translate(_APOSTROPHES).lower()).strip("'")
        keep = len(words) == 1 and not form.isascii() and len(form) > 1 and all(_latin(c) for c in form)
        clock = _CLOCK.search(to_ascii(m.group()))
        out += [(words[0], form)] if keep else [(w, _CLOCK_FORMS.get(w, w) if clock else w) for w in words]
    return out


def normalize_transcript(text: str) -> list[str]:
    """The dictionary words of a transcript, in order (markers and punctuation removed)."""
    return [span.word for span in word_spans(text)]
