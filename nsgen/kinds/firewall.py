"""The firewall: chains of the topology's own, rules (data, see nsgen.kinds.rules) and the
tutorial's masquerade, spelled by one of two backends: iptables (nsgen.backends.iptables and
templates/kinds/firewall.j2) or nftables (nsgen.backends.nftables and
templates/kinds/firewall-nft.j2), as the plan's context says.

With iptables, every rule carries the topology's tag, own chains carry its name, and teardown
removes exactly those: nothing is ever flushed but nsgen's own chains. IPv4 and IPv6 have a
firewall each (iptables and ip6tables), as they have in the kernel: each step installs a chain,
a rule or a masquerade in one family. A rule or chain that belongs to both (`family: both`, or
an own chain used by rules of both families) is planned as two steps, one per family, the way
Docker and kube-proxy install theirs twice.

With nftables, every namespace with rules gets a table of the topology's own
(`inet nsgen_<topology>`), created and filled in one transaction in the batched style, and
teardown deletes that table. One `inet` table holds both families: a rule is planned once,
and in a topology with IPv6 a rule of one family that matches no address says which
(`meta nfproto ipv6`; see nsgen.backends.nftables.family_match)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsgen.backends import nftables as nft
from nsgen.backends.iptables import rule_text, rule_words
from nsgen.errors import Problem
from nsgen.fields import BUILTIN_CHAINS, HOST
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
from nsgen.kinds.rules import BUILTIN_TARGETS, Iptables, Rule, expanded_rules
from nsgen.names import near_name, peer_name

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.model import Namespace, Topology
    from nsgen.status import Observer, RowState

TEMPLATE = "kinds/firewall.j2"
NFT_TEMPLATE = "kinds/firewall-nft.j2"


# ---- step arguments: iptables ---------------------------------------------------------------

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


# ---- step arguments: nftables ----------------------------------------------------------------


@dataclass(frozen=True)
class NftArgs(Args):
    """Where an nftables step acts: the topology's table in one namespace."""

    family: str
    table: str
    tag: str

    @property
    def comment(self) -> str:
        return nft.quoted(self.tag)


@dataclass(frozen=True)
class NftTableArgs(NftArgs):
    bases: tuple[nft.BaseChain, ...]
    counts: tuple[int, ...]
    """How many rules each base chain holds once the table is filled."""


@dataclass(frozen=True)
class NftChainArgs(NftArgs):
    name: str
    """The chain's name in the table (`nat-KUBE-SVC-WEB`)."""
    count: int


@dataclass(frozen=True)
class NftMap:
    name: str
    type: str
    elements: tuple[str, ...]


@dataclass(frozen=True)
class NftRuleArgs(NftArgs):
    rule: Rule
    chain: str
    """The chain's name in the table."""
    expr: str
    map: NftMap | None
    nth: int
    """How many rules of its chain, planned before it, have the same verdict (status counts)."""
    text: str = ""
    """The rule as a reader writes it (its status row's name)."""

    @property
    def insert(self) -> bool:
        return self.rule.insert


@dataclass(frozen=True)
class NftMasqueradeArgs(NftArgs):
    source: str
    out: str
    expr: str
    nth: int


@dataclass(frozen=True)
class ForwardArgs(Args):
    """The root namespace routes between these interfaces of its own (bridges, uplinks)."""

    interfaces: tuple[str, ...]


def _firewall_snapshot(live: LiveState, netns: str) -> dict[str, Any]:
    return {
        "iptables": live.iptables_rules(netns),
        "ip6tables": live.iptables_rules(netns, 6),
        "nftables": live.nft_ruleset(netns),
    }


def _base(netns: str) -> str:
    return HOST if netns == HOST else f"namespaces.{netns}"


def _shown_families(families: tuple[int, ...]) -> str:
    return " and ".join(f"IPv{f}" for f in families)


