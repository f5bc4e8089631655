"""Encoders and the HDF5 feature store on tiny random models and the packaged MiniLM."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from mger.alignment.normalize import normalize_transcript
from mger.alignment.table import SegmentTable
from mger.core.audio import read_audio
from mger.core.config import FeaturesConfig, SpeechFeaturesConfig, TextFeaturesConfig
from mger.features import cache
from mger.features.cache import (
    Batch,
    CacheError,
    FeatureStore,
    Ragged,
    _pad_by_blocks,
    _pad_by_gather,
    compare_stores,
    exclusive_lock,
    verify_store,
)
from mger.features.encoders import SpeechEncoder, TextEncoder, chunk_spans, resolve_dtype
from mger.features.extract import extract
from mger.features.pipelining import make_batches
from mger.features.text import aligned_word_spans, encoder_text
from tests.builders import MINILM


def _cfg(tiny_models: dict[str, str], out: Path, **kw) -> FeaturesConfig:
    speech = SpeechFeaturesConfig(model=tiny_models["speech"], **kw.pop("speech", {}))
    text = TextFeaturesConfig(model=tiny_models["text"])
    return FeaturesConfig(out=str(out), shard_size=kw.pop("shard_size", 4), speech=speech, text=text, **kw)


def _contents(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        out = {"utt_ids": f["utt_ids"].asstr()[()]}
        for level in f:
            if level != "utt_ids":
                out.update({f"{level}/{k}": f[level][k][()] for k in f[level]})
        return out


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("level", ["phone", "syllable", "word"])
def test_speech_levels_rows_match_segments(reference_store, aligned, level: str) -> None:
    store = FeatureStore(reference_store["speech"])
    table = SegmentTable.read(aligned["segments"])
    for uid in store.utt_ids:
        segs = table.segments(level, uid) or table.segments("syllable", uid)
        rows = store.rows(level, uid)
        assert rows.shape == (len(segs), 32) and rows.dtype == np.float16
        assert np.isfinite(rows.astype(np.float32)).all()


def test_frame_and_utterance_levels(reference_store, tiny_models, aligned) -> None:
    store = FeatureStore(reference_store["speech"])
    enc = SpeechEncoder(tiny_models["speech"])
    from mger.core.manifest import read_manifest

    utts = {u.utt_id: u for u in read_manifest(aligned["manifest"])}
    for uid in store.utt_ids[:4]:
        audio = read_audio(utts[uid].wav)
        frames = store.rows("frame", uid).astype(np.float32)
        assert frames.shape == (enc.n_frames(len(audio)), 32)
        direct = enc.encode([audio])[0].numpy()
        np.testing.assert_allclose(frames, direct, atol=2e-2, rtol=1e-2)  # fp16 storage
        np.testing.assert_allclose(store.rows("utterance", uid).astype(np.float32)[0], direct.mean(0), atol=2e-2)
    attrs = store.attrs
    assert attrs["model"] == tiny_models["speech"] and attrs["frame_stride"] == pytest.approx(0.02)
    assert len(attrs["weights_sha256"]) == 64 and len(attrs["segments_sha256"]) == 64


def test_text_store_words_pair_with_speech_words(reference_store) -> None:
    speech, text = FeatureStore(reference_store["speech"]), FeatureStore(reference_store["text"])
    assert speech.utt_ids == text.utt_ids
    for uid in text.utt_ids:
        words = text.rows("word", uid)
        assert words.shape == speech.rows("word", uid).shape
        tokens = text.rows("token", uid).astype(np.float32)
        ids = text.extra("token", "word", uid)
        assert ids[0] == -1 and ids[-1] == -1 and len(ids) == len(tokens)  # [CLS] ... [SEP]
        for w in range(len(words)):
            np.testing.assert_allclose(words[w].astype(np.float32), tokens[ids == w].mean(0), atol=2e-3)


def test_feature_store_load_pads_and_masks(reference_store) -> None:
    store = FeatureStore(reference_store["speech"])
    ids = store.utt_ids[:3]
    batch = store.load("word", ids)
    assert batch.data.shape == (3, int(batch.lengths.max()), 32) and batch.data.dtype == torch.float32
    for i, uid in enumerate(ids):
        n = int(batch.lengths[i])
        assert torch.equal(batch.data[i, :n], torch.from_numpy(store.rows("word", uid).astype(np.float32)))
        assert batch.mask[i].sum() == n and (batch.data[i, n:] == 0).all()
    items = store.ragged("word", ids)
    assert items.data.dtype == torch.float16 and items.data.shape[0] == int(batch.lengths.sum())
    assert torch.equal(items.pad().data, batch.data)
    ds = store.dataset("utterance", ids, [0, 1, 2])
    x, y = ds[2]
    assert x.shape == (1, 32) and int(y) == 2 and len(ds) == 3


@pytest.mark.parametrize("chunked", [False, True])
def test_store_reads_mapped_or_chunked_levels_alike(reference_store, tmp_path: Path, chunked: bool) -> None:
    """write_store's contiguous levels are memory-mapped; a chunked one (another writer's) is read."""
    path = tmp_path / "speech.h5"
    shutil.copy(reference_store["speech"], path)
    if chunked:
        with h5py.File(path, "r+") as f:
            rows = f["frame/data"][()]
            del f["frame/data"]
            f["frame"].create_dataset("data", data=rows, chunks=(7, rows.shape[1]))
    store, ref = FeatureStore(path), FeatureStore(reference_store["speech"])
    assert isinstance(store._level_data("frame"), np.memmap) != chunked
    assert torch.equal(store.load("frame").data, ref.load("frame").data)


@pytest.mark.parametrize("pad", [_pad_by_blocks, _pad_by_gather])
@pytest.mark.parametrize("tail", [(4,), (3, 4)])  # one layer; a list of layers
@pytest.mark.parametrize("threaded", [False, True])
def test_padding_paths_place_every_row(pad, tail: tuple[int, ...], threaded: bool, monkeypatch) -> None:
    """Both ways of filling the padded tensor (block copies also split among threads): rows in
    place, zeros after, float16 → float32 exact."""
    if threaded:
        monkeypatch.setattr(cache, "_ELEMENTS_PER_THREAD", 1)
        monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    data = torch.from_numpy(np.random.default_rng(0).normal(size=(40,) + tail).astype(np.float16))
    starts, lengths = torch.tensor([30, 0, 7, 12]), torch.tensor([10, 0, 5, 1])
    out = pad(data, starts, lengths, 10)
    assert out.shape == (4, 10) + tail and out.dtype == torch.float32
    for b, (start, n) in enumerate(zip(starts.tolist(), lengths.tolist())):
        assert torch.equal(out[b, :n], data[start : start + n].float())
        assert (out[b, n:] == 0).all()


def test_ragged_subset_compact_pad_round_trip() -> None:
    """A fold held as rows: subsets share them, compact copies only the items' rows in order,
    and every batch pads to its own longest item with the same values a whole-fold pad has."""
    lengths = torch.tensor([3, 0, 5, 1, 2])
    padded = Batch(torch.randn(5, 5, 4, generator=torch.Generator().manual_seed(0)), lengths)
    padded.data[~padded.mask] = 0
    items = Ragged.from_padded(padded)
    assert items.data.shape == (11, 4) and items.starts.tolist() == [0, 3, 3, 8, 9]
    assert torch.equal(items.pad().data, padded.data) and torch.equal(items.item(2), padded.data[2])
    sub = items.subset(np.array([3, 0]))
    assert sub.data is items.data and sub.pad().data.shape == (2, 3, 4)
    assert torch.equal(sub.pad().data, padded.data[[3, 0], :3])
    small = sub.compact()
    assert small.data.shape == (4, 4) and small.starts.tolist() == [0, 1]
    assert torch.equal(small.pad().data, sub.pad().data)
    assert items.pad([1]).data.shape == (1, 1, 4) and (items.pad([1]).data == 0).all()
    with pytest.raises(ValueError, match="past the 11 rows"):
        Ragged(items.data, torch.tensor([10]), torch.tensor([2]))


@pytest.mark.parametrize(
    "layer, shape_tail, layers_run",
    [(1, (32,), 1), ("mean", (32,), 3), ([0, 2], (2, 32), 2), ("last", (32,), 3), (-2, (32,), 2)],
)
def test_layer_choice_runs_only_needed_layers(tiny_models, layer, shape_tail, layers_run) -> None:
    from transformers import AutoModel

    enc = SpeechEncoder(tiny_models["speech"], layer=layer)
    assert enc.layers_run == layers_run and len(enc.model.encoder.layers) == layers_run
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    feats = enc.encode([audio])[0]
    assert feats.shape == (49,) + shape_tail
    full = AutoModel.from_pretrained(tiny_models["speech"]).eval()
    x = torch.from_numpy((audio - audio.mean()) / np.sqrt(audio.var() + 1e-7))[None]
    with torch.inference_mode():
        hidden = full(x, output_hidden_states=True).hidden_states
    expected = {1: hidden[1], "mean": torch.stack(hidden[1:]).mean(0), "last": hidden[3], -2: hidden[2]}.get(
        layer if not isinstance(layer, list) else "list", torch.stack([hidden[0], hidden[2]], 2)
    )
    assert torch.allclose(feats, expected[0], atol=1e-5)


def test_long_utterances_are_stitched_without_seam(tiny_models) -> None:
    enc = SpeechEncoder(tiny_models["speech"], max_seconds=1.0, overlap_seconds=0.2)
    audio = np.random.default_rng(1).normal(0, 0.1, int(16000 * 3.3)).astype(np.float32)
    spans = chunk_spans(len(audio), enc.max_samples, enc.overlap_samples, enc.geometry.stride)
    assert spans[0][0] == 0 and spans[-1][1] == len(audio) and all(s % 320 == 0 for s, _ in spans)
    stitched = enc.encode([audio])[0]
    assert stitched.shape[0] == enc.n_frames(len(audio))  # no frame lost or duplicated
    norm = enc.prepare(audio)
    parts = [enc._forward([norm[s:e]])[0] for s, e in spans]
    # every frame comes from one chunk, at the matching position of that chunk's own frame grid
    for t in range(stitched.shape[0]):
        sources = [p[t - s // 320] for (s, _), p in zip(spans, parts) if 0 <= t - s // 320 < p.shape[0]]
        assert any(torch.equal(stitched[t], src) for src in sources), t
    # a short utterance is not chunked
    assert torch.equal(enc.encode([audio[:8000]])[0], enc._forward([enc.prepare(audio[:8000])])[0])


def test_bf16_on_cpu_stays_within_tolerance(tiny_models) -> None:
    audio = np.random.default_rng(2).normal(0, 0.1, 32000).astype(np.float32)
    fp32 = SpeechEncoder(tiny_models["speech"], dtype="fp32").encode([audio])[0]
    bf16 = SpeechEncoder(tiny_models["speech"], dtype="bf16").encode([audio])[0]
    # documented tolerance: every frame's cosine similarity to fp32 >= 0.99, mean relative deviation < 5%
    assert torch.nn.functional.cosine_similarity(bf16, fp32, dim=-1).min() >= 0.99
    assert (bf16 - fp32).abs().mean() / fp32.abs().mean() < 0.05


def test_int8_on_cpu_stays_within_tolerance(tiny_models) -> None:
    audio = np.random.default_rng(2).normal(0, 0.1, 32000).astype(np.float32)
    fp32 = SpeechEncoder(tiny_models["speech"], dtype="fp32").encode([audio])[0]
    enc = SpeechEncoder(tiny_models["speech"], dtype="int8")
    int8 = enc.encode([audio])[0]
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in enc.model.encoder.modules())
    assert type(enc.model.feature_projection.projection) is torch.nn.Linear  # stays fp32
    assert int8.shape == fp32.shape and not torch.equal(int8, fp32)
    # documented tolerance: every frame's cosine similarity to fp32 >= 0.99, mean relative deviation < 5%
    assert torch.nn.functional.cosine_similarity(int8, fp32, dim=-1).min() >= 0.99
    assert (int8 - fp32).abs().mean() / fp32.abs().mean() < 0.05
    with pytest.raises(ValueError, match="CPU-only"):
        resolve_dtype("int8", torch.device("cuda"))


def test_batches_fill_up_to_batch_seconds() -> None:
    assert make_batches([3.0, 1.0, 2.0, 2.5], 0.0) == [[1], [2], [3], [0]]
    assert make_batches([3.0, 1.0, 2.0, 2.5], 6.0) == [[1, 2], [3, 0]]
    assert make_batches([1.0] * 5, 3.0) == [[0, 1, 2], [3, 4]]


def _tiny_family(kind: str, folder: Path) -> str:
    """A tiny random model of a wav2vec2 family and conv norm, save_pretrained into ``folder``."""
    import transformers

    family, norm = kind.split("-")
    config_cls, model_cls = {
        "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
        "hubert": ("HubertConfig", "HubertModel"),
        "wavlm": ("WavLMConfig", "WavLMModel"),
    }[family]
    config = getattr(transformers, config_cls)(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=norm,
        do_stable_layer_norm=norm == "layer",
    )
    torch.manual_seed(0)
    getattr(transformers, model_cls)(config).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind", ["wav2vec2-group", "wav2vec2-layer", "hubert-group", "wavlm-layer"])
def test_padded_batches_equal_one_utterance_batches(kind: str, tmp_path: Path) -> None:
    """Batching changes nothing: exact lengths, and each utterance's frames as if encoded alone
    (the group-norm families normalise the first conv layer per utterance)."""
    enc = SpeechEncoder(_tiny_family(kind, tmp_path), device="cpu", dtype="fp32")
    rng = np.random.default_rng(3)
    waves = [rng.normal(0, 0.1, n).astype(np.float32) for n in (20000, 9000, 3000)]
    batched = enc.encode(waves)
    assert [o.shape[0] for o in batched] == [enc.n_frames(len(w)) for w in waves]
    for wave, frames in zip(waves, batched):
        torch.testing.assert_close(frames, enc.encode([wave])[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("markers", ["drop", "keep"])
def test_text_as_written_maps_every_token_to_its_word(markers: str) -> None:
    """The encoder reads case and punctuation; each sub-token pools onto the aligned word whose
    characters it covers (special tokens and markers onto none)."""
    enc = TextEncoder(MINILM)
    text = "[LAUGHTER] Really?! I can't believe it, zorblaxing."
    words = normalize_transcript(text)
    assert words == ["really", "i", "can't", "believe", "it", "zorblaxing"]
    ((tokens, word_ids, rows),) = enc.encode_batch([(encoder_text(text, markers), aligned_word_spans(text, words))])
    pieces = enc.tokenizer.convert_ids_to_tokens(enc.tokenize([encoder_text(text, markers)])["input_ids"][0])
    owner = dict(zip(range(len(pieces)), word_ids.tolist()))
    assert "?" in pieces and "!" in pieces and "," in pieces
    expected = {
        "really": 0,
        "?": 0,
        "!": 0,
        "i": 1,
        "can": 2,
        "'": 2,
        "t": 2,
        "believe": 3,
        "it": 4,
        ",": 4,
        "z": 5,
        "##or": 5,
        "##bla": 5,
        "##xing": 5,
        ".": 5,
        "[CLS]": -1,
        "[SEP]": -1,
        "[": -1,
        "laughter": -1,
        "]": -1,
    }
    assert [expected[p] for p in pieces] == [owner[i] for i in range(len(pieces))]
    assert ("laughter" in pieces) is (markers == "keep")
    assert enc.dim == 384 and rows.shape == (6, 384)
    assert torch.allclose(rows[5], tokens[word_ids == 5].mean(0), atol=1e-6)


def test_aligned_words_spelled_otherwise_still_pair() -> None:
    """A segmentation whose words differ from the transcript's (a corpus's own .wdseg) pairs the
    words it shares and shares the characters of a stretch it spells otherwise."""
    text = "Café déjà vu, a twenty-minute drive at 5 OK?"
    assert aligned_word_spans(text, ["cafe", "deja", "vu", "a", "twenty-minute", "drive", "at", "5", "okay"]) == [
        (0, 4),
        (5, 9),
        (10, 13),
        (14, 15),
        (16, 29),
        (30, 35),
        (36, 38),
        (39, 40),
        (41, 44),
    ]
    assert aligned_word_spans(text, normalize_transcript(text))[4:6] == [(16, 22), (23, 29)]
    assert aligned_word_spans("hello there", ["hello", "there", "friend"]) == [(0, 5), (6, 11), None]


def test_fingerprint_mismatch_rebuilds_or_stops(
    reference_store, tiny_models, aligned, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(reference_store["speech"], tmp_path / "speech.h5")
    cfg = _cfg(tiny_models, tmp_path)
    extract("speech", cfg, aligned["manifest"], aligned["segments"])
    assert "is up to date" in capsys.readouterr().out
    other = _cfg(tiny_models, tmp_path, speech={"layer": 1})
    with pytest.raises(CacheError, match=r"layer: 3 → 1"):  # 'last' of the 3-layer model, resolved
        extract("speech", other, aligned["manifest"], aligned["segments"], no_rebuild=True)
    extract("speech", other, aligned["manifest"], aligned["segments"])
    assert "rebuilding" in capsys.readouterr().err
    assert FeatureStore(tmp_path / "speech.h5").fingerprint["layer"] == 1


def test_second_writer_is_refused(tiny_models, aligned, tmp_path: Path) -> None:
    cfg = _cfg(tiny_models, tmp_path)
    with exclusive_lock(tmp_path / "speech.h5"):
        assert (tmp_path / "speech.h5.lock").read_text() == f"pid {os.getpid()}"
        with pytest.raises(CacheError, match=r"speech.h5 is being written by pid \d+"):
            extract("speech", cfg, aligned["manifest"], aligned["segments"])
    # released: the lock file is empty again, the same bytes after every run (DVC tracks the folder)
    assert (tmp_path / "speech.h5.lock").read_text() == ""


def test_verify_reports_corruption(reference_store, tmp_path: Path, aligned) -> None:
    from mger.core.manifest import read_manifest

    ids = [u.utt_id for u in read_manifest(aligned["manifest"])]
    assert verify_store(reference_store["speech"], ids) == []
    bad = tmp_path / "bad.h5"
    shutil.copy(reference_store["speech"], bad)
    with h5py.File(bad, "a") as f:
        f["word/offsets"][-1] = f["word/offsets"][-1] + 5
        f["phone/data"][0, 0] = np.nan
    problems = verify_store(bad, ids + ["Ses09F_impro01_F000"])
    assert any("word: offsets inconsistent" in p for p in problems)
    assert any("phone: NaN or inf" in p for p in problems)
    assert any("1 manifest utterances missing" in p for p in problems)
    opened = FeatureStore(bad)  # levels are checked on first use: the damaged one is refused, others load
    with pytest.raises(CacheError, match="level 'word' has inconsistent offsets"):
        opened.load("word")
    assert opened.load("syllable").data.shape[0] == len(ids)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(Path(reference_store["speech"]).read_bytes()[:5000])
    assert verify_store(truncated)[0].startswith("cannot open as HDF5")
    assert verify_store(tmp_path / "nosuch.h5") == ["no such file"]
    proc = subprocess.run(
        [sys.executable, "-m", "mger.pipeline.cli", "cache", "verify", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "CORRUPT" in proc.stdout


def test_compare_stores_measures_deviation_per_level(reference_store, tmp_path: Path) -> None:
    ref = reference_store["speech"]
    assert all(cos == pytest.approx(1.0) and dev == 0.0 for cos, dev in compare_stores(ref, ref).values())
    scaled = tmp_path / "scaled.h5"
    shutil.copy(ref, scaled)
    with h5py.File(scaled, "a") as f:
        f["word/data"][...] = f["word/data"][()] * np.float16(-1.0)
    result = compare_stores(scaled, ref)
    assert set(result) == {"frame", "phone", "syllable", "word", "utterance"}
    assert result["word"] == (pytest.approx(-1.0, abs=1e-3), pytest.approx(2.0))
    assert result["phone"][1] == 0.0
    proc = subprocess.run(
        [sys.executable, "-m", "mger.pipeline.cli", "cache", "compare", str(scaled), ref],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    assert "word       worst row cosine -1.0000, mean relative deviation 200.00%" in proc.stdout
    with h5py.File(scaled, "a") as f:
        f["utt_ids"][0] = "Ses09F_impro01_F000"
    with pytest.raises(CacheError, match="not the utterances of"):
        compare_stores(scaled, ref)
    narrow = tmp_path / "narrow.h5"
    shutil.copy(ref, narrow)
    with h5py.File(narrow, "a") as f:
        data = f["word/data"][()]
        del f["word/data"]
        f["word/data"] = data[:, : data.shape[1] // 2]
    with pytest.raises(CacheError, match=r"narrow.h5: level word rows are \(\d+,\), .*'s are \(\d+,\)"):
        compare_stores(narrow, ref)


def test_sigkill_and_resume_equals_uninterrupted(reference_store, tiny_models, aligned, tmp_path: Path) -> None:
    params = {
        "prepare": {"manifest": str(aligned["manifest"])},
        "align": {"out": str(aligned["segments"].parent)},
        "features": {
            "out": str(tmp_path),
            "shard_size": 2,
            "speech": {"model": tiny_models["speech"]},
            "text": {"model": tiny_models["text"]},
        },
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    cmd = [
        sys.executable,
        "-m",
        "mger.pipeline.cli",
        "extract",
        "--kind",
        "speech",
        "--params",
        str(tmp_path / "p.yaml"),
    ]
    parts = tmp_path / "speech.h5.parts"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.h5"))) < 2:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("part-*.h5")))
    assert 2 <= done_before < 8 and not (tmp_path / "speech.h5").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    _assert_same(_contents(tmp_path / "speech.h5"), _contents(reference_store["speech"]))
    assert not parts.exists()


def test_shards_and_dask_backend_give_the_same_store(reference_store, tiny_models, aligned, tmp_path: Path) -> None:
    from distributed import LocalCluster

    cfg = _cfg(tiny_models, tmp_path / "shards")
    for i in range(3):  # three separate shard runs; the last one merges
        extract("speech", cfg, aligned["manifest"], aligned["segments"], shard=(i, 3))
    _assert_same(_contents(tmp_path / "shards" / "speech.h5"), _contents(reference_store["speech"]))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        dcfg = dataclasses.replace(
            _cfg(tiny_models, tmp_path / "dask"), backend="dask", n_jobs=2, scheduler=cluster.scheduler_address
        )
        extract("speech", dcfg, aligned["manifest"], aligned["segments"])
    _assert_same(_contents(tmp_path / "dask" / "speech.h5"), _contents(reference_store["speech"]))


# --- every fingerprint field: changing that one thing changes the fingerprint (so rebuilds) ---


def _changed_copy(path: Path, folder: Path, edit) -> Path:
    out = folder / path.name
    shutil.copy(path, out)
    edit(out)
    return out


def _shift_first_word(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f["words/end"][0] = f["words/end"][0] - 0.01


def _fingerprint_inputs(tiny_models, aligned, tmp_path: Path, change: str):
    """(kind, encoder, cfg, inputs, fold) with exactly ``change`` changed (``base``: nothing)."""
    import copy

    from mger.core.manifest import read_manifest, write_manifest
    from mger.features.fingerprint import load_aligned
    from mger.features.registry import build_encoder

    kind = "text" if change.startswith("text.") else "speech"
    field = change.split(".", 1)[-1]
    speech = {
        "pooling": {"pooling": "max"},
        "layer": {"layer": 1},
        "levels": {"levels": ["word", "phone"]},
        "max_seconds": {"max_seconds": 10.0},
        "overlap_seconds": {"overlap_seconds": 1.0},
    }
    cfg = _cfg(
        tiny_models,
        tmp_path,
        speech=speech.get(field, {}) if kind == "speech" else {},
        dtype="bf16" if change == "dtype" else "auto",
    )
    if kind == "text":
        cfg = dataclasses.replace(
            cfg,
            text=dataclasses.replace(
                cfg.text,
                **{"layer": {"layer": 1}, "max_length": {"max_length": 64}, "markers": {"markers": "keep"}}.get(
                    field, {}
                ),
            ),
        )
    manifest, segments = aligned["manifest"], aligned["segments"]
    if field == "segments_sha256":
        segments = _changed_copy(segments, tmp_path, _shift_first_word)
    if field in ("utt_ids_sha256", "audio_sha256", "manifest_sha256"):
        utts = read_manifest(manifest)
        if field == "utt_ids_sha256":
            utts = utts[1:]
        elif field == "manifest_sha256":  # one transcript edited (its alignment unchanged)
            utts[0] = dataclasses.replace(utts[0], text=utts[0].text + "!")
        else:  # the first wav rewritten: same length, one sample changed
            wav = tmp_path / Path(utts[0].wav).name
            audio, rate = read_audio(utts[0].wav), 16000
            audio[100] += 0.01
            import soundfile as sf

            sf.write(str(wav), audio, rate, subtype="PCM_16")
            utts[0] = dataclasses.replace(utts[0], wav=str(wav))
        manifest = tmp_path / "m.jsonl"
        write_manifest(manifest, utts)
    encoder = build_encoder(kind, cfg)
    if field in ("model", "revision", "frame_stride", "normalize", "n_layers"):  # what the encoder reports of its model
        encoder = copy.copy(encoder)
        setattr(
            encoder,
            {"model": "name", "frame_stride": "frame_stride_s"}.get(field, field),
            {
                "model": "other/model",
                "revision": "v2",
                "frame_stride": 0.025,
                "normalize": not encoder.normalize if kind == "speech" else None,
                "n_layers": encoder.n_layers + 1,
            }[field],
        )
    inputs, _ = load_aligned(manifest, segments)
    fold = {"fold": 1, "finetune_train_folds": [2, 3], "finetune_sha256": "a" * 64}
    if field in fold:
        fold[field] = {"fold": 2, "finetune_train_folds": [2], "finetune_sha256": "b" * 64}[field]
    return kind, encoder, cfg, inputs, fold


SPEECH_FIELDS = [
    "model",
    "revision",
    "weights_sha256",
    "segments_sha256",
    "utt_ids_sha256",
    "manifest_sha256",
    "fold",
    "finetune_train_folds",
    "finetune_sha256",
    "layer",
    "n_layers",
    "pooling",
    "levels",
    "frame_stride",
    "dtype",
    "max_seconds",
    "overlap_seconds",
    "normalize",
    "audio_sha256",
]
TEXT_FIELDS = [
    "model",
    "revision",
    "weights_sha256",
    "segments_sha256",
    "utt_ids_sha256",
    "manifest_sha256",
    "fold",
    "finetune_train_folds",
    "finetune_sha256",
    "layer",
    "n_layers",
    "max_length",
    "markers",
]
# set by the code, not by an input (text levels fixed)
CONSTANT_FIELDS = {"kind", "format", "batching", "levels", "input"}


@pytest.mark.parametrize("change", SPEECH_FIELDS + [f"text.{f}" for f in TEXT_FIELDS])
def test_each_fingerprint_field_changes_with_its_input(change: str, tiny_models, aligned, tmp_path: Path) -> None:
    """Change one input (a param, the weights, the segment table, one wav, ...): the fingerprint
    differs in that field and only there, so the store is rebuilt; drop the field from
    ``mger.features.fingerprint.fingerprint`` and this fails."""
    from transformers import AutoModel

    from mger.features.fingerprint import fingerprint

    kind = "text" if change.startswith("text.") else "speech"
    field = change.split(".", 1)[-1]
    models = dict(tiny_models)
    if field == "weights_sha256":  # the same model folder before and after its weights are replaced
        models[kind] = str(tmp_path / "model")
        shutil.copytree(tiny_models[kind], models[kind])
    (tmp_path / "new").mkdir()
    base = fingerprint(*_fingerprint_inputs(models, aligned, tmp_path / "base", f"{kind}.base"))
    if field == "weights_sha256":
        net = AutoModel.from_pretrained(models[kind])
        with torch.no_grad():
            next(p for name, p in net.named_parameters() if name.endswith("bias")).add_(0.5)
        net.save_pretrained(models[kind])
    changed = fingerprint(*_fingerprint_inputs(models, aligned, tmp_path / "new", change))
    expected = {field}
    if field == "utt_ids_sha256":  # one utterance fewer: also its transcript and (speech) its wav
        expected |= {"manifest_sha256"} | ({"audio_sha256"} if kind == "speech" else set())
    assert {k for k in set(base) | set(changed) if base.get(k) != changed.get(k)} == expected


@pytest.mark.parametrize("kind", ["speech", "text"])
def test_fingerprint_stores_the_resolved_layer(kind: str, tiny_models, aligned, tmp_path: Path) -> None:
    """``last``, ``-1`` and the depth itself name one layer: one fingerprint; a list of one layer
    (stacked) and ``mean`` are other settings."""
    from mger.features.fingerprint import fingerprint, load_aligned
    from mger.features.registry import build_encoder

    inputs, _ = load_aligned(aligned["manifest"], aligned["segments"])
    cfg = _cfg(tiny_models, tmp_path)
    depth = 3 if kind == "speech" else 2  # the tiny models' layers

    def fp(layer):
        section = dataclasses.replace(getattr(cfg, kind), layer=layer)
        config = dataclasses.replace(cfg, **{kind: section})
        return fingerprint(kind, build_encoder(kind, config), config, inputs)

    same = [fp("last"), fp(-1), fp(depth)]
    assert same[0] == same[1] == same[2] and (same[0]["layer"], same[0]["n_layers"]) == (depth, depth)
    if kind == "speech":
        assert fp([-1])["layer"] == fp([depth])["layer"] == [depth] and fp("mean")["layer"] == "mean"


def test_fingerprint_fields_all_have_a_test(tiny_models, aligned, tmp_path: Path) -> None:
    from mger.features.fingerprint import fingerprint

    for kind, fields in (("speech", SPEECH_FIELDS), ("text", TEXT_FIELDS)):
        fp = fingerprint(*_fingerprint_inputs(tiny_models, aligned, tmp_path / kind, f"{kind}.base"))
        untested = set(fp) - set(fields) - CONSTANT_FIELDS
        assert untested == set(), f"{kind} fingerprint fields without a test: {untested}"


def test_changed_wav_of_same_length_rebuilds(
    reference_store, tiny_models, aligned, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wav re-synthesised with the same length: the store is rebuilt, not reported up to date."""
    import soundfile as sf

    from mger.core.manifest import read_manifest, write_manifest

    utts = read_manifest(aligned["manifest"])
    wav = tmp_path / "wavs" / Path(utts[0].wav).name
    wav.parent.mkdir()
    shutil.copy(utts[0].wav, wav)
    utts[0] = dataclasses.replace(utts[0], wav=str(wav))
    write_manifest(tmp_path / "m.jsonl", utts)
    shutil.copy(reference_store["speech"], tmp_path / "speech.h5")
    cfg = _cfg(tiny_models, tmp_path)
    extract("speech", cfg, tmp_path / "m.jsonl", aligned["segments"])  # same bytes, other path: reused
    assert "is up to date" in capsys.readouterr().out
    audio = read_audio(str(wav))
    sf.write(str(wav), audio[::-1].copy(), 16000, subtype="PCM_16")  # same length, other sound
    extract("speech", cfg, tmp_path / "m.jsonl", aligned["segments"])
    err = capsys.readouterr().err
    assert "rebuilding" in err and "audio_sha256" in err
    new, old = FeatureStore(tmp_path / "speech.h5"), FeatureStore(reference_store["speech"])
    assert not np.array_equal(new.rows("frame", utts[0].utt_id), old.rows("frame", utts[0].utt_id))
    np.testing.assert_array_equal(new.rows("frame", utts[1].utt_id), old.rows("frame", utts[1].utt_id))


