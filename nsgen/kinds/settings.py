"""Host settings: network sysctls. In the root namespace the previous value is recorded (once,
shared by every topology that changes it) and teardown puts it back; in a named namespace
the setting goes away with the namespace.

IPv6 keeps two settings per namespace where IPv4 keeps one: writing
net.ipv6.conf.all.forwarding (or .disable_ipv6) also writes the `default` value new links
start with, and the value of every existing link. The `default` value is therefore recorded
and put back as well; a link whose own value differed from `all` before setup gets `all`'s
old value back (the kernel keeps no other record of it).

A named namespace declared with `ipv6: false` gets net.ipv6.conf.all.disable_ipv6 = 1 here:
the kernel removes every IPv6 address in it, ::1 included, and gives new links none."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsgen.errors import Problem
from nsgen.fields import HOST
from nsgen.kinds.base import Args, Kind, PlanContext, Planned, Step, in_, namespace_owner

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.model import Topology
    from nsgen.status import Observer, RowState

TEMPLATE = "kinds/settings.j2"

SNAPSHOT_SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/ipv4/conf/all/rp_filter",
    "net/ipv6/conf/default/forwarding",
    "net/ipv6/conf/all/disable_ipv6",
    "net/ipv6/conf/default/disable_ipv6",
)
"""The sysctls every snapshot reads, whether or not a topology sets them."""

SNAPSHOT_SYSCTL_GLOBS = ("net/ipv6/conf/*/forwarding",)
"""Per-link sysctls every snapshot reads, for every link there is: writing
net.ipv6.conf.all.forwarding changes each of them."""

DISABLE_IPV6 = "net.ipv6.conf.all.disable_ipv6"
"""What `ipv6: false` sets in a named namespace."""

_WRITES_DEFAULT = ("net.ipv6.conf.all.forwarding", "net.ipv6.conf.all.disable_ipv6")
"""Keys whose write also changes their `default` twin (see the module docstring)."""


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

    @property
    def companions(self) -> tuple[str, ...]:
        """Keys the kernel changes along with this one, saved before it is written and put
        back after it is restored (root namespace only)."""
        if self.netns == HOST and self.key in _WRITES_DEFAULT:
            return (self.key.replace(".all.", ".default."),)
        return ()


class SysctlKind(Kind):
    name = "sysctl"
    template = TEMPLATE
    lane = "sysctl"
    group = "own"
    summary = "sysctls"
    rows = ("sysctl",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            if netns != HOST and spec.ipv6 is False and DISABLE_IPV6 not in spec.sysctls:
                yield Step(
                    "sysctl",
                    f"set {DISABLE_IPV6}=1{in_(netns)}",
                    f"ipv6: false. The kernel removes every IPv6 address in {netns} (::1 "
                    "included) and gives new links none; its links were created without an "
                    "fe80:: address, so they never sent an IPv6 packet.",
                    SysctlArgs(netns, DISABLE_IPV6, "1"),
                    namespace_owner(netns),
                )
            for key, value in spec.sysctls.items():
                why = _why(key, str(value))
                if netns == HOST and key in _WRITES_DEFAULT:
                    twin = key.replace(".all.", ".default.")
                    why += (
                        f" The kernel also writes {twin} and the value of every link; the "
                        "previous values of both keys are saved and teardown puts them back."
                    )
                elif netns == HOST:
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

    def validate(self, topology: Topology) -> list[Problem]:
        """`ipv6: false` sets a sysctl of its own: the file may not set it otherwise."""
        problems = []
        for netns, spec in topology.namespaces.items():
            value = spec.sysctls.get(DISABLE_IPV6)
            if spec.ipv6 is False and value is not None and value != "1":
                problems.append(
                    Problem(
                        f"namespaces.{netns}.sysctls.{DISABLE_IPV6}",
                        f"is {value}, but ipv6: false sets it to 1: remove one of the two",
                    )
                )
        return problems

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        values = dict(live.sysctl_values(netns, SNAPSHOT_SYSCTLS))
        for pattern in SNAPSHOT_SYSCTL_GLOBS:
            values.update(live.sysctl_glob(netns, pattern))
        return {"sysctl": values}
