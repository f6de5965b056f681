"""Network namespaces: each named namespace of the topology, created with its loopback up.

Deleting a namespace takes everything inside it along (its links, addresses, routes, rules
and sysctls), so most steps inside one need no undo of their own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsgen.kinds.base import Args, Kind, Lane, PlanContext, Planned, Precondition, Step

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.status import Observer

TEMPLATE = "kinds/namespaces.j2"


@dataclass(frozen=True)
class NamespaceArgs(Args):
    loopback: bool


class NamespaceKind(Kind):
    name = "namespace"
    steps = ("namespace", "loopback")
    template = TEMPLATE
    lane = "netns"
    group = "namespaces"
    summary = "lo up"
    rows = ("namespace", "loopback")
    preflight = ("netns_absent",)

    def lane_of(self, step: Step) -> Lane:
        return "ip" if step.kind == "loopback" else "netns"

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.namespaces.items():
            loopback = spec.loopback is not False
            yield Step(
                "namespace",
                f"create namespace {netns}",
                "A network namespace is a separate copy of the network stack: its own links, "
                "addresses, routes and firewall. This is what a container gets."
                + (
                    " Its loopback 'lo' starts down; bring it up so local traffic works."
                    if loopback
                    else ""
                ),
                NamespaceArgs(netns, loopback),
            )
            yield Precondition("netns_absent", TEMPLATE, Args(netns))

    def observe(self, step: Step, status: Observer) -> None:
        if step.kind != "namespace":
            return  # a batched plan's loopback part; status reads the unbatched plan
        assert isinstance(step.args, NamespaceArgs)
        netns = step.args.netns
        status.namespace_row(netns)
        if step.args.loopback:
            status.check("loopback", netns, "lo", lambda: status.link_state(netns, "lo"))

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return {"link": live.link_list(netns)}

    def declared_links(self, step: Step) -> list[tuple[str, str]]:
        return [(step.args.netns, "lo")] if step.kind == "namespace" else []
