"""The one epoch loop: classifiers on cached features (:func:`mger.models.train.fit`) and
fine-tuning (:func:`mger.models.finetune.fit_epochs`, both objectives) train through it.

Why one loop: early stopping, seeding, the history and resuming are where the two could
drift apart (an off-by-one in patience, a reseed in another place); here they are written
once.  The loop owns no model: one epoch's training and validation is the caller's
``run_epoch``, keeping the best weights its ``on_best``, a checkpoint its ``after_epoch``.

Order within an epoch, the same for every caller (results depend on it): stop if ``patience``
epochs in a row brought no improvement; draw the epoch's generator (:func:`one_generator` or
:func:`epoch_seeding`); train and validate; append the history row; on a strictly higher score
call ``on_best``; then ``after_epoch``.  A training or validation loss that is not finite (the run diverged:
``lr`` too high, inputs out of scale) stops the run with :class:`NonFiniteLoss` before the
epoch counts; callers add which run it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import numpy as np
import torch

from mger.core.reporting import StageError

EpochFn = Callable[[int, torch.Generator], tuple[dict, float]]  # (epoch, generator) → (history row, score)


@dataclass
class EpochState:
    """Where a run of epochs stands: the last finished epoch, early stopping's best score, its
    epoch and the epochs since, and the history rows.  Restoring it resumes the run."""

    epoch: int = 0
    best: float = -math.inf
    best_epoch: int = 0
    bad: int = 0
    history: list[dict] = field(default_factory=list)

    def record(self, epoch: int, row: dict, score: float) -> bool:
        """Count a finished epoch; True if its score is strictly the best so far."""
        self.epoch = epoch
        self.history.append(row)
        if score > self.best:
            self.best, self.best_epoch, self.bad = score, epoch, 0
            return True
        self.bad += 1
        return False


State = TypeVar("State", bound=EpochState)


class NonFiniteLoss(StageError):
    """An epoch's training or validation loss is NaN or inf (the weights are); ``epoch`` is that
    epoch (1-based)."""

    def __init__(self, epoch: int, what: str, loss: float) -> None:
        super().__init__(
            f"epoch {epoch}: {what} is {loss} (not finite): the run diverged; lower the learning "
            "rate (train.lr, finetune.lr) or check the inputs (`mger cache verify`); nothing was written"
        )
        self.epoch, self.loss = epoch, loss


_LOSSES = {"train_loss": "training loss", "val_loss": "validation loss"}  # history keys checked each epoch


def one_generator(seed: int) -> Callable[[int], torch.Generator]:
    """One generator seeded once and drawn on across epochs (classifier training)."""
    gen = torch.Generator().manual_seed(seed)
    return lambda epoch: gen


def epoch_seeding(seed: int) -> Callable[[int], torch.Generator]:
    """Every epoch reseeds torch's and numpy's global generators (dropout, SpecAugment's mask
    positions) and a fresh generator from (seed, epoch): a run resumed after epoch e draws
    what an uninterrupted one draws (fine-tuning)."""

    def seeded(epoch: int) -> torch.Generator:
        epoch_seed = seed * 1000 + epoch
        torch.manual_seed(epoch_seed)
        np.random.seed(epoch_seed)
        return torch.Generator().manual_seed(epoch_seed)

    return seeded


def run_epochs(
    run_epoch: EpochFn,
    state: State,
    last_epoch: int,
    patience: int,
    generator: Callable[[int], torch.Generator],
    on_best: Callable[[], None],
    after_epoch: Callable[[int], None] | None = None,
) -> State:
    """Epochs ``state.epoch + 1`` .. ``last_epoch`` (so a restored ``state`` resumes), early
    stopped after ``patience`` epochs without a strictly higher score.  Returns ``state``."""
    for epoch in range(state.epoch + 1, last_epoch + 1):
        if state.bad >= patience:
            break
        row, score = run_epoch(epoch, generator(epoch))
        for key, what in _LOSSES.items():
            if key in row and not math.isfinite(row[key]):
                raise NonFiniteLoss(epoch, what, row[key])
        if state.record(epoch, row, score):
            on_best()
        if after_epoch is not None:
            after_epoch(epoch)
    return state
