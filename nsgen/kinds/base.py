"""What every kind of network object provides, and the values the planner, the renderer, the
executor and `nsgen status` pass between them.

A kind (a bridge, a route, a firewall rule, a sysctl ...) is one class in one module of
nsgen/kinds/, with its template macros in templates/kinds/<family>.j2. The class says:

- how it plans: `plan(ctx)` yields its steps (the changes, each with a title and a why) and
  its preconditions (what preflight checks before anything changes);
- how it runs: `lane`, the program its lines go to when a batched step groups many changes
  into one process (`ip -b`, `bridge -b`, `tc -b`, the firewall backend, sysctl writes), and
  `group`, where its root-namespace steps go in the batched plan;
- how it reads in a script: `do_<step>` and `undo_<step>` (and `preflight_<condition>`)
  macros in its template; `summary`, its words in a batched step's why;
- how `nsgen status` observes it: `observe(step, status)` adds rows of the kinds in `rows`;
- what the snapshot reads for it: `snapshot(live, netns)`.

`nsgen.kinds.registry.KINDS` lists them in the order the planner asks them; a test checks that every
kind has each part.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from nsgen.errors import Problem
from nsgen.fields import HOST

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.model import Topology
    from nsgen.status import Observer

Firewall = Literal["iptables", "nftables"]
"""The firewall backends: iptables (iptables-restore) or nftables (nft, a table of its own)."""

Lane = Literal["netns", "ip", "bridge", "tc", "firewall", "sysctl", "file", "exec"]
"""The program a kind's changes go to inside a batched step. netns: `ip -b` in the root
namespace, before anything else; file: bash writes files on the host (no batch); exec: the
topology's own commands, each its own process (no batch)."""

LANE_ORDER: tuple[Lane, ...] = ("ip", "bridge", "tc", "firewall", "sysctl")
"""Order of the programs a batched step runs: links and addresses before the forwarding
entries on them, queueing disciplines on existing links, then rules and settings."""

Group = Literal["namespaces", "bridges", "cables", "routes", "firewall", "own"]
"""Where a kind's root-namespace steps go in the batched plan, in this order: all namespaces
in one `ip -b`; the bridges (with their addresses) in one; the veth pairs and the root
namespace's ends, VXLAN devices and queueing disciplines in one; then, after every named
namespace is configured, the root's routes, neighbours and forwarding entries in one; the
root's firewall in one backend call; and last, settings and files each as a step of its own."""


@dataclass(frozen=True)
class Owner:
    """An object nsgen created whose deletion takes a step's effects with it: the step then
    needs no undo of its own (an address on a new bridge goes with the bridge)."""

    what: Literal["namespace", "bridge", "vxlan", "veth pair", "chain", "links", "table"]
    name: str

    def __str__(self) -> str:
        return f"{self.what} {self.name}"


def namespace_owner(netns: str) -> Owner | None:
    """What owns everything created inside `netns`: the namespace, unless it is the root one."""
    return None if netns == HOST else Owner("namespace", netns)


@dataclass(frozen=True)
class Args:
    """Base of every kind's step arguments: the namespace the step acts in."""

    netns: str


@dataclass(frozen=True)
class Step:
    """One unit of change a reviewer can follow: its commands (spelled by the kind's
    `do_<kind>` macro from `args`) and how to undo them (`undo_<kind>`, unless `owner` takes
    its effects with it).

    A batched step (kind `root_batch`, `netns_batch`, `ns_batch`, `restore`) groups `parts`,
    single steps run by one process per program; `parallel` steps touch only their own
    namespace and run side by side."""

    kind: str
    title: str
    why: str
    args: Args
    owner: Owner | None = None
    parts: tuple[Step, ...] = ()
    parallel: bool = False


@dataclass(frozen=True)
class Precondition:
    """A preflight condition: the macro `preflight_<name>` in `template` adds a line to the
    refusal when the host is not ready."""

    name: str
    template: str
    args: Args


@dataclass(frozen=True)
class PlanContext:
    """What every kind may know while planning: the topology and the facts that hold for all
    of it, decided before the first step."""

    topology: Topology
    tag: str
    """The comment every firewall rule carries (nsgen:<topology>)."""
    ipv6: bool
    """The topology declares an IPv6 address somewhere."""
    firewall: Firewall = "iptables"
    """The firewall backend that installs the rules (the file's `firewall:`, or --firewall)."""

    def autoconf(self, netns: str) -> bool:
        """Whether the links nsgen creates in `netns` without an IPv6 address of their own
        keep the kernel's IPv6 autoconfiguration (an fe80:: address, with duplicate address
        detection): only where the namespace says `ipv6: true`. (A link with an IPv6 address
        gets a fixed link-local address instead: nsgen.kinds.links.fixed_link_local.)"""
        spec = self.topology.host if netns == HOST else self.topology.namespaces.get(netns)
        return spec is not None and spec.ipv6 is True


