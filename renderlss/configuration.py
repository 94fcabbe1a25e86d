"""Typed, validated experiment configs.

A config file is Python that assigns top-level names (``data = dict(...)``; names starting
with ``_`` are private helpers of the file and are not part of the config); it may name at
most one level of ``_base_`` files (a path or a list of paths relative to itself) whose
dicts are merged underneath, key by key. The merged dict is checked against a schema of
dataclasses: an unknown key is an error that names its dotted path and the nearest valid
key, and values are converted to the field's type (tuples, floats) or rejected.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import math
import runpy
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def merge_dicts(base: dict, override: dict) -> dict:
    """Recursive merge: dict values merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _file_namespace(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    names = runpy.run_path(str(path))
    return {
        k: v
        for k, v in names.items()
        if (k == "_base_" or not k.startswith("_"))
        and not isinstance(v, types.ModuleType | types.FunctionType | type)
    }


def read_config_file(path: str | Path) -> dict:
    """Raw merged dict of a config file and its ``_base_`` files (one level only)."""
    path = Path(path).resolve()
    own = _file_namespace(path)
    bases = own.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for base in bases:
        base_path = (path.parent / base).resolve()
        base_dict = _file_namespace(base_path)
        if "_base_" in base_dict:
            raise ConfigError(
                f"{base_path}: a _base_ file may not have its own _base_ (one level only)"
            )
        merged = merge_dicts(merged, base_dict)
    return merge_dicts(merged, own)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` -> (["a", "b", "c"], value); value parsed as a Python literal
    when it is one, else kept as a string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip().split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set each ``a.b=value`` override in a copy of ``raw`` (nested dicts created as needed)."""
    out = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a section")
        node[keys[-1]] = value
    return out


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a dict for section {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError("; ".join(errors))
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a sequence, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return (
            [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
            if args
            else list(value)
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a dict, got {value!r}")
        return (
            {
                _convert(k, args[0], where): _convert(v, args[1], f"{where}.{k}")
                for k, v in value.items()
            }
            if args
            else dict(value)
        )
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            # inf passes every "> 0" check and NaN every comparison, then ruins a run.
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected True or False, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], values: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys with a suggestion."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {'.'.join(filter(None, [where, near[0]]))!r}?" if near else ""
            raise ConfigError(f"unknown config key {path!r}{hint}")
        kwargs[key] = _convert(value, hints[key], path)
    try:
        obj = cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from err
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(where or cls.__name__)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain dicts/lists of a config dataclass (for saving next to runs and in checkpoints)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
