"""The firewall: chains of the topology's own, rules (data, see nsgen.kinds.rules) and the
tutorial's masquerade, spelled by the iptables backend (nsgen.backends.iptables and
templates/kinds/firewall.j2).

Every rule carries the topology's tag, own chains carry its name, and teardown removes
exactly those: nothing is ever flushed but nsgen's own chains.

IPv4 and IPv6 have a firewall each (iptables and ip6tables), as they have in the kernel:
each step installs a chain, a rule or a masquerade in one family. A rule or chain that
belongs to both (`family: both`, or an own chain used by rules of both families) is planned
as two steps, one per family, the way Docker and kube-proxy install theirs twice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsgen.backends.iptables import rule_text, rule_words
from nsgen.errors import Problem
from nsgen.fields import HOST
from nsgen.kinds.base import (
    Args,
    Kind,
    Owner,
    PlanContext,
    Planned,
    Precondition,
    Step,
    in_,
    namespace_owner,
)
from nsgen.kinds.rules import BUILTIN_TARGETS, Rule
from nsgen.names import near_name, peer_name

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.model import Namespace, Topology
    from nsgen.status import Observer, RowState

TEMPLATE = "kinds/firewall.j2"

PROGRAMS = {4: "iptables", 6: "ip6tables"}
"""The program that holds each family's firewall."""


def _family_words(family: int) -> str:
    """What a title adds for an IPv6 step (IPv4 steps read as they always have)."""
    return " (IPv6)" if family == 6 else ""


@dataclass(frozen=True)
class ChainArgs(Args):
    table: str
    name: str
    family: int

    @property
    def program(self) -> str:
        return PROGRAMS[self.family]


@dataclass(frozen=True)
class RuleArgs(Args):
    rule: Rule
    tag: str
    family: int

    @property
    def program(self) -> str:
        return PROGRAMS[self.family]

    @property
    def table(self) -> str:
        return self.rule.table

    @property
    def chain(self) -> str:
        return self.rule.chain

    @property
    def insert(self) -> bool:
        return self.rule.insert

    @property
    def words(self) -> list[str]:
        """The rule as iptables' words after `-A CHAIN`, the tag included."""
        return rule_words(self.rule, self.tag)


@dataclass(frozen=True)
class MasqueradeArgs(Args):
    source: str
    out: str
    tag: str

    @property
    def family(self) -> int:
        return 6 if ":" in self.source else 4

    @property
    def program(self) -> str:
        return PROGRAMS[self.family]


@dataclass(frozen=True)
class LinkAddressArgs(Args):
    """An external link that must hold an address of `family` (preflight)."""

    dev: str
    family: int
    source: str


def _firewall_snapshot(live: LiveState, netns: str) -> dict[str, Any]:
    return {"iptables": live.iptables_rules(netns), "ip6tables": live.iptables_rules(netns, 6)}


def _base(netns: str) -> str:
    return HOST if netns == HOST else f"namespaces.{netns}"


def _shown_families(families: tuple[int, ...]) -> str:
    return " and ".join(f"IPv{f}" for f in families)


def chain_families(spec: Namespace) -> dict[tuple[str, str], tuple[int, ...]]:
    """The families each own chain of a namespace exists in, by (table, name): its `family`,
    else every family of the rules that go into it or jump to it, else IPv4."""
    used: dict[tuple[str, str], set[int]] = {}
    declared = {(c.table, c.name): c for c in spec.iptables.chains}
    for rule in spec.iptables.rules:
        for key in ((rule.table, rule.chain), (rule.table, rule.target)):
            if key in declared:
                used.setdefault(key, set()).update(rule.families)
    families: dict[tuple[str, str], tuple[int, ...]] = {}
    for key, chain in declared.items():
        if chain.family == "both":
            families[key] = (4, 6)
        elif chain.family is not None:
            families[key] = (chain.family,)
        else:
            families[key] = tuple(sorted(used.get(key, {4})))
    return families


def link_addresses(topology: Topology, netns: str) -> dict[str, list[str]]:
    """The addresses the topology puts on each link of a namespace, by link name."""
    found: dict[str, list[str]] = {}
    for space, spec in topology.spaces():
        if space == netns:
            for name, bridge in spec.bridges.items():
                found.setdefault(name, []).extend(bridge.addresses)
            for name, vxlan in spec.vxlans.items():
                found.setdefault(name, []).extend(vxlan.addresses)
        for iface in spec.interfaces:
            if space == netns:
                found.setdefault(near_name(space, iface), []).extend(iface.addresses)
            if iface.peer.netns == netns:
                found.setdefault(peer_name(space, iface), []).extend(iface.peer.addresses)
    return found


