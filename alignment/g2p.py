"""Pronunciations for words no dictionary knows: eSpeak NG phonemes mapped to ARPAbet.

eSpeak's ``espeak_TextToPhonemes`` gives its own ASCII mnemonics (en-us voice).
:data:`ESPEAK_TO_ARPABET` maps each to zero or more ARPAbet phones (CMUdict's 39-phone set,
no stress digits).  Stress marks (``'`` primary, ``,`` secondary) are dropped; an unknown
mnemonic is retried without trailing modifiers (``#``, digits); the glottal stop ``?`` and
pauses map to nothing.  r-coloured vowels expand to vowel + R (``A@`` → AA R), rhotic schwa to
ER and syllabic l/n (``@L``, ``n-``) to AH L / AH N, as CMUdict writes them.
"""

from __future__ import annotations

from functools import lru_cache

ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # vowels and diphthongs
    "a": ("AE",), "aa": ("AE",), "a#": ("AH",), "A:": ("AA",), "A@": ("AA", "R"), "0": ("AA",),
    "O": ("AO",), "O:": ("AO",), "O@": ("AO", "R"), "o@": ("AO", "R"), "V": ("AH",), "@": ("AH",),
    "@2": ("AH",), "@5": ("AH",), "3": ("ER",), "3:": ("ER",), "@L": ("AH", "L"), "I": ("IH",),
    "I2": ("IH",), "I#": ("IH",), "i": ("IY",), "i:": ("IY",), "i@": ("IY", "AH"), "i@3": ("IH", "R"),
    "E": ("EH",), "E2": ("EH",), "e@": ("EH", "R"), "eI": ("EY",), "aI": ("AY",), "aI3": ("AY", "ER"),
    "aI@": ("AY", "ER"), "aU": ("AW",), "aU@": ("AW", "ER"), "OI": ("OY",), "oU": ("OW",), "u:": ("UW",),
    "U": ("UH",), "U@": ("UH", "R"), "u@": ("UW", "ER"), "IR": ("IH", "R"), "VR": ("ER",),
    # consonants
    "p": ("P",), "b": ("B",), "t": ("T",), "t#": ("T",), "d": ("D",), "k": ("K",), "g": ("G",),
    "f": ("F",), "v": ("V",), "T": ("TH",), "D": ("DH",), "s": ("S",), "z": ("Z",), "S": ("SH",),
    "Z": ("ZH",), "h": ("HH",), "tS": ("CH",), "dZ": ("JH",), "m": ("M",), "n": ("N",), "N": ("NG",),
    "l": ("L",), "r": ("R",), "r-": ("R",), "w": ("W",), "j": ("Y",), "n-": ("AH", "N"),
    "m-": ("AH", "M"), "l-": ("AH", "L"), "x": ("K",), "C": ("HH",), "W": ("W",),
    # nothing
    "?": (), "_": (), "_:": (), "_!": (), "||": (), "|": (),
}


def espeak_to_arpabet(mnemonics: str) -> list[str]:
    """Map a space-separated eSpeak phoneme string to ARPAbet phones.

    Raises ``KeyError`` naming the mnemonic when a phoneme has no mapping.
    """
    out: list[str] = []
    for raw in mnemonics.split():
        ph = raw.lstrip("',%=")
        if not ph:
            continue
        if ph not in ESPEAK_TO_ARPABET:
            ph = ph.rstrip("#0123456789") or ph
        if ph not in ESPEAK_TO_ARPABET:
            raise KeyError(f"no ARPAbet mapping for eSpeak phoneme {raw!r}")
        out.extend(ESPEAK_TO_ARPABET[ph])
    return out


@lru_cache(maxsize=4096)
def pronounce(word: str) -> tuple[str, ...]:
    """ARPAbet pronunciation of ``word`` from eSpeak NG's en-us rules (cached)."""
    from pipeline.espeak import engine

    return tuple(espeak_to_arpabet(engine().phonemes(word)))
