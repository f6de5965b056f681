"""What an explanation holds: hops, each a list of events (what happened, why, the step of
setup.sh behind it, and the fact the kernel can be asked about with --live), the verdict in
plain words, one path per branch of a random choice, and the query that started it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from nsgen.explain.network import IPAddress, Net, RouteEntry, RuleEntry, StepRef

Outcome = Literal[
    "reach",
    "delivered",
    "dropped",
    "rejected",
    "no-route",
    "unreachable",
    "refused",
    "left",
    "partial",
]


@dataclass(frozen=True)
class RouteFact:
    """A route lookup the kernel can be asked about: `ip route get DST [from SRC iif IIF]`."""

    netns: str
    dst: IPAddress
    src: IPAddress | None
    iif: str | None
    mark: int
    route: RouteEntry


@dataclass(frozen=True)
class LinkFact:
    """A link the packet passes through: it must exist and be up (and be a port of `master`)."""

    netns: str
    name: str
    master: str | None
    kind: str
    peer: str | None = None
    """The other end of a veth pair, in words ('veth-red-br in the host')."""


@dataclass(frozen=True)
class RuleFact:
    """A rule that matched the packet: its counter must count it."""

    netns: str
    entry: RuleEntry
    decided: bool


@dataclass(frozen=True)
class PolicyFact:
    """A built-in chain whose policy decided."""

    netns: str
    table: str
    chain: str
    policy: str


@dataclass(frozen=True)
class SysctlFact:
    netns: str
    key: str
    value: str


@dataclass(frozen=True)
class BridgeFact:
    """A bridge forwards the frame from `in_port` to `out_port` (None: up to itself)."""

    netns: str
    bridge: str
    in_port: str
    out_port: str | None
    hairpin: bool


@dataclass(frozen=True)
class NatFact:
    """A translation: `kind` DNAT, SNAT or MASQUERADE, the packet before and after."""

    netns: str
    kind: str
    before: str
    after: str


Fact = RouteFact | LinkFact | RuleFact | PolicyFact | SysctlFact | BridgeFact | NatFact


@dataclass(frozen=True)
class Event:
    """One line of a hop: what happened and why, and the step of setup.sh behind it."""

    kind: str
    """route, source, out, in, bridge, chain, nat, conntrack, forward, deliver, stop, tunnel,
    note."""
    text: str
    step: StepRef | None = None
    fact: Fact | None = None


@dataclass
class Hop:
    number: int
    netns: str
    """The namespace as the explanation names it."""
    live: str
    """Its name on a live system (`ip netns`), 'host' for the root namespace."""
    entered: str
    packet: str
    events: list[Event] = field(default_factory=list)
    tunnel: str | None = None

    def copy(self) -> Hop:
        return replace(self, events=list(self.events))


@dataclass(frozen=True)
class Verdict:
    """Where and why a walk ends."""

    outcome: Outcome
    reach: bool
    reason: str
    """In plain words."""
    netns: str | None = None
    hop: int | None = None
    object: str | None = None
    """What decided: 'filter NSGEN-docker-bridge-FWD rule 3', 'route default via ...'."""
    reply: bool = False
    """Decided on the way back."""

    @property
    def word(self) -> str:
        return "reach" if self.reach else "blocked"


@dataclass
class Path:
    """One way the packet can go (one branch of the random choices on its way)."""

    probability: float
    choices: list[str]
    hops: list[Hop]
    request: Verdict
    reply: list[Hop]
    verdict: Verdict


@dataclass(frozen=True)
class Query:
    """What to explain: a packet from a namespace to an address."""

    source: str
    """FROM as written."""
    netns: str
    src: IPAddress | None
    """A fixed source address (FROM was an address), else the kernel picks one."""
    target: str
    """TO as written."""
    dst: IPAddress
    proto: str
    port: int | None
    listening: bool | None = None
    """Whether a program listens on the port where the packet lands (None: assume it does)."""

    @property
    def label(self) -> str:
        shown = str(self.dst) if self.target == str(self.dst) else f"{self.dst} ({self.target})"
        if self.port is not None:
            shown = f"{shown} port {self.port}"
        what = {"icmp": "icmp echo (ping)", "tcp": "tcp connection", "udp": "udp datagram"}
        return f"{self.source} -> {shown}, {what[self.proto]}"


@dataclass
class Explanation:
    query: Query
    paths: list[Path]
    assumptions: list[str]
    net: Net

    @property
    def verdict(self) -> Verdict:
        """Reach when every branch reaches; blocked when none does (the first branch's
        reason); partial when it depends on the random choice."""
        reaching = [p for p in self.paths if p.verdict.reach]
        if len(reaching) == len(self.paths):
            first = self.paths[0].verdict
            if len(self.paths) == 1:
                return first
            ends = ", ".join(dict.fromkeys(str(p.request.netns) for p in self.paths))
            return replace(
                first,
                hop=None,
                reason=f"every branch reaches ({ends}), and every reply comes back: "
                f"{self.query.source} reaches {self.query.target}",
            )
        if not reaching:
            return self.paths[0].verdict
        share = sum(p.probability for p in reaching)
        blocked = next(p for p in self.paths if not p.verdict.reach)
        return Verdict(
            "partial",
            False,
            f"it depends on the random choice: {share:.0%} of new connections reach, the "
            f"others do not ({blocked.verdict.reason})",
            blocked.verdict.netns,
            blocked.verdict.hop,
            blocked.verdict.object,
        )
