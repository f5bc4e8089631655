"""The generic params loader's pieces: the error type, names that become file names, typed
conversion of a YAML mapping into a section's dataclass (``_build``) and the ``extends`` merge.

:mod:`mger.core.config` (``Params``) and the sections' modules (:mod:`mger.core.config_train`)
import them from here, so no section module imports the module that assembles them.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Literal, Union


class ConfigError(ValueError):
    """A params file that does not fit the schema; the message names the key."""


NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")  # a name that becomes part of a file name


def check_name(key: str, name: object, reserved: tuple[str, ...] = ()) -> None:
    """Refuse a name (experiment, store, fold variant) that is not letters, digits, ``_`` and ``-``
    (not first), at most 100 characters: names become file names, and ``../x`` or ``/x`` would
    write outside their folder.  ``key``: where the name is, e.g. ``train.experiments``;
    ``reserved``: words the command line gives another meaning (``--experiment all``)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{key}: {name!r} is not a name: use letters, digits, _ and - (not first), at most 100 "
            "characters (it becomes a file name)"
        )
    if name in reserved:
        raise ConfigError(f"{key}: {name!r} is reserved (the command line's word for {name}): choose another name")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_PLAIN = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings")}


def _describe(tp: Any) -> str:
    """What a value of type hint ``tp`` looks like, in words (``'last' or 'mean'``, ``a list of integers``)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"a list of {_PLAIN.get(item, ('', 'items'))[1]}"
    if tp is bool:
        return "true or false"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp) or origin is dict:
        return "a mapping"
    return _PLAIN.get(tp, (_type_name(tp),))[0]


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the type hint ``tp``; return it (nested dataclasses built)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        if value not in typing.get_args(tp):
            allowed = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ConfigError(f"{key}: {value!r} is not one of {allowed}")
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is none of: {'; '.join(_describe(o) for o in typing.get_args(tp))}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{key}: expected null, got {value!r}")
        return None
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        k_tp, v_tp = typing.get_args(tp)
        return {_convert(k, k_tp, key): _convert(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-80 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected float, got {value!r}") from None
    if tp is Any:
        return value
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def _merged(base: dict, over: dict) -> dict:
    """``over`` merged into ``base``: mappings key by key, any other value replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