def test_damaged_store_is_rebuilt_not_reported_up_to_date(
    reference_store, tiny_models, aligned, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "speech.h5"
    shutil.copy(reference_store["speech"], store)
    with h5py.File(store, "a") as f:
        f["word/data"][3, 0] = np.nan
    with pytest.raises(CacheError, match=r"word: NaN or inf in 1 rows of 1 utterances"):
        extract("speech", _cfg(tiny_models, tmp_path), aligned["manifest"], aligned["segments"], no_rebuild=True)
    extract("speech", _cfg(tiny_models, tmp_path), aligned["manifest"], aligned["segments"])
    assert "rebuilding" in capsys.readouterr().err
    assert verify_store(store) == []
    _assert_same(_contents(store), _contents(reference_store["speech"]))


def test_verify_manifest_expects_only_aligned_utterances(
    reference_store, aligned, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Utterances alignment dropped (documented failure policy) are a note, not corruption; an
    aligned utterance missing from the store still is."""
    from mger.core.manifest import read_manifest, write_manifest
    from mger.features.cache_cli import cache_verify

    utts = read_manifest(aligned["manifest"])
    write_manifest(tmp_path / "m.jsonl", utts + [dataclasses.replace(utts[0], utt_id="Ses01F_impro09_F000")])
    assert cache_verify(reference_store["speech"], tmp_path / "m.jsonl", aligned["segments"])
    out = capsys.readouterr().out
    assert "note: 1 manifest utterances have no alignment" in out and "Ses01F_impro09_F000" in out and ": OK (" in out
    assert not cache_verify(reference_store["speech"], tmp_path / "m.jsonl", None)
    assert "1 manifest utterances missing (e.g. Ses01F_impro09_F000)" in capsys.readouterr().out


def test_a_fine_tuning_record_is_identified_without_its_wall_clock_time() -> None:
    from mger.features.extract import record_sha256

    record = {"fold": 1, "train_folds": [2, 3], "results": {"val_ua": 0.5}, "seconds": 110.7}
    assert record_sha256(record) == record_sha256(record | {"seconds": 540.2})  # two runs, one outcome
    assert record_sha256(record) != record_sha256(record | {"results": {"val_ua": 0.6}})
