"""Read a topology file: YAML (with duplicate keys and syntax errors located), then the model,
then the expanders, then the cross-object checks. Each stage reports every problem it finds
at once; a stage runs only when the one before it found none (a reference check needs a
well-formed model)."""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from nsgen.errors import Problem, TopologyError, UsageError
from nsgen.expand import expand, split_sugar
from nsgen.model import Topology
from nsgen.validate import check_topology


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that reports a key given twice in one mapping (PyYAML keeps the last silently)."""

    duplicates: list[tuple[str, int, int]]


class _FastUniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same on libyaml's parser (about ten times faster), when PyYAML was built with it."""

    duplicates: list[tuple[str, int, int]]


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hashable = key in seen
        except TypeError:
            continue
        if hashable:
            mark = key_node.start_mark
            loader.duplicates.append((str(key), mark.line + 1, mark.column + 1))
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


for _loader in (_UniqueKeyLoader, _FastUniqueKeyLoader):
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load(loader_class: Any, text: str) -> tuple[Any, list[tuple[str, int, int]]]:
    loader = loader_class(text)
    loader.duplicates = []
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error or a duplicate key becomes a TopologyError with line:column.

    libyaml parses; a file it rejects is parsed again by PyYAML's own parser, whose messages
    are clearer (it names the offending character)."""
    try:
        try:
            data, duplicates = _load(_FastUniqueKeyLoader, text)
        except yaml.YAMLError:
            data, duplicates = _load(_UniqueKeyLoader, text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        reason = exc.problem or exc.context or "invalid YAML"
        raise TopologyError(source, [Problem(where, f"YAML syntax error: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise TopologyError(source, [Problem("", f"YAML error: {exc}")]) from None
    if duplicates:
        raise TopologyError(
            source,
            [
                Problem(f"line {line}, column {col}", f"key {key!r} appears twice in one mapping")
                for key, line, col in duplicates
            ],
        )
    return data


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


def topology_from_data(data: Any, source: str) -> Topology:
    """Validate parsed YAML into a Topology, or raise a TopologyError listing every problem."""
    if not isinstance(data, dict):
        raise TopologyError(
            source, [Problem("", "the file must hold a mapping (name:, host:, ...)")]
        )
    core, sugar = split_sugar(data)
    try:
        topology = Topology.model_validate(core)
    except ValidationError as exc:
        raise TopologyError(source, pydantic_problems(exc)) from None
    topology, problems = expand(topology, sugar)
    if problems:
        raise TopologyError(source, problems)
    problems = check_topology(topology)
    if problems:
        raise TopologyError(source, problems)
    return topology


def pydantic_problems(
    exc: ValidationError, prefix: tuple[int | str, ...] = (), root: Any = Topology
) -> list[Problem]:
    """A pydantic ValidationError as Problems (paths under `prefix`), deduplicated, in the
    order pydantic found them (which follows the file). `root` is the type that was
    validated: an unknown key gets a did-you-mean or the known keys of its model."""
    return list(dict.fromkeys(_describe(e, prefix, root) for e in exc.errors()))


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{source}: cannot read: {exc}") from None
    return topology_from_data(parse_yaml(text, source), source)
