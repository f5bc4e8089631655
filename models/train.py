"""Training on cached tensors: AdamW, early stopping on the validation UA, seeded.

A fold's features are loaded once, as stored rows without padding (:class:`TensorSet` of
:class:`mger.features.cache.Ragged`); each mini-batch is padded to its own longest item.

``train.device`` (``auto``: CUDA when present): the fold's rows are moved to the device once
(:meth:`TensorSet.to`), every mini-batch is padded there by one gather (:func:`pad_rows`),
and on CUDA the forward passes run under bf16 autocast (losses and metrics in fp32).  The
same gather path runs on the CPU when asked (``device_padding``), which is how the tests
exercise it; the default CPU path keeps :meth:`mger.features.cache.Ragged.pad` and gives
bit-identical results for a seed.  The
validation split comes from the fold's training data only (see
:func:`mger.models.experiment.fold_ids`); the test data are never looked at before the final
prediction.  On CPU the same seed gives bit-identical results.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from mger.core.config import TrainConfig
from mger.features.cache import Ragged
from mger.models.loop import EpochState, one_generator, run_epochs
from mger.models.metrics import unweighted_accuracy
from mger.models.modules import ModelConfig, ModelOutput, build_model


def pad_rows(rows: Ragged, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Items ``idx`` padded on ``rows``' device by one gather: float32 (B, T, ...) and mask (B, T)."""
    starts, lengths = rows.starts[idx], rows.lengths[idx]
    width = max(1, int(lengths.max())) if len(idx) else 1
    pos = torch.arange(width, device=rows.data.device)
    mask = pos[None] < lengths[:, None]
    gather = (starts[:, None] + pos[None]).clamp(max=max(0, len(rows.data) - 1))
    x = rows.data[gather].float()
    return x.masked_fill(~mask.view(mask.shape + (1,) * (x.dim() - 2)), 0.0), mask


