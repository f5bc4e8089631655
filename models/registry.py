"""The model kinds an experiment may name (``train.experiments.<name>.model``): one registration each.

A kind registers once, with everything the rest of the code asks about it::

    @register_model("gated", inputs=speech_and_text, cost=lambda spec, speech, layers: sum(speech) + 1,
                    label=lambda m: "gated fusion", order=75, fusion=True)
    class GatedFusion(nn.Module):
        def __init__(self, cfg: ModelConfig) -> None: ...
        def forward(self, inputs: ModelInputs, labels: torch.Tensor | None = None) -> ModelOutput: ...

:func:`mger.models.modules.build_model` builds it, :func:`mger.models.modules.input_names` asks it
which cached inputs to load, :func:`mger.models.experiment.members` and
:func:`mger.models.experiment.expected_cost` ask it for its ensemble members and training cost,
and the report (:mod:`mger.models.report`) for its row label, table position and whether it is a
fusion model.  The built-in kinds are registered beside their classes in :mod:`mger.models.modules`
(so they exist wherever a model can be built); a new fusion model is one class and one
registration, in any module imported before training.

The config (``core``, below this layer) accepts any string as ``model``; :func:`model_kind` refuses
an unknown one in one line naming the key, when training or the report reads the experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

from mger.core.config import ConfigError

if TYPE_CHECKING:  # annotations only
    from mger.core.config import ExperimentSpec

ModelConfig = Any  # mger.models.modules.ModelConfig (that module registers its classes here: no import back)

Reads = Literal["speech", "text", "both"]


@dataclass(frozen=True)
class ModelKind:
    """One model kind.

    ``build``: ModelConfig → nn.Module (None for the linear probe and the ensembles, which are not
    one module); ``inputs``: ModelConfig → the cached inputs it reads (``speech:<level>``,
    ``text:<level>``); ``cost``: (spec, the relative step cost of each of its speech levels, its
    attention layers) → its relative training time; ``label``: the metrics dict of a row → the
    report's system cell; ``order``: its place in the report's tables (lower first); ``reads``:
    the modalities it reads (the report groups audio-only rows by it); ``fusion``: a row of the
    "text vs fusion" ablation; ``members``: spec → the single models an ensemble trains (None:
    the spec itself)."""

    name: str
    build: Optional[Callable[["ModelConfig"], Any]]  # → torch.nn.Module
    inputs: Callable[["ModelConfig"], list[str]]
    cost: Callable[["ExperimentSpec", list[float], int], float]
    label: Callable[[dict], str]
    order: float = 99
    reads: Reads = "both"
    fusion: bool = False
    members: Optional[Callable[["ExperimentSpec"], list["ExperimentSpec"]]] = None


_KINDS: dict[str, ModelKind] = {}


def register_model(
    name: str,
    *,
    inputs: Callable[["ModelConfig"], list[str]],
    cost: Callable[["ExperimentSpec", list[float], int], float],
    label: Callable[[dict], str],
    order: float = 99,
    reads: Reads = "both",
    fusion: bool = False,
    members: Optional[Callable[["ExperimentSpec"], list["ExperimentSpec"]]] = None,
) -> Callable:
    """Register model kind ``name`` (fields: :class:`ModelKind`); decorates its class or build
    function (``None`` for a kind that builds no single module: ``register_model(...)(None)``)."""

    def register(build: Optional[Callable]) -> Optional[Callable]:
        if name in _KINDS:
            raise ValueError(f"model kind {name!r} is registered twice")
        _KINDS[name] = ModelKind(name, build, inputs, cost, label, order, reads, fusion, members)
        return build

    return register


def unregister_model(name: str) -> None:
    """Remove kind ``name`` (a test's own kind, after the test)."""
    _KINDS.pop(name, None)


def model_kinds() -> dict[str, ModelKind]:
    """Every registered kind by name, in table order (the built-in ones once
    :mod:`mger.models.modules` is imported)."""
    return {kind.name: kind for kind in sorted(_KINDS.values(), key=lambda kind: kind.order)}


def model_kind(name: str, where: str = "model") -> ModelKind:
    """The kind ``name``; an unknown one is a :class:`ConfigError` naming ``where`` (the key)."""
    kinds = model_kinds()
    if name not in kinds:
        raise ConfigError(f"{where}: {name!r} is not a model kind (known: {', '.join(kinds)})")
    return kinds[name]


def check_model_kinds(experiments: dict[str, "ExperimentSpec"]) -> None:
    """Every experiment names a registered kind (``train.experiments.<name>.model`` or
    ``train.finetuned_experiments.<name>.model`` in the error)."""
    for name, spec in experiments.items():
        section = "finetuned_experiments" if spec.features == "finetuned" else "experiments"
        model_kind(spec.model, f"train.{section}.{name}.model")
