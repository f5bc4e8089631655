"""The ``mfa`` backend: the external Montreal Forced Aligner, run once over the whole manifest.

MFA cannot be installed on the machines this project is developed on (its ``kalpy-kaldi``
dependency needs conda-forge's Kaldi), so this path is tested with files in MFA's formats
written by the tests, never with the binary itself.

:meth:`MfaAligner.prepare` writes a corpus folder (``<workdir>/corpus/<speaker>/<utt>.wav``
plus ``.lab`` with the normalised transcript), runs ``mfa align CORPUS DICTIONARY
ACOUSTIC_MODEL OUTPUT`` and leaves one TextGrid per utterance under ``<workdir>/output``;
:meth:`MfaAligner.align` imports an utterance's ``words`` and ``phones`` tiers.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from mger.alignment.base import Alignment, AlignmentFailure, AlignResult, Segment, register
from mger.alignment.normalize import normalize_transcript
from mger.core.align_settings import MfaSettings
from mger.core.manifest import Utterance
from mger.core.reporting import StageError

INSTALL_HINT = (
    "the mfa backend needs the `mfa` command (Montreal Forced Aligner), which is not on PATH: "
    "install it with `conda install -c conda-forge montreal-forced-aligner`, then "
    "`mfa model download acoustic english_us_arpa` and `mfa model download dictionary english_us_arpa`"
)
_SILENCE = {"", "sil", "sp", "spn", "<eps>"}


def mfa_command(settings: MfaSettings, corpus: Path, output: Path) -> list[str]:
    """The ``mfa align`` command line."""
    return [
        settings.executable,
        "align",
        str(corpus),
        settings.dictionary,
        settings.acoustic_model,
        str(output),
        "--clean",
        "--overwrite",
        "--output_format",
        "long_textgrid",
        "--num_jobs",
        str(settings.jobs),
        "--beam",
        str(settings.beam),
        "--retry_beam",
        str(settings.retry_beam),
    ]


def write_mfa_corpus(utterances: Sequence[Utterance], corpus: Path) -> int:
    """One folder per speaker with ``<utt>.wav`` (a link or copy) and ``<utt>.lab``; returns count."""
    if corpus.exists():
        shutil.rmtree(corpus)
    n = 0
    for utt in utterances:
        words = normalize_transcript(utt.text)
        if not words:
            continue
        folder = corpus / utt.speaker
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{utt.utt_id}.wav"
        try:
            target.symlink_to(Path(utt.wav).resolve())
        except OSError:
            shutil.copy(utt.wav, target)
        (folder / f"{utt.utt_id}.lab").write_text(" ".join(words) + "\n", encoding="utf-8")
        n += 1
    return n


def read_mfa_textgrid(path: Path) -> tuple[list[Segment], list[Segment], float]:
    """(words, phones with their word index, duration) from an MFA TextGrid."""
    import textgrid

    tg = textgrid.TextGrid.fromFile(str(path))
    tiers = {tier.name: tier for tier in tg}
    if "words" not in tiers or "phones" not in tiers:
        raise ValueError(f"{path}: expected tiers 'words' and 'phones', found {sorted(tiers)}")
    words = [
        Segment(iv.minTime, iv.maxTime, iv.mark) for iv in tiers["words"] if iv.mark.strip().lower() not in _SILENCE
    ]
    phones = []
    for iv in tiers["phones"]:
        if iv.mark.strip().lower() in _SILENCE:
            continue
        mid = (iv.minTime + iv.maxTime) / 2
        owner = next((i for i, w in enumerate(words) if w.start <= mid < w.end), -1)
        phones.append(Segment(iv.minTime, iv.maxTime, iv.mark, owner))
    return words, [p for p in phones if p.word >= 0], float(tg.maxTime)


@register("mfa")
class MfaAligner:
    name = "mfa"

    def __init__(self, settings: MfaSettings = MfaSettings()) -> None:
        self.settings = settings
        self.output = Path(settings.workdir) / "output"

    def prepare(self, utterances: Sequence[Utterance]) -> None:
        """Write the corpus and run ``mfa align`` once; stops with one line if mfa is missing."""
        if shutil.which(self.settings.executable) is None:
            raise StageError(INSTALL_HINT)
        corpus = Path(self.settings.workdir) / "corpus"
        write_mfa_corpus(utterances, corpus)
        proc = subprocess.run(mfa_command(self.settings, corpus, self.output), capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StageError(f"mfa align failed (exit {proc.returncode}): {tail[0]}")

    def align(self, utt: Utterance) -> AlignResult:
        path = self.output / utt.speaker / f"{utt.utt_id}.TextGrid"
        if not path.is_file():
            return AlignmentFailure(utt.utt_id, f"MFA wrote no TextGrid ({path}): not aligned or no speakable words")
        try:
            words, phones, duration = read_mfa_textgrid(path)
        except ValueError as err:
            return AlignmentFailure(utt.utt_id, str(err))
        if not words:
            return AlignmentFailure(utt.utt_id, f"{path}: no words")
        return Alignment(utt.utt_id, duration, words, phones)
