"""The generic params loader: YAML reading (``extends``, duplicate keys refused), typed
conversion of a mapping into a section dataclass, names that become file names, and the one
range mechanism (a rule per dotted key: :class:`Range`, :func:`check_numbers`).

It knows no section: the schemas are the dataclasses of :mod:`mger.core.config_corpus`,
:mod:`mger.core.align_settings`, :mod:`mger.core.config_features` and the training ones;
:mod:`mger.core.config` assembles them into :class:`~mger.core.config.Params` and holds the
table of ranges.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, NamedTuple, Union

import yaml


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last one)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _read_yaml_tree(path: Path, seen: tuple[Path, ...]) -> dict | None:
    """The mapping of ``path`` with its ``extends`` chain merged in (cycles refused)."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except yaml.YAMLError as err:  # one line: the problem and where (line, column)
        where = getattr(err, "problem_mark", None)
        at = f", line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML ({problem}{at})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if not data or "extends" not in data:
        return data
    base = data.pop("extends")
    if not isinstance(base, str):
        raise ConfigError(f"{path}: extends: expected the path of a params file")
    seen = (*seen, path.resolve())
    base_path = (path.parent / base).resolve()
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends: {base}: no such params file ({base_path})")
    if base_path in seen:
        raise ConfigError(f"{path}: extends: {base} leads back to this file (a cycle)")
    return _merged(_read_yaml_tree(base_path, seen) or {}, data)


def _merged(base: dict, over: dict) -> dict:
    """``over`` merged into ``base``: mappings key by key, any other value replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# Range checks: every numeric param has a rule here, keyed by its dotted name ("*" stands for


# The one range mechanism: a rule per numeric param, keyed by its dotted name ("*" stands for any
# name of a mapping, e.g. an experiment's; "[]" for any list item).  The table itself is
# mger.core.config.RANGES (it names every section's keys); a key without a rule is refused by
# tests/test_config.py, so a new numeric param needs its range stated.
_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    "positive": (lambda v: v > 0, "must be positive"),
    "nonnegative": (lambda v: v >= 0, "must be >= 0"),
    "fraction": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "probability": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "any": (lambda v: True, ""),
}


class Range(NamedTuple):
    """A numeric param's allowed values: ``rule`` (a lower bound or interval, a key of the rules
    above) and, where a huge value is an allocator error, thousands of processes or a seed torch
    and numpy refuse rather than a result, an upper bound ``most`` with the reason ``why``."""

    rule: Literal["positive", "nonnegative", "fraction", "probability", "any"]
    most: float = math.inf
    why: str = ""


ANY = Range("any")


def numeric_params(obj: Any, key: str = "", skip: tuple[str, ...] = ()) -> Iterator[tuple[str, str, float]]:
    """(dotted key, rule key, value) of every int/float value under ``obj`` (bools excluded);
    dataclass fields named in ``skip`` are left out."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.name not in skip:
                yield from numeric_params(getattr(obj, f.name), f"{key}.{f.name}".lstrip("."), skip)
    elif isinstance(obj, dict):
        for name, value in obj.items():
            yield from ((k, _generic(r, key), v) for k, r, v in numeric_params(value, f"{key}.{name}", skip))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from (
                (k, r.replace(f"{key}[{i}]", f"{key}[]", 1), v)
                for k, r, v in numeric_params(value, f"{key}[{i}]", skip)
            )
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield key, key, obj


def _generic(rule_key: str, dict_key: str) -> str:
    """``train.experiments.a.aux_matching`` → ``train.experiments.*.aux_matching``."""
    _, _, rest = rule_key[len(dict_key) + 1 :].partition(".")
    return f"{dict_key}.*.{rest}" if rest else f"{dict_key}.*"


def check_number(key: str, value: float, allowed: Range) -> None:
    """``value`` (the param at dotted ``key``) finite and within ``allowed``, else a :class:`ConfigError`
    naming the key, the bound and the value."""
    if isinstance(value, float) and not math.isfinite(value):  # every number, whatever its rule
        raise ConfigError(f"{key}: must be a finite number, got {value!r}")
    test, what = _RULES[allowed.rule]
    if not test(value):
        raise ConfigError(f"{key}: {what}, got {value!r}")
    if value > allowed.most:
        raise ConfigError(f"{key}: must be at most {allowed.most} ({allowed.why}), got {value!r}")
