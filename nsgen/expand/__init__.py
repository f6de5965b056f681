"""The expansion layer: Docker- and Kubernetes-style vocabulary (sugar) becomes plain core
objects (namespaces, bridges, veth pairs, routes, iptables rules). The planner never sees sugar.

An expander is a module with:
  KEYS: tuple[str, ...]        top-level YAML keys it owns (e.g. ("networks", "containers"))
  expand(topology, sugar) -> (Topology, list[Problem])
        topology: the validated core part of the file; sugar: {key: raw YAML value} for its
        KEYS that the file has. Returns the topology with the generated core objects added
        (and `groups` for diagrams), and every problem found in the sugar, with field paths
        as they appear in the file (e.g. "containers.web.publish[0]").
  check(sugar) -> list[Problem]
        the problems of the vocabulary's own fields alone, without the core part of the
        file: run when the core part is invalid (so `expand` cannot), so that one pass
        reports both.
  SCHEMA_MODEL: a pydantic model whose fields are KEYS (for `nsgen schema`, and for the
        messages: the keys are known top-level keys, their models places a key may belong)
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from nsgen import fleet
from nsgen.errors import Problem
from nsgen.expand import docker, k8s
from nsgen.messages import declare_file_keys
from nsgen.model import Topology

EXPANDERS: tuple[ModuleType, ...] = (docker, k8s, fleet)
"""Every expander, in the order they are applied. `nsgen.fleet` (hosts:) comes last: it
places the expanded topology on machines and changes nothing in it."""


def _file_keys() -> dict[str, Any]:
    """Every expander's top-level keys with the types of their values."""
    return {
        key: module.SCHEMA_MODEL.model_fields[key].annotation
        for module in EXPANDERS
        for key in module.KEYS
    }


declare_file_keys(_file_keys)


def expanders() -> list[ModuleType]:
    """The expander modules, in order."""
    return list(EXPANDERS)


def sugar_keys() -> dict[str, ModuleType]:
    return {key: module for module in expanders() for key in module.KEYS}


def split_sugar(data: dict[str, Any]) -> tuple[dict[str, Any], dict[ModuleType, dict[str, Any]]]:
    """Separate the core keys of a parsed file from each expander's keys."""
    owners = sugar_keys()
    core = {k: v for k, v in data.items() if k not in owners}
    sugar: dict[ModuleType, dict[str, Any]] = {}
    for key, value in data.items():
        if key in owners:
            sugar.setdefault(owners[key], {})[key] = value
    return core, sugar


def expand(
    topology: Topology, sugar: dict[ModuleType, dict[str, Any]]
) -> tuple[Topology, list[Problem]]:
    """Apply every expander that has keys in the file, in EXPANDERS order."""
    problems: list[Problem] = []
    for module in expanders():
        if module in sugar:
            topology, found = module.expand(topology, sugar[module])
            problems.extend(found)
    return topology, problems


def check_sugar(sugar: dict[ModuleType, dict[str, Any]]) -> list[Problem]:
    """The problems every expander finds in its own keys without the core model."""
    return [
        problem
        for module in expanders()
        if module in sugar
        for problem in module.check(sugar[module])
    ]
