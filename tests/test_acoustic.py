"""openSMILE as a speech encoder kind (features/acoustic.py): geometry, pooled rows, store, config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mger.alignment.table import SegmentTable
from mger.core.audio import read_audio
from mger.core.config import ConfigError, FeaturesConfig, SpeechFeaturesConfig, params_from_dict
from mger.core.manifest import read_manifest
from mger.features.cache import FeatureStore, verify_store

opensmile = pytest.importorskip("opensmile")

LEVELS = ["frame", "phone", "syllable", "word", "utterance", "functionals"]


@pytest.fixture(scope="module")
def egemaps_store(aligned: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store's two files, as `mger extract` and `mger extract --audio` write them: the aligned
    levels (returned), and the functionals under ``audio_out`` (every manifest utterance)."""
    from mger.features.extract import extract
    from mger.features.store_paths import stage_config, store_file

    out = tmp_path_factory.mktemp("egemaps")
    cfg = FeaturesConfig(
        out=str(out),
        shard_size=8,
        extra_speech={"egemaps": SpeechFeaturesConfig(model="opensmile:eGeMAPSv02", levels=LEVELS)},
    )
    extract(
        "speech",
        stage_config(cfg, "egemaps", audio=True),
        aligned["manifest"],
        None,
        store=store_file(cfg.audio_out, "egemaps"),
    )
    return extract(
        "speech",
        stage_config(cfg, "egemaps", audio=False),
        aligned["manifest"],
        aligned["segments"],
        store=store_file(out, "egemaps"),
    )


@pytest.mark.parametrize(
    "feature_set, dim, functionals, centre0", [("eGeMAPSv02", 25, 88, 0.01), ("ComParE_2016", 65, 6373, 0.03)]
)
def test_frame_geometry_is_read_from_opensmile(feature_set: str, dim: int, functionals: int, centre0: float) -> None:
    """Hop 10 ms; frame t centred at t*hop + window/2 (20 ms window for eGeMAPS, 60 ms for ComParE)."""
    from mger.features.acoustic import OpenSmileEncoder

    enc = OpenSmileEncoder(f"opensmile:{feature_set}")
    assert (enc.dim, enc.functionals_dim) == (dim, functionals)
    assert enc.frame_stride_s == pytest.approx(0.01) and enc.frame_centre0_s == pytest.approx(centre0)
    wave = np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32)  # 0.5 s
    frames = enc.encode([wave])[0]
    index = (
        opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, feature_set),
            feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
        )
        .process_signal(wave, 16000)
        .index
    )
    starts = np.array([s.total_seconds() for s in index.get_level_values(0)])
    assert frames.shape == (len(starts), dim)
    # every frame but the last (whose span openSMILE's index clips at the signal's end) as stated
    centres = starts[:-1] + enc.window_s / 2
    np.testing.assert_allclose(centres, enc.frame_centre0_s + enc.frame_stride_s * np.arange(len(centres)), atol=1e-6)


def test_short_utterance_gets_frames_and_finite_functionals() -> None:
    from mger.features.acoustic import OpenSmileEncoder

    enc = OpenSmileEncoder("opensmile:eGeMAPSv02")
    wave = np.random.default_rng(1).normal(0, 0.1, 400).astype(np.float32)  # 25 ms: too short for openSMILE
    assert enc.encode([wave])[0].shape[0] >= 1
    assert np.isfinite(enc.functionals([wave])[0].numpy()).all()


def _pool_by_hand(frames: np.ndarray, start: float, end: float, stride: float, centre0: float) -> np.ndarray:
    centres = np.round(centre0 + stride * np.arange(len(frames)), 9)  # aligner times and centres share a 10 ms grid:
    inside = (centres >= round(start, 9)) & (centres < round(end, 9))  # a tie is decided exactly, [start, end)
    if not inside.any():  # shorter than a frame: the frame nearest to its midpoint
        inside = np.arange(len(frames)) == np.clip(round(((start + end) / 2 - centre0) / stride), 0, len(frames) - 1)
    return frames[inside].mean(0)


@pytest.mark.parametrize("level", ["phone", "syllable", "word"])
def test_segment_rows_equal_direct_opensmile_pooled_by_hand(egemaps_store: Path, aligned, level: str) -> None:
    """Each store row = a direct openSMILE LLD run over the wav, averaged by hand over the frames
    whose centres lie in the aligned segment."""
    store = FeatureStore(egemaps_store)
    table = SegmentTable.read(aligned["segments"])
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.LowLevelDescriptors
    )
    utts = {u.utt_id: u for u in read_manifest(aligned["manifest"])}
    for uid in store.utt_ids[:6]:
        frames = smile.process_signal(read_audio(utts[uid].wav), 16000).to_numpy(np.float32)
        segs = table.segments(level, uid) or table.segments("syllable", uid)
        expected = np.stack([_pool_by_hand(frames, s.start, s.end, 0.01, 0.01) for s in segs])
        rows = store.rows(level, uid).astype(np.float32)
        assert rows.shape == (len(segs), 25)
        np.testing.assert_allclose(rows, expected, rtol=2e-3, atol=2e-3)  # float16 storage


