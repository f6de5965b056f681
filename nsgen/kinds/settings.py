"""Host settings: network sysctls. In the root namespace the previous value is recorded (once,
shared by every topology that changes it) and teardown puts it back; in a named namespace
the setting goes away with the namespace."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsgen.fields import HOST
from nsgen.kinds.base import Args, Kind, PlanContext, Planned, Step, in_, namespace_owner

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.status import Observer, RowState

TEMPLATE = "kinds/settings.j2"

SNAPSHOT_SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/ipv4/conf/all/rp_filter",
)
"""The sysctls every snapshot reads, whether or not a topology sets them."""


def _why(key: str, value: str) -> str:
    """What a learner should know about a sysctl nsgen sets."""
    if key.endswith(".ip_forward") or key.endswith(".forwarding"):
        return (
            "Forwarding lets the kernel pass packets from one interface to another, which a "
            "router (here: the namespaces' gateway) must do."
        )
    if key.endswith(".route_localnet"):
        device = key.split(".")[-2]
        return (
            f"The kernel routes packets with a loopback source (127.0.0.1) out of {device} "
            "only with route_localnet: the host's own connection to 127.0.0.1 on a published "
            "port is sent on to the container that way."
        )
    if key == "net.bridge.bridge-nf-call-iptables":
        return (
            "Frames bridged between two ports of one bridge pass iptables (br_netfilter), so "
            "rules can stop traffic inside one network."
        )
    return f"The topology asks for {key} = {value}."


@dataclass(frozen=True)
class SysctlArgs(Args):
    key: str
    value: str

    @property
    def path(self) -> str:
        return "/proc/sys/" + self.key.replace(".", "/")


class SysctlKind(Kind):
    name = "sysctl"
    template = TEMPLATE
    lane = "sysctl"
    group = "own"
    summary = "sysctls"
    rows = ("sysctl",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            for key, value in spec.sysctls.items():
                why = _why(key, str(value))
                if netns == HOST:
                    why += " The previous value is saved and teardown puts it back."
                yield Step(
                    "sysctl",
                    f"set {key}={value}{in_(netns)}",
                    why,
                    SysctlArgs(netns, key, str(value)),
                    namespace_owner(netns),
                )

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, SysctlArgs)
        paths = [
            s.args.path
            for s in status.plan.steps
            if isinstance(s.args, SysctlArgs) and s.args.netns == a.netns
        ]

        def how() -> RowState:
            actual = status.live.sysctls(a.netns, paths).get(a.path)
            if actual is None:
                return "missing", f"{a.path} does not exist"
            try:
                same = int(actual) == int(a.value)
            except ValueError:
                same = actual == a.value
            return (
                ("present", "") if same else ("different", f"value is {actual}, expected {a.value}")
            )

        status.check("sysctl", a.netns, f"{a.key}={a.value}", how)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return {"sysctl": live.sysctl_values(netns, SNAPSHOT_SYSCTLS)}
