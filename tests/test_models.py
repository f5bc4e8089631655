"""Fusion classifiers: metrics vs scikit-learn, masks, auxiliary losses, folds, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from mger.core.config import ExperimentSpec, HeadConfig, TrainConfig
from mger.features.cache import Batch, Ragged
from mger.models.experiment import expected_cost, member_label, members
from mger.models.metrics import all_metrics
from mger.models.modules import ModelConfig, build_model, input_names, other_label_partner
from mger.models.train import TensorSet, fit, fit_weights, predict_proba

DIMS = {"speech:word": 12, "speech:phone": 12, "speech:frame": 12, "speech:syllable": 12, "text:token": 10}
KINDS = [
    ("audio", ["word"]),
    ("text", ["word"]),
    ("multigranular", ["phone", "word"]),
    ("coattention", ["word"]),
    ("coattention", ["word", "phone"]),
    ("coattention", ["syllable", "word", "phone"]),
    ("coattention", ["frame", "phone", "syllable", "word"]),
    ("fc", ["word"]),
    ("mha_aux", ["word"]),
]


def _cfg(kind: str, levels: list[str], dropout: float = 0.1, **kw) -> ModelConfig:
    return ModelConfig(
        kind=kind,
        speech_levels=levels,
        dims=DIMS,
        n_classes=4,
        head=HeadConfig(**({"hidden": 16, "heads": 2, "layers": 2} | kw)),
        dropout=dropout,
    )


def _batch(b: int, t: int, d: int, lengths: list[int], seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, d, generator=g)
    lengths_t = torch.tensor(lengths)
    x[torch.arange(t)[None, :] >= lengths_t[:, None]] = 0.0
    return Batch(x, lengths_t)


def _tensors(n: int, seed: int = 0, names: list[str] | None = None) -> TensorSet:
    g = np.random.default_rng(seed)
    names = names or list(DIMS)
    inputs = {name: _batch(n, 9, DIMS[name], list(g.integers(1, 10, n)), seed + i) for i, name in enumerate(names)}
    labels = torch.as_tensor(g.integers(0, 4, n))
    for name, b in inputs.items():  # make the task learnable: the label shifts the features
        b.data[..., 0] += labels[:, None].float() * 2 * (torch.arange(9)[None, :] < b.lengths[:, None])
    return TensorSet({name: Ragged.from_padded(b) for name, b in inputs.items()}, labels)


def test_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 4, 300))
    m = all_metrics(y_true, y_pred, 4)
    assert m["wa"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["confusion"] == confusion_matrix(y_true, y_pred, labels=range(4)).tolist()
    # WA and UA differ on imbalanced data, the way the literature defines them
    y_true = np.array([0] * 90 + [1] * 10)
    y_pred = np.zeros(100, int)
    assert (all_metrics(y_true, y_pred, 2)["wa"], all_metrics(y_true, y_pred, 2)["ua"]) == (0.9, 0.5)


@pytest.mark.parametrize("kind, levels", KINDS, ids=[f"{k}-{'+'.join(lv)}" for k, lv in KINDS])
def test_forward_backward_and_padding_invariance(kind: str, levels: list[str]) -> None:
    torch.manual_seed(0)
    cfg = _cfg(kind, levels, aux_matching=0.5, aux_unimodal=0.5)
    assert input_names(cfg)[: len(levels)] == [f"speech:{lv}" for lv in levels] or kind in ("text", "fc", "mha_aux")
    model = build_model(cfg)
    data = _tensors(6)
    idx = torch.arange(6)
    inputs = data.batch(idx)
    model.train()
    out = model(inputs, data.labels)
    aux = out.aux_loss if out.aux_loss is not None else 0
    loss = torch.nn.functional.cross_entropy(out.logits, data.labels) + aux
    loss.backward()
    assert out.logits.shape == (6, 4)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad and p.grad is not None)
    assert sum(p.grad.abs().sum() for p in model.parameters() if p.grad is not None) > 0
    # eval: an utterance alone gives the same output as inside a padded batch
    model.eval()
    with torch.no_grad():
        batched = model(inputs).logits
        for i in range(6):
            alone = {
                n: (x[i : i + 1, : int(m[i].sum())], m[i : i + 1, : int(m[i].sum())]) for n, (x, m) in inputs.items()
            }
            assert torch.allclose(model(alone).logits[0], batched[i], atol=1e-5), (kind, i)
        extra = {
            n: (torch.cat([x, torch.full_like(x[:, :3], 7.0)], 1), torch.cat([m, torch.zeros_like(m[:, :3])], 1))
            for n, (x, m) in inputs.items()
        }  # more padding, with garbage in it
        assert torch.allclose(model(extra).logits, batched, atol=1e-5)


@pytest.mark.parametrize(
    "matching, unimodal, active", [(0.0, 0.0, False), (0.5, 0.0, True), (0.0, 0.5, True), (0.5, 0.5, True)]
)
def test_auxiliary_losses_switch_on_and_off(matching: float, unimodal: float, active: bool) -> None:
    torch.manual_seed(0)
    model = build_model(_cfg("mha_aux", ["word"], 0.0, aux_matching=matching, aux_unimodal=unimodal)).train()
    data = _tensors(8)
    out = model(data.batch(torch.arange(8)), data.labels)
    assert (float(out.aux_loss.detach()) > 0) == active
    if matching and unimodal:  # the two weighted losses add up
        m_only = build_model(_cfg("mha_aux", ["word"], 0.0, aux_matching=matching)).train()
        u_only = build_model(_cfg("mha_aux", ["word"], 0.0, aux_unimodal=unimodal)).train()
        for m in (m_only, u_only):
            m.load_state_dict(model.state_dict())
        both = float(model(data.batch(torch.arange(8)), data.labels).aux_loss.detach())
        parts = sum(float(m(data.batch(torch.arange(8)), data.labels).aux_loss.detach()) for m in (m_only, u_only))
        assert both == pytest.approx(parts, rel=1e-4)


def test_training_learns_and_is_bit_identical_for_a_seed() -> None:
    data = _tensors(120, seed=3)
    train, val = data.subset(np.arange(80)), data.subset(np.arange(80, 120))
    settings = TrainConfig(epochs=15, batch_size=16, lr=3e-3, patience=15)
    runs = []
    for _ in range(2):
        model, history = fit(_cfg("coattention", ["word"]), train, val, settings, seed=7)
        runs.append((predict_proba(model, val), history))
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert max(h["val_ua"] for h in runs[0][1]) > 0.5  # well above chance (0.25)
    other, _ = fit(_cfg("coattention", ["word"]), train, val, settings, seed=8)
    assert not np.array_equal(predict_proba(other, val), runs[0][0])


def test_a_diverging_run_stops_at_its_first_non_finite_epoch() -> None:
    """lr 1e30: the first epoch's training loss is NaN; fit stops there (no best weights, no
    history returned), naming the epoch; a loop row with an infinite loss stops it too."""
    from mger.models.loop import EpochState, NonFiniteLoss, one_generator, run_epochs

    data = _tensors(40, seed=3)
    with pytest.raises(NonFiniteLoss, match=r"^epoch 1: training loss is nan \(not finite\): the run diverged"):
        fit(_cfg("audio", ["word"]), data, data, TrainConfig(epochs=5, batch_size=16, lr=1e30), seed=0)
    losses = iter([1.0, 0.5, float("inf")])
    with pytest.raises(NonFiniteLoss, match=r"^epoch 3: training loss is inf") as err:
        run_epochs(lambda e, g: ({"train_loss": next(losses)}, 0.0), EpochState(), 5, 5, one_generator(0), lambda: None)
    assert err.value.epoch == 3


def test_late_fusion_weights_and_members() -> None:
    labels = np.array([0, 1, 2, 3] * 5)
    good = np.eye(4)[labels] * 0.9 + 0.025
    bad = np.full((20, 4), 0.01)
    bad[:, 0] = 0.97  # confidently always class 0: equal weights would follow it
    w = fit_weights([bad, good], labels, 4)
    assert w[1] > w[0] and w.sum() == pytest.approx(1.0)
    late = members(ExperimentSpec(model="late", speech_levels=["word", "phone"]))
    assert [(m.model, m.speech_levels) for m in late] == [("audio", ["word"]), ("audio", ["phone"]), ("text", ["word"])]
    combined = members(ExperimentSpec(model="combined", speech_levels=["word"]))
    assert [m.model for m in combined] == ["coattention", "audio", "text"]
    assert [member_label(m) for m in late] == ["audio:word", "audio:phone", "text:token"]
    assert input_names(_cfg("coattention", ["word"])) == ["speech:word", "text:token"]


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_mha_has_k_layers_and_trains(layers: int) -> None:
    torch.manual_seed(0)
    model = build_model(_cfg("mha_aux", ["word"], 0.0, layers=layers, aux_matching=0.5, aux_unimodal=0.5)).train()
    assert len(model.layers) == layers
    data = _tensors(8)
    out = model(data.batch(torch.arange(8)), data.labels)
    (torch.nn.functional.cross_entropy(out.logits, data.labels) + out.aux_loss).backward()
    assert all(p.grad is not None for p in model.layers.parameters())


@pytest.mark.parametrize("unimodal_on", ["fused", "encoder"])
@pytest.mark.parametrize("negatives", ["any", "other_label"])
def test_auxiliary_variants_switch_on_and_off(unimodal_on: str, negatives: str) -> None:
    data = _tensors(8)
    losses = {}
    for matching, unimodal in ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5)):
        torch.manual_seed(0)
        model = build_model(
            _cfg(
                "mha_aux",
                ["word"],
                0.0,
                aux_matching=matching,
                aux_unimodal=unimodal,
                aux_unimodal_on=unimodal_on,
                aux_matching_negatives=negatives,
            )
        ).train()
        losses[(matching, unimodal)] = float(model(data.batch(torch.arange(8)), data.labels).aux_loss.detach())
        assert hasattr(model, "s_enc_pool") is (unimodal_on == "encoder")
    assert losses[(0.0, 0.0)] == 0 and losses[(0.5, 0.0)] > 0 and losses[(0.0, 0.5)] > 0


def test_other_label_negatives_never_share_the_label() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    partner, found = other_label_partner(labels)
    assert found.all() and (labels[partner] != labels).all()
    assert partner.tolist()[:3] == [6, 6, 1]  # the nearest earlier item, cyclically
    _, none = other_label_partner(torch.tensor([3, 3, 3]))
    assert not none.any()
    torch.manual_seed(0)
    model = build_model(_cfg("mha_aux", ["word"], 0.0, aux_matching=0.5, aux_matching_negatives="other_label"))
    data = _tensors(4)
    same = TensorSet(data.inputs, torch.zeros(4, dtype=torch.long))  # one label: no negative to draw
    assert float(model.train()(same.batch(torch.arange(4)), same.labels).aux_loss.detach()) == 0


def test_coattention_levels_each_have_a_block_and_combined_uses_all_levels() -> None:
    model = build_model(_cfg("coattention", ["frame", "phone", "syllable", "word"]))
    assert sorted(model.blocks) == ["speech_frame", "speech_phone", "speech_syllable", "speech_word"]
    combined = members(ExperimentSpec(model="combined", speech_levels=["word", "phone"]))
    assert combined[0].model == "coattention" and combined[0].speech_levels == ["word", "phone"]
    assert [(m.model, m.speech_levels) for m in combined[1:]] == [
        ("audio", ["word"]),
        ("audio", ["phone"]),
        ("text", ["word"]),
    ]


@pytest.mark.parametrize(
    "kind, levels", [("audio", ["word"]), ("mha_aux", ["word"]), ("coattention", ["phone", "word"])]
)
def test_device_path_trains_like_the_default_path(kind: str, levels: list[str]) -> None:
    """The device path (rows moved once, padded by one gather) on the CPU: the same batches,
    so the same model and predictions as the default path."""
    data = _tensors(60, seed=4)
    moved = data.to(torch.device("cpu"), device_padding=True)
    idx = torch.tensor([3, 0, 7, 5])
    for name, (x, mask) in moved.batch(idx).items():
        ref = data.batch(idx)[name]
        assert torch.equal(x, ref[0]) and torch.equal(mask, ref[1])
    settings = TrainConfig(epochs=3, batch_size=16, patience=3)
    cfg = _cfg(kind, levels, aux_matching=0.5, aux_unimodal=0.5)
    runs = []
    for d in (data, moved):
        model, history = fit(cfg, d.subset(np.arange(40)), d.subset(np.arange(40, 60)), settings, seed=1)
        runs.append((predict_proba(model, d.subset(np.arange(40, 60))), history))
    assert runs[0][1] == runs[1][1]
    np.testing.assert_allclose(runs[0][0], runs[1][0], atol=1e-6)


@pytest.mark.parametrize("criterion", ["val_ua", "val_loss"])
def test_early_stopping_keeps_the_best_validation_epoch(criterion: str) -> None:
    """The returned model is the epoch the criterion ranks best (UA highest, or cross-entropy lowest)."""
    data = _tensors(48, seed=2)
    train, val = data.subset(np.arange(32)), data.subset(np.arange(32, 48))
    settings = TrainConfig(epochs=6, patience=6, batch_size=8, seeds=[0], early_stopping=criterion)
    model, history = fit(_cfg("audio", ["word"]), train, val, settings, seed=0)
    probs = predict_proba(model, val)
    labels = val.labels.numpy()
    loss = float(-np.log(probs[np.arange(len(labels)), labels]).mean())
    if criterion == "val_loss":
        assert loss == pytest.approx(min(h["val_loss"] for h in history), rel=1e-5)
    else:
        ua = all_metrics(labels, probs.argmax(1), 4)["ua"]
        assert ua == pytest.approx(max(h["val_ua"] for h in history))
    assert len(history) == 6 and all(np.isfinite(h["val_loss"]) for h in history)


def test_standardize_scales_by_the_training_rows_only() -> None:
    """Training rows come out with mean 0 and std 1 per feature; the statistics never see the
    validation or test rows (changing them leaves the training rows' scaling unchanged)."""
    from mger.models.train import standardize

    rows = torch.randn(300, 5) * torch.tensor([1000.0, 1.0, 0.1, 50.0, 3.0]) + torch.tensor([2000.0, 5.0, 1.0, 0, 0])
    lengths = torch.full((60,), 5)
    data = TensorSet(
        {"speech:word": Ragged(rows.half(), torch.arange(0, 300, 5), lengths)}, torch.zeros(60, dtype=torch.long)
    )
    train, rest = data.subset(np.arange(40)), data.subset(np.arange(40, 60))
    scaled_train, _ = standardize([train, rest], train)
    x = scaled_train.inputs["speech:word"].compact().data.float()
    assert torch.allclose(x.mean(0), torch.zeros(5), atol=2e-2)
    assert torch.allclose(x.std(0, unbiased=False), torch.ones(5), atol=2e-2)
    changed = rows.clone()
    changed[200:] *= 7.0  # the last 20 items (not training)
    other = TensorSet({"speech:word": Ragged(changed.half(), torch.arange(0, 300, 5), lengths)}, data.labels)
    again, _ = standardize([other.subset(np.arange(40)), other.subset(np.arange(40, 60))], other.subset(np.arange(40)))
    assert torch.equal(again.inputs["speech:word"].compact().data, scaled_train.inputs["speech:word"].compact().data)


def test_expected_cost_starts_the_longest_experiments_first() -> None:
    train = TrainConfig(layers=2)
    cost = {
        name: expected_cost(ExperimentSpec(**spec), train)
        for name, spec in {
            "probe": {"model": "probe", "speech_levels": ["utterance"]},
            "word": {"model": "audio", "speech_levels": ["word"]},
            "frame": {"model": "audio", "speech_levels": ["frame"]},
            "mha_k1": {"model": "mha_aux", "speech_levels": ["word"], "layers": 1},
            "mha_k4": {"model": "mha_aux", "speech_levels": ["word"], "layers": 4},
            "late": {"model": "late", "speech_levels": ["word"]},
            "combined": {"model": "combined", "speech_levels": ["word"]},
        }.items()
    }
    assert cost["probe"] < cost["word"] < cost["late"] < cost["combined"]
    assert cost["word"] < cost["frame"] and cost["mha_k1"] < cost["mha_k4"]
