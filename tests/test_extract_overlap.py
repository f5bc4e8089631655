"""The overlapped extraction loop (reader thread, encoder, writer thread) against a serial one:
the same bytes; a writer's failure raised in the caller naming the part, with no part file."""

from __future__ import annotations

import errno
import json
import threading
import time
from pathlib import Path

import h5py
import pytest

import mger.features.cache as cache
import mger.features.extract as extract_mod
from mger.core.audio import read_audio
from mger.core.config import FeaturesConfig, SpeechFeaturesConfig, TextFeaturesConfig
from mger.features.cache import CacheError, write_store
from mger.features.extract import compute_parts
from mger.features.fingerprint import AlignedInputs, load_aligned
from mger.features.pipelining import PHASES, PhaseClock, Prefetch, speech_batches
from mger.features.registry import build_encoder
from mger.features.rows import _refuse_nonfinite, _speech_levels
from mger.pipeline.cli import error_line


def _cfg(tiny_models: dict[str, str], **speech: object) -> FeaturesConfig:
    """Parts of 3 utterances, padded batches of up to 6 s, long utterances (> 1 s) chunked."""
    return FeaturesConfig(
        shard_size=3,
        batch_seconds=6.0,
        device="cpu",
        dtype="fp32",
        speech=SpeechFeaturesConfig(model=tiny_models["speech"], max_seconds=1.0, overlap_seconds=0.2, **speech),
        text=TextFeaturesConfig(model=tiny_models["text"]),
    )


def _serial_parts(encoder, cfg: FeaturesConfig, inputs: AlignedInputs, folder: Path) -> list[Path]:
    """The straightforward loop: per part, per batch, read, ``encode`` (preparation and
    forward in one thread), pool, check, write; one part after the other, nothing overlapped."""
    paths = []
    for p, start in enumerate(range(0, len(inputs.utts), cfg.shard_size)):
        utts = inputs.utts[start : start + cfg.shard_size]
        frames = [None] * len(utts)
        for batch in speech_batches(encoder, cfg, utts):
            for i, feats in zip(batch, encoder.encode([read_audio(utts[i].wav) for i in batch])):
                frames[i] = feats
        levels = _speech_levels(encoder, cfg, inputs, utts, frames, [], None)
        _refuse_nonfinite("speech", cfg, utts, levels)
        paths.append(folder / f"part-{p:05d}.h5")
        write_store(paths[-1], [u.utt_id for u in utts], levels, {"part": p})
    return paths


def _datasets(path: Path) -> dict[str, tuple[str, tuple, bytes]]:
    """Every dataset of a store: dtype, shape and bytes (strings as their UTF-8)."""
    out = {}
    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visit(names.append)
        for name in names:
            if isinstance(f[name], h5py.Dataset):
                data = f[name].asstr()[()] if f[name].dtype.kind == "O" else f[name][()]
                raw = "\n".join(data).encode() if f[name].dtype.kind == "O" else data.tobytes()
                out[name] = (str(f[name].dtype), f[name].shape, raw)
    return out


@pytest.mark.parametrize("layer", ["last", [1, 3]])
def test_overlapped_loop_writes_the_bytes_of_the_serial_loop(
    layer: object, tiny_models: dict[str, str], aligned: dict[str, Path], tmp_path: Path
) -> None:
    cfg = _cfg(tiny_models, layer=layer)
    inputs, _ = load_aligned(aligned["manifest"], aligned["segments"])
    encoder = build_encoder("speech", cfg)
    assert any(u.duration > 1.0 for u in inputs.utts)  # the chunked path is taken
    assert any(len(b) > 1 for b in speech_batches(encoder, cfg, inputs.utts[:3]))  # padded batches too
    clock = PhaseClock()
    assert compute_parts("speech", cfg, inputs, tmp_path / "speech.h5", (0, 1), encoder, clock) == 7
    overlapped = sorted((tmp_path / "speech.h5.parts").glob("part-*.h5"))
    serial = _serial_parts(encoder, cfg, inputs, tmp_path / "serial")
    assert [p.name for p in overlapped] == [p.name for p in serial]
    for a, b in zip(overlapped, serial):
        assert _datasets(a) == _datasets(b), a.name
    seconds = clock.seconds()
    assert set(seconds) == set(PHASES) and all(t >= 0 for t in seconds.values())
    assert clock.marks[-1][0] == "end"


def _fail_part_1(exc: BaseException):
    """A ``_write_levels`` that fails part 1 half-way (utt_ids written), the others as usual."""
    real = cache._write_levels

    def write_levels(f: h5py.File, utt_ids, levels):
        if "part-00001" in f.filename:
            f.create_dataset("utt_ids", data=list(utt_ids), dtype=cache.STR)
            raise exc
        return real(f, utt_ids, levels)

    return write_levels


