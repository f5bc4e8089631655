"""Per-fold fine-tuning of the encoders, without leakage (``mger finetune --fold k``).

Fold k's encoders learn the emotion labels of fold k's *training* sessions only: the split is
:func:`mger.core.splits.fold_split` with ``split`` (protocol and seed), the one every classifier seed uses
(test = session k, validation = every utterance of one training-session speaker, train = the
rest), so no utterance of session k reaches fine-tuning and the classifiers validate on the
speaker fine-tuning validated on.  ``finetune.seed`` changes initialisation and data order only.
``finetune.json`` in the fold folder lists the sessions and utterance ids that did; the
fold-specific stores written by ``mger extract --fold k`` carry the fold in their fingerprint,
and :class:`mger.features.cache.FeatureStore` refuses them for any other fold.

Model (``finetune.objective: utterance``): the encoder, a masked mean over its last layer
(frames, or tokens for text), dropout and a linear layer. ``objective: fusion`` trains the
encoders jointly with an ``MhaAux`` fusion head instead (:mod:`mger.models.joint`), through the
same loop (:func:`fit_epochs`, on :func:`mger.models.loop.run_epochs`, the loop classifiers
train in too). AdamW (encoder ``lr`` / ``text_lr``, head ``head_lr``), linear warm-up then
linear decay to zero, gradient accumulation, a random ``max_train_seconds`` window per utterance
and epoch, mixed precision on GPU (bf16, or fp16 with loss scaling), early stopping on
validation UA. Every epoch reseeds torch and numpy from (seed, epoch).

With the convolutional feature encoder frozen (the default, as in both papers) its output
never changes, so it is computed once per utterance (batch 1, as in extraction) and training
runs the projection and transformer on those conv features, cropped in frames (SpecAugment
masking still applies).  On the demo model the conv stack is ~98% of a forward pass.

Outputs in ``<finetune.out>/fold-<k>/``: ``speech/`` (and ``text/``), the best epoch's
encoder as a ``save_pretrained`` folder (safetensors + config + feature extractor or
tokenizer) with its head in ``head.safetensors``; ``finetune.json`` once done.  While a
modality trains, ``state-<modality>/`` holds the last finished epoch (model and optimizer as
safetensors, counters as JSON), so an interrupted run resumes there and ends with the same
weights as an uninterrupted one (on CPU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from mger.core.audio import read_audio
from mger.core.config import FeaturesConfig, FinetuneConfig, SplitConfig
from mger.core.manifest import Utterance, groups
from mger.core.reporting import StageError
from mger.core.splits import fold_split
from mger.features.encoders import (
    Encoder,
    SpeechEncoder,
    TextEncoder,
    autocast_context,
    pad_batch,
    resolve_dtype,
    speech_encoder,
)
from mger.models.loop import EpochState, NonFiniteLoss, epoch_seeding, run_epochs
from mger.models.metrics import unweighted_accuracy
from mger.models.modules import masked_mean

MODALITIES = ("speech", "text")


@dataclass(frozen=True)
class FinetuneSplit:
    """Fold k's fine-tuning data: training and validation utterances, never session k."""

    fold: int
    train: list[Utterance]
    val: list[Utterance]
    classes: list[str]
    validation: str = ""  # how the validation set was chosen (mger.core.splits.FoldSplit.validation)
    train_folds: list[int] = dataclasses.field(default_factory=list)  # loso: the folds of the training groups

    def describe(self) -> dict:
        return {
            "fold": self.fold,
            "test_fold": self.fold,
            "train_folds": self.train_folds,
            "classes": self.classes,
            "val_speakers": sorted({u.speaker for u in self.val}),
            "validation": self.validation,
            "train_ids": [u.utt_id for u in self.train],
            "val_ids": [u.utt_id for u in self.val],
        }


