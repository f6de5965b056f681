"""A topology spread over several machines (docs/fleet.md).

The stage after expansion: `hosts:` places namespaces, containers and Kubernetes nodes on
machines; `nsgen.fleet.split` cuts the expanded topology into one core topology per host (links
between hosts become VXLAN tunnels over the underlay); each goes through the usual pipeline into
a standalone bundle, and `nsgen.fleet.bundle` adds an Ansible inventory and playbooks that
deploy, check and remove the whole fleet. nsgen renders what Ansible runs; it has no
orchestrator of its own.

As far as the single-machine commands are concerned this is one more expander (`KEYS`,
`expand`, `SCHEMA_MODEL`, applied last): it owns `hosts:` and `overlay:`, checks them against
the expanded topology, and leaves the topology as it is. So `nsgen validate` reports placement
problems, and `nsgen lab` still builds the whole topology on one machine, nodes as namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nsgen.errors import Problem, TopologyError
from nsgen.fleet.model import FleetSugar
from nsgen.fleet.place import resolve
from nsgen.fleet.split import HostPart, docker_networks, split
from nsgen.messages import pydantic_problems
from nsgen.model import Topology

KEYS = ("hosts", "overlay")
SCHEMA_MODEL = FleetSugar


def parse(sugar: dict[str, Any]) -> tuple[FleetSugar | None, list[Problem]]:
    """The `hosts:` and `overlay:` keys as a model, or the problems with them."""
    try:
        return FleetSugar.model_validate(sugar), []
    except ValidationError as exc:
        return None, pydantic_problems(exc, (), FleetSugar)


def check(sugar: dict[str, Any]) -> list[Problem]:
    """The expander contract (nsgen.expand): the problems of `hosts:` and `overlay:` that need
    nothing from the rest of the file (their fields)."""
    return parse(sugar)[1]


def expand(topology: Topology, sugar: dict[str, Any]) -> tuple[Topology, list[Problem]]:
    """The expander contract (nsgen.expand): every problem with the placement and with each
    host's share; the topology itself is returned unchanged."""
    fleet, problems = parse(sugar)
    if fleet is None:
        return topology, problems
    placement, problems = resolve(topology, fleet)
    if problems:
        return topology, problems
    _, problems = split(topology, fleet, placement)
    return topology, problems


@dataclass(frozen=True)
class Fleet:
    """A topology file with `hosts:`: the whole topology and every host's share of it."""

    topology: Topology
    sugar: FleetSugar
    parts: list[HostPart]


def load(path: str | Path) -> tuple[Topology, Fleet | None]:
    """Read a topology file (`-`: standard input): the whole topology, and, when the file has
    `hosts:`, its split into hosts (None for a single-machine topology). Raises TopologyError
    listing every problem at its line."""
    from nsgen.load import collector_paused, read_document, topology_from_data

    document, source = read_document(path)
    with collector_paused():
        data = document.data
        topology = topology_from_data(data, source, document.marks)
        if not any(key in data for key in KEYS):
            return topology, None
        fleet, problems = parse({key: data[key] for key in KEYS if key in data})
        assert fleet is not None, problems  # topology_from_data checked these keys already
        placement, problems = resolve(topology, fleet)
        parts, problems = split(topology, fleet, placement, docker_networks(data.get("networks")))
        if problems:
            raise TopologyError(source, problems, document.marks.locate)
        return topology, Fleet(topology, fleet, parts)


def load_fleet(path: str | Path) -> Fleet | None:
    """The fleet of a topology file with `hosts:`; None for a single-machine one."""
    return load(path)[1]
