"""The firewall: chains of the topology's own, rules (data, see nsgen.kinds.rules) and the
tutorial's masquerade, spelled by the iptables backend (nsgen.backends.iptables and
templates/kinds/firewall.j2).

Every rule carries the topology's tag, own chains carry its name, and teardown removes
exactly those: nothing is ever flushed but nsgen's own chains."""

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

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.model import Topology
    from nsgen.status import Observer, RowState

TEMPLATE = "kinds/firewall.j2"


@dataclass(frozen=True)
class ChainArgs(Args):
    table: str
    name: str


@dataclass(frozen=True)
class RuleArgs(Args):
    rule: Rule
    tag: str

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


def _firewall_snapshot(live: LiveState, netns: str) -> dict[str, Any]:
    return {"iptables": live.iptables_rules(netns)}


class ChainKind(Kind):
    name = "chain"
    template = TEMPLATE
    lane = "firewall"
    group = "firewall"
    summary = "iptables"
    rows = ("chain",)
    tools = ("iptables",)
    preflight = ("chain_absent",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            for chain in spec.iptables.chains:
                args = ChainArgs(netns, chain.table, chain.name)
                yield Step(
                    "chain",
                    f"create iptables chain {chain.name} in table {chain.table}{in_(netns)}",
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
            found = status.live.iptables_has(a.netns, a.table, a.name, None)
            return ("present", "") if found else ("missing", "")

        status.check("chain", a.netns, f"{a.table} {a.name}", how)

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

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            own = {(c.table, c.name) for c in spec.iptables.chains}
            for rule in spec.iptables.rules:
                in_own_chain = (rule.table, rule.chain) in own
                args = RuleArgs(netns, rule, ctx.tag)
                yield Step(
                    "rule",
                    f"{'insert into' if rule.insert else 'append to'} {rule.table} {rule.chain}: "
                    f"{rule_text(rule)}{in_(netns)}",
                    ""
                    if in_own_chain or netns != HOST
                    else f"The rule carries the comment {ctx.tag}, so teardown deletes exactly it.",
                    args,
                    namespace_owner(netns)
                    or (Owner("chain", rule.chain) if in_own_chain else None),
                )
                if netns == HOST and not in_own_chain:
                    yield Precondition("rule_absent", TEMPLATE, args)

    def validate(self, topology: Topology) -> list[Problem]:
        """A rule that jumps (or goes) to a chain needs that chain declared in its table."""
        problems = []
        for netns, spec in topology.spaces():
            base = HOST if netns == HOST else f"namespaces.{netns}"
            own = {(c.table, c.name) for c in spec.iptables.chains}
            for j, rule in enumerate(spec.iptables.rules):
                target = rule.target
                if target in BUILTIN_TARGETS or (rule.table, target) in own:
                    continue
                key = "jump" if rule.jump is not None else "goto"
                problems.append(
                    Problem(
                        f"{base}.iptables.rules[{j}].{key}",
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
            found = status.live.iptables_has(a.netns, a.table, a.chain, words)
            return ("present", "") if found else ("missing", "")

        status.check("rule", a.netns, f"{a.table} {a.chain} {rule_text(a.rule)}", how)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _firewall_snapshot(live, netns)


class MasqueradeKind(Kind):
    name = "masquerade"
    template = TEMPLATE
    lane = "firewall"
    group = "firewall"
    summary = "iptables"
    rows = ("masquerade",)
    tools = ("iptables",)
    preflight = ("masquerade_absent",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            for masq in spec.masquerade:
                args = MasqueradeArgs(netns, masq.source, masq.out, ctx.tag)
                yield Step(
                    "masquerade",
                    f"masquerade {masq.source} out of {masq.out}",
                    f"Hosts outside do not know the way back to {masq.source}. Source NAT gives "
                    f"leaving packets the address of {masq.out}, so replies come back and are "
                    f"translated back. The rule carries the comment {ctx.tag} so teardown can "
                    "find exactly this rule.",
                    args,
                    namespace_owner(netns),
                )
                if netns == HOST:
                    yield Precondition("masquerade_absent", TEMPLATE, args)

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, MasqueradeArgs)
        want = ["-A", "POSTROUTING", "-s", a.source, "-o", a.out, "-m", "comment"]
        want += ["--comment", a.tag, "-j", "MASQUERADE"]

        def option(rule: list[str], name: str) -> str | None:
            return rule[rule.index(name) + 1] if name in rule[:-1] else None

        def how() -> RowState:
            rules = status.live.nat_postrouting(a.netns)
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
