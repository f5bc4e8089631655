"""Pronunciations for words no dictionary knows: eSpeak NG phonemes mapped to ARPAbet.

eSpeak's ``espeak_TextToPhonemes`` gives its own ASCII mnemonics (en-us voice).
:data:`ESPEAK_TO_ARPABET` maps each to zero or more ARPAbet phones (CMUdict's 39-phone set,
no stress digits).  It covers every phoneme of the phoneme tables an English voice uses
(``base``, ``base1``, ``en`` and the ``en-*`` dialect tables of ``phontab``;
:func:`english_mnemonics` reads them and a test checks the table against them).

Why a mapping can never fail: besides the table,

* stress and length marks (``'`` ``,`` ``%`` ``=`` before a phoneme, extra ``:`` after
  one), pauses, word and syllable boundaries, the glottal stop ``?``, tie bars and ``;``
  palatalisation are *dropped* on purpose: CMUdict writes none of them;
* language-switch markers (``(fr)`` ... ``(en)``, phoneme ``_^_``) are dropped and the
  foreign phonemes between them go through the same rules;
* a mnemonic outside the table (a foreign table's phoneme) is mapped by its longest known
  prefix (``y:`` → ``y`` ...); with no known prefix at all it is dropped and the drop is
  returned, never raised.

r-coloured vowels expand to vowel + R (``A@`` → AA R), rhotic schwa to ER and syllabic
l/n (``@L``, ``n-``) to AH L / AH N, as CMUdict writes them.
"""

from __future__ import annotations

import re
import struct
from functools import lru_cache

ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # English vowels and diphthongs (tables en, en-us, en-*)
    "a": ("AE",),
    "aa": ("AE",),
    "a#": ("AH",),
    "a2": ("AH",),
    "a#2": ("AH",),
    "A:": ("AA",),
    "A#": ("AE",),
    "A@": ("AA", "R"),
    "0": ("AA",),
    "0#": ("AA",),
    "02": ("AA",),
    "O": ("AO",),
    "O:": ("AO",),
    "O2": ("AO",),
    "O@": ("AO", "R"),
    "o@": ("AO", "R"),
    "V": ("AH",),
    "@": ("AH",),
    "@2": ("AH",),
    "@5": ("AH",),
    "@#": ("AH",),
    "@-": ("AH",),
    "3": ("ER",),
    "3:": ("ER",),
    "@L": ("AH", "L"),
    "I": ("IH",),
    "I2": ("IH",),
    "I#": ("IH",),
    "I2#": ("IH",),
    "i": ("IY",),
    "i:": ("IY",),
    "i@": ("IY", "AH"),
    "i@3": ("IH", "R"),
    "E": ("EH",),
    "E2": ("EH",),
    "E#": ("EH",),
    "e@": ("EH", "R"),
    "e": ("EH",),
    "e:": ("EY",),
    "e#": ("EH",),
    "eI": ("EY",),
    "aI": ("AY",),
    "aI2": ("AY",),
    "aI3": ("AY", "ER"),
    "aI@": ("AY", "ER"),
    "aU": ("AW",),
    "aU@": ("AW", "ER"),
    "a/": ("AE",),
    "OI": ("OY",),
    "o": ("OW",),
    "o:": ("OW",),
    "oU": ("OW",),
    "oU#": ("OW",),
    "u": ("UW",),
    "u:": ("UW",),
    "U": ("UH",),
    "U@": ("UH", "R"),
    "u@": ("UW", "ER"),
    "IR": ("IH", "R"),
    "VR": ("ER",),
    "A~": ("AA",),
    "O~": ("AO",),
    # consonants (en tables and the shared base1 table)
    "p": ("P",),
    "b": ("B",),
    "t": ("T",),
    "t#": ("T",),
    "t2": ("T",),
    "t[": ("T",),
    "d": ("D",),
    "d#": ("D",),
    "d[": ("D",),
    "k": ("K",),
    "c": ("K",),
    "q": ("K",),
    "g": ("G",),
    "Q": ("G",),
    "Q^": ("G",),
    'Q"': ("G",),
    "f": ("F",),
    "v": ("V",),
    "v#": ("V",),
    "B": ("V",),
    "T": ("TH",),
    "D": ("DH",),
    "s": ("S",),
    "s.": ("S",),
    "s;": ("S",),
    "z": ("Z",),
    "z#": ("Z",),
    "z/2": ("Z",),
    "z.": ("Z",),
    "z;": ("Z",),
    "S": ("SH",),
    "S;": ("SH",),
    "Z": ("ZH",),
    "Z;": ("ZH",),
    "h": ("HH",),
    "C": ("HH",),
    "X": ("HH",),
    "x": ("K",),
    "tS": ("CH",),
    "tS;": ("CH",),
    "dZ": ("JH",),
    "dZ;": ("JH",),
    "J": ("JH",),
    "J^": ("Y",),
    "m": ("M",),
    "n": ("N",),
    "n.": ("N",),
    "n^": ("N", "Y"),
    "N": ("NG",),
    "l": ("L",),
    "l/": ("L",),
    "l/2": ("L",),
    "l/3": ("L",),
    "l^": ("L",),
    "l.": ("L",),
    "l#": ("L",),
    "L": ("L",),
    "L/": ("L",),
    "r": ("R",),
    "r-": ("R",),
    "r/": ("R",),
    "r.": ("R",),
    'r"': ("R",),
    "R": ("R",),
    "R2": ("R",),
    "R3": ("R",),
    "**": ("R",),
    "w": ("W",),
    "w#": ("W",),
    "W": ("W",),
    "j": ("Y",),
    "n-": ("AH", "N"),
    "m-": ("AH", "M"),
    "N-": ("AH", "NG"),
    "l-": ("AH", "L"),
    # placeholder vowels of the base tables (#a: "a vowel like a")
    "#@": ("AH",),
    "#a": ("AE",),
    "#e": ("EH",),
    "#i": ("IY",),
    "#o": ("OW",),
    "#u": ("UW",),
}

