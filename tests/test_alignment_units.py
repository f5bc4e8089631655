"""Pure parts of the aligner: normalisation, eSpeak→ARPAbet, syllables, Sphinx files, MFA I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from mger.alignment.base import Segment
from mger.alignment.g2p import (
    DROPPED,
    ESPEAK_TO_ARPABET,
    english_mnemonics,
    espeak_to_arpabet,
    espeak_to_arpabet_checked,
    pronounce,
)
from mger.alignment.g2p_eval import edit_distance, evaluate_cmudict
from mger.alignment.mfa_backend import (
    INSTALL_HINT,
    MfaAligner,
    MfaSettings,
    mfa_command,
    read_mfa_textgrid,
    write_mfa_corpus,
)
from mger.alignment.normalize import normalize_transcript, number_words, written_forms
from mger.alignment.sphinx_segfiles import parse_segfile
from mger.alignment.syllables import LEGAL_ONSETS, add_syllables, label_syllables, syllabify
from mger.core.manifest import Utterance
from mger.core.reporting import StageError
from tests.builders import iemocap_row, write_tone


@pytest.mark.parametrize(
    "text, words",
    [
        ("[LAUGHTER] Excuse me, is this the line? [BREATHING]", ["excuse", "me", "is", "this", "the", "line"]),
        ("It is a twenty-minute drive.", ["it", "is", "a", "twenty", "minute", "drive"]),
        ("The office closes at 5 o'clock.", ["the", "office", "closes", "at", "five", "o'clock"]),
        (
            "We have 2 tickets, 1990 of them & 50% off",
            [
                "we",
                "have",
                "two",
                "tickets",
                "one",
                "thousand",
                "nine",
                "hundred",
                "ninety",
                "of",
                "them",
                "and",
                "fifty",
                "percent",
                "off",
            ],
        ),
        ("I DON'T know, we're 'fine'.", ["i", "don't", "know", "we're", "fine"]),
        ("[LAUGHTER] [GARBAGE]", []),
        ("", []),
        ("Café déjà vu, naïve señor", ["cafe", "deja", "vu", "naive", "senor"]),  # one word each, not fragments
        ("Straße — Ærø, it’s São Paulo", ["strasse", "aero", "it's", "sao", "paulo"]),
    ],
)
def test_normalize_transcript(text: str, words: list[str]) -> None:
    assert normalize_transcript(text) == words


def test_written_forms_keep_the_spelling_of_non_ascii_words() -> None:
    forms = written_forms("José and Zoë, Björn’s 3rd café-bar [LAUGHTER] Núñez!")
    assert [w for w, _ in forms] == normalize_transcript("José and Zoë, Björn’s 3rd café-bar [LAUGHTER] Núñez!")
    assert forms == [
        ("jose", "josé"),
        ("and", "and"),
        ("zoe", "zoë"),
        ("bjorn's", "björn's"),
        ("three", "three"),
        ("rd", "rd"),
        ("cafe", "café"),
        ("bar", "bar"),
        ("nunez", "núñez"),
    ]
    assert written_forms("Ωmega 北京abc Ñ ǃXóõ Łódź") == [
        ("mega", "mega"),
        ("abc", "abc"),
        ("n", "n"),
        ("xoo", "xoo"),
        ("lodz", "łódź"),
    ]


@pytest.mark.parametrize(
    "text, words, forms",
    [
        ("at 8:05.", ["at", "eight", "oh", "five"], ["at", "eight", "0", "five"]),
        ("(9:00)", ["nine", "o'clock"], ["nine", "00"]),
        ("until 10:40, um", ["until", "ten", "forty", "um"], ["until", "ten", "forty", "um"]),
        ("12:07pm", ["twelve", "oh", "seven", "pm"], ["twelve", "0", "seven", "pm"]),
        ("3:2 and 45:00", ["three", "two", "and", "forty", "five", "zero"], None),  # no clock times
    ],
)
def test_clock_times_are_read_as_times(text: str, words: list[str], forms: list[str] | None) -> None:
    """A time's leading zero is "oh" and its :00 "o'clock"; their written forms 0 / 00 let the aligner
    also accept "zero" (eSpeak's reading)."""
    assert normalize_transcript(text) == words
    assert [f for _, f in written_forms(text)] == (forms or words)
    assert [w for w, _ in written_forms(text)] == words


def test_number_words() -> None:
    assert number_words(0) == ["zero"]
    assert number_words(115) == ["one", "hundred", "fifteen"]
    assert number_words(2_000_021) == ["two", "million", "twenty", "one"]
    with pytest.raises(ValueError):
        number_words(-1)


@pytest.mark.parametrize(
    "espeak, arpabet",
    [
        ("w 'V n d 3 f @L", ["W", "AH", "N", "D", "ER", "F", "AH", "L"]),
        ("s t r 'E N T", ["S", "T", "R", "EH", "NG", "TH"]),
        ("k 'I ? n-", ["K", "IH", "AH", "N"]),
        ("tS '3: tS", ["CH", "ER", "CH"]),
        ("k j 'U@", ["K", "Y", "UH", "R"]),
        ("b '0 t# @L", ["B", "AA", "T", "AH", "L"]),
        ("S 'a d @ n f r ,OI d", ["SH", "AE", "D", "AH", "N", "F", "R", "OY", "D"]),
    ],
)
def test_espeak_to_arpabet_table(espeak: str, arpabet: list[str]) -> None:
    assert espeak_to_arpabet(espeak) == arpabet


def test_espeak_table_targets_are_arpabet_and_unknowns_are_dropped_not_raised() -> None:
    arpabet = set(
        "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH".split()
    )
    assert all(set(v) <= arpabet for v in ESPEAK_TO_ARPABET.values())
    assert espeak_to_arpabet_checked("Q~ k") == (["G", "K"], [])  # longest known prefix
    assert espeak_to_arpabet_checked("k Y: t") == (["K", "T"], ["Y:"])  # nothing known: dropped and returned


def test_every_english_phoneme_of_espeak_is_mapped_or_deliberately_dropped() -> None:
    tables = english_mnemonics()
    assert {"base", "base1", "en", "en-us"} <= set(tables)
    missing = {m for names in tables.values() for m in names if m not in ESPEAK_TO_ARPABET and m not in DROPPED}
    assert missing == set()


@pytest.mark.parametrize(
    "espeak, arpabet",
    [
        (",E f b ,i: ; 'aI", ["EH", "F", "B", "IY", "AY"]),  # FBI: ';' palatalisation dropped
        ("(fr)k w a s 'A~(en)", ["K", "W", "AE", "S", "AA"]),  # language switch markers dropped
        ("w 'i::", ["W", "IY"]),  # extra length mark
        ("a# d 'I S @- n @L", ["AH", "D", "IH", "SH", "AH", "N", "AH", "L"]),
    ],
)
def test_espeak_marks_and_rare_phonemes(espeak: str, arpabet: list[str]) -> None:
    assert espeak_to_arpabet(espeak) == arpabet


def test_edit_distance() -> None:
    assert edit_distance(("K", "AE", "T"), ("K", "AE", "T")) == 0
    assert edit_distance(("K", "AE", "T"), ("K", "AH", "T", "S")) == 2
    assert edit_distance((), ("AH",)) == 1


def test_every_cmudict_word_gets_an_espeak_pronunciation() -> None:
    """All ~126k words of CMUdict through eSpeak (~10 s); the phone error rate says how good OOV words are."""
    report = evaluate_cmudict()
    print(
        f"\ng2p vs CMUdict: {report.words} words, PER {report.phone_error_rate:.1%}, exact {report.word_accuracy:.1%}"
    )
    assert report.words > 120_000 and report.empty == [] and report.unknown_mnemonics == {}
    assert report.phone_error_rate < 0.12 and report.word_accuracy > 0.55


def test_pronounce_unknown_word_through_espeak() -> None:
    assert pronounce("zorblax") == ("Z", "AO", "R", "B", "L", "AE", "K", "S")


@pytest.mark.parametrize(
    "word, phones, syllables",
    [
        ("extra", "EH1 K S T R AH0", [["EH1", "K"], ["S", "T", "R", "AH0"]]),
        ("strength", "S T R EH1 NG K TH", [["S", "T", "R", "EH1", "NG", "K", "TH"]]),
        ("wonderful", "W AH1 N D ER0 F AH0 L", [["W", "AH1", "N"], ["D", "ER0"], ["F", "AH0", "L"]]),
        ("excuse", "IH0 K S K Y UW1 Z", [["IH0", "K"], ["S", "K", "Y", "UW1", "Z"]]),
        ("absolutely", "AE2 B S AH0 L UW1 T L IY0", [["AE2", "B"], ["S", "AH0"], ["L", "UW1", "T"], ["L", "IY0"]]),
        ("hmm", "HH M", [["HH", "M"]]),
    ],
)
def test_syllabify_known_words(word: str, phones: str, syllables: list[list[str]]) -> None:
    assert syllabify(phones.split()) == syllables


def test_legal_onsets_exclude_illegal_clusters() -> None:
    assert ("T", "L") not in LEGAL_ONSETS and ("NG",) not in LEGAL_ONSETS and ("S", "T", "R") in LEGAL_ONSETS


def test_syllable_labels_and_spans() -> None:
    assert label_syllables("wonderful", syllabify("W AH1 N D ER0 F AH0 L".split())) == ["won", "der", "ful"]
    # pyphen keeps "every" whole while the phones have three syllables: letters split by phone counts.
    assert label_syllables("every", [["EH"], ["V", "ER"], ["IY"]]) == ["e", "ver", "y"]
    word = Segment(1.0, 1.6, "extra")
    phones = [Segment(1.0 + 0.1 * i, 1.1 + 0.1 * i, p, 0) for i, p in enumerate("EH K S T R AH".split())]
    syls, fallbacks = add_syllables([word], phones)
    assert fallbacks == 0
    assert [(s.label, round(s.start, 3), round(s.end, 3), s.word) for s in syls] == [
        ("ex", 1.0, 1.2, 0),
        ("tra", 1.2, 1.6, 0),
    ]
    # Without phones: pyphen pieces, the span split in proportion to letters.
    syls, fallbacks = add_syllables([Segment(0.0, 0.9, "wonderful")], [])
    assert fallbacks == 1 and [s.label for s in syls] == ["won", "der", "ful"]
    assert [round(s.end, 3) for s in syls] == [0.3, 0.6, 0.9]


def test_parse_sphinx_segfiles() -> None:
    wdseg = (
        " SFrm  EFrm    SegAScr Word\n     0    15     -88320 <s>\n    16    35    -153720 READ(2)\n"
        "    36    40     -5000 ++NOISE++\n    41    46     -87373 IS\n    47    60     -9000 <sil>\n"
        "    61    80     -9000 </s>\n Total score:   -2186764\n"
    )
    rows = parse_segfile(wdseg)
    assert [(r.label, r.start, r.end) for r in rows] == [("READ", 0.16, 0.36), ("IS", 0.41, 0.47)]
    phseg = "\tSFrm\tEFrm\tSegAScr\tPhone\n\t0\t15\t-3076\tSIL\n\t16\t20\t-15373\tR\tb\n\t21\t35\t-1\tEH\te\n"
    assert [r.label for r in parse_segfile(phseg)] == ["R", "EH"]


def _utt(tmp_path: Path, uid: str, text: str, speaker: str = "Ses01_F") -> Utterance:
    wav = tmp_path / "wav" / f"{uid}.wav"
    write_tone(wav)
    return iemocap_row(
        uid, 1, uid.rsplit("_", 1)[0], speaker, speaker[-1], True, str(wav), 0.5, text, "neu", "neu", 3.0, 3.0, 3.0
    )


MFA_TEXTGRID = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 1.2
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 1.2
        intervals: size = 4
        intervals [1]:
            xmin = 0
            xmax = 0.2
            text = ""
        intervals [2]:
            xmin = 0.2
            xmax = 0.55
            text = "excuse"
        intervals [3]:
            xmin = 0.55
            xmax = 0.8
            text = "me"
        intervals [4]:
            xmin = 0.8
            xmax = 1.2
            text = ""
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 1.2
        intervals: size = 6
        intervals [1]:
            xmin = 0
            xmax = 0.2
            text = "sil"
        intervals [2]:
            xmin = 0.2
            xmax = 0.3
            text = "IH0"
        intervals [3]:
            xmin = 0.3
            xmax = 0.55
            text = "K"
        intervals [4]:
            xmin = 0.55
            xmax = 0.65
            text = "M"
        intervals [5]:
            xmin = 0.65
            xmax = 0.8
            text = "IY1"
        intervals [6]:
            xmin = 0.8
            xmax = 1.2
            text = ""
"""


def test_mfa_corpus_command_and_textgrid_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MFA cannot run here: its corpus, command line and TextGrid format are tested with files."""
    utts = [
        _utt(tmp_path, "Ses01F_impro01_F000", "Excuse me! [LAUGHTER]"),
        _utt(tmp_path, "Ses01F_impro01_M000", "[BREATHING]", "Ses01_M"),
    ]
    settings = MfaSettings(workdir=str(tmp_path / "mfa"), jobs=3, beam=12, retry_beam=50)
    corpus = tmp_path / "mfa" / "corpus"
    assert write_mfa_corpus(utts, corpus) == 1  # the markers-only one has nothing to align
    assert (corpus / "Ses01_F" / "Ses01F_impro01_F000.lab").read_text() == "excuse me\n"
    assert (corpus / "Ses01_F" / "Ses01F_impro01_F000.wav").resolve() == Path(utts[0].wav).resolve()
    cmd = mfa_command(settings, corpus, tmp_path / "out")
    assert cmd[:6] == ["mfa", "align", str(corpus), "english_us_arpa", "english_us_arpa", str(tmp_path / "out")]
    assert cmd[cmd.index("--num_jobs") + 1] == "3" and cmd[cmd.index("--beam") + 1] == "12"
    assert cmd[cmd.index("--retry_beam") + 1] == "50"

    tg = tmp_path / "mfa" / "output" / "Ses01_F" / "Ses01F_impro01_F000.TextGrid"
    tg.parent.mkdir(parents=True)
    tg.write_text(MFA_TEXTGRID)
    words, phones, duration = read_mfa_textgrid(tg)
    assert [(w.label, w.start, w.end) for w in words] == [("excuse", 0.2, 0.55), ("me", 0.55, 0.8)]
    assert [(p.label, p.word) for p in phones] == [("IH0", 0), ("K", 0), ("M", 1), ("IY1", 1)]
    assert duration == 1.2
    aligner = MfaAligner(settings)
    result = aligner.align(utts[0])
    assert [w.label for w in result.words] == ["excuse", "me"]
    failure = aligner.align(utts[1])
    assert "MFA wrote no TextGrid" in failure.reason

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(StageError, match="conda install -c conda-forge montreal-forced-aligner"):
        aligner.prepare(utts)
    assert "\n" not in INSTALL_HINT


def test_pocketsphinx_decoders_know_filler_variants_and_the_last_resort_rung() -> None:
    from mger.alignment.pocketsphinx_backend import LAST_RESORT_RUNG, PocketsphinxAligner, PocketsphinxSettings
    from mger.alignment.word_classes import FILLER_VARIANTS, FILLERS

    assert set(FILLER_VARIANTS) <= FILLERS
    aligner = PocketsphinxAligner(PocketsphinxSettings(ladder=((1e-80, 1e-60, 1e-80),)))
    assert aligner.ladder == ((1e-80, 1e-60, 1e-80), LAST_RESORT_RUNG)
    dec = aligner._decoder(0)
    assert dec.lookup_word("mm") == "M" and dec.lookup_word("mm(4)") == "EH M EH M"
    assert dec.lookup_word("hmm(2)") == "HH AH M"
    wide = PocketsphinxAligner(PocketsphinxSettings(ladder=(LAST_RESORT_RUNG,)))
    assert wide.ladder == (LAST_RESORT_RUNG,)