class ChainKind(Kind):
    name = "chain"
    template = TEMPLATE
    lane = "firewall"
    group = "firewall"
    summary = "iptables"
    rows = ("chain",)
    tools = ("iptables",)
    preflight = ("chain_absent",)

    def tools_for(self, step: Step) -> tuple[str, ...]:
        assert isinstance(step.args, ChainArgs)
        return (step.args.program,)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            families = chain_families(spec)
            for chain in spec.iptables.chains:
                for family in families[(chain.table, chain.name)]:
                    args = ChainArgs(netns, chain.table, chain.name, family)
                    yield Step(
                        "chain",
                        f"create {args.program} chain {chain.name} in table {chain.table}"
                        f"{in_(netns)}",
                        "A chain of this topology's own: its rules are kept apart from everyone "
                        "else's, and teardown empties and deletes exactly this chain.",
                        args,
                        namespace_owner(netns),
                    )
                    if netns == HOST:
                        yield Precondition("chain_absent", TEMPLATE, args)

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, ChainArgs)

        def how() -> RowState:
            found = status.live.iptables_has(a.netns, a.table, a.name, None, a.family)
            return ("present", "") if found else ("missing", "")

        status.check("chain", a.netns, f"{a.table} {a.name}{_family_words(a.family)}", how)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _firewall_snapshot(live, netns)


class RuleKind(Kind):
    name = "rule"
    template = TEMPLATE
    lane = "firewall"
    group = "firewall"
    summary = "iptables"
    rows = ("rule",)
    tools = ("iptables",)
    preflight = ("rule_absent",)

    def tools_for(self, step: Step) -> tuple[str, ...]:
        assert isinstance(step.args, RuleArgs)
        return (step.args.program,)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            own = {(c.table, c.name) for c in spec.iptables.chains}
            for rule in spec.iptables.rules:
                in_own_chain = (rule.table, rule.chain) in own
                for family in rule.families:
                    args = RuleArgs(netns, rule, ctx.tag, family)
                    yield Step(
                        "rule",
                        f"{'insert into' if rule.insert else 'append to'} {rule.table} "
                        f"{rule.chain}{_family_words(family)}: {rule_text(rule)}{in_(netns)}",
                        ""
                        if in_own_chain or netns != HOST
                        else f"The rule carries the comment {ctx.tag}, so teardown deletes "
                        "exactly it.",
                        args,
                        namespace_owner(netns)
                        or (Owner("chain", rule.chain) if in_own_chain else None),
                    )
                    if netns == HOST and not in_own_chain:
                        yield Precondition("rule_absent", TEMPLATE, args)

    def validate(self, topology: Topology) -> list[Problem]:
        """A rule that jumps (or goes) to a chain needs that chain declared in its table, in
        the rule's families; a rule's addresses, protocol and REJECT type are of one family,
        the one it is installed in."""
        problems = []
        for netns, spec in topology.spaces():
            base = _base(netns)
            own = chain_families(spec)
            for j, rule in enumerate(spec.iptables.rules):
                path = f"{base}.iptables.rules[{j}]"
                problems += _family_problems(rule, path)
                target = rule.target
                key = "jump" if rule.jump is not None else "goto"
                for place, chain in (("chain", rule.chain), (key, target)):
                    have = own.get((rule.table, chain))
                    missing = [f for f in rule.families if have is not None and f not in have]
                    if missing:
                        problems.append(
                            Problem(
                                f"{path}.{place}",
                                f"chain {chain} is declared for {_shown_families(have or ())} "
                                f"only, but the rule is {_shown_families(rule.families)} (set "
                                "the chain's family, or the rule's)",
                            )
                        )
                if target in BUILTIN_TARGETS or (rule.table, target) in own:
                    continue
                problems.append(
                    Problem(
                        f"{path}.{key}",
                        f"{target} is not a chain declared in table {rule.table} "
                        "(under iptables.chains), nor a target nsgen knows",
                    )
                )
        return problems

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, RuleArgs)
        words = a.words

        def how() -> RowState:
            found = status.live.iptables_has(a.netns, a.table, a.chain, words, a.family)
            return ("present", "") if found else ("missing", "")

        name = f"{a.table} {a.chain}{_family_words(a.family)} {rule_text(a.rule)}"
        status.check("rule", a.netns, name, how)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _firewall_snapshot(live, netns)


_ICMP = {"icmp": 4, "icmpv6": 6}


