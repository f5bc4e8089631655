"""A trained system for new recordings: export (``mger export``), load and predict (``mger predict``).

A *system* is everything an experiment's prediction is computed from: the alignment backend and
its settings, the encoders and their settings for every store the experiment reads, the
pooling, the standardisation statistics of its training rows, every member's classifier weights
(every training seed's: the prediction is the mean of the seeds' late-fused probabilities) and
the late-fusion weights.  :func:`export_system` retrains those members exactly as
:func:`mger.models.experiment.run_experiment` trains them (CPU, one thread, same seeds: the
same weights bit for bit) and writes a folder:

``system.json``
    format, mger version, experiment name and spec, fold (null: the final system), classes,
    seeds, inputs, standardisation flag, late-fusion weights per seed, each member's model
    config and weights file, each store's encoder identity (model, revision, weights sha256)
    and settings (layer, pooling, levels, dtype, ...), the alignment backend and its settings,
    the text source (``asr``: also the recogniser that made that text, :func:`asr_record`), and
    (``--fold k``) how closely the exported members reproduce the evaluation's
    ``reports/predictions/<exp>.csv`` rows of fold k.
``members/seed-<s>-<k>.safetensors``
    member k of seed s: a classifier's state dict, or a linear probe's scaler and coefficients.
``scaler.safetensors``
    ``<input>.mean`` and ``<input>.std`` of the training rows (:func:`mger.models.train.standardize`).
``encoders/<kind>/``
    a copy of every encoder given as a local folder (the demo's random wav2vec2, fine-tuned
    encoders); hub ids and ``package:`` models are recorded by name and checked by sha256.

No pickles: JSON and safetensors only.  Feature extraction at prediction time calls the extract
stage's own functions (:func:`mger.features.extract.speech_part`, ``text_part``) on a segment table
written by the alignment stage's own functions, so new audio goes through the code the
evaluation's features came from.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from mger import __version__
from mger.core.audio import SAMPLE_RATE, read_audio
from mger.core.config import AlignConfig, ExperimentSpec, FeaturesConfig, Params, SplitConfig
from mger.core.manifest import Utterance
from mger.core.ragged_h5 import AUDIO_LEVELS
from mger.core.reporting import StageError, write_json
from mger.core.splits import FoldSplit, final_split, fold_split
from mger.features.cache import FeatureStore, Ragged

# --- the calls into the extract stage and the experiment runner (one place, re-pointed at merges) ---
from mger.features.extract import finetuned_setup
from mger.features.fingerprint import AlignedInputs
from mger.features.registry import build_encoder
from mger.features.rows import speech_part, text_part
from mger.features.store_paths import AUDIO, store_config
from mger.models.experiment import members, model_config, prediction_path, train_params
from mger.models.fold_inputs import check_stores, experiment_utterances, fold_store_files, load_store_rows
from mger.models.modules import ModelConfig, build_model, input_names
from mger.models.probe import LinearProbe, probe_inputs
from mger.models.train import TensorSet, combine_probs, fit, fit_weights, predict_proba

SYSTEM_JSON = "system.json"
FORMAT = 1
STD_FLOOR = 1e-3  # :func:`mger.models.train.standardize`'s floor


class SystemRefused(StageError):
    """A system folder that cannot be used here (other mger version, changed encoder, wrong input)."""


# ----------------------------------------------------------------------------------------------
# export


def _kinds(names: Sequence[str]) -> list[str]:
    return sorted({n.split(":")[0] for n in names})


def _split(utts: Sequence[Utterance], fold: int | None, split_cfg: SplitConfig) -> FoldSplit:
    return final_split(utts, split_cfg) if fold is None else fold_split(utts, fold, split_cfg)


def scaler_stats(train: TensorSet) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """input → (mean, std floored) of ``train``'s rows, as :func:`mger.models.train.standardize` computes them."""
    out = {}
    for name, rows in train.inputs.items():
        ref = rows.compact().data.float()
        out[name] = ref.mean(0), ref.std(0, unbiased=False).clamp(min=STD_FLOOR)
    return out