Planned = Step | Precondition


class Kind:
    """Base of every kind. Subclasses set the class attributes and override `plan` and
    `observe`; see the module docstring."""

    name: ClassVar[str]
    """The kind's word, used by the plan (step kinds), status rows and the docs."""
    steps: ClassVar[tuple[str, ...]] = ()
    """Step kinds it plans (default: its name); each has a `do_<step>` macro."""
    template: ClassVar[str]
    """The template file (under templates/) that holds its macros."""
    lane: ClassVar[Lane]
    group: ClassVar[Group]
    enters: ClassVar[bool] = True
    """In a named namespace, its steps run inside that namespace (in the namespace's batched
    step). False: they run from the root namespace (a veth pair is created there, files are
    written on the host's file system)."""
    summary: ClassVar[str]
    """Its words in a batched step's why: 'routes', 'veth ends'."""
    rows: ClassVar[tuple[str, ...]]
    """The row kinds `observe` adds in `nsgen status`."""
    tools: ClassVar[tuple[str, ...]] = ()
    """Programs setup.sh needs when the topology uses this kind (bash and ip always)."""
    preflight: ClassVar[tuple[str, ...]] = ()
    """The preconditions it may emit (`preflight_<name>` macros of its template); a kind
    whose objects always live inside objects nsgen creates has none."""
    observable: ClassVar[bool] = True
    """False for a kind whose effects nsgen cannot know (the topology's own commands): its
    status rows are "unobserved", which is not drift, and its snapshot reads nothing."""

    def step_kinds(self) -> tuple[str, ...]:
        return self.steps or (self.name,)

    def tools_for(self, step: Step) -> tuple[str, ...]:
        """The programs setup.sh needs for `step` (kinds whose steps differ may say per step:
        an IPv6 rule needs ip6tables, any rule of the nftables backend nft)."""
        return self.tools

    def enters_for(self, step: Step) -> bool:
        """Whether `step`, in a named namespace, runs inside it (see `enters`)."""
        return self.enters

    def template_of(self, step: Step) -> str:
        """The template that spells `step` (the firewall kinds' depends on the backend)."""
        return self.template

    def templates(self) -> tuple[str, ...]:
        """Every template `template_of` may return."""
        return (self.template,)

    def summary_of(self, step: Step) -> str:
        """Its words in a batched step's why (default: `summary`)."""
        return self.summary

    def lane_of(self, step: Step) -> Lane:
        """The program a step of this kind goes to in a batch (kinds with several step kinds
        may differ per step)."""
        return self.lane

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        raise NotImplementedError

    def observe_declared(self, topology: Topology, status: Observer) -> None:
        """Rows for objects the topology declares without a step (external interfaces)."""

    def declared_in(self, topology: Topology) -> list[tuple[str, str]]:
        """(namespace, link name) of links the topology declares without a step."""
        return []

    def validate(self, topology: Topology) -> list[Problem]:
        """Cross-object problems of this kind that nsgen.validate does not check."""
        return []

    def observe(self, step: Step, status: Observer) -> None:
        raise NotImplementedError

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        """What the before/after snapshot reads for this kind in one namespace (keys shared
        by several kinds are read once)."""
        raise NotImplementedError

    def snapshot_host(self, live: LiveState) -> dict[str, Any]:
        """What the snapshot reads for this kind once for the whole machine (files)."""
        return {}

    def deletes_link(self, step: Step) -> str | None:
        """The root-namespace link whose deletion undoes `step`, if that is its undo (links are
        deleted together, in one `ip -b`)."""
        return None

    def declared_links(self, step: Step) -> list[tuple[str, str]]:
        """(namespace, link name) of every link `step` creates or configures."""
        return []


def where(netns: str) -> str:
    """'the root namespace' or 'namespace NAME', for titles and whys."""
    return "the root namespace" if netns == HOST else f"namespace {netns}"


def in_(netns: str) -> str:
    """Suffix for step titles: where a step acts, when that is not the root namespace."""
    return "" if netns == HOST else f" (in {netns})"
