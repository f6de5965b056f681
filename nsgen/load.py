"""Read a topology file: YAML (with duplicate keys and syntax errors located), then the model,
then the expanders, then the cross-object checks. Each stage reports every problem it finds
at once; a stage runs only when the one before it found none (a reference check needs a
well-formed model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nsgen.errors import Problem, TopologyError, UsageError
from nsgen.expand import expand, split_sugar
from nsgen.messages import pydantic_problems
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
