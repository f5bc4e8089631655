"""Word classes for alignment breakdowns and filler pronunciations: fillers, function words, content words.

Aligners fail differently on each class: fillers ("um", "mm") have no fixed pronunciation
and are often hummed, function words are short and reduced, content words carry stress.
``align-eval`` reports each class apart so a good average cannot hide bad fillers.

Kept here, not in :mod:`mger.alignment.normalize`, because normalisation decides *which* words
are aligned while this module only labels them.
"""

from __future__ import annotations

from typing import Iterable

FILLERS: frozenset[str] = frozenset("um uh mm hmm hm mhm uhm umm uhh er erm ah eh mmm uh-huh mm-hmm huh".split())

FUNCTION_WORDS: frozenset[str] = frozenset(
    """
a an the this that these those my your his her its our their mine yours hers ours theirs
i me you he him she it we us they them myself yourself himself herself itself ourselves themselves
who whom whose which what where when why how
and or but nor so yet if than because while although though unless until since as
of in on at to for from by with about into onto over under after before between through during
without within against among around up down out off near past upon via per
is am are was were be been being do does did done have has had having
will would shall should can could may might must
not no there here then just only also very too
i'm you're he's she's it's we're they're i've you've we've they've i'd you'd he'd she'd we'd they'd
i'll you'll he'll she'll we'll they'll that's there's what's who's let's
don't doesn't didn't isn't aren't wasn't weren't can't couldn't won't wouldn't shouldn't haven't hasn't hadn't
""".split()
)

CLASSES = ("filler", "function", "content")


def word_class(word: str) -> str:
    """``filler``, ``function`` or ``content`` for one lower-case word."""
    if word in FILLERS:
        return "filler"
    return "function" if word in FUNCTION_WORDS else "content"


def group_class(words: Iterable[str]) -> str:
    """The class of a group of words (one eSpeak truth entry such as "in the").

    A filler anywhere makes the group a filler; otherwise it is a function group only when
    every word is a function word.
    """
    classes = [word_class(w) for w in words]
    if "filler" in classes:
        return "filler"
    return "function" if classes and all(c == "function" for c in classes) else "content"


# Pronunciations the aligner adds for fillers, beside CMUdict's one (``mm`` M, ``hmm`` HH M,
# ``um`` AH M ...).  A filler has no spelling norm: "hmm" is hummed with or without a vowel,
# "mm" closed or opened.  The alignment pass picks the variant that fits the audio.  The
# letter readings ("mm" as EH M EH M, "em em") are how text-to-speech voices such as
# eSpeak say these spellings; with CMUdict's M alone they were placed 180-550 ms off.
FILLER_VARIANTS: dict[str, tuple[str, ...]] = {
    "mm": ("AH M", "EH M", "EH M EH M"),
    "mmm": ("AH M", "EH M"),
    "hmm": ("HH AH M", "M", "AH M"),
    "hm": ("HH AH M", "M"),
    "mhm": ("M HH M", "M HH AH M"),
    "um": ("ER M",),
    "uhm": ("AH M",),
    "umm": ("AH M",),
    "uh": ("ER",),
    "uhh": ("AH",),
    "er": ("AH",),
    "erm": ("ER M", "AH M"),
    "huh": ("HH AH",),
}
