"""Rewrite imports and module references to the mger.* namespace and its layers (issue #16).

    python tools/rename_to_mger.py [REPO]

Idempotent; run it on a branch that still imports ``pipeline.config`` & co. (after merging it)
to bring its code, tests, benchmarks, dvc.yaml and docs to the new names:

* namespace: ``pipeline``/``alignment``/``features``/``models`` -> ``mger.<same>``;
* layers: the ground modules of ``pipeline/`` moved to ``core/`` (``mger.core``), the corpus
  modules to ``corpus/`` (``mger.corpus``); the backend settings dataclasses to
  ``mger.core.align_settings``.

Import statements (also function-level ones and those inside code strings), ``-m`` module
arguments, quoted module names and backticked/bare dotted references in docs are rewritten;
``features.text.*`` params keys are left alone (only imports of ``features.text`` change).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PKGS = ("pipeline", "alignment", "features", "models")
# The modules as they were before the namespace (bare dotted references are rewritten for these).
OLD_MODULES = {
    "pipeline": "audio cli config espeak heldout iemocap manifest processes reporting splits summary synth",
    "alignment": "base evaluate g2p g2p_eval iemocap_backend mfa_backend normalize pauses pocketsphinx_backend "
    "sphinx_segfiles stage syllables table textgrids uniform word_classes",
    "features": "acoustic cache cache_cli demo_model encoders extract pooling",  # not text: a params key too
    "models": "experiment finetune joint metrics modules predictions probe report stats train",
}
CORE = ("config", "manifest", "splits", "audio", "reporting", "processes")
CORPUS = ("iemocap", "synth", "espeak")
MOVES = (
    [(f"mger.pipeline.{m}", f"mger.core.{m}") for m in CORE]
    + [(f"mger.pipeline.{m}", f"mger.corpus.{m}") for m in CORPUS]
    + [(f"pipeline/{m}.py", f"core/{m}.py") for m in CORE]
    + [(f"pipeline/{m}.py", f"corpus/{m}.py") for m in CORPUS]
)
SETTINGS = ("MfaSettings", "PocketsphinxSettings")


def namespace(text: str) -> str:
    text = re.sub(r"\bfrom pipeline import __version__", "from mger import __version__", text)
    pk = "|".join(PKGS)
    text = re.sub(rf"(?m)(^|[\s;\"'(])(from|import)\s+({pk})(?=[\s.])", r"\1\2 mger.\3", text)
    text = re.sub(rf"-m ({pk})\.", r"-m mger.\1.", text)
    text = re.sub(rf"\"-m\", \"({pk})\.", r'"-m", "mger.\1.', text)
    mods = "|".join(re.escape(f"{p}.{m}") for p, ms in OLD_MODULES.items() for m in ms.split())
    return re.sub(rf"(?<![\w./-])({mods})\b(?!/|\.py)", r"mger.\1", text)


def layers(text: str) -> str:
    for old, new in MOVES:
        text = re.sub(rf"(?<![\w.]){re.escape(old)}\b", new, text)
    for m in CORE:
        text = re.sub(rf"\bfrom mger\.pipeline import {m}\b", f"from mger.core import {m}", text)
    for m in CORPUS:
        text = re.sub(rf"\bfrom mger\.pipeline import {m}\b", f"from mger.corpus import {m}", text)
    for name, backend in zip(SETTINGS, ("mfa_backend", "pocketsphinx_backend")):
        text = re.sub(
            rf"from mger\.alignment\.{backend} import {name}$",
            f"from mger.core.align_settings import {name}",
            text,
            flags=re.M,
        )
    return text


def main(repo: Path) -> None:
    for f in sorted(repo.rglob("*")):
        if (
            not f.is_file()
            or {".git", ".venv", "tools"} & set(f.parts)
            or not (f.suffix in {".py", ".md", ".cfg", ".toml", ".yaml"} or f.name == "Makefile")
        ):
            continue
        text = f.read_text()
        new = layers(namespace(text))
        if new != text:
            f.write_text(new)
            print("rewrote", f.relative_to(repo))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
