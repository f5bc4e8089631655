"""The backend interface: align one utterance → words and phones with times, or a typed failure.

Backends register themselves by name in :data:`BACKENDS`; ``align.backend`` in params.yaml
selects one.  Times are seconds from the start of the wav.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Union

from mger.core.manifest import Utterance


@dataclass(frozen=True)
class Segment:
    """A labelled interval. ``word`` is the index of the owning word (phones, syllables)."""

    start: float
    end: float
    label: str
    word: int = -1


@dataclass
class Alignment:
    """One utterance's alignment; ``syllables`` is filled by :mod:`mger.alignment.syllables`.

    ``method`` is ``aligned`` (a real alignment) or ``uniform`` (the failure-policy
    fallback); ``notes`` records retries and pronunciation fallbacks.
    """

    utt_id: str
    duration: float
    words: list[Segment]
    phones: list[Segment] = field(default_factory=list)
    syllables: list[Segment] = field(default_factory=list)
    method: str = "aligned"
    notes: list[str] = field(default_factory=list)
    unknown_words: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlignmentFailure:
    """Why an utterance could not be aligned (the text goes into the report)."""

    utt_id: str
    reason: str
    unknown_words: dict[str, str] = field(default_factory=dict)


AlignResult = Union[Alignment, AlignmentFailure]


class Aligner(Protocol):
    """What a backend provides. Instances are built per worker process from params."""

    name: str

    def align(self, utt: Utterance) -> AlignResult: ...


BACKENDS: dict[str, Callable[..., Aligner]] = {}


def register(name: str) -> Callable[[Callable[..., Aligner]], Callable[..., Aligner]]:
    """Class decorator adding a backend to :data:`BACKENDS`."""

    def wrap(factory: Callable[..., Aligner]) -> Callable[..., Aligner]:
        BACKENDS[name] = factory
        return factory

    return wrap