def test_store_levels_functionals_fingerprint_and_verify(egemaps_store: Path, aligned) -> None:
    """The aligned file holds every level but the functionals; the alignment-free file beside the
    folder holds the functionals of every manifest utterance, equal to openSMILE's own."""
    assert egemaps_store.name == "speech-egemaps.h5"
    assert sorted(FeatureStore(egemaps_store).levels) == sorted(lv for lv in LEVELS if lv != "functionals")
    free = egemaps_store.parent.with_name(egemaps_store.parent.name + "-audio") / egemaps_store.name
    store = FeatureStore(free)
    assert store.levels == ["functionals"] and store.fingerprint["alignment_free"] is True
    assert not {"segments_sha256", "manifest_sha256", "pooling"} & set(store.fingerprint)
    assert store.utt_ids == [u.utt_id for u in read_manifest(aligned["manifest"])]
    uid = store.utt_ids[0]
    wav = {u.utt_id: u for u in read_manifest(aligned["manifest"])}[uid].wav
    direct = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
    ).process_signal(read_audio(wav), 16000)
    np.testing.assert_allclose(
        store.rows("functionals", uid).astype(np.float32), direct.to_numpy(np.float32), rtol=2e-3, atol=2e-3
    )
    fp = store.fingerprint
    assert fp["model"] == "opensmile:eGeMAPSv02" and fp["feature_set"] == "eGeMAPSv02"
    assert fp["opensmile_version"] == opensmile.__version__ and fp["frame_centre0"] == pytest.approx(0.01)
    assert len(fp["weights_sha256"]) == 64 and "layer" not in fp
    for path in (egemaps_store, free):
        assert verify_store(path) == []
        result = subprocess.run(
            [sys.executable, "-m", "mger.pipeline.cli", "cache", "verify", str(path)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr


def test_experiment_trains_on_the_extra_store(egemaps_store: Path, aligned, tmp_path: Path) -> None:
    """An audio model and the probe read speech-egemaps.h5 by ``speech_store``; the metrics name it."""
    from mger.core.config import ExperimentSpec, TrainConfig
    from mger.models.experiment import run_experiment

    out = egemaps_store.parent
    features = FeaturesConfig(
        out=str(out), extra_speech={"egemaps": SpeechFeaturesConfig(model="opensmile:eGeMAPSv02", levels=LEVELS)}
    )
    train = TrainConfig(
        epochs=2,
        patience=2,
        seeds=[0],
        metrics_dir=str(tmp_path / "m"),
        epochs_dir=str(tmp_path / "e"),
        predictions_dir=str(tmp_path / "p"),
    )
    for spec in (
        ExperimentSpec(model="audio", speech_levels=["functionals"], speech_store="egemaps"),
        ExperimentSpec(model="probe", probe="speech", speech_levels=["word"], speech_store="egemaps"),
    ):
        result = run_experiment("eg", spec, train, features, aligned["manifest"], segments=aligned["segments"])
        assert result["speech_store"] == "egemaps"
        stores = result["provenance"]["stores"]["1"]
        role = "audio" if spec.speech_levels == ["functionals"] else "speech"  # the functionals' own file
        assert list(stores) == [role] and stores[role]["path"].endswith("speech-egemaps.h5")
        assert (tmp_path / "p" / "eg.csv").is_file()


def test_config_rules_for_opensmile_and_extra_stores() -> None:
    with pytest.raises(ConfigError, match="functionals.*openSMILE"):
        params_from_dict({"features": {"speech": {"levels": ["word", "functionals"]}}})
    with pytest.raises(ConfigError, match="features.extra_speech: 'a/b' is not a name"):
        params_from_dict({"features": {"extra_speech": {"a/b": {"model": "opensmile:eGeMAPSv02"}}}})
    with pytest.raises(ConfigError, match="features.extra_speech: 'text' is reserved"):
        params_from_dict({"features": {"extra_speech": {"text": {"model": "opensmile:eGeMAPSv02"}}}})
    with pytest.raises(ConfigError, match="speech_store: 'egemaps' is not a speech store"):
        params_from_dict({"train": {"experiments": {"a": {"model": "audio", "speech_store": "egemaps"}}}})
    extra = {"extra_speech": {"egemaps": {"model": "opensmile:eGeMAPSv02"}}}
    with pytest.raises(ConfigError, match="fine-tuned features exist for features.speech only"):
        params_from_dict(
            {
                "features": extra,
                "train": {"finetuned_experiments": {"a": {"model": "audio", "speech_store": "egemaps"}}},
            }
        )
    params = params_from_dict(
        {"features": extra, "train": {"experiments": {"a": {"model": "audio", "speech_store": "egemaps"}}}}
    )
    assert list(params.features.speech_stores) == ["speech", "egemaps"]


def test_finetuning_refuses_opensmile_in_one_line(aligned, tmp_path: Path) -> None:
    from mger.core.config import FinetuneConfig
    from mger.core.reporting import StageError
    from mger.models.finetune_stage import run_finetune

    features = FeaturesConfig(speech=SpeechFeaturesConfig(model="opensmile:eGeMAPSv02"))
    with pytest.raises(StageError, match="openSMILE descriptors have no weights to fine-tune") as err:
        run_finetune(1, FinetuneConfig(out=str(tmp_path)), features, aligned["manifest"], aligned["segments"])
    assert "\n" not in str(err.value)


def test_core_runs_without_opensmile(tmp_path: Path) -> None:
    """With openSMILE not importable: the package imports, params load, a wav2vec2 pipeline is
    untouched, and asking for openSMILE names the optional extra in one line."""
    code = (
        "import sys; sys.modules['opensmile'] = None\n"
        "import mger.pipeline.cli, mger.features.extract, mger.models.experiment, mger.models.report\n"
        "from mger.core.config import load_params; load_params('params.yaml')\n"
        "from mger.features.registry import build_encoder\n"
        "from mger.features.cache import CacheError\n"
        "from mger.core.config import FeaturesConfig, SpeechFeaturesConfig\n"
        "try:\n"
        "    build_encoder('speech', FeaturesConfig(speech=SpeechFeaturesConfig(model='opensmile:eGeMAPSv02')))\n"
        "except CacheError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    assert result.returncode == 0, result.stderr
    assert "mger[opensmile]" in result.stdout and len(result.stdout.strip().splitlines()) == 1


def test_a_store_of_functionals_only_lives_in_its_alignment_free_file(egemaps_store: Path, aligned) -> None:
    """A store listing only alignment-free levels has no aligned file (`mger extract` skips it,
    `stage_config` None); an experiment on it reads the alignment-free file and runs on the
    aligned utterances, in manifest order."""
    from mger.alignment.table import SegmentTable
    from mger.features.store_paths import stage_config
    from mger.models.fold_inputs import experiment_utterances

    features = FeaturesConfig(
        out=str(egemaps_store.parent),
        extra_speech={"egemaps": SpeechFeaturesConfig(model="opensmile:eGeMAPSv02", levels=["functionals"])},
    )
    assert stage_config(features, "egemaps", audio=False) is None
    assert stage_config(features, "egemaps", audio=True).speech.levels == ["functionals"]
    utts = experiment_utterances(aligned["manifest"], features, aligned["segments"], "egemaps")
    kept = set(SegmentTable.read(aligned["segments"]).utt_ids)
    assert [u.utt_id for u in utts] == [u.utt_id for u in read_manifest(aligned["manifest"]) if u.utt_id in kept]


@pytest.mark.parametrize("listed", [True, False])
def test_a_missing_alignment_free_file_says_what_to_do(tmp_path: Path, listed: bool) -> None:
    """Reading functionals with no alignment-free file: one line naming the file, and the fix
    (list the level first only where the store's settings lack it)."""
    from mger.core.config import ExperimentSpec, FinetuneConfig
    from mger.core.reporting import StageError
    from mger.models.fold_inputs import fold_store_file

    levels = ["word", "functionals"] if listed else ["word"]
    features = FeaturesConfig(
        out=str(tmp_path / "f"), extra_speech={"eg": SpeechFeaturesConfig(model="opensmile:eGeMAPSv02", levels=levels)}
    )
    spec = ExperimentSpec(model="audio", speech_levels=["functionals"], speech_store="eg")
    with pytest.raises(StageError) as err:
        fold_store_file("audio", spec, features, FinetuneConfig(), 1)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'f-audio' / 'speech-eg.h5'}: no store of the alignment-free levels")
    assert message.endswith("run `mger extract --audio` (or `dvc repro`)")
    assert ("list the level in features.extra_speech.eg.levels" in message) is not listed