@pytest.mark.parametrize("kind", ["speech", "text"])
def test_writer_error_names_the_part_and_leaves_no_part_file(
    kind: str, tiny_models: dict[str, str], aligned: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Part 1 fails in the writer thread while part 2 is computed: the caller gets the error
    naming part 1, part 0 stays committed, no part 1 (nor its temp) and no part 2 exist; a
    rerun computes the rest."""
    cfg = _cfg(tiny_models)
    inputs, _ = load_aligned(aligned["manifest"], aligned["segments"])
    store = tmp_path / f"{kind}.h5"
    monkeypatch.setattr(cache, "_write_levels", _fail_part_1(ValueError("boom")))
    failed = r"part-00001\.h5: part 1 of the \w+ store was not written \(ValueError: boom\)"
    with pytest.raises(CacheError, match=failed):
        compute_parts(kind, cfg, inputs, store, (0, 1))
    parts = Path(f"{store}.parts")
    assert sorted(p.name for p in parts.iterdir() if not p.name.startswith("shard-")) == ["part-00000.h5"]
    monkeypatch.undo()
    assert compute_parts(kind, cfg, inputs, store, (0, 1)) == 6
    assert sorted(p.name for p in parts.glob("*.h5")) == [f"part-{p:05d}.h5" for p in range(7)]


def test_a_full_disk_in_the_writer_is_the_clis_one_line_naming_the_part(
    tiny_models: dict[str, str], aligned: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs, _ = load_aligned(aligned["manifest"], aligned["segments"])
    store = tmp_path / "text.h5"
    monkeypatch.setattr(cache, "_write_levels", _fail_part_1(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError) as info:
        compute_parts("text", _cfg(tiny_models), inputs, store, (0, 1))
    assert error_line(info.value) == (
        f"{store}.parts/part-00001.h5: disk full; free some space and rerun (outputs are written whole or not at all)"
    )
    assert any("part 1 of the text store" in note for note in info.value.__notes__)
    assert not list(Path(f"{store}.parts").glob(".*tmp*")) and not Path(f"{store}.parts/part-00001.h5").exists()


def test_an_error_of_the_encoder_keeps_the_part_in_flight(
    tiny_models: dict[str, str], aligned: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main thread fails on part 2 while the writer commits part 1: part 1 is committed
    whole before the error leaves ``compute_parts``."""
    inputs, _ = load_aligned(aligned["manifest"], aligned["segments"])
    real, calls = extract_mod.text_part, []

    def text_part(encoder, cfg, inputs, utts):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("encoder died")
        return real(encoder, cfg, inputs, utts)

    monkeypatch.setattr(extract_mod, "text_part", text_part)
    with pytest.raises(RuntimeError, match="encoder died"):
        compute_parts("text", _cfg(tiny_models), inputs, tmp_path / "text.h5", (0, 1))
    parts = sorted(Path(f"{tmp_path}/text.h5.parts").glob("part-*.h5"))
    assert [p.name for p in parts] == ["part-00000.h5", "part-00001.h5"]
    for p, part in enumerate(parts):  # whole: every level there, each matching its checksum
        with h5py.File(part, "r") as f:
            sums = json.loads(f.attrs["level_sha256"])
            assert f.attrs["part"] == p and set(sums) == {"utt_ids", "token", "word"}
            for level in ("token", "word"):
                assert sums[level] == cache.level_sha256({k: f[level][k][()] for k in f[level]})


def test_prefetch_keeps_order_stays_bounded_and_raises_at_the_failed_item() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def fn(k: int) -> int:
        with lock:
            started.append(k)
        if k == 6:
            raise ValueError("item 6")
        return k * k

    with Prefetch(fn, range(10), depth=2) as items:
        for k in range(6):
            time.sleep(0.01)  # let the reader run ahead as far as it may
            assert next(items) == k * k
            assert max(started) <= k + 2  # never more than `depth` items ahead of the consumer
        with pytest.raises(ValueError, match="item 6"):
            next(items)
    assert started == sorted(started)


def test_phase_clock_sums_each_phases_spans() -> None:
    ticks = iter([0.0, 1.0, 3.0, 3.5, 6.0])
    clock = PhaseClock(lambda: next(ticks))
    for phase in ("read", "encode", "read", "write", "end"):
        clock.enter(phase)
    assert clock.seconds() == {"read": 1.5, "encode": 2.0, "write": 2.5}
