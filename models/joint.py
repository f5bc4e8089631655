"""Joint fine-tuning of the encoders with the fusion head (``finetune.objective: fusion``).

Sun, He & Han (ICASSP 2023) train wav2vec 2.0 and BERT end to end inside their fusion model,
with the auxiliary losses; our reading of it, per fold k of :mod:`mger.models.finetune`:

* the speech encoder's last-layer **frames** (not pooled: the frame-level wav2vec 2.0 sequence)
  and the text encoder's last-layer **tokens** are the two row sequences of one
  :class:`mger.models.modules.MhaAux` head (``finetune.fusion``: K layers, hidden size, heads, the
  two auxiliary tasks and their weights), trained with :func:`mger.models.train.training_loss`;
* the speech encoder is fine-tuned (conv stack frozen as configured), the text encoder too
  with ``finetune.text: true``; otherwise its token embeddings come from the frozen text
  encoder, computed once;
* training crops speech to a random ``max_train_seconds`` window per epoch, the transcript is
  whole; validation and test read whole utterances;
* the loop, schedule, early stopping on validation UA and resume are those of the utterance
  objective (:func:`mger.models.finetune.fit_epochs`), the state in ``state-fusion/``.

After training, and only then, the best-validation epoch is read back from disk (the encoder
folders and ``fusion/head.safetensors``) and evaluated once on the fold's test data: its audio is
read for that and nothing else, and nothing is chosen on it.  Its predictions go to
``fusion/test-predictions.csv`` (the :mod:`mger.models.predictions` format) and its WA/UA/F1 to
``finetune.json``.

The end-to-end row is trained once per seed of ``train.seeds`` (:func:`run_joint_seeds`), so
that it pairs with every classifier row: ``finetune.seed``'s run in the fold folder (its encoders
are the ones ``mger extract --fold k`` reads), every other seed s in ``seed-<s>/`` from the base
encoders again.  Every seed's test predictions go to ``joint-test-predictions.csv`` (copied to
``<finetune.reports>/joint-fold-<k>.csv``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mger.core.config import FeaturesConfig, FinetuneConfig
from mger.core.manifest import Utterance
from mger.core.reporting import StageError, write_json
from mger.features.encoders import TextEncoder, autocast_context, pad_batch, resolve_dtype, speech_encoder
from mger.models.finetune import (
    FinetuneSplit,
    Progress,
    SpeechInputs,
    Task,
    TextInputs,
    _fresh_dir,
    _replace_dir,
    _tensors,
    build_encoders,
    fit_epochs,
    save_best,
    settings_key,
)
from mger.models.metrics import all_metrics
from mger.models.modules import MhaAux, ModelConfig, ModelOutput
from mger.models.predictions import Predictions, read_predictions, write_predictions
from mger.models.train import training_loss

SPEECH, TEXT = "speech:frame", "text:token"
HEAD_DIR = "fusion"
TEST_PREDICTIONS = "test-predictions.csv"
ALL_SEEDS = "joint-test-predictions.csv"  # in the fold folder: every seed's test predictions
SEED_RESULT = "result.json"  # in seed-<s>/: that seed's key and test entry, once tested


class FrozenTextInputs:
    """Token embeddings (last layer) of the frozen text encoder, computed once: the text rows of
    the fusion head when the text encoder is not fine-tuned."""

    def __init__(self, encoder: TextEncoder, texts: Sequence[str], batch_size: int) -> None:
        self.encoder, self.net, self.items = encoder, encoder.model, []
        texts = list(texts)
        with torch.no_grad():
            for s in range(0, len(texts), batch_size):
                enc = {k: v.to(encoder.device) for k, v in encoder.tokenize(texts[s : s + batch_size]).items()}
                hidden = self.net(**enc).last_hidden_state.float().cpu()
                self.items += [h[: int(n)] for h, n in zip(hidden, enc["attention_mask"].sum(1))]

    def __len__(self) -> int:
        return len(self.items)

    def forward(self, idx: Sequence[int], gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_batch([self.items[i] for i in idx], self.encoder.device)


def head_config(cfg: FinetuneConfig, speech_dim: int, text_dim: int, n_classes: int) -> ModelConfig:
    """The ``mha_aux`` head of ``finetune.fusion`` over speech frames and text tokens."""
    return ModelConfig(
        kind="mha_aux",
        speech_levels=["frame"],
        text_level="token",
        dims={SPEECH: speech_dim, TEXT: text_dim},
        n_classes=n_classes,
        head=cfg.fusion,
        dropout=cfg.dropout,
    )


def fused(
    head: MhaAux, speech, text, idx: Sequence[int], gen: torch.Generator | None, labels: torch.Tensor | None = None
) -> ModelOutput:
    """The head over items ``idx`` of the speech and text inputs (``labels``: with its auxiliary losses)."""
    s, s_mask = speech.forward(idx, gen)
    t, t_mask = text.forward(idx, gen)
    return head({SPEECH: (s.float(), s_mask), TEXT: (t.float(), t_mask)}, labels)


def head_proba(head: MhaAux, speech, text, device: torch.device, dtype: torch.dtype, batch_size: int) -> np.ndarray:
    """(N, n_classes) class probabilities, in batches of similar speech length."""
    for module in (speech.net, text.net, head):
        module.eval()
    order = sorted(range(len(speech)), key=speech.length)
    probs = np.zeros((len(speech), head.cfg.n_classes), dtype=np.float64)
    with torch.no_grad(), autocast_context(device, dtype):
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            probs[idx] = torch.softmax(fused(head, speech, text, idx, None).logits.float(), -1).cpu().numpy()
    return probs


def save_head(out: Path, head: MhaAux, classes: list[str]) -> None:
    """The fusion head (safetensors) and its settings (JSON), written to a temporary folder and renamed."""
    tmp = _fresh_dir(out.with_name(out.name + ".tmp"))
    save_file(_tensors(head), tmp / "head.safetensors")
    (tmp / "head.json").write_text(json.dumps({"classes": classes, "model": dataclasses.asdict(head.cfg)}))
    _replace_dir(tmp, out)


def _text_inputs(encoder: TextEncoder, utts: Sequence[Utterance], trained: bool, batch_size: int):
    texts = [encoder.prepare(u.text) for u in utts]
    return TextInputs(encoder, texts) if trained else FrozenTextInputs(encoder, texts, batch_size)


def train_joint(split: FinetuneSplit, encoders: dict, cfg: FinetuneConfig, fold_dir: Path, key: str) -> Progress:
    """Fine-tune the speech encoder (and the text encoder with ``cfg.text``) with the fusion head
    on the split's training utterances, early-stopped on its validation utterances."""
    speech_enc, text_enc = encoders["speech"], encoders["text"]
    device, dtype = speech_enc.device, resolve_dtype("auto", speech_enc.device)
    data = {
        name: (
            SpeechInputs(speech_enc, part, cfg.freeze_feature_encoder, cfg.max_train_seconds),
            _text_inputs(text_enc, part, cfg.text, cfg.batch_size),
        )
        for name, part in (("train", split.train), ("val", split.val))
    }
    labels = {
        name: torch.as_tensor([split.classes.index(u.label) for u in part])
        for name, part in (("train", split.train), ("val", split.val))
    }
    speech_net = speech_enc.model.train().requires_grad_(True)
    if cfg.freeze_feature_encoder:
        speech_enc.feature_encoder.requires_grad_(False)
    torch.manual_seed(cfg.seed)  # the head's initial weights depend on the seed only
    head = MhaAux(head_config(cfg, speech_enc.dim, text_enc.dim, len(split.classes))).to(device)
    parts = {"speech": speech_net, "head": head}
    groups = [{"params": [p for p in speech_net.parameters() if p.requires_grad], "lr": cfg.lr}]
    if cfg.text:
        parts["text"] = text_enc.model.train().requires_grad_(True)
        groups.append({"params": list(parts["text"].parameters()), "lr": cfg.text_lr})
    groups.append({"params": list(head.parameters()), "lr": cfg.head_lr})

    def batch_loss(idx: list[int], gen: torch.Generator) -> torch.Tensor:
        y = labels["train"][idx].to(device)
        with autocast_context(device, dtype):
            out = fused(head, *data["train"], idx, gen, y)
        return training_loss(out, y)

    def best() -> None:
        save_best(fold_dir / "speech", speech_enc, None, split.classes)
        if cfg.text:
            save_best(fold_dir / "text", text_enc, None, split.classes)
        save_head(fold_dir / HEAD_DIR, head, split.classes)

    task = Task(
        HEAD_DIR,
        nn.ModuleDict(parts),
        groups,
        len(split.train),
        batch_loss,
        lambda: head_proba(head, *data["val"], device, dtype, cfg.batch_size).argmax(1),
        best,
    )
    return fit_epochs(task, labels["val"].numpy(), len(split.classes), cfg, fold_dir, key, device, dtype)


