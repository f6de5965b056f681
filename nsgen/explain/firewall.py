"""One netfilter chain traversal for one packet, over the rules as data.

A built-in chain is walked rule by rule: the first rule whose matches all hold (and whose
negated matches all fail) applies its target. A jump calls an own chain and comes back after
it (a RETURN or the chain's end); a goto continues in the chain and returns to the caller of
the chain that went there; a MARK changes the packet's mark and goes on; any other target
decides. A built-in chain that ends, or RETURNs, decides by its policy (ACCEPT here: nsgen never
sets a policy, and a fresh namespace starts with ACCEPT). A rule with `-m statistic --mode
random --probability P` splits the traversal in two branches, with P and 1 - P.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from nsgen.explain.network import IPAddress, RuleEntry, Space
from nsgen.kinds.rules import Matches, Rule

MAX_DEPTH = 64
"""Chains deeper than this are a loop in the rules (the kernel refuses such a ruleset)."""

POLICY = "ACCEPT"

HOOK_TABLES: dict[str, tuple[str, ...]] = {
    "PREROUTING": ("raw", "mangle", "nat"),
    "INPUT": ("mangle", "filter", "nat"),
    "FORWARD": ("mangle", "filter"),
    "OUTPUT": ("raw", "mangle", "nat", "filter"),
    "POSTROUTING": ("mangle", "nat"),
}
"""The tables each hook runs, in priority order (raw -300, mangle -150, nat -100 for DNAT,
filter 0, nat +100 for SNAT)."""


@dataclass(frozen=True)
class Packet:
    """What the firewall can see of a packet."""

    src: IPAddress
    dst: IPAddress
    proto: str
    """icmp, tcp or udp (icmp stands for icmpv6 in IPv6)."""
    sport: int | None
    dport: int | None
    mark: int = 0
    reply: bool = False
    """A reply of the connection the request opened (conntrack: ESTABLISHED)."""
    carry: Carried | None = None
    """A tunnel packet: the frame it carries inside."""

    @property
    def family(self) -> int:
        return self.dst.version

    def show(self) -> str:
        def end(ip: IPAddress, port: int | None) -> str:
            if ip.is_unspecified:
                return "(no source yet)"
            if port is None:
                return str(ip)
            return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"

        return f"{end(self.src, self.sport)} -> {end(self.dst, self.dport)}"


@dataclass(frozen=True)
class Carried:
    """The frame a VXLAN packet carries: the inner packet, its VNI, and the MAC it is for."""

    inner: Packet
    vni: int
    lladdr: str
    device: str
    """The VXLAN device that sent it (in the sender's namespace)."""


@dataclass(frozen=True)
class Context:
    """Where the packet is while a chain looks at it."""

    space: Space
    hook: str
    packet: Packet
    in_dev: str | None
    out_dev: str | None
    ctstate: frozenset[str]


@dataclass(frozen=True)
class Hit:
    """A rule that matched the packet (its counter counts it)."""

    entry: RuleEntry
    probability: float | None = None
    """For a random rule: the share of packets that take it."""


@dataclass(frozen=True)
class Decision:
    """How one traversal of a built-in chain ends."""

    table: str
    hook: str
    target: str
    """ACCEPT, DROP, REJECT, DNAT, SNAT or MASQUERADE."""
    entry: RuleEntry | None
    """The rule that decided, or None: the chain's policy."""
    mark: int
    hits: tuple[Hit, ...]
    probability: float
    choices: tuple[str, ...]
    """The random choices taken, in words."""


def traverse(table: str, ctx: Context) -> list[Decision]:
    """Every way `table`'s built-in chain at `ctx.hook` can end for the packet, with its
    probability (one way unless a random rule splits it)."""
    return _walk(table, ctx, ctx.hook, 0, (), ctx.packet.mark, (), 1.0, (), 0)


def _walk(
    table: str,
    ctx: Context,
    chain: str,
    index: int,
    stack: tuple[tuple[str, int], ...],
    mark: int,
    hits: tuple[Hit, ...],
    probability: float,
    choices: tuple[str, ...],
    depth: int,
) -> list[Decision]:
    if depth > MAX_DEPTH:
        raise ValueError(f"{table} {ctx.hook}: the chains jump deeper than {MAX_DEPTH} levels")
    rules = ctx.space.chain(table, chain)
    while index < len(rules):
        entry = rules[index]
        # an iptables rule sees IPv4 only, an ip6tables rule IPv6 only
        if ctx.packet.family not in entry.rule.families or not matches(entry.rule, ctx, mark):
            index += 1
            continue
        share = float(entry.rule.probability) if entry.rule.probability is not None else None
        if share is not None and share < 1.0:
            skipped = _walk(
                table,
                ctx,
                chain,
                index + 1,
                stack,
                mark,
                hits,
                probability * (1 - share),
                (*choices, f"{entry.name} passes {1 - share:.0%} of new connections on"),
                depth,
            )
            taken = _take(
                table,
                ctx,
                chain,
                index,
                stack,
                mark,
                (*hits, Hit(entry, share)),
                probability * share,
                (*choices, f"{entry.name} takes {share:.0%} of new connections"),
                depth,
            )
            return taken + skipped
        return _take(
            table,
            ctx,
            chain,
            index,
            stack,
            mark,
            (*hits, Hit(entry, share)),
            probability,
            choices,
            depth,
        )
    return _return(table, ctx, stack, mark, hits, probability, choices, depth)


def _return(
    table: str,
    ctx: Context,
    stack: tuple[tuple[str, int], ...],
    mark: int,
    hits: tuple[Hit, ...],
    probability: float,
    choices: tuple[str, ...],
    depth: int,
) -> list[Decision]:
    """The end of a chain (or a RETURN): back to the caller, or the built-in chain's policy."""
    if not stack:
        return [Decision(table, ctx.hook, POLICY, None, mark, hits, probability, choices)]
    (caller, at), rest = stack[-1], stack[:-1]
    return _walk(table, ctx, caller, at + 1, rest, mark, hits, probability, choices, depth - 1)


def _take(
    table: str,
    ctx: Context,
    chain: str,
    index: int,
    stack: tuple[tuple[str, int], ...],
    mark: int,
    hits: tuple[Hit, ...],
    probability: float,
    choices: tuple[str, ...],
    depth: int,
) -> list[Decision]:
    entry = ctx.space.chain(table, chain)[index]
    rule = entry.rule
    target = rule.target
    if rule.jump == "MARK":
        mark = _marked(rule, mark)
        return _walk(table, ctx, chain, index + 1, stack, mark, hits, probability, choices, depth)
    if target == "RETURN":
        return _return(table, ctx, stack, mark, hits, probability, choices, depth)
    if (table, target) in ctx.space.own_chains:
        if rule.goto is not None:
            return _walk(table, ctx, target, 0, stack, mark, hits, probability, choices, depth + 1)
        return _walk(
            table,
            ctx,
            target,
            0,
            (*stack, (chain, index)),
            mark,
            hits,
            probability,
            choices,
            depth + 1,
        )
    return [Decision(table, ctx.hook, target, entry, mark, hits, probability, choices)]


def _number(text: str) -> int:
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def _value_mask(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    return _number(value), _number(mask) if mask else 0xFFFFFFFF


def _marked(rule: Rule, mark: int) -> int:
    if rule.set_mark is not None:
        value, mask = _value_mask(rule.set_mark)
        return (mark & ~mask) ^ value
    if rule.or_mark is not None:
        return mark | _number(rule.or_mark)
    if rule.xor_mark is not None:
        return mark ^ _number(rule.xor_mark)
    return mark


MATCH_FIELDS = tuple(name for name in Matches.model_fields if name != "probability")


def matches(rule: Rule, ctx: Context, mark: int) -> bool:
    """Whether every match of `rule` holds for the packet, and none of its negated ones."""
    for name in MATCH_FIELDS:
        value = getattr(rule, name)
        if value is not None and not _holds(name, value, ctx, mark):
            return False
    if rule.not_ is not None:
        for name in MATCH_FIELDS:
            value = getattr(rule.not_, name)
            if value is not None and _holds(name, value, ctx, mark):
                return False
    return True


def _in_ports(text: object, port: int | None) -> bool:
    if port is None:
        return False
    low, _, high = str(text).partition(":")
    return int(low) <= port <= int(high or low)


def _addrtype(ip: IPAddress, space: Space) -> str:
    if space.is_local(ip):
        return "LOCAL"
    if ip.is_multicast:
        return "MULTICAST"
    if ip.version == 4 and (
        ip == ipaddress.IPv4Address("255.255.255.255")
        or any(a.network.broadcast_address == ip for _, a in space.addresses() if a.version == 4)
    ):
        return "BROADCAST"
    return "UNICAST"


def _holds(name: str, value: Any, ctx: Context, mark: int) -> bool:
    packet = ctx.packet
    if name in ("source", "destination"):
        ip = packet.src if name == "source" else packet.dst
        net = ipaddress.ip_network(str(value), strict=False)
        return net.version == ip.version and ip in net
    if name == "in_interface":
        return ctx.in_dev == str(value)
    if name == "out_interface":
        return ctx.out_dev == str(value)
    if name == "protocol":
        if value == "all":
            return True
        proto = packet.proto
        if proto == "icmp" and packet.family == 6:
            proto = "icmpv6"
        return bool(value == proto)
    if name == "sport":
        return _in_ports(value, packet.sport)
    if name == "dport":
        return _in_ports(value, packet.dport)
    if name == "src_type":
        return _addrtype(packet.src, ctx.space) == str(value)
    if name == "dst_type":
        return _addrtype(packet.dst, ctx.space) == str(value)
    if name == "ctstate":
        return bool(set(value) & ctx.ctstate)
    if name == "mark":
        want, mask = _value_mask(str(value))
        return (mark & mask) == want
    raise ValueError(f"explain does not know the match {name}")
