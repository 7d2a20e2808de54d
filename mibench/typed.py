"""Build typed dataclasses from plain dicts (YAML/JSON), with errors that name the file and field."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from mibench.errors import CardError
from mibench.registry import suggest


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _convert(value: Any, tp: Any, field: str, path: str | Path | None, error=CardError) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, field, path, error)
            except error as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else error(
            f"expected {' or '.join(_type_name(a) for a in args if a is not type(None))}, got {value!r}",
            path=path, field=field)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise error(f"must be one of {', '.join(map(repr, allowed))}, got {value!r}"
                        f"{suggest(str(value), [str(a) for a in allowed])}", path=path, field=field)
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise error(f"expected a list, got {value!r}", path=path, field=field)
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise error(f"expected {len(args)} values, got {len(value)}", path=path, field=field)
            return tuple(_convert(v, a, f"{field}[{i}]", path, error) for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_convert(v, inner, f"{field}[{i}]", path, error) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"expected a mapping, got {value!r}", path=path, field=field)
        _, vt = get_args(tp) or (Any, Any)
        return {str(k): _convert(v, vt, f"{field}.{k}", path, error) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path=path, prefix=field, error=error)
    if tp is bool:
        if not isinstance(value, bool):
            raise error(f"expected true or false, got {value!r}", path=path, field=field)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"expected an integer, got {value!r}", path=path, field=field)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"expected a number, got {value!r}", path=path, field=field)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise error(f"expected a string, got {value!r}", path=path, field=field)
        return value
    return value


def from_dict(cls: type, data: Any, *, path: str | Path | None = None, prefix: str = "",
              error: type = CardError) -> Any:
    """Validate `data` into dataclass `cls`: unknown, missing and mistyped fields raise `error`."""
    where = prefix or "(top level)"
    if not isinstance(data, dict):
        raise error(f"expected a mapping, got {type(data).__name__}", path=path, field=where)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            full = f"{prefix}.{key}" if prefix else str(key)
            raise error(f"unknown field{suggest(str(key), list(fields))}", path=path, field=full,
                        fix=f"allowed fields here: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        full = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise error("required field is missing", path=path, field=full)
            continue
        kwargs[name] = _convert(data[name], hints[name], full, path, error)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:  # validate() raises ValueError("field: message")
            field, _, msg = str(exc).partition(": ")
            raise error(msg or str(exc), path=path,
                        field=f"{prefix}.{field}" if prefix else field) from None
    return obj


def added_field(default: Any) -> Any:
    """A field added to a schema after cards were hashed: left out of `to_dict` (card hashes, run ids)
    while it holds its default, so adding an option changes no existing hash."""
    return dataclasses.field(default=default, metadata={"omit_default": True})


def _kept(obj: Any, f: dataclasses.Field) -> bool:
    if f.metadata.get("derived"):
        return False
    return not (f.metadata.get("omit_default") and getattr(obj, f.name) == f.default)


def to_dict(obj: Any) -> Any:
    """A dataclass (possibly nested) as plain JSON-able dicts and lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if _kept(obj, f)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