def _targets(rule: Rule) -> list[tuple[str, str]]:
    """Where a rule sends packets, by field path: its jump or goto, or its dispatch's entries."""
    if rule.dispatch is None:
        return [("jump" if rule.jump is not None else "goto", rule.target)]
    return [
        (f"dispatch.entries[{i}].{'jump' if e.jump is not None else 'goto'}", e.target)
        for i, e in enumerate(rule.dispatch.entries)
    ]


def chain_families(spec: Namespace) -> dict[tuple[str, str], tuple[int, ...]]:
    """The families each own chain of a namespace exists in, by (table, name): its `family`,
    else every family of the rules that go into it or jump to it (or whose dispatch leads to
    it), else IPv4."""
    used: dict[tuple[str, str], set[int]] = {}
    declared = {(c.table, c.name): c for c in spec.iptables.chains}
    for rule in spec.iptables.rules:
        for key in ((rule.table, rule.chain), *((rule.table, t) for _, t in _targets(rule))):
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


def _has_firewall(spec: Any) -> bool:
    return bool(spec.iptables.chains or spec.iptables.rules or spec.masquerade)


def _nft_place(ctx: PlanContext) -> tuple[str, str, str]:
    """The family and name of the topology's table, and the comment of its rules."""
    return nft.FAMILY, nft.table_name(ctx.topology.name), ctx.tag


def _nft_owner(ctx: PlanContext, netns: str) -> Owner:
    """Everything in the topology's table goes with it (or with its namespace)."""
    return namespace_owner(netns) or Owner(
        "table", f"{nft.FAMILY} {nft.table_name(ctx.topology.name)}"
    )


def _nft_counts(firewall: Iptables, masquerades: int) -> dict[tuple[str, str], int]:
    """How many rules each chain holds in nftables: one per rule (a dispatch is one rule)."""
    counts: dict[tuple[str, str], int] = {}
    for rule in firewall.rules:
        counts[(rule.table, rule.chain)] = counts.get((rule.table, rule.chain), 0) + 1
    if masquerades:
        counts[("nat", "POSTROUTING")] = counts.get(("nat", "POSTROUTING"), 0) + masquerades
    return counts


class _Backend:
    """The firewall kinds' steps are spelled by the backend their arguments belong to."""

    def template_of(self, step: Step) -> str:
        return NFT_TEMPLATE if isinstance(step.args, NftArgs) else TEMPLATE

    def templates(self) -> tuple[str, ...]:
        return (TEMPLATE, NFT_TEMPLATE)

    def tools_for(self, step: Step) -> tuple[str, ...]:
        if isinstance(step.args, NftArgs):
            return ("nft",)
        assert isinstance(step.args, ChainArgs | RuleArgs | MasqueradeArgs)
        return (step.args.program,)

    def summary_of(self, step: Step) -> str:
        return "nftables" if isinstance(step.args, NftArgs) else "iptables"


def _table_rows(status: Observer, a: NftArgs, chains: list[tuple[str, int]]) -> None:
    """A 'chain' row per chain of the topology's table: present with as many rules as planned."""
    for name, count in chains:

        def how(name: str = name, count: int = count) -> RowState:
            table = status.live.nft_table(a.netns, a.family, a.table)
            if table is None or name not in table.chains:
                return "missing", "" if table is not None else f"no table {a.family} {a.table}"
            have = len(table.chains[name])
            if have != count:
                more = " (a rule was added)" if have > count else ""
                return "different", f"{have} rules, expected {count}{more}"
            return "present", ""

        status.check("chain", a.netns, f"{a.family} {a.table} {name}", how)


def _rule_row(
    status: Observer, row: str, a: NftArgs, chain: str, sig: str, nth: int, name: str
) -> None:
    def how() -> RowState:
        table = status.live.nft_table(a.netns, a.family, a.table)
        if table is None:
            return "missing", f"no table {a.family} {a.table}"
        rules = table.chains.get(chain)
        if rules is None:
            return "missing", f"no chain {chain}"
        found = [s for comment, s in rules if comment == a.tag and s == sig]
        return ("present", "") if len(found) > nth else ("missing", "")

    status.check(row, a.netns, name, how)


# ---- the kinds -------------------------------------------------------------------------------


