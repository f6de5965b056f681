"""pydantic's validation errors in the topology file's own words: one Problem per error, at
the field path the file uses (`namespaces.red.interfaces[0].address`), with a did-you-mean for
an unknown key. Shared by the core model (nsgen.load) and the expanders (nsgen.expand)."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from nsgen.errors import Problem
from nsgen.model import Topology


def format_path(loc: tuple[int | str, ...]) -> str:
    """('namespaces', 'red', 'interfaces', 0) -> 'namespaces.red.interfaces[0]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        elif not str(part).isprintable():
            out += f"[{str(part)!r}]"  # one printable line, whatever the key holds
        else:
            out += f".{part}" if out else str(part)
    return out


def model_at(root: Any, loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class (reached from the type `root`) whose fields a location's next
    component is one of, if any."""
    current: Any = root
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
            continue
        current = unwrap(current)
        if current is None:
            return None
        # a list index or dict key: step into the element type
        args = typing.get_args(current)
        current = args[-1] if args else None
    current = unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def unwrap(tp: Any) -> Any:
    """Strip Optional[...] and Annotated[...] down to the type that holds fields or elements."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = options[0] if len(options) == 1 else None
        else:
            return tp


_TYPE_WORDS = {
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "int_type": "expected an integer",
}


def _describe(error: Any, prefix: tuple[int | str, ...], root: Any) -> Problem:
    loc = tuple(error["loc"])
    path = format_path(prefix + loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = model_at(root, loc[:-1])
        known = sorted(model.model_fields) if model else []
        hint = difflib.get_close_matches(key, known, n=1)
        message = f"unknown key {key!r}"
        if hint:
            message += f" (did you mean {hint[0]!r}?)"
        elif known:
            message += f" (known keys: {', '.join(known)})"
        return Problem(path, message)
    if kind == "missing":
        return Problem(path, "required key is missing")
    if kind == "value_error":
        return Problem(path, str(error["ctx"]["error"]))
    if kind in _TYPE_WORDS:
        return Problem(path, f"{_TYPE_WORDS[kind]}, got {error['input']!r}")
    return Problem(path, f"{error['msg']} (got {error['input']!r})")


def pydantic_problems(
    exc: ValidationError, prefix: tuple[int | str, ...] = (), root: Any = Topology
) -> list[Problem]:
    """A pydantic ValidationError as Problems (paths under `prefix`), deduplicated, in the
    order pydantic found them (which follows the file). `root` is the type that was
    validated: an unknown key gets a did-you-mean or the known keys of its model."""
    return list(dict.fromkeys(_describe(e, prefix, root) for e in exc.errors()))