def apply_scaler(data: TensorSet, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> TensorSet:
    """``data`` with every input scaled by ``stats``, rows kept in their stored dtype (as in training)."""
    inputs = {}
    for name, rows in data.inputs.items():
        mean, std = stats[name]
        inputs[name] = Ragged(((rows.data.float() - mean) / std).to(rows.data.dtype), rows.starts, rows.lengths)
    return TensorSet(inputs, data.labels, data.device_padding)


def _store_settings(kind: str, spec: ExperimentSpec, params: Params, path: Path, fold: int | None) -> FeaturesConfig:
    """The features settings that built the store ``path`` (fine-tuned: that fold's encoder folders)."""
    store = spec.speech_store if kind == "speech" else kind
    cfg = store_config(params.features, store)
    if spec.features != "finetuned":
        return cfg
    finetune = params.finetune.variant(spec.finetune)
    ft_cfg, _, kinds = finetuned_setup(cfg, finetune, int(fold))  # type: ignore[arg-type]
    return ft_cfg if kind in kinds else cfg


def _identity(path: Path) -> dict:
    """The store's record of its encoder and settings (its fingerprint, less the data sums)."""
    fp = FeatureStore(path).fingerprint
    drop = {"segments_sha256", "utt_ids_sha256", "manifest_sha256", "audio_sha256"}
    return {k: v for k, v in sorted(fp.items()) if k not in drop}


def _member_record(seed: int, k: int, part: ExperimentSpec, cfg: ModelConfig) -> dict:
    label = f"text:{part.text_level}" if part.model == "text" else part.model + ":" + "+".join(part.speech_levels)
    return {"seed": seed, "index": k, "label": label, "config": dataclasses.asdict(cfg)}


def _fit_probe(cfg: ModelConfig, sets: Sequence[TensorSet]) -> LinearProbe:
    names = input_names(cfg)
    tr, va = sets[0], sets[1]
    return LinearProbe(cfg.n_classes).fit(
        probe_inputs(tr.inputs, names),
        tr.labels.cpu().numpy(),
        probe_inputs(va.inputs, names),
        va.labels.cpu().numpy(),
    )


def _probe_tensors(probe: LinearProbe) -> dict[str, torch.Tensor]:
    scaler, logreg = probe.model_.steps[0][1], probe.model_.steps[-1][1]
    return {
        "scaler_mean": torch.as_tensor(scaler.mean_, dtype=torch.float64),
        "scaler_scale": torch.as_tensor(scaler.scale_, dtype=torch.float64),
        "coef": torch.as_tensor(logreg.coef_, dtype=torch.float64),
        "intercept": torch.as_tensor(logreg.intercept_, dtype=torch.float64),
        "classes": torch.as_tensor(logreg.classes_, dtype=torch.int64),
    }


def probe_proba(t: dict[str, torch.Tensor], x: np.ndarray, n_classes: int) -> np.ndarray:
    """A linear probe's class probabilities (N, n_classes) from its exported tensors (lbfgs
    multinomial logistic regression on standardised item means; binary: a sigmoid)."""
    z = (x - t["scaler_mean"].numpy()) / t["scaler_scale"].numpy()
    logits = z @ t["coef"].numpy().T + t["intercept"].numpy()
    if logits.shape[1] == 1:
        p1 = 1 / (1 + np.exp(-logits[:, 0]))
        probs = np.stack([1 - p1, p1], 1)
    else:
        logits = logits - logits.max(1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    out = np.zeros((len(x), n_classes))
    out[:, t["classes"].numpy()] = probs
    return out


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _exported_spec(params: Params, name: str, fold: int | None) -> ExperimentSpec:
    """Experiment ``name``'s spec, refused in one line where it cannot be exported as asked."""
    experiments = params.train.all_experiments
    if name not in experiments:
        raise StageError(f"train.experiments has no {name!r} (known: {', '.join(experiments)})")
    spec = experiments[name]
    if spec.features == "finetuned" and fold is None:
        raise StageError(
            f"experiment {name}: its encoders are fine-tuned per fold; a final system would need them fine-tuned "
            "on every session: export one fold's system with --fold k"
        )
    return spec


def _system_record(params: Params, name: str, spec: ExperimentSpec, fold: int | None, split: FoldSplit) -> dict:
    """``system.json``'s settings: the experiment, its alignment, text source, split and training."""
    return {
        "format": FORMAT,
        "mger_version": __version__,
        "experiment": name,
        "spec": dataclasses.asdict(spec),
        "fold": fold,
        "alignment": {
            "backend": params.align.backend,
            "on_failure": params.align.on_failure,
            "settings": dataclasses.asdict(params.align),
        },
        "text_source": _text_source(params, spec),
        "asr": asr_record(params, spec),  # the recogniser of the text it trained on, or None
        "split": {
            "seed": params.split.seed,
            "protocol": split.protocol,
            "val_speakers": split.val_speakers,
            "validation": split.validation,
            "n_train": len(split.train),
            "n_val": len(split.val),
            "test_fold": fold,
        },
        "train": train_params(params.train),
    }


def export_system(params: Params, name: str, out: str | Path, fold: int | None = None) -> dict:
    """Train ``name``'s members on fold ``fold``'s training split (None: every group, the
    final system, validation carved by :func:`mger.core.splits.final_split`) and write the
    system folder ``out``; returns its ``system.json``.  See the module docstring."""
    spec = _exported_spec(params, name, fold)
    segments = f"{params.align.out}/segments.h5"
    utts = experiment_utterances(params.prepare.manifest, params.features, segments, spec.speech_store)
    classes = sorted({u.label for u in utts})
    labels = np.array([classes.index(u.label) for u in utts])
    ids = [u.utt_id for u in utts]
    member_specs = members(spec)
    names = sorted({n for p in member_specs for n in input_names(model_config(p, params.train, {}, len(classes)))})
    split = _split(utts, fold, params.split)  # split.protocol and split.seed
    store_fold = fold if fold is not None else -1
    manifests = (params.prepare.manifest, params.transcribe.manifest)
    paths = fold_store_files(spec, names, params.features, params.finetune, store_fold)
    check_stores(paths, spec, params.features, manifests, segments)
    with _one_thread():
        data = TensorSet(load_store_rows(names, paths, ids, store_fold), torch.as_tensor(labels))
        record, tensors, test_probs = _train_members(spec, params, data, split, classes, labels)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "members").mkdir(parents=True)
    for file, t in tensors.items():
        save_file({k: v.contiguous() for k, v in t.items()}, str(tmp / file))
    system = _system_record(params, name, spec, fold, split) | {"classes": classes, "inputs": names}
    system |= {"stores": _store_records(spec, params, _by_kind(paths), names, fold, tmp), **record}
    if fold is not None:
        system["check"] = _check_against_predictions(params, name, fold, [ids[i] for i in split.test], test_probs)
    write_json(tmp / SYSTEM_JSON, system)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return system


def _by_kind(paths: dict[str, Path]) -> dict[str, Path]:
    """The stores by kind (speech, text): a speech store's alignment-free file stands for it only
    where the experiment reads nothing else of it (both files share the store's settings)."""
    return {("speech" if r == AUDIO else r): p for r, p in paths.items() if r != AUDIO or "speech" not in paths}


def _store_records(
    spec: ExperimentSpec, params: Params, paths: dict[str, Path], names: list[str], fold: int | None, folder: Path
) -> dict[str, dict]:
    """system.json's ``stores``: per kind the store's name, encoder settings, identity and the
    levels read; a local encoder folder is copied to ``folder/encoders/<kind>``."""
    stores = {}
    for kind, path in paths.items():
        cfg = _store_settings(kind, spec, params, path, fold)
        section = dataclasses.asdict(cfg.speech if kind == "speech" else cfg.text)
        if Path(section["model"]).is_dir():  # a local folder: copied, so the system is self-contained
            shutil.copytree(section["model"], folder / "encoders" / kind)
            section["model"] = f"encoders/{kind}"
        stores[kind] = {
            "store": spec.speech_store if kind == "speech" else kind,
            "settings": section,
            "features": {"device": cfg.device, "dtype": cfg.dtype, "batch_seconds": cfg.batch_seconds},
            "identity": _identity(path),
            "levels": sorted({n.split(":")[1] for n in names if n.startswith(kind + ":")}),
        }
    return stores


def _text_source(params: Params, spec: ExperimentSpec) -> str:
    """Which transcript the text store read: the experiment's ``text_source`` where it names one,
    else the run's ``transcribe.source`` (docs/transcripts.md)."""
    return spec.text_source or params.transcribe.source


def asr_record(params: Params, spec: ExperimentSpec) -> dict | None:
    """system.json's ``asr``: the recogniser that made the text the system trained on (its
    backend, model and identity from the ASR manifest's sidecar, and the ``transcribe``
    settings that rebuild it: ``mger predict --asr``'s default), or None for gold text.  A local
    Whisper folder is recorded by its absolute path (not copied into the system)."""
    from mger.core.transcripts import read_source

    if _text_source(params, spec) != "asr":
        return None
    identity = read_source(params.transcribe.manifest)
    if identity is None:
        raise StageError(f"{params.transcribe.manifest}: no ASR manifest identity; run `mger transcribe` first")
    t = params.transcribe
    whisper = dataclasses.asdict(t.whisper)
    if Path(whisper["model"]).is_dir():
        whisper["model"] = str(Path(whisper["model"]).resolve())
    return {
        "backend": identity["asr_backend"],
        "model": identity["asr_model"],
        "model_id": identity["asr_model_id"],
        "settings": {"backend": identity["asr_backend"], "dtype": t.dtype, "whisper": whisper},
    }


def _train_members(
    spec: ExperimentSpec, params: Params, data: TensorSet, split: FoldSplit, classes: list[str], labels: np.ndarray
) -> tuple[dict, dict[str, dict[str, torch.Tensor]], dict[int, np.ndarray]]:
    """Every seed's members as :func:`mger.models.experiment.run_experiment` trains them: the
    system.json entries, the tensors per file, and each seed's late-fused test probabilities."""
    train_cfg = params.train
    dims = {n: int(b.data.shape[-1]) for n, b in data.inputs.items()}
    stacked = {n: int(b.data.shape[1]) for n, b in data.inputs.items() if b.data.dim() == 3}
    sets = [data.subset(np.array(idx, dtype=np.int64)) for idx in (split.train, split.val, split.test)]
    stats = scaler_stats(sets[0])
    scaled = [apply_scaler(s, stats) for s in sets] if train_cfg.standardize else sets
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    if train_cfg.standardize:
        tensors["scaler.safetensors"] = {
            f"{n}.{w}": t for n, (m, s) in stats.items() for w, t in (("mean", m), ("std", s))
        }
    entries, weights, test_out = [], {}, {}
    val_labels = labels[split.val]
    for seed in train_cfg.seeds:
        val_probs, test_probs = [], []
        for k, part in enumerate(members(spec)):
            cfg = model_config(part, train_cfg, dims, len(classes), stacked)
            entry = _member_record(seed, k, part, cfg) | {"file": f"members/seed-{seed}-{k}.safetensors"}
            if cfg.kind == "probe":
                probe = _fit_probe(cfg, sets)
                tensors[entry["file"]] = _probe_tensors(probe)
                names = input_names(cfg)
                probs = [probe.predict_proba(probe_inputs(s.inputs, names)) for s in sets[1:]]
            else:
                model, _ = fit(cfg, scaled[0], scaled[1], train_cfg, seed)
                tensors[entry["file"]] = {k_: v.detach().cpu() for k_, v in model.state_dict().items()}
                probs = [predict_proba(model, s) for s in scaled[1:]]
            entries.append(entry)
            val_probs.append(probs[0])
            test_probs.append(probs[1])
        w = (
            fit_weights(val_probs, val_labels, len(classes))
            if spec.late_weights == "fitted"
            else np.full(len(val_probs), 1 / len(val_probs))
        )
        weights[str(seed)] = [float(x) for x in w]
        if len(split.test):
            test_out[seed] = combine_probs(w, test_probs)
    record = {
        "seeds": list(train_cfg.seeds),
        "standardize": train_cfg.standardize,
        "members": entries,
        "late_weights": weights,
    }
    return record, tensors, test_out


def _check_against_predictions(
    params: Params, name: str, fold: int, test_ids: list[str], test_probs: dict[int, np.ndarray]
) -> dict:
    """How closely the exported members reproduce the evaluation's predictions of fold ``fold``
    (the largest absolute difference of a probability, each seed's rows); a warning line if
    they do not (trained on another device, another params file)."""
    from mger.models.predictions import read_predictions

    path = prediction_path(params.train, name)
    if not path.is_file():
        return {"predictions": str(path), "max_abs_diff": None, "note": "no predictions file to compare with"}
    pred = read_predictions(path)
    worst = 0.0
    n = 0
    for seed, probs in test_probs.items():
        rows = {u: i for i, (u, f, s) in enumerate(pred.key()) if f == fold and s == seed}
        for j, u in enumerate(test_ids):
            if u in rows:
                worst = max(worst, float(np.abs(pred.probs[rows[u]] - probs[j]).max()))
                n += 1
    if n and worst > 1e-4:
        print(
            f"warning: export {name}: fold {fold}'s retrained members differ from {path} by up to {worst:.2g} "
            "(trained on another device or with other params?)",
            file=sys.stderr,
        )
    return {"predictions": str(path), "rows_compared": n, "max_abs_diff": worst}


# ----------------------------------------------------------------------------------------------
# load and predict


@dataclass
class Item:
    """One thing to predict: a name (file path or given), its audio (a path or a 16 kHz mono
    array; None for text alone), its transcript (None: none)."""

    name: str
    audio: str | Path | np.ndarray | None
    text: str | None = None


@dataclass
class Result:
    """One prediction: class → probability, or an error line; ``start``/``end`` (seconds) for a
    segment of a long recording; ``note``: what the alignment did (fallbacks)."""

    name: str
    probs: dict[str, float] | None = None
    error: str | None = None
    start: float | None = None
    end: float | None = None
    text: str | None = None
    note: str = ""

    @property
    def label(self) -> str | None:
        return max(self.probs, key=self.probs.__getitem__) if self.probs else None


class System:
    """A loaded system folder (:func:`load_system`); :meth:`predict` one recording,
    :meth:`predict_items` many (the encoders and aligner are built once)."""

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        self.path = Path(path)
        meta_path = self.path / SYSTEM_JSON
        if not meta_path.is_file():
            raise SystemRefused(
                f"{self.path}: not an mger system folder (no {SYSTEM_JSON}); make one with `mger export`"
            )
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if self.meta.get("mger_version") != __version__:
            raise SystemRefused(
                f"{self.path}: exported by mger {self.meta.get('mger_version')}, this is mger {__version__}; "
                "export it again with this version"
            )
        if self.meta.get("format") != FORMAT:
            raise SystemRefused(f"{self.path}: system format {self.meta.get('format')}, this mger reads {FORMAT}")
        self.device = device
        self.classes: list[str] = list(self.meta["classes"])
        self.inputs: list[str] = list(self.meta["inputs"])
        self.kinds = _kinds(self.inputs)
        self._encoders: dict[str, object] = {}
        self._aligner = None
        scaler = self.path / "scaler.safetensors"
        stats = load_file(str(scaler)) if self.meta["standardize"] else {}
        self.stats = {n: (stats[f"{n}.mean"], stats[f"{n}.std"]) for n in self.inputs} if stats else {}
        self.members = [self._load_member(m) for m in self.meta["members"]]

    # -- what the system needs

    @property
    def needs_text(self) -> bool:
        return "text" in self.kinds

    @property
    def needs_audio(self) -> bool:
        return "speech" in self.kinds or self._needs_alignment

    @property
    def _needs_alignment(self) -> bool:
        """Segment levels (phone, syllable, word) of speech, or the text store (its word rows)."""
        speech = [n.split(":")[1] for n in self.inputs if n.startswith("speech:")]
        return "text" in self.kinds or any(lv not in ("frame", "utterance", *AUDIO_LEVELS) for lv in speech)

    @property
    def max_seconds(self) -> float:
        speech = self.meta["stores"].get("speech")
        return float(speech["settings"].get("max_seconds") or 30.0) if speech else 30.0

    def _load_member(self, entry: dict) -> tuple[dict, object]:
        cfg = ModelConfig.from_dict(entry["config"])
        tensors = load_file(str(self.path / entry["file"]))
        if cfg.kind == "probe":
            return entry, tensors
        model = build_model(cfg)
        model.load_state_dict(tensors)
        model.eval()
        return entry, model

    def encoder(self, kind: str):
        """The ``kind`` encoder, built once and checked against the exported weights' sha256."""
        if kind not in self._encoders:
            cfg = self.features_config(kind)
            enc = build_encoder("speech" if kind == "speech" else "text", cfg)
            want = self.meta["stores"][kind]["identity"].get("weights_sha256")
            if want and enc.weights_sha256 != want:
                model = cfg.speech.model if kind == "speech" else cfg.text.model
                raise SystemRefused(
                    f"{self.path}: the {kind} encoder {model} has weights sha256 {enc.weights_sha256[:12]}..., the "
                    f"system was exported with {want[:12]}...: not the encoder it was trained on"
                )
            self._encoders[kind] = enc
        return self._encoders[kind]

    def features_config(self, kind: str) -> FeaturesConfig:
        """The store's settings with the encoder's path resolved and only the levels the system reads."""
        store = self.meta["stores"][kind]
        section = dict(store["settings"])
        if section["model"].startswith("encoders/"):
            section["model"] = str(self.path / section["model"])
        base = FeaturesConfig()
        device = store["features"]["device"] if self.device == "params" else self.device
        if kind == "speech":
            section["levels"] = [lv for lv in section["levels"] if lv in store["levels"]]
            speech = type(base.speech)(**section)
            return dataclasses.replace(base, speech=speech, device=device, dtype=store["features"]["dtype"])
        text = type(base.text)(**section)
        return dataclasses.replace(base, text=text, device=device, dtype=store["features"]["dtype"])

    def aligner(self):
        if self._aligner is None:
            from mger.alignment.stage import make_aligner

            self._aligner = make_aligner(self.align_config())
        return self._aligner

    def align_config(self) -> AlignConfig:
        from mger.core.config import MfaSettings, PocketsphinxSettings

        s = dict(self.meta["alignment"]["settings"])
        s["pocketsphinx"] = PocketsphinxSettings(**s["pocketsphinx"])
        s["mfa"] = MfaSettings(**s["mfa"])
        return AlignConfig(**s)

    # -- prediction

    def check_item(self, item: Item) -> None:
        """Refuse, in one line, input the system cannot read."""
        has_audio = item.audio is not None
        has_text = bool(item.text and item.text.strip())
        if self.kinds == ["text"] and not has_text:
            raise SystemRefused(f"{item.name}: a text-only system needs a transcript (--text, --transcripts or --asr)")
        if "speech" in self.kinds and not has_audio:
            raise SystemRefused(f"{item.name}: this system reads speech; text alone cannot be predicted")
        if self._needs_alignment and not has_text:
            raise SystemRefused(
                f"{item.name}: this system reads word-aligned segments ({', '.join(self.inputs)}); "
                "give a transcript (--text, --transcripts or --asr)"
            )
        if self._needs_alignment and not has_audio:
            raise SystemRefused(f"{item.name}: aligning the transcript needs the audio")

    def predict(self, audio: str | Path | np.ndarray | None, text: str | None = None) -> dict | list[dict]:
        """Class probabilities of one recording (a path or a 16 kHz mono float array): a dict
        class → probability; a recording longer than ``max_seconds`` is split at pauses and
        gives a list of {start, end, probs} segments.  Errors raise."""
        name = str(audio) if isinstance(audio, (str, Path)) else "<array>"
        results = self.predict_items([Item(name, audio, text)], progress=False)
        for r in results:
            if r.error:
                raise SystemRefused(r.error)
        if len(results) == 1 and results[0].start is None:
            return results[0].probs  # type: ignore[return-value]
        return [{"start": r.start, "end": r.end, "text": r.text, "probs": r.probs} for r in results]

    def predict_items(
        self, items: Sequence[Item], progress: bool = True, max_seconds: float | None = None
    ) -> list[Result]:
        """Every item's prediction (a long recording's segments in its place); a bad item is one
        :class:`Result` with its error line and the rest go on."""
        from tqdm import tqdm

        limit = max_seconds or self.max_seconds
        out: list[Result] = []
        with tempfile.TemporaryDirectory(prefix="mger-predict-") as tmp:
            for n, item in enumerate(tqdm(items, desc="predict", unit="file", file=sys.stderr, disable=not progress)):
                try:
                    out.extend(self._predict_one(item, Path(tmp), n, limit))
                except Exception as err:  # one line per bad file; the batch goes on
                    line = str(err).splitlines()[0] if str(err) else type(err).__name__
                    if item.name not in line:
                        line = f"{item.name}: {line}"
                    out.append(Result(item.name, error=line))
        return out

    def _predict_one(self, item: Item, tmp: Path, n: int, limit: float) -> list[Result]:
        self.check_item(item)
        assert item.audio is not None  # check_item: every system reads audio (text stores need word alignment)
        wave = item.audio if isinstance(item.audio, np.ndarray) else read_audio(item.audio)
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1 or not len(wave):
            raise SystemRefused(f"{item.name}: expected mono audio samples, got shape {wave.shape}")
        seconds = len(wave) / SAMPLE_RATE
        if seconds <= limit:
            wav = item.audio if isinstance(item.audio, (str, Path)) else _write_wav(tmp / f"u{n:06d}.wav", wave)
            utt = _utterance(f"u{n:06d}", wav, seconds, item.text or "")
            return [self._predict_utts([(utt, None, item)], tmp)[0]]
        from mger.alignment.vad import split_at_pauses

        spans, how = split_at_pauses(wave, limit)
        texts = self._segment_texts(item, wave, spans, tmp, n) if item.text else [None] * len(spans)
        jobs = []
        results: list[Result | None] = []
        for j, ((a, b), text) in enumerate(zip(spans, texts)):
            if self._needs_alignment and not (text and text.strip()):
                results.append(
                    Result(
                        item.name,
                        error=f"{item.name}: segment {a:.2f}-{b:.2f} s: no words of the transcript fall in it",
                        start=a,
                        end=b,
                    )
                )
                continue
            wav = _write_wav(tmp / f"u{n:06d}-{j:04d}.wav", wave[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)])
            jobs.append((len(results), (_utterance(f"u{n:06d}-{j:04d}", wav, b - a, text or ""), (a, b), item)))
            results.append(None)
        for pos, job in jobs:
            results[pos] = self._predict_utts([job], tmp)[0]
            results[pos].note = "; ".join(x for x in (f"split by {how}", results[pos].note) if x)
        return [r for r in results if r is not None]

    def _segment_texts(
        self, item: Item, wave: np.ndarray, spans: list[tuple[float, float]], tmp: Path, n: int
    ) -> list[str]:
        """A long recording's transcript cut at the segments: the whole recording aligned by the
        system's backend, each word given to the segment holding its midpoint (our choice)."""
        from mger.alignment.base import Alignment
        from mger.alignment.stage import align_one

        wav = item.audio if isinstance(item.audio, (str, Path)) else _write_wav(tmp / f"u{n:06d}-all.wav", wave)
        result, _ = align_one(
            self.aligner(),
            _utterance(f"u{n:06d}", wav, len(wave) / SAMPLE_RATE, item.text or ""),
            self.meta["alignment"]["on_failure"],
        )
        if not isinstance(result, Alignment):
            raise SystemRefused(
                f"{item.name}: the whole transcript could not be aligned to cut it at pauses ({result.reason})"
            )
        texts: list[list[str]] = [[] for _ in spans]
        for w in result.words:
            mid = (w.start + w.end) / 2
            k = min(
                range(len(spans)),
                key=lambda i: (
                    0 if spans[i][0] <= mid < spans[i][1] else min(abs(mid - spans[i][0]), abs(mid - spans[i][1]))
                ),
            )
            texts[k].append(w.label)
        return [" ".join(t) for t in texts]

    def _predict_utts(self, jobs: list[tuple[Utterance, tuple[float, float] | None, Item]], tmp: Path) -> list[Result]:
        """Align, extract, pool, scale, classify and fuse ``jobs`` (one utterance each)."""
        utts = [u for u, _, _ in jobs]
        notes = [""] * len(utts)
        table = None
        if self._needs_alignment:
            table, notes = self._align(utts, tmp)
        rows: dict[str, list[np.ndarray]] = {}
        for kind in self.kinds:
            rows |= self._extract(kind, utts, table)
        data = TensorSet({n: _ragged(rows[n]) for n in self.inputs}, torch.zeros(len(utts), dtype=torch.long))
        probs = self.classify(data)
        out = []
        for i, (utt, span, item) in enumerate(jobs):
            start, end = span if span else (None, None)
            out.append(
                Result(
                    item.name,
                    {c: float(p) for c, p in zip(self.classes, probs[i])},
                    start=start,
                    end=end,
                    text=utt.text if span else None,
                    note=notes[i],
                )
            )
        return out

    def _align(self, utts: list[Utterance], tmp: Path):
        from mger.alignment.base import Alignment
        from mger.alignment.stage import align_one
        from mger.alignment.table import SegmentTable, write_table

        aligned, notes = [], []
        for u in utts:
            result, failure = align_one(self.aligner(), u, self.meta["alignment"]["on_failure"])
            if not isinstance(result, Alignment):
                raise SystemRefused(f"alignment failed: {result.reason}")
            aligned.append(result)
            notes.append(f"alignment failed ({failure.reason}): uniform fallback" if failure else "")
        path = tmp / f"{utts[0].utt_id}-segments.h5"
        write_table(path, aligned, self.meta["alignment"]["backend"])
        table = SegmentTable.read(path)
        path.unlink()
        return table, notes

    def _extract(self, kind: str, utts: list[Utterance], table) -> dict[str, list[np.ndarray]]:
        """``kind:level`` → each utterance's rows (float16 as stored), by the extract stage's functions."""
        cfg = self.features_config(kind)
        inputs = AlignedInputs(list(utts), table, "")
        enc = self.encoder(kind)
        if kind == "speech":
            levels = speech_part(enc, cfg, inputs, utts)
        else:
            levels = text_part(enc, cfg, inputs, utts)[0]
        return {f"{kind}:{lv}": list(v) for lv, v in levels.items()}

    def classify(self, data: TensorSet) -> np.ndarray:
        """(N, C): the mean over seeds of each seed's late-fused member probabilities."""
        scaled = apply_scaler(data, self.stats) if self.stats else data
        per_seed: dict[int, list[np.ndarray]] = {}
        with torch.no_grad():
            for entry, model in self.members:
                cfg = entry["config"]
                if cfg["kind"] == "probe":
                    names = input_names(ModelConfig.from_dict(cfg))
                    p = probe_proba(model, probe_inputs(data.inputs, names), len(self.classes))  # type: ignore[arg-type]
                else:
                    p = predict_proba(model, scaled)  # type: ignore[arg-type]
                per_seed.setdefault(entry["seed"], []).append(p)
        fused = [combine_probs(np.array(self.meta["late_weights"][str(s)]), ps) for s, ps in per_seed.items()]
        return np.mean(fused, 0)


def _ragged(items: list[np.ndarray]) -> Ragged:
    lengths = torch.tensor([len(x) for x in items], dtype=torch.long)
    starts = torch.cumsum(lengths, 0) - lengths
    return Ragged(torch.from_numpy(np.concatenate(items)), starts, lengths)


def _utterance(utt_id: str, wav: str | Path, seconds: float, text: str) -> Utterance:
    """A row for one item to predict (the text given with it, if any; no label, no group)."""
    source = "gold" if text else "none"
    return Utterance(utt_id, "", str(wav), float(seconds), "", "", text, source, "", "", "", "", None, None, None)


def _write_wav(path: Path, wave: np.ndarray) -> Path:
    """16 kHz float32 mono: read back by :func:`mger.core.audio.read_audio` sample for sample."""
    sf.write(str(path), wave.astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
    return path


def load_system(path: str | Path, device: str = "auto") -> System:
    """The system folder ``path`` (written by ``mger export``), checked: its mger version here."""
    return System(path, device)