def _family_problems(rule: Rule, path: str) -> list[Problem]:
    """A rule whose addresses are of two families, or of another family than it says, or
    whose protocol or REJECT type belongs to another family."""
    problems: list[Problem] = []
    addresses = rule.addresses()
    if addresses:
        first_field, first_value, first_family = addresses[0]
        for field, value, family in addresses[1:]:
            if family != first_family:
                problems.append(
                    Problem(
                        f"{path}.{field}",
                        f"{value} is IPv{family}, but {first_field} {first_value} is "
                        f"IPv{first_family}: a rule's addresses are of one family",
                    )
                )
                return problems
        if rule.family is not None and rule.families != (first_family,):
            problems.append(
                Problem(
                    f"{path}.family",
                    f"is {rule.family}, but {first_field} {first_value} is IPv{first_family}: "
                    "a rule with an address belongs to that address's family",
                )
            )
            return problems
    families = rule.families
    wanted = _ICMP.get(str(rule.protocol))
    if wanted is not None and families != (wanted,):
        other = "icmpv6" if rule.protocol == "icmp" else "icmp"
        problems.append(
            Problem(
                f"{path}.protocol",
                f"{rule.protocol} is IPv{wanted}'s, but the rule is {_shown_families(families)}"
                + (f" (IPv{6 if wanted == 4 else 4} uses {other})" if len(families) == 1 else "")
                + ("; write one rule per family" if len(families) > 1 else ""),
            )
        )
    reject = rule.reject_with
    if reject is not None and reject != "tcp-reset":
        wanted = 6 if reject.startswith("icmp6-") else 4
        if families != (wanted,):
            problems.append(
                Problem(
                    f"{path}.reject_with",
                    f"{reject} is an IPv{wanted} error, but the rule is "
                    f"{_shown_families(families)} (IPv6's are icmp6-*, IPv4's icmp-*; "
                    "tcp-reset is both's)",
                )
            )
    return problems


class MasqueradeKind(Kind):
    name = "masquerade"
    template = TEMPLATE
    lane = "firewall"
    group = "firewall"
    summary = "iptables"
    rows = ("masquerade",)
    tools = ("iptables",)
    preflight = ("masquerade_absent", "address_family_on")

    def tools_for(self, step: Step) -> tuple[str, ...]:
        assert isinstance(step.args, MasqueradeArgs)
        return (step.args.program,)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            for masq in spec.masquerade:
                args = MasqueradeArgs(netns, masq.source, masq.out, ctx.tag)
                nat = "Source NAT" if args.family == 4 else "Source NAT (NAT66, as Docker does)"
                yield Step(
                    "masquerade",
                    f"masquerade {masq.source} out of {masq.out}",
                    f"Hosts outside do not know the way back to {masq.source}. {nat} gives "
                    f"leaving packets the address of {masq.out}, so replies come back and are "
                    f"translated back. The rule carries the comment {ctx.tag} so teardown can "
                    "find exactly this rule.",
                    args,
                    namespace_owner(netns),
                )
                if netns == HOST:
                    yield Precondition("masquerade_absent", TEMPLATE, args)
                    if args.family == 6 and masq.out in spec.external:
                        yield Precondition(
                            "address_family_on",
                            TEMPLATE,
                            LinkAddressArgs(netns, masq.out, 6, masq.source),
                        )

    def validate(self, topology: Topology) -> list[Problem]:
        """NAT66 gives packets an IPv6 address of the interface they leave through, which an
        interface nsgen creates must be declared with (an external one is checked by
        preflight). (An IPv4 masquerade out of an interface without an IPv4 address has
        always been accepted, and is left so.)"""
        problems = []
        for netns, spec in topology.spaces():
            addresses: dict[str, list[str]] | None = None  # read only where needed: it is
            # linear in the topology, and a big topology has thousands of namespaces
            for j, masq in enumerate(spec.masquerade):
                if ":" not in masq.source or masq.out in spec.external:
                    continue
                if addresses is None:
                    addresses = link_addresses(topology, netns)
                if not any(":" in a for a in addresses.get(masq.out, [])):
                    problems.append(
                        Problem(
                            f"{_base(netns)}.masquerade[{j}].out",
                            f"{masq.out} has no IPv6 address: masquerading {masq.source} "
                            f"(NAT66) gives leaving packets an IPv6 address of {masq.out}",
                        )
                    )
        return problems

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, MasqueradeArgs)
        want = ["-A", "POSTROUTING", "-s", a.source, "-o", a.out, "-m", "comment"]
        want += ["--comment", a.tag, "-j", "MASQUERADE"]

        def option(rule: list[str], name: str) -> str | None:
            return rule[rule.index(name) + 1] if name in rule[:-1] else None

        def how() -> RowState:
            rules = status.live.nat_postrouting(a.netns, a.family)
            if want in rules:
                return "present", ""
            for rule in rules:
                if option(rule, "-s") != a.source or option(rule, "-j") != "MASQUERADE":
                    continue
                if option(rule, "--comment") == a.tag:
                    if option(rule, "-o") != a.out:
                        return (
                            "different",
                            f"out is {option(rule, '-o') or 'any'}, expected {a.out}",
                        )
                    return "different", "rule is: " + " ".join(rule[2:])
                if option(rule, "-o") == a.out:
                    return "different", f"rule present without the comment {a.tag}"
            return "missing", ""

        status.check("masquerade", a.netns, f"-s {a.source} -o {a.out}", how)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _firewall_snapshot(live, netns)