# Dropped on purpose: not segments CMUdict writes (pauses, boundaries, stress and length
# marks, glottal stop, palatalisation, language switch, tone/rule markers).
DROPPED: frozenset[str] = frozenset("_ _: _! _:: _| _;_ _^_ _X1 #X1 1 || | ? ; : - * % %% , ,, ' '' = '!".split())

_STRESS = "',%="
_SWITCH = re.compile(r"\([a-z\-]+\)")
_ENGLISH_TABLES = ("base", "base1", "en")


def _map_one(raw: str) -> tuple[tuple[str, ...], str | None]:
    """ARPAbet phones of one mnemonic and, when it had to be dropped unknown, the mnemonic."""
    if raw in DROPPED:
        return (), None
    ph = raw.lstrip(_STRESS)
    if not ph or ph in DROPPED:
        return (), None
    if ph in ESPEAK_TO_ARPABET:
        return ESPEAK_TO_ARPABET[ph], None
    for end in range(len(ph) - 1, 0, -1):  # longest known prefix: "i::" -> "i:", "y:" -> ...
        if ph[:end] in ESPEAK_TO_ARPABET:
            return ESPEAK_TO_ARPABET[ph[:end]], None
    return (), raw


def espeak_to_arpabet_checked(mnemonics: str) -> tuple[list[str], list[str]]:
    """ARPAbet phones of a space-separated eSpeak phoneme string, and the mnemonics dropped as unknown."""
    out: list[str] = []
    unknown: list[str] = []
    for raw in _SWITCH.sub(" ", mnemonics).split():
        phones, dropped = _map_one(raw)
        out.extend(phones)
        if dropped is not None:
            unknown.append(dropped)
    return out, unknown


def espeak_to_arpabet(mnemonics: str) -> list[str]:
    """ARPAbet phones of an eSpeak phoneme string (never raises; see the module docstring)."""
    return espeak_to_arpabet_checked(mnemonics)[0]


@lru_cache(maxsize=4096)
def pronounce(word: str) -> tuple[str, ...]:
    """ARPAbet pronunciation of ``word`` from eSpeak NG's en-us rules (cached)."""
    from mger.corpus.espeak import engine

    return tuple(espeak_to_arpabet(engine().phonemes(word)))


def english_mnemonics() -> dict[str, set[str]]:
    """Table name → phoneme mnemonics, for every phoneme table an English voice draws from.

    Read from eSpeak's compiled ``phontab`` (per table: phoneme count, included table, 32-byte
    name, then 16-byte entries whose first 4 bytes are the mnemonic), so a new eSpeak release
    with new phonemes makes the coverage test fail instead of the aligner.
    """
    import os

    import espeakng_loader

    with open(os.path.join(espeakng_loader.get_data_path(), "phontab"), "rb") as fh:
        data = fh.read()
    tables: dict[str, set[str]] = {}
    pos = 4
    for _ in range(data[0]):
        n_phonemes = data[pos]
        name = data[pos + 4 : pos + 36].split(b"\0")[0].decode("ascii")
        pos += 36
        names = {
            struct.unpack_from("<I", data, pos + 16 * k)[0].to_bytes(4, "little").split(b"\0")[0].decode("latin-1")
            for k in range(n_phonemes)
        }
        pos += 16 * n_phonemes
        if name in _ENGLISH_TABLES or name.startswith("en-"):
            tables[name] = {n for n in names if n and n.isprintable()}
    return tables