class TableKind(Kind):
    """nftables only: the topology's table in one namespace, with the base chains its rules
    hang on. Also what preflight asks of the host's firewall, whatever the backend."""

    name = "table"
    template = NFT_TEMPLATE
    lane = "firewall"
    group = "firewall"
    summary = "nftables"
    rows = ("table", "chain")
    tools = ("nft",)
    preflight = ("table_absent", "forward_open")

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        host = ctx.topology.host
        if str(host.sysctls.get("net.ipv4.ip_forward", "")) == "1":  # the root namespace routes
            interfaces = (*host.bridges, *host.external)
            yield Precondition("forward_open", NFT_TEMPLATE, ForwardArgs(HOST, tuple(interfaces)))
        if ctx.firewall != "nftables":
            return
        for netns, spec in ctx.topology.spaces():
            if not _has_firewall(spec):
                continue
            counts = _nft_counts(spec.iptables, len(spec.masquerade))
            bases = nft.base_chains(
                {place for place in counts if place[1] in BUILTIN_CHAINS[place[0]]}
            )
            family, table, tag = _nft_place(ctx)
            args = NftTableArgs(
                netns,
                family,
                table,
                tag,
                tuple(bases),
                tuple(counts[_place(b.name)] for b in bases),
            )
            yield Step(
                "table",
                f"create nftables table {family} {table}{in_(netns)}",
                "A table of this topology's own holds all of its rules"
                + ("" if netns == HOST else f" in {netns}")
                + ": the base chains here hang on the same hooks as iptables' built-in chains ("
                + ", ".join(b.name for b in bases)
                + "), and no other table (the user's, Docker's, firewalld's) is touched."
                + (
                    " Teardown deletes exactly this table, with everything in it."
                    if netns == HOST
                    else ""
                ),
                args,
                namespace_owner(netns),
            )
            if netns == HOST:
                yield Precondition("table_absent", NFT_TEMPLATE, args)

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, NftTableArgs)

        def how() -> RowState:
            found = status.live.nft_table(a.netns, a.family, a.table) is not None
            return ("present", "") if found else ("missing", "")

        status.check("table", a.netns, f"{a.family} {a.table}", how)
        _table_rows(status, a, [(b.name, n) for b, n in zip(a.bases, a.counts, strict=True)])

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _firewall_snapshot(live, netns)


def _place(name: str) -> tuple[str, str]:
    table, _, chain = name.partition("-")
    return table, chain


