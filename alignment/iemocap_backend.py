"""The ``iemocap`` backend: the forced alignments IEMOCAP ships with the corpus.

For ``.../sentences/wav/<dialog>/<utt>.wav`` it reads
``.../sentences/ForcedAlignment/<dialog>/<utt>.wdseg`` (words) and ``<utt>.phseg`` (phones,
assigned to the word containing their midpoint).  A missing ``.wdseg`` is a failure (real
IEMOCAP lacks some, e.g. Ses03M_impro03_M001) handled by the failure policy; a missing
``.phseg`` means words only (syllables then come from pyphen).
"""

from __future__ import annotations

from pathlib import Path

from mger.alignment.base import Alignment, AlignmentFailure, AlignResult, Segment, register
from mger.alignment.sphinx_segfiles import read_segfile
from mger.core.audio import audio_info
from mger.core.manifest import Utterance


def segfile_path(wav: str | Path, suffix: str) -> Path | None:
    """The ForcedAlignment file beside an IEMOCAP sentence wav; None if the wav is not laid out as
    ``.../sentences/wav/<dialog>/<utt>.wav``."""
    wav = Path(wav)
    if len(wav.parents) < 3 or wav.parent.parent.name != "wav":
        return None
    return wav.parents[2] / "ForcedAlignment" / wav.parent.name / f"{wav.stem}{suffix}"


def _assign(phones: list[Segment], words: list[Segment]) -> list[Segment]:
    out = []
    for p in phones:
        mid = (p.start + p.end) / 2
        owner = next((i for i, w in enumerate(words) if w.start <= mid < w.end), -1)
        if owner >= 0:
            out.append(Segment(p.start, p.end, p.label, owner))
    return out


@register("iemocap")
class IemocapAligner:
    name = "iemocap"

    def align(self, utt: Utterance) -> AlignResult:
        wdseg = segfile_path(utt.wav, ".wdseg")
        if wdseg is None:
            layout = ".../sentences/wav/<dialog>/<utt>.wav"
            return AlignmentFailure(utt.utt_id, f"{utt.wav}: not in IEMOCAP's layout ({layout}), no .wdseg to read")
        if not wdseg.is_file():
            return AlignmentFailure(utt.utt_id, f"no word segmentation file {wdseg}")
        words = [Segment(r.start, r.end, r.label.lower()) for r in read_segfile(wdseg)]  # lower case like CMUdict
        if not words:
            return AlignmentFailure(utt.utt_id, f"{wdseg}: no words in the segmentation")
        phseg = segfile_path(utt.wav, ".phseg")
        notes = []
        phones: list[Segment] = []
        if phseg is not None and phseg.is_file():
            phones = _assign([Segment(r.start, r.end, r.label.upper()) for r in read_segfile(phseg)], words)
        else:
            notes.append("no .phseg: words only, syllables from pyphen")
        return Alignment(utt.utt_id, audio_info(utt.wav).duration, words, phones, notes=notes)