@dataclass
class TensorSet:
    """Inputs (name → items' rows) and integer labels for one split."""

    inputs: dict[str, Ragged]
    labels: torch.Tensor
    device_padding: bool = False  # pad by :func:`pad_rows` (set by :meth:`to`)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def to(self, device: torch.device, device_padding: bool | None = None) -> "TensorSet":
        """The same set with every row on ``device`` (one copy), padded there from now on."""
        moved = {
            n: Ragged(r.data.to(device), r.starts.to(device), r.lengths.to(device)) for n, r in self.inputs.items()
        }
        padding = device.type != "cpu" if device_padding is None else device_padding
        return TensorSet(moved, self.labels.to(device), padding)

    def subset(self, idx: np.ndarray) -> "TensorSet":
        i = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        return TensorSet({n: r.subset(i) for n, r in self.inputs.items()}, self.labels[i], self.device_padding)

    def batch(self, idx: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """name → (float32 (B, T, D) padded to the batch's longest item, mask (B, T))."""
        idx = idx.to(self.device)
        if self.device_padding:
            return {name: pad_rows(r, idx) for name, r in self.inputs.items()}
        return {name: (b.data, b.mask) for name, b in ((n, r.pad(idx)) for n, r in self.inputs.items())}


def standardize(sets: list[TensorSet], reference: TensorSet, floor: float = 1e-3) -> list[TensorSet]:
    """``sets`` with every input scaled per feature, z = (x - mean) / max(std, floor), by the
    mean and std of ``reference``'s rows (the fold's training split: nothing of validation or
    test is looked at).  Rows keep the stored dtype; sets sharing rows (subsets of one loaded
    fold) share the scaled rows too.

    Why: the models' first layer normalises each *row* (LayerNorm over its features), which
    lets features on large scales swamp the rest (openSMILE's formant frequencies in Hz
    beside loudness in sones); per-feature scaling on the training rows comes first."""
    scaled: dict[tuple[str, int], torch.Tensor] = {}
    out = []
    for data in sets:
        inputs = {}
        for name, rows in data.inputs.items():
            key = (name, id(rows.data))
            if key not in scaled:
                ref = reference.inputs[name].compact().data.float()
                mean, std = ref.mean(0), ref.std(0, unbiased=False).clamp(min=floor)
                scaled[key] = ((rows.data.float() - mean) / std).to(rows.data.dtype)
            inputs[name] = Ragged(scaled[key], rows.starts, rows.lengths)
        out.append(TensorSet(inputs, data.labels, data.device_padding))
    return out


def _autocast(device: torch.device):
    """bf16 autocast on CUDA (attention and linear layers; softmax and losses stay fp32), none on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def predict_proba(model: torch.nn.Module, data: TensorSet, batch_size: int = 128) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad(), _autocast(data.device):
        for s in range(0, len(data), batch_size):
            idx = torch.arange(s, min(len(data), s + batch_size))
            out.append(torch.softmax(model(data.batch(idx)).logits.float(), -1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def training_loss(out: ModelOutput, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The main head's cross-entropy plus the model's weighted auxiliary losses (MhaAux's tasks):
    one objective for classifiers on cached features and for joint fine-tuning (:mod:`mger.models.joint`)."""
    loss = F.cross_entropy(out.logits.float(), labels, weight=weight)
    if out.aux_loss is not None:
        loss = loss + out.aux_loss.float()
    return loss


def fit(
    cfg: ModelConfig, train: TensorSet, val: TensorSet, settings: TrainConfig, seed: int
) -> tuple[torch.nn.Module, list[dict]]:
    """Train a fresh model; returns it at its best validation epoch (highest UA, or lowest
    cross-entropy with ``early_stopping: val_loss``, which on a one-speaker validation split is
    the smoother signal of the two), and the per-epoch history.  Epochs run through the one
    loop (:func:`mger.models.loop.run_epochs`) with one generator seeded once."""
    torch.manual_seed(seed)
    model = build_model(cfg).to(train.device)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    weight = None
    if settings.class_balanced:
        counts = torch.bincount(train.labels, minlength=cfg.n_classes).float().clamp(min=1)
        weight = counts.sum() / (cfg.n_classes * counts)
    best = {"state": copy.deepcopy(model.state_dict())}

    def run_epoch(epoch: int, gen: torch.Generator) -> tuple[dict, float]:
        train_loss = _train_epoch(model, opt, train, settings.batch_size, weight, gen)
        val_probs = predict_proba(model, val)
        val_labels = val.labels.cpu().numpy()
        val_ua = unweighted_accuracy(val_labels, val_probs.argmax(1), cfg.n_classes)
        val_loss = float(-np.log(np.clip(val_probs[np.arange(len(val_labels)), val_labels], 1e-12, None)).mean())
        row = {"epoch": epoch, "train_loss": train_loss, "val_ua": val_ua, "val_loss": val_loss}
        return row, val_ua if settings.early_stopping == "val_ua" else -val_loss

    def keep_best() -> None:
        best["state"] = copy.deepcopy(model.state_dict())

    state = run_epochs(run_epoch, EpochState(), settings.epochs, settings.patience, one_generator(seed), keep_best)
    model.load_state_dict(best["state"])
    return model, state.history


def _train_epoch(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    train: TensorSet,
    batch_size: int,
    weight: torch.Tensor | None,
    gen: torch.Generator,
) -> float:
    """One pass over ``train`` in an order drawn from ``gen``; returns the mean training loss."""
    model.train()
    perm = torch.randperm(len(train), generator=gen)
    total = 0.0
    for s in range(0, len(train), batch_size):
        idx = perm[s : s + batch_size].to(train.device)
        labels = train.labels[idx]
        with _autocast(train.device):
            out = model(train.batch(idx), labels)
        loss = training_loss(out, labels, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
    return total / len(train)


def fit_weights(val_probs: list[np.ndarray], val_labels: np.ndarray, n_classes: int, step: float = 0.1) -> np.ndarray:
    """Late-fusion weights on the simplex (grid of ``step``) maximising validation UA; ties → closest to equal."""
    m = len(val_probs)
    ticks = int(round(1 / step))
    best, best_key = np.full(m, 1 / m), (-1.0, 0.0)
    for combo in itertools.product(range(ticks + 1), repeat=m - 1):
        if sum(combo) > ticks:
            continue
        w = np.array(list(combo) + [ticks - sum(combo)], float) / ticks
        ua = unweighted_accuracy(val_labels, sum(wi * p for wi, p in zip(w, val_probs)).argmax(1), n_classes)
        key = (ua, -float(np.abs(w - 1 / m).sum()))
        if key > best_key:
            best, best_key = w, key
    return best


def cross_fitted_proba(
    val_probs: list[np.ndarray], val_labels: np.ndarray, n_classes: int, halves: tuple[list[int], list[int]]
) -> np.ndarray:
    """Out-of-sample combined validation probabilities (N, C) of fitted late fusion: each half
    of the validation rows is combined with the weights :func:`fit_weights` fitted on the
    other half, so the validation score of the ensemble is not scored on what fitted it.

    ``val_probs``: one (N, C) array per member; ``halves``: two disjoint row-index lists
    covering 0..N-1 (:func:`mger.core.splits.validation_halves`)."""
    out = np.zeros_like(val_probs[0])
    for scored, fitted in (halves, halves[::-1]):
        idx_fit, idx_score = np.asarray(fitted), np.asarray(scored)
        weights = fit_weights([p[idx_fit] for p in val_probs], val_labels[idx_fit], n_classes)
        out[idx_score] = combine_probs(weights, [p[idx_score] for p in val_probs])
    return out


def combine_probs(weights: np.ndarray, probs: Sequence[np.ndarray]) -> np.ndarray:
    """Late fusion: the members' class probabilities (each (N, C)) weighted by ``weights`` (M,), summed."""
    return sum(w * p for w, p in zip(weights, probs))