def finetune_split(utts: Sequence[Utterance], fold: int, split_cfg: SplitConfig | int) -> FinetuneSplit:
    """Fold ``fold``'s training and validation utterances (:func:`mger.core.splits.fold_split`
    under ``split``: protocol and seed, or a bare split seed)."""
    split = fold_split(utts, fold, split_cfg)
    if split.warning:
        print(f"warning: finetune: {split.warning}", file=sys.stderr)
    if split.leaked(utts):  # fold_split guarantees none; never trust silently
        raise StageError(f"fold {fold}: a test utterance ({', '.join(split.groups)}) reached the fine-tuning split")
    number = {g: k for k, g in enumerate(groups(utts), 1)}  # loso: group → its fold (mger.core.splits)
    train, val = [utts[i] for i in split.train], [utts[i] for i in split.val]
    trained = sorted({number[u.group] for u in train + val}) if split.protocol == "loso" else []
    out = FinetuneSplit(fold, train, val, sorted({u.label for u in utts}), split.validation, trained)
    return out


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over ``warmup`` of ``total`` steps, then linear decay to zero."""
    n_warm = int(warmup * total)
    if step < n_warm:
        return (step + 1) / n_warm
    return max(0.0, (total - step) / max(1, total - n_warm))


class SpeechInputs:
    """Speech items for fine-tuning: conv features (conv stack frozen) or waveforms."""

    def __init__(
        self, encoder: SpeechEncoder, utts: Sequence[Utterance], frozen_conv: bool, max_train_seconds: float
    ) -> None:
        self.encoder, self.frozen_conv = encoder, frozen_conv
        self.net = encoder.model
        waves = (encoder.prepare(read_audio(u.wav)) for u in utts)
        self.cached_conv = frozen_conv and encoder.caches_conv
        if self.cached_conv:
            with torch.no_grad():
                self.items = [
                    self.net.feature_extractor(torch.from_numpy(w)[None].to(encoder.device))[0].T.float().cpu()
                    for w in tqdm(
                        waves, total=len(utts), desc="conv features", unit="utt", file=sys.stderr, leave=False
                    )
                ]
            self.crop = max(1, int(max_train_seconds * encoder.sample_rate) // encoder.geometry.stride)
        else:
            self.items = [torch.from_numpy(w) for w in waves]
            self.crop = int(max_train_seconds * encoder.sample_rate)

    def __len__(self) -> int:
        return len(self.items)

    def length(self, i: int) -> int:
        return len(self.items[i])

    def forward(self, idx: Sequence[int], gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-layer frames (B, T, D) and their mask; ``gen`` given: random training crops."""
        items = [_crop(self.items[i], self.crop, gen) for i in idx]
        if not self.cached_conv:
            return self.encoder.forward_waves(items)
        padded, mask = pad_batch(items, self.encoder.device)
        proj = self.net.feature_projection(padded)
        hidden = proj[0] if isinstance(proj, tuple) else proj
        if self.net.training and hasattr(self.net, "_mask_hidden_states"):
            hidden = self.net._mask_hidden_states(hidden, attention_mask=mask)
        return self.net.encoder(hidden, attention_mask=mask)[0], mask


class TextInputs:
    """Transcripts as written (markers per ``features.text.markers``) for fine-tuning the text encoder."""

    def __init__(self, encoder: TextEncoder, texts: Sequence[str]) -> None:
        self.encoder, self.net, self.items = encoder, encoder.model, list(texts)

    def __len__(self) -> int:
        return len(self.items)

    def length(self, i: int) -> int:
        return len(self.items[i])

    def forward(self, idx: Sequence[int], gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        enc = {k: v.to(self.encoder.device) for k, v in self.encoder.tokenize([self.items[i] for i in idx]).items()}
        return self.net(**enc).last_hidden_state, enc["attention_mask"].bool()


def _crop(x: torch.Tensor, size: int, gen: torch.Generator | None) -> torch.Tensor:
    if gen is None or len(x) <= size:
        return x
    start = int(torch.randint(0, len(x) - size + 1, (1,), generator=gen))
    return x[start : start + size]


class Head(nn.Module):
    """Masked mean → dropout → linear. (B, T, D), (B, T) → (B, n_classes)."""

    def __init__(self, dim: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dim, n_classes)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(masked_mean(hidden.float(), mask)))


# --- checkpoints: safetensors + JSON, written to a temporary folder and renamed ---------------


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}