class ChainKind(_Backend, Kind):
    name = "chain"
    template = TEMPLATE
    lane = "firewall"
    group = "firewall"
    summary = "iptables"
    rows = ("chain",)
    tools = ("iptables",)
    preflight = ("chain_absent",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        if ctx.firewall == "nftables":
            yield from self._plan_nft(ctx)
            return
        for netns, spec in ctx.topology.spaces():
            families = chain_families(spec)
            for chain in spec.iptables.chains:
                if chain.inline:  # its rules are written where dispatches lead to it
                    continue
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

    def _plan_nft(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            counts = _nft_counts(spec.iptables, 0)
            for chain in spec.iptables.chains:
                name = nft.chain_name(chain.table, chain.name)
                yield Step(
                    "chain",
                    f"create chain {name}{in_(netns)}",
                    "",
                    NftChainArgs(
                        netns,
                        *_nft_place(ctx),
                        name,
                        counts.get((chain.table, chain.name), 0),
                    ),
                    _nft_owner(ctx, netns),
                )

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        if isinstance(a, NftChainArgs):
            _table_rows(status, a, [(a.name, a.count)])
            return
        assert isinstance(a, ChainArgs)

        def how() -> RowState:
            found = status.live.iptables_has(a.netns, a.table, a.name, None, a.family)
            return ("present", "") if found else ("missing", "")

        status.check("chain", a.netns, f"{a.table} {a.name}{_family_words(a.family)}", how)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _firewall_snapshot(live, netns)


class RuleKind(_Backend, Kind):
    name = "rule"
    template = TEMPLATE
    lane = "firewall"
    group = "firewall"
    summary = "iptables"
    rows = ("rule",)
    tools = ("iptables",)
    preflight = ("rule_absent",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        if ctx.firewall == "nftables":
            yield from self._plan_nft(ctx)
            return
        for netns, spec in ctx.topology.spaces():
            own = {(c.table, c.name) for c in spec.iptables.chains}
            for rule in expanded_rules(spec.iptables):
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

    def _plan_nft(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            seen: dict[tuple[str, str], int] = {}
            for rule in spec.iptables.rules:
                chain = nft.chain_name(rule.table, rule.chain)
                sig = nft.signature(rule)
                nth = seen.get((chain, sig), 0)
                seen[(chain, sig)] = nth + 1
                dispatch = rule.dispatch
                table_map = None
                if dispatch is not None and dispatch.by != "random":
                    table_map = NftMap(
                        nft.map_name(rule.table, dispatch),
                        nft.map_type(dispatch),
                        tuple(nft.element(e, dispatch, rule.table) for e in dispatch.entries),
                    )
                args = NftRuleArgs(
                    netns,
                    *_nft_place(ctx),
                    rule,
                    chain,
                    nft.rule_expr(rule, ctx.tag, ctx.ipv6),
                    table_map,
                    nth,
                    nft.rule_text(rule, ctx.ipv6),
                )
                yield Step(
                    "rule",
                    f"{'insert into' if rule.insert else 'append to'} {chain}: "
                    f"{args.text}{in_(netns)}",
                    "",
                    args,
                    _nft_owner(ctx, netns),
                )

    def validate(self, topology: Topology) -> list[Problem]:
        """A rule that jumps (or goes) to a chain needs that chain declared in its table, in
        the rule's families; a dispatch's entries lead to declared chains; an inline chain is
        entered only through dispatch entries (jump), and its rules can be written in their
        place; a rule's addresses, protocol and REJECT type are of one family, the one it is
        installed in."""
        problems = []
        for netns, spec in topology.spaces():
            base = _base(netns)
            problems += _check_rules(f"{base}.iptables", spec.iptables)
            own = chain_families(spec)
            for j, rule in enumerate(spec.iptables.rules):
                path = f"{base}.iptables.rules[{j}]"
                problems += _family_problems(rule, path)
                for place, chain in (("chain", rule.chain), *_targets(rule)):
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
        return problems

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        if isinstance(a, NftRuleArgs):
            sig = nft.signature(a.rule)
            _rule_row(status, "rule", a, a.chain, sig, a.nth, f"{a.chain} {a.text}")
            return
        assert isinstance(a, RuleArgs)
        words = a.words

        def how() -> RowState:
            found = status.live.iptables_has(a.netns, a.table, a.chain, words, a.family)
            return ("present", "") if found else ("missing", "")

        name = f"{a.table} {a.chain}{_family_words(a.family)} {rule_text(a.rule)}"
        status.check("rule", a.netns, name, how)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _firewall_snapshot(live, netns)


def _check_rules(base: str, firewall: Iptables) -> list[Problem]:
    problems: list[Problem] = []
    own = {(c.table, c.name) for c in firewall.chains}
    inline = {(c.table, c.name) for c in firewall.chains if c.inline}
    keys: dict[tuple[str, str], set[str]] = {}
    maps: dict[tuple[str, str], str] = {}
    for j, rule in enumerate(firewall.rules):
        where = f"{base}.rules[{j}]"
        dispatch = rule.dispatch
        if dispatch is None:
            target = rule.target
            key = "jump" if rule.jump is not None else "goto"
            if (rule.table, target) in inline:
                problems.append(
                    Problem(
                        f"{where}.{key}",
                        f"{target} is an inline chain: only dispatch entries lead to it",
                    )
                )
            elif target not in BUILTIN_TARGETS and (rule.table, target) not in own:
                problems.append(
                    Problem(
                        f"{where}.{key}",
                        f"{target} is not a chain declared in table {rule.table} "
                        "(under iptables.chains), nor a target nsgen knows",
                    )
                )
            continue
        if dispatch.name is not None:
            place = (rule.table, dispatch.name)
            if place in maps:
                problems.append(
                    Problem(
                        f"{where}.dispatch.name",
                        f"a dispatch named {dispatch.name} is already in table {rule.table} "
                        f"(at {maps[place]})",
                    )
                )
            maps.setdefault(place, where)
        for i, entry in enumerate(dispatch.entries):
            key = "jump" if entry.jump is not None else "goto"
            at = f"{where}.dispatch.entries[{i}].{key}"
            if (rule.table, entry.target) not in own:
                problems.append(
                    Problem(at, f"{entry.target} is not a chain declared in table {rule.table}")
                )
            elif (rule.table, entry.target) in inline:
                if entry.goto is not None:
                    problems.append(
                        Problem(at, f"{entry.target} is an inline chain: an entry jumps to it")
                    )
                keys.setdefault((rule.table, entry.target), set()).update(dispatch.key_fields())
    for j, rule in enumerate(firewall.rules):
        if (rule.table, rule.chain) not in inline:
            continue
        where = f"{base}.rules[{j}]"
        if rule.insert or rule.goto is not None or rule.jump == "RETURN" or rule.dispatch:
            what = (
                "insert"
                if rule.insert
                else "goto"
                if rule.goto is not None
                else "dispatch"
                if rule.dispatch
                else "RETURN"
            )
            problems.append(
                Problem(
                    where,
                    f"a rule of the inline chain {rule.chain} cannot use {what}: its rules are "
                    "also written in place of the entries that lead to it",
                )
            )
        for field in sorted(keys.get((rule.table, rule.chain), set())):
            for matches in (rule, rule.not_):
                if matches is not None and getattr(matches, field) is not None:
                    problems.append(
                        Problem(
                            f"{where}.{field}",
                            f"the dispatch that leads to {rule.chain} already matches {field}",
                        )
                    )
    return problems


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


class MasqueradeKind(_Backend, Kind):
    name = "masquerade"
    template = TEMPLATE
    lane = "firewall"
    group = "firewall"
    summary = "iptables"
    rows = ("masquerade",)
    tools = ("iptables",)
    preflight = ("masquerade_absent", "address_family_on")

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            # what status counts: rules before this one in nat-POSTROUTING that look the same
            seen = [
                nft.signature(r)
                for r in spec.iptables.rules
                if (r.table, r.chain) == ("nat", "POSTROUTING")
            ]
            for masq in spec.masquerade:
                sig = nft.masquerade_signature(masq.out)
                nth = seen.count(sig)
                seen.append(sig)
                nat = (
                    "Source NAT" if ":" not in masq.source else "Source NAT (NAT66, as Docker does)"
                )
                why = (
                    f"Hosts outside do not know the way back to {masq.source}. {nat} gives "
                    f"leaving packets the address of {masq.out}, so replies come back and are "
                    "translated back."
                )
                if ctx.firewall == "nftables":
                    expr = nft.masquerade_expr(masq.source, masq.out, ctx.tag)
                    yield Step(
                        "masquerade",
                        f"masquerade {masq.source} out of {masq.out}{in_(netns)}",
                        why,
                        NftMasqueradeArgs(
                            netns, *_nft_place(ctx), masq.source, masq.out, expr, nth
                        ),
                        _nft_owner(ctx, netns),
                    )
                    continue
                args = MasqueradeArgs(netns, masq.source, masq.out, ctx.tag)
                yield Step(
                    "masquerade",
                    f"masquerade {masq.source} out of {masq.out}",
                    f"{why} The rule carries the comment {ctx.tag} so teardown can find exactly "
                    "this rule.",
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
        if isinstance(a, NftMasqueradeArgs):
            _rule_row(
                status,
                "masquerade",
                a,
                "nat-POSTROUTING",
                nft.masquerade_signature(a.out),
                a.nth,
                f"-s {a.source} -o {a.out}",
            )
            return
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