def evaluate_test(
    test: Sequence[Utterance],
    fold: int,
    classes: list[str],
    frozen_text: TextEncoder | None,
    cfg: FinetuneConfig,
    features: FeaturesConfig,
    fold_dir: Path,
) -> dict:
    """The best-validation epoch, read back from ``fold_dir``, on the fold's test data, once: writes
    its predictions next to the head and returns its WA/UA/F1.  Call only after training."""
    s = features.speech
    speech_enc = speech_encoder(
        str(fold_dir / "speech"), None, "last", features.device, "fp32", s.max_seconds, s.overlap_seconds
    )
    text_enc = frozen_text or TextEncoder(
        str(fold_dir / "text"), None, "last", features.device, features.text.max_length, features.text.markers
    )
    head = MhaAux(head_config(cfg, speech_enc.dim, text_enc.dim, len(classes)))
    head.load_state_dict(load_file(fold_dir / HEAD_DIR / "head.safetensors"))
    head.to(speech_enc.device)
    speech = SpeechInputs(speech_enc, test, cfg.freeze_feature_encoder, cfg.max_train_seconds)
    text = _text_inputs(text_enc, test, frozen_text is None, cfg.batch_size)
    probs = head_proba(head, speech, text, speech_enc.device, resolve_dtype("auto", speech_enc.device), cfg.batch_size)
    labels = np.array([classes.index(u.label) for u in test])
    n = len(test)
    write_predictions(
        fold_dir / HEAD_DIR / TEST_PREDICTIONS,
        Predictions(
            classes,
            np.array([u.utt_id for u in test]),
            np.full(n, fold),
            np.full(n, cfg.seed),
            labels,
            probs.argmax(1),
            probs,
        ),
    )
    metrics = all_metrics(labels, probs.argmax(1), len(classes))
    return {m: metrics[m] for m in ("wa", "ua", "f1")} | {"n_test": n}


