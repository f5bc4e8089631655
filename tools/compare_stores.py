"""Build a fixed set of feature stores, or compare two such sets byte for byte and by content.

Why: a refactor of extraction (issue #31) must leave the stores byte-identical.  ``build``
runs :func:`mger.features.extract.extract` on one fixed tiny corpus with tiny random models
(both made once under ``--work`` and reused, so the fingerprints' model paths and input hashes
agree between runs) with the store's ``created`` attribute frozen (the one value that
depends on the clock); ``compare`` reports, per store, ``cmp`` equality and equality of
every dataset (dtype, shape, bytes) and attribute.

    python tools/compare_stores.py build --work /tmp/feats-work --out /tmp/feats-base
    python tools/compare_stores.py build --work /tmp/feats-work --out /tmp/feats-new
    python tools/compare_stores.py compare /tmp/feats-base /tmp/feats-new
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

FROZEN = datetime(2026, 1, 1, tzinfo=timezone.utc)


class _FrozenDatetime(datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: D102
        return FROZEN


def _inputs(work: Path) -> dict[str, str]:
    """The tiny corpus (aligned) and models under ``work``, made on first use."""
    done = work / "ready"
    if not done.exists():
        from mger.alignment.stage import run_align
        from mger.core.config import AlignConfig
        from mger.corpus.readers import prepare_corpus
        from mger.corpus.synth import synthesize_corpus
        from tests.builders import save_tiny_models, tiny_speech_model

        synthesize_corpus(work / "corpus", seed=5, sessions=3, dialogs_per_session=1, turns_per_dialog=8)
        prepare_corpus("iemocap", work / "corpus", work / "manifest.jsonl", work / "q.json", "4class", quiet=True)
        run_align(
            work / "manifest.jsonl",
            AlignConfig(backend="iemocap", out=str(work / "align"), report=str(work / "a.json"), n_jobs=1),
        )
        save_tiny_models(work)  # work/w2v, work/bert
        tiny_speech_model("whisper", work / "whisper")
        done.write_text("ok\n")
    return {
        "manifest": str(work / "manifest.jsonl"),
        "segments": str(work / "align" / "segments.h5"),
        "w2v": str(work / "w2v"),
        "bert": str(work / "bert"),
        "whisper": str(work / "whisper"),
    }


def _freeze_clock() -> None:
    """Every ``mger.features`` module's ``datetime`` → one that says :data:`FROZEN` is now."""
    for name, module in list(sys.modules.items()):
        if name.startswith("mger.features") and getattr(module, "datetime", None) is datetime:
            module.datetime = _FrozenDatetime


def build(work: Path, out: Path) -> None:
    import mger.features.extract as extract_mod
    from mger.core.config import FeaturesConfig, SpeechFeaturesConfig, TextFeaturesConfig

    _freeze_clock()
    paths = _inputs(work.resolve())
    out.mkdir(parents=True, exist_ok=True)
    stores = {
        "w2v": SpeechFeaturesConfig(model=paths["w2v"]),
        "w2v-layers": SpeechFeaturesConfig(model=paths["w2v"], layer=[0, 2], levels=["frame", "word", "utterance"]),
        "whisper": SpeechFeaturesConfig(model=paths["whisper"], levels=["frame", "syllable", "utterance"]),
    }
    try:
        import opensmile  # noqa: F401

        stores["egemaps"] = SpeechFeaturesConfig(
            model="opensmile:eGeMAPSv02", levels=["frame", "phone", "word", "utterance", "functionals"]
        )
    except ImportError:
        print("opensmile not installed: no egemaps store", file=sys.stderr)
    text = TextFeaturesConfig(model=paths["bert"])
    for name, speech in stores.items():
        cfg = FeaturesConfig(out=str(out / "run"), shard_size=5, device="cpu", speech=speech, text=text)
        target = out / f"speech-{name}.h5"
        extract_mod.extract("speech", cfg, paths["manifest"], paths["segments"], store=target)
    cfg = FeaturesConfig(out=str(out / "run"), shard_size=5, device="cpu", speech=stores["w2v"], text=text)
    extract_mod.extract("text", cfg, paths["manifest"], paths["segments"], store=out / "text.h5")
    jobs = FeaturesConfig(out=str(out / "run"), shard_size=5, n_jobs=2, device="cpu", speech=stores["w2v"], text=text)
    extract_mod.extract("speech", jobs, paths["manifest"], paths["segments"], store=out / "speech-w2v-jobs2.h5")
    sharded = out / "speech-w2v-sharded.h5"  # two shard runs, the second merges
    for i in range(2):
        extract_mod.extract("speech", cfg, paths["manifest"], paths["segments"], shard=(i, 2), store=sharded)
    shutil.rmtree(out / "run", ignore_errors=True)


def _contents(path: Path) -> dict[str, object]:
    """Every dataset (dtype, shape, bytes) and every attribute of the file and its objects."""
    out: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        out["/@"] = {k: _value(v) for k, v in f.attrs.items()}

        def visit(name: str, obj: object) -> None:
            out[f"{name}@"] = {k: _value(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                data = np.asarray(obj[()])
                raw = data.tolist() if data.dtype == object else data.tobytes()  # strings: their values
                out[name] = (str(obj.dtype), obj.shape, raw)

        f.visititems(visit)
    return out


def _value(v: object) -> object:
    return v.tolist() if isinstance(v, np.ndarray) else v


def compare(a: Path, b: Path) -> int:
    """One line per store: bytes equal (cmp), datasets and attributes equal; exit 1 on any difference."""
    names = sorted(p.name for p in a.glob("*.h5"))
    if names != sorted(p.name for p in b.glob("*.h5")):
        print(f"different store sets: {names} vs {sorted(p.name for p in b.glob('*.h5'))}")
        return 1
    bad = 0
    for name in names:
        same_bytes = filecmp.cmp(a / name, b / name, shallow=False)
        ca, cb = _contents(a / name), _contents(b / name)
        diff = sorted(k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k))
        n_data = sum(1 for k in ca if not k.endswith("@"))
        print(
            f"{name}: bytes {'equal' if same_bytes else 'DIFFER'}; {n_data} datasets + attrs "
            f"{'equal' if not diff else 'DIFFER: ' + ', '.join(diff[:5])}"
        )
        bad += (not same_bytes) or bool(diff)
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--work", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.cmd == "build":
        build(args.work, args.out)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