def _replace_dir(tmp: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def save_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, counters: dict) -> None:
    tmp = _fresh_dir(path.with_name(path.name + ".tmp"))
    save_file(_tensors(model), tmp / "model.safetensors")
    opt = optimizer.state_dict()
    save_file(
        {f"{i}.{k}": v.detach().cpu().clone() for i, st in opt["state"].items() for k, v in st.items()},
        tmp / "optimizer.safetensors",
    )
    (tmp / "state.json").write_text(json.dumps(counters | {"param_groups": opt["param_groups"]}, indent=1))
    _replace_dir(tmp, path)


def saved_state(path: Path) -> Path | None:
    """The state folder at ``path``, or its ``.old`` twin when a run was killed between the
    two renames of :func:`_replace_dir`; None if there is none."""
    for candidate in (path, path.with_name(path.name + ".old")):
        if (candidate / "state.json").exists():
            return candidate
    return None


def load_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore ``model`` and ``optimizer`` from a folder found by :func:`saved_state`; return the counters."""
    counters = json.loads((path / "state.json").read_text())
    model.load_state_dict(load_file(path / "model.safetensors"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(path / "optimizer.safetensors").items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = tensor
    optimizer.load_state_dict({"state": state, "param_groups": counters.pop("param_groups")})
    return counters


def save_best(out: Path, encoder: Encoder, head: Head | None, classes: list[str]) -> None:
    """The encoder as a ``save_pretrained`` folder, with its preprocessing and utterance head
    (none under the fusion objective: that head is shared, :func:`mger.models.joint.save_head`)."""
    tmp = _fresh_dir(out.with_name(out.name + ".tmp"))
    encoder.save_pretrained(tmp)
    if head is not None:
        save_file(_tensors(head), tmp / "head.safetensors")
        (tmp / "head.json").write_text(json.dumps({"classes": classes, "pooling": "mean"}))
    _replace_dir(tmp, out)


# --- the training loop --------------------------------------------------------------------------


@dataclass
class Progress(EpochState):
    """What survives an interruption besides the weights: the loop's state (the best score is
    the validation UA), the settings key and the optimizer steps taken."""

    best: float = -1.0
    key: str = ""
    step: int = 0

    def as_json(self) -> dict:
        """The counters of ``state.json`` (names and order as written since resuming existed)."""
        return {
            "key": self.key,
            "epoch": self.epoch,
            "step": self.step,
            "best_ua": self.best,
            "best_epoch": self.best_epoch,
            "bad": self.bad,
            "history": self.history,
        }

    @classmethod
    def from_json(cls, counters: dict) -> "Progress":
        return cls(
            epoch=counters["epoch"],
            best=counters["best_ua"],
            best_epoch=counters["best_epoch"],
            bad=counters["bad"],
            history=counters["history"],
            key=counters["key"],
            step=counters["step"],
        )


def _predict(inputs, head: Head, device: torch.device, dtype: torch.dtype, batch_size: int) -> np.ndarray:
    inputs.net.eval()
    head.eval()
    order = sorted(range(len(inputs)), key=inputs.length)
    pred = np.zeros(len(inputs), dtype=np.int64)
    with torch.no_grad(), autocast_context(device, dtype):
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            pred[idx] = head(*inputs.forward(idx, None)).argmax(1).cpu().numpy()
    return pred


@dataclass
class Task:
    """One fine-tuning run as :func:`fit_epochs` sees it: what is trained and checkpointed
    (``model``), its optimizer groups, and three callbacks, so that the utterance objective
    (:func:`train_modality`) and the fusion objective (:mod:`mger.models.joint`) share one loop,
    one resume logic and one schedule."""

    name: str  # state-<name>/ and the log's modality column
    model: nn.Module  # everything trained (saved every epoch)
    groups: list[dict]  # AdamW parameter groups (params, lr)
    n_train: int
    batch_loss: Callable[[list[int], torch.Generator], torch.Tensor]  # mean fp32 loss of training items
    val_predict: Callable[[], np.ndarray]  # validation class predictions
    save_best: Callable[[], None]  # the current weights are the best so far


def _resumed(task: Task, optimizer: torch.optim.Optimizer, state_dir: Path, key: str) -> Progress:
    """The progress saved in ``state_dir`` (the model and optimizer restored) when it was saved
    under settings ``key``; else a fresh start (a line says so where another run's state lies)."""
    saved = saved_state(state_dir)
    fold = state_dir.parent.name
    if saved is not None and json.loads((saved / "state.json").read_text()).get("key") == key:
        progress = Progress.from_json(load_state(saved, task.model, optimizer))
        print(f"finetune {task.name}: resuming {fold} after epoch {progress.epoch}", file=sys.stderr)
        return progress
    if saved is not None:
        print(f"finetune {task.name}: {state_dir} is from other settings; starting over", file=sys.stderr)
    return Progress(key=key)


def _train_epoch(
    task: Task,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    base_lrs: list[float],
    progress: Progress,
    total: int,
    cfg: FinetuneConfig,
    gen: torch.Generator,
) -> float:
    """One pass over the training items in ``gen``'s order, gradients accumulated over
    ``grad_accum`` batches, the learning rate scheduled per optimizer step (``progress.step``);
    returns the summed training loss (per item: divide by ``task.n_train``)."""
    task.model.train()
    perm = torch.randperm(task.n_train, generator=gen).tolist()
    total_loss = 0.0
    for s in range(0, len(perm), cfg.batch_size):
        idx = perm[s : s + cfg.batch_size]
        share = len(idx) / (cfg.batch_size * cfg.grad_accum)  # mean over the accumulated batch
        loss = task.batch_loss(idx, gen) * share
        scaler.scale(loss).backward()
        total_loss += float(loss.detach()) * cfg.batch_size * cfg.grad_accum
        batch_no = s // cfg.batch_size + 1
        if batch_no % cfg.grad_accum == 0 or s + cfg.batch_size >= len(perm):
            for g, lr in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr * lr_factor(progress.step, total, cfg.warmup)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad()
            progress.step += 1
    return total_loss


def fit_epochs(
    task: Task,
    val_labels: np.ndarray,
    n_classes: int,
    cfg: FinetuneConfig,
    fold_dir: Path,
    key: str,
    device: torch.device,
    dtype: torch.dtype,
) -> Progress:
    """Train ``task`` (resuming from ``state-<name>/``), early-stopped on validation UA."""
    optimizer = torch.optim.AdamW(task.groups, weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in task.groups]
    steps_per_epoch = -(-task.n_train // (cfg.batch_size * cfg.grad_accum))
    total = steps_per_epoch * cfg.epochs
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    state_dir = fold_dir / f"state-{task.name}"
    progress = _resumed(task, optimizer, state_dir, key)
    bar = tqdm(
        total=cfg.epochs,
        initial=progress.epoch,
        desc=f"finetune {task.name} {fold_dir.name}",
        unit="epoch",
        file=sys.stderr,
    )

    def run_epoch(epoch: int, gen: torch.Generator) -> tuple[dict, float]:
        total_loss = _train_epoch(task, optimizer, scaler, base_lrs, progress, total, cfg, gen)
        val_ua = unweighted_accuracy(val_labels, task.val_predict(), n_classes)
        return {
            "modality": task.name,
            "epoch": epoch,
            "train_loss": total_loss / task.n_train,
            "val_ua": val_ua,
            "lr": optimizer.param_groups[0]["lr"],
        }, val_ua

    def checkpoint(epoch: int) -> None:
        save_state(state_dir, task.model, optimizer, progress.as_json())
        bar.set_postfix(val_ua=f"{progress.history[-1]['val_ua']:.3f}", best=f"{progress.best:.3f}")
        bar.update()

    with bar:
        try:
            return run_epochs(
                run_epoch, progress, cfg.epochs, cfg.patience, epoch_seeding(cfg.seed), task.save_best, checkpoint
            )
        except NonFiniteLoss as err:  # one line naming the run; the last finished epoch's state stays
            raise StageError(f"finetune {task.name}, {fold_dir.name}, seed {cfg.seed}, {err}") from None


def train_modality(
    modality: str,
    encoder,
    train,
    val,
    train_labels: np.ndarray,
    val_labels: np.ndarray,
    cfg: FinetuneConfig,
    fold_dir: Path,
    key: str,
    classes: list[str],
) -> Progress:
    """Fine-tune one encoder (resuming from ``state-<modality>/``); the best epoch lands in ``<modality>/``."""
    device, dtype = encoder.device, resolve_dtype("auto", encoder.device)
    net = encoder.model.train().requires_grad_(True)
    if modality == "speech" and cfg.freeze_feature_encoder:
        encoder.feature_encoder.requires_grad_(False)
    head = Head(encoder.dim, len(classes), cfg.dropout).to(device)
    torch.manual_seed(cfg.seed)
    head.out.reset_parameters()  # the head's initial weights depend on the seed only
    base_lr = cfg.lr if modality == "speech" else cfg.text_lr
    groups = [
        {"params": [p for p in net.parameters() if p.requires_grad], "lr": base_lr},
        {"params": list(head.parameters()), "lr": cfg.head_lr},
    ]
    labels = torch.as_tensor(train_labels)

    def batch_loss(idx: list[int], gen: torch.Generator) -> torch.Tensor:
        with autocast_context(device, dtype):
            logits = head(*train.forward(idx, gen))
        return F.cross_entropy(logits.float(), labels[idx].to(device))

    task = Task(
        modality,
        nn.ModuleDict({"encoder": net, "head": head}),
        groups,
        len(train),
        batch_loss,
        lambda: _predict(val, head, device, dtype, cfg.batch_size),
        lambda: save_best(fold_dir / modality, encoder, head, classes),
    )
    return fit_epochs(task, val_labels, len(classes), cfg, fold_dir, key, device, dtype)


# --- one fold -------------------------------------------------------------------------------------


def build_encoders(cfg: FinetuneConfig, features: FeaturesConfig) -> dict:
    """The encoders a fold reads, loaded from the frozen stage's models (hub id or path): the
    speech encoder, and the text encoder when it is fine-tuned or (fusion objective) read frozen."""
    s, t = features.speech, features.text
    out = {
        "speech": speech_encoder(s.model, s.revision, "last", features.device, "fp32", s.max_seconds, s.overlap_seconds)
    }
    if cfg.text or cfg.objective == "fusion":
        out["text"] = TextEncoder(t.model, t.revision, "last", features.device, t.max_length, t.markers)
    return out


def trained_modalities(cfg: FinetuneConfig) -> list[str]:
    """The encoders fine-tuning changes (and saves in the fold folder)."""
    return ["speech", "text"] if cfg.text else ["speech"]


def settings_key(cfg: FinetuneConfig, split: FinetuneSplit, encoders: dict, markers: str) -> str:
    """Hash of everything a fold's fine-tuning depends on (not where it writes).  Under the
    utterance objective each encoder trains alone, so neither ``text`` nor the fusion settings
    change the speech encoder (and the key is the one of runs before ``objective`` existed);
    under the fusion objective both do."""
    skip = {"out", "features_out", "reports", "folds", "variants", "tag"}
    skip |= {"text", "objective", "fusion"} if cfg.objective == "utterance" else set()
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}
    bases = {m: [e.name, e.revision, e.weights_sha256] for m, e in encoders.items()}
    text_input = {"text_input": ["as written", markers]} if "text" in encoders else {}
    blob = json.dumps({"settings": settings, "bases": bases, "split": split.describe()} | text_input, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def encoder_inputs(modality: str, encoder: Encoder, utts: Sequence[Utterance], cfg: FinetuneConfig):
    """What ``modality``'s encoder reads of ``utts`` during fine-tuning (raw waveforms cropped for
    training, or the tokenised transcripts)."""
    if modality == "speech":
        return SpeechInputs(encoder, utts, cfg.freeze_feature_encoder, cfg.max_train_seconds)
    return TextInputs(encoder, [encoder.prepare(u.text) for u in utts])


def joint_predictions_path(reports: str | Path, fold: int) -> Path:
    """Fold ``fold``'s test predictions of the jointly fine-tuned fusion head (objective fusion)."""
    return Path(reports) / f"joint-fold-{fold}.csv"