def run_joint(
    split: FinetuneSplit,
    test: Sequence[Utterance],
    encoders: dict,
    cfg: FinetuneConfig,
    features: FeaturesConfig,
    fold_dir: Path,
    key: str,
) -> tuple[dict, list[dict], dict]:
    """Fold ``split.fold`` under the fusion objective: train, then test once.  Returns the
    per-encoder results, the epoch log and the test entry of ``finetune.json``."""
    progress = train_joint(split, encoders, cfg, fold_dir, key)
    trained = ["speech", "text"] if cfg.text else ["speech"]
    results = {
        m: {
            "best_epoch": progress.best_epoch,
            "val_ua": progress.best,
            "epochs_run": progress.epoch,
            "base_model": encoders[m].name,
            "base_weights_sha256": encoders[m].weights_sha256,
        }
        for m in trained
    }
    frozen_text = None if cfg.text else encoders["text"]
    scores = evaluate_test(test, split.fold, split.classes, frozen_text, cfg, features, fold_dir)
    return results, progress.history, scores | {"best_epoch": progress.best_epoch}


def run_joint_seeds(
    split: FinetuneSplit,
    test: Sequence[Utterance],
    encoders: dict,
    cfg: FinetuneConfig,
    features: FeaturesConfig,
    fold_dir: Path,
    key: str,
    seeds: Sequence[int],
) -> tuple[dict, list[dict], dict]:
    """:func:`run_joint` once per seed of ``seeds`` (``train.seeds``).  ``cfg.seed``'s run is the
    fold's (``fold_dir``, ``key``: its encoders are kept, its results and epoch log returned);
    every other seed s trains from the base encoders in ``fold_dir/seed-<s>/``, whose encoders
    and state are removed once tested (``result.json``, the head and the test predictions stay;
    a seed tested with the same settings is not redone).  Writes every seed's test predictions
    to ``fold_dir/joint-test-predictions.csv``; the test entry is ``cfg.seed``'s, with every
    seed's figures under ``seeds``."""
    if cfg.seed not in seeds:
        raise StageError(f"finetune.seed {cfg.seed} is not one of the seeds {list(seeds)}: its encoders are kept")
    markers = features.text.markers
    keys = {s: settings_key(cfg.with_seed(s), split, encoders, markers) for s in seeds}
    results, history, scores = run_joint(split, test, encoders, cfg, features, fold_dir, key)
    per_seed = {cfg.seed: scores | {"val_ua": results["speech"]["val_ua"]}}
    for seed in (s for s in seeds if s != cfg.seed):
        per_seed[seed] = _other_seed(split, test, cfg.with_seed(seed), features, fold_dir, keys[seed])
    preds = [read_predictions(_seed_dir(fold_dir, s, cfg.seed) / HEAD_DIR / TEST_PREDICTIONS) for s in seeds]
    write_predictions(fold_dir / ALL_SEEDS, Predictions.concat(split.classes, preds))
    return results, history, scores | {"seeds": {str(s): per_seed[s] for s in seeds}}


def _seed_dir(fold_dir: Path, seed: int, kept: int) -> Path:
    return fold_dir if seed == kept else fold_dir / f"seed-{seed}"


def _other_seed(
    split: FinetuneSplit,
    test: Sequence[Utterance],
    cfg: FinetuneConfig,
    features: FeaturesConfig,
    fold_dir: Path,
    key: str,
) -> dict:
    """Seed ``cfg.seed``'s end-to-end run in ``fold_dir/seed-<s>/``; returns its test entry."""
    run_dir = fold_dir / f"seed-{cfg.seed}"
    done = run_dir / SEED_RESULT
    if done.is_file() and (run_dir / HEAD_DIR / TEST_PREDICTIONS).is_file():
        record = json.loads(done.read_text())
        if record.get("key") == key:
            return record["test"]
    done.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    results, _, scores = run_joint(split, test, build_encoders(cfg, features), cfg, features, run_dir, key)
    entry = scores | {"val_ua": results["speech"]["val_ua"]}
    write_json(done, {"key": key, "test": entry})
    for name in ("state-fusion", "speech", "text"):  # the weights are the kept seed's only
        shutil.rmtree(run_dir / name, ignore_errors=True)
    return entry
