"""pydantic's validation errors in the topology file's own words: one Problem per error, at
the field path the file uses (`namespaces.red.interfaces[0].address`), with the file's key
names (`from`, not the model's `from_`), values written as YAML writes them (`null`, `true`,
a list), and for an unknown key a did-you-mean, the place where that key belongs, or the keys
that are known there. Shared by the core model (nsgen.load) and the expanders (nsgen.expand).
"""

from __future__ import annotations

import difflib
import functools
import reprlib
import types
import typing
from collections import deque
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from nsgen.errors import Problem
from nsgen.model import Topology

_file_key_sources: list[Callable[[], dict[str, Any]]] = []


def declare_file_keys(source: Callable[[], dict[str, Any]]) -> None:
    """Add top-level keys that the file may hold besides the core model's (`networks`,
    `containers`, `cluster` ...): `source` gives them (name: the type of its value) when a
    message first needs them, since the modules that own them may still be importing when
    they declare them (nsgen.expand does). They count as known keys, and their models as
    places a key may belong."""
    _file_key_sources.append(source)
    _file_keys.cache_clear()
    _homes.cache_clear()


@functools.cache
def _file_keys() -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for source in _file_key_sources:
        keys.update(source())
    return keys


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


def _field_types(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by the names the file uses (a field's alias when it has one)."""
    return {field.alias or name: field.annotation for name, field in model.model_fields.items()}


def model_at(root: Any, loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class (reached from the type `root`) whose fields a location's next
    component is one of, if any."""
    current: Any = root
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            current = _field_types(current).get(str(part))
            if current is None:
                return None
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


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """Every model class a field's type may hold directly (through lists, dicts, unions)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(tp):
        found += _models_in(arg)
    return found


def _element_suffix(tp: Any) -> str:
    """How the file writes the step from a field into the model it holds: a list item is
    `[N]`, a mapping entry `.NAME`, a plain model nothing."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _element_suffix(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        suffixes = {_element_suffix(a) for a in typing.get_args(tp) if _models_in(a)}
        return suffixes.pop() if len(suffixes) == 1 else ""
    if origin is list:
        return "[N]"
    if origin is dict:
        return ".NAME"
    return ""


@functools.cache
def _homes() -> dict[type[BaseModel], list[str]]:
    """Every model of the file format with the paths that reach it (shortest first), e.g.
    Namespace: ['host', 'namespaces.NAME']; the top level is ''."""
    fields = _field_types(Topology) | _file_keys()
    homes: dict[type[BaseModel], list[str]] = {Topology: [""]}
    queue: deque[tuple[str, dict[str, Any]]] = deque([("", fields)])
    while queue:
        base, children = queue.popleft()
        for key, tp in children.items():
            for model in _models_in(tp):
                path = f"{base}.{key}" if base else key
                path += _element_suffix(tp)
                paths = homes.setdefault(model, [])
                if len(paths) < 4 and path not in paths:
                    paths.append(path)
                    queue.append((path, _field_types(model)))
    return homes


def _known_keys(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    keys = set(_field_types(model))
    if model is Topology:
        keys |= set(_file_keys())
    return sorted(keys)


def _belongs(key: str, model: type[BaseModel] | None, here: str) -> str:
    """Where a key unknown in `model` (at the path `here`) is known instead, in the file's
    words, or ''. Places under the same top-level key come first, then the core format's,
    then the vocabularies', shallow before deep."""
    places: list[str] = []
    for other, paths in _homes().items():
        if other is model or key not in _known_keys(other):
            continue
        places += [p for p in paths if p not in places]
    if not places:
        return ""
    top = here.split(".")[0].split("[")[0]

    def rank(place: str) -> tuple[int, int, str]:
        first = place.split(".")[0].split("[")[0]
        near = 0 if first == top else 2 if first in _file_keys() else 1
        return near, place.count(".") + place.count("["), place

    places.sort(key=rank)
    named = ["the top level" if p == "" else f"{p}:" for p in places[:3]]
    if len(places) > 3:
        return f"it belongs under {', '.join(named)}, ..."
    listed = ", ".join(named[:-1]) + " or " if len(named) > 1 else ""
    return f"it belongs under {listed}{named[-1]}"


def unknown_key_message(key: str, model: type[BaseModel] | None, here: str = "") -> str:
    """The message for a key the model at `here` does not have: a close known key, else
    where the key belongs, else the keys known there."""
    known = _known_keys(model)
    message = f"unknown key {key!r}"
    hint = difflib.get_close_matches(key, known, n=1)
    if hint:
        return f"{message} (did you mean {hint[0]!r}?)"
    belongs = _belongs(key, model, here)
    if belongs:
        return f"{message} ({belongs})"
    if known:
        return f"{message} (known keys: {', '.join(known)})"
    return message


_SHOW = reprlib.Repr()
_SHOW.maxstring = 64
_SHOW.maxother = 64
_SHOW.maxlong = 64


def shown(value: Any) -> str:
    """A value from the file as a message quotes it: YAML's words for null and booleans, a
    string or number quoted and cut to a readable length, and a list or mapping named, never
    printed whole (an alias can make it larger than memory)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple | set):
        return "a list"
    if isinstance(value, int | float):
        return _SHOW.repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 64 else repr(value[:60]) + "…"
    return f"a {type(value).__name__}"


_TYPE_WORDS = {
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "int_type": "expected an integer",
    "float_type": "expected a number",
}


def _describe(error: Any, prefix: tuple[int | str, ...], root: Any) -> Problem:
    loc = tuple(error["loc"])
    path = format_path(prefix + loc)
    at_key = "[key]" in loc[-1:] + prefix[-1:]
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        message = unknown_key_message(key, model_at(root, loc[:-1]), path)
        return Problem(path, message, at_key=True)
    if kind == "missing":
        return Problem(path, "required key is missing")
    if kind == "value_error":
        return Problem(path, str(error["ctx"]["error"]), at_key=at_key)
    got = shown(error["input"])
    if kind in _TYPE_WORDS:
        return Problem(path, f"{_TYPE_WORDS[kind]}, got {got}", at_key=at_key)
    message = str(error["msg"])
    if message.startswith("Input should be "):
        message = "must be " + message[len("Input should be ") :]
    return Problem(path, f"{message}, got {got}", at_key=at_key)


def pydantic_problems(
    exc: ValidationError, prefix: tuple[int | str, ...] = (), root: Any = Topology
) -> list[Problem]:
    """A pydantic ValidationError as Problems (paths under `prefix`), deduplicated, in the
    order pydantic found them (which follows the file). `root` is the type that was
    validated: an unknown key gets a did-you-mean, the place it belongs, or the known keys of
    its model."""
    return described(exc, prefix, root)[0]


def described(
    exc: ValidationError,
    prefix: tuple[int | str, ...] = (),
    root: Any = Topology,
    limit: int | None = None,
) -> tuple[list[Problem], int]:
    """pydantic_problems of at most `limit` errors (the first), and how many were left out."""
    errors = exc.errors(include_url=False, include_context=True, include_input=True)
    kept = errors if limit is None else errors[:limit]
    return list(dict.fromkeys(_describe(e, prefix, root) for e in kept)), len(errors) - len(kept)
