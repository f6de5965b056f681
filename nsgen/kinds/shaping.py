"""Traffic shaping: a queueing discipline on the way out of an interface (its egress), through
`tc`. A rate, with its burst and latency or queue limit, is a token bucket (`tbf`); delay,
jitter, loss, duplication and corruption are the network emulator (`netem`). With both,
netem is the root and the token bucket its child, the classic way to emulate a slow,
lossy link.

Shaping acts on packets leaving the interface: to shape both directions of a veth cable,
shape both of its ends (each in its own namespace). On the uplink (an external interface of
the root namespace) the original queueing discipline comes back when the shaping is
removed; preflight refuses an uplink that has one of the user's own, and a kernel without
the queueing discipline asked for (many have no sch_netem)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from nsgen.errors import Problem
from nsgen.fields import HOST, Strict
from nsgen.kinds.base import Args, Kind, PlanContext, Planned, Precondition, Step, in_
from nsgen.kinds.base import namespace_owner as owner_of
from nsgen.kinds.links import LinkName, link_names

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.model import Topology
    from nsgen.status import Observer, RowState

TEMPLATE = "kinds/shaping.j2"

_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2}
_TIME_UNITS = {"us": 1, "ms": 1000, "s": 1_000_000}


def _grammar(units: dict[str, int], what: str, example: str) -> Any:
    pattern = re.compile(r"([0-9]+(?:\.[0-9]+)?)(" + "|".join(units) + r")")

    def check(value: str) -> str:
        match = pattern.fullmatch(value)
        if match is None or float(match[1]) <= 0:
            raise ValueError(
                f"{value!r} is not a {what}: a number and one of {', '.join(units)} "
                f"(e.g. {example})"
            )
        return value

    return AfterValidator(check)


def _percent(value: str) -> str:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)%", value)
    if match is None or not 0 < float(match[1]) <= 100:
        raise ValueError(f"{value!r} is not a share of packets: above 0% and at most 100%")
    return value


Rate = Annotated[str, _grammar(_RATE_UNITS, "rate", "10mbit")]
Size = Annotated[str, _grammar(_SIZE_UNITS, "size in bytes", "32kb")]
Time = Annotated[str, _grammar(_TIME_UNITS, "time", "50ms")]
Percent = Annotated[str, AfterValidator(_percent)]


def _amount(value: str, units: dict[str, int]) -> float:
    unit = next(u for u in sorted(units, key=len, reverse=True) if value.endswith(u))
    return float(value[: -len(unit)]) * units[unit]


class Shaping(Strict):
    """How packets leave one interface: at most `rate` (a token bucket), and/or delayed, lost,
    duplicated or corrupted (the network emulator)."""

    rate: Rate | None = Field(None, description="Most bits per second, e.g. 10mbit (tc tbf).")
    burst: Size | None = Field(
        None,
        description="Bytes that may leave at once above the rate. Default: 10 ms at the rate, "
        "at least 3kb.",
    )
    latency: Time | None = Field(
        None, description="Longest a packet may wait for the bucket (default 50ms)."
    )
    limit: Size | None = Field(None, description="Bytes that may wait, instead of a latency.")
    delay: Time | None = Field(None, description="Added to every packet, e.g. 100ms (netem).")
    jitter: Time | None = Field(None, description="Random variation of the delay (needs delay).")
    loss: Percent | None = Field(None, description="Share of packets dropped, e.g. 1%.")
    duplicate: Percent | None = Field(None, description="Share of packets sent twice.")
    corrupt: Percent | None = Field(None, description="Share of packets with a flipped bit.")

    @model_validator(mode="after")
    def _coherent(self) -> Shaping:
        if self.rate is None and (self.burst or self.latency or self.limit):
            raise ValueError("burst, latency and limit shape a rate: give the rate too")
        if self.latency is not None and self.limit is not None:
            raise ValueError("give latency or limit, not both (each bounds the queue)")
        if self.jitter is not None and self.delay is None:
            raise ValueError("jitter varies a delay: give the delay too")
        if not (self.rate or self.emulates):
            raise ValueError("give a rate, or a delay, loss, duplicate or corrupt")
        return self

    @property
    def emulates(self) -> bool:
        """It needs netem (delay, loss, duplication or corruption)."""
        return any((self.delay, self.loss, self.duplicate, self.corrupt))


@dataclass(frozen=True)
class ShapingArgs(Args):
    dev: str
    netem: str
    """netem's parameters ('' without emulation)."""
    tbf: str
    """tbf's parameters ('' without a rate)."""

    @property
    def root(self) -> str:
        """The root queueing discipline's kind: netem, with tbf as its child, or tbf."""
        return "netem" if self.netem else "tbf"


@dataclass(frozen=True)
class QdiscSupported(Args):
    qdisc: str
    probe: str
    """Parameters that `tc qdisc add dev lo root QDISC` accepts, for the probe."""


_PROBES = {"netem": "delay 1ms", "tbf": "rate 1mbit burst 32kb latency 50ms"}
"""What preflight asks each queueing discipline for, to learn whether the kernel has it."""


def _tbf(shaping: Shaping) -> str:
    if shaping.rate is None:
        return ""
    burst = shaping.burst
    if burst is None:
        bytes_per_10ms = _amount(shaping.rate, _RATE_UNITS) / 8 / 100
        burst = f"{max(3, round(bytes_per_10ms / 1024))}kb"
    bound = f"limit {shaping.limit}" if shaping.limit else f"latency {shaping.latency or '50ms'}"
    return f"rate {shaping.rate} burst {burst} {bound}"


def _netem(shaping: Shaping) -> str:
    words = []
    if shaping.delay:
        words += ["delay", shaping.delay, *([shaping.jitter] if shaping.jitter else [])]
    for name in ("loss", "duplicate", "corrupt"):
        value = getattr(shaping, name)
        if value is not None:
            words += [name, value]
    return " ".join(words)


class ShapingKind(Kind):
    name = "shaping"
    template = TEMPLATE
    lane = "tc"
    group = "cables"
    summary = "traffic shaping"
    rows = ("shaping",)
    tools = ("tc",)
    preflight = ("qdisc_supported", "root_qdisc_default")

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            for dev, shaping in spec.shaping.items():
                args = ShapingArgs(netns, dev, _netem(shaping), _tbf(shaping))
                what = " and ".join(
                    x for x in (f"rate {shaping.rate}" if shaping.rate else "", args.netem) if x
                )
                yield Step(
                    "shaping",
                    f"shape {dev}: {what}{in_(netns)}",
                    "A queueing discipline decides how packets leave an interface: "
                    + (
                        "a token bucket lets them out at the rate, with the burst above it, "
                        if args.tbf
                        else ""
                    )
                    + (
                        "the network emulator delays, drops, duplicates or corrupts them as told, "
                        if args.netem
                        else ""
                    )
                    + f"on the way out of {dev} only (shape the other end for the way back).",
                    args,
                    owner_of(netns),
                )
                for qdisc, used in (("netem", args.netem), ("tbf", args.tbf)):
                    if used:
                        probe = QdiscSupported(HOST, qdisc, _PROBES[qdisc])
                        yield Precondition("qdisc_supported", TEMPLATE, probe)
                if netns == HOST and dev in spec.external:
                    yield Precondition("root_qdisc_default", TEMPLATE, LinkName(HOST, dev))

    def validate(self, topology: Topology) -> list[Problem]:
        names = link_names(topology)
        problems = []
        for netns, spec in topology.spaces():
            base = HOST if netns == HOST else f"namespaces.{netns}"
            for dev in spec.shaping:
                if dev not in names.get(netns, set()):
                    problems.append(
                        Problem(
                            f"{base}.shaping.{dev}",
                            f"interface {dev!r} is not declared in namespace {netns}",
                        )
                    )
        return problems

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, ShapingArgs)

        def how() -> RowState:
            qdiscs = status.live.qdiscs(a.netns)
            root = next((q for q in qdiscs if q.get("dev") == a.dev and q.get("root")), None)
            if root is None:
                return "missing", f"no link {a.dev}"
            if root.get("handle") == "0:":
                return "missing", f"{a.dev} has the kernel's default {root.get('kind')}"
            if root.get("kind") != a.root or root.get("handle") != "1:":
                return "different", f"root qdisc is {root.get('kind')} {root.get('handle')}"
            if a.tbf:
                tbf = next(
                    (q for q in qdiscs if q.get("dev") == a.dev and q.get("kind") == "tbf"), None
                )
                rate = _amount(a.tbf.split()[1], _RATE_UNITS) / 8
                actual = (tbf or {}).get("options", {}).get("rate")
                if actual != rate:
                    return "different", f"tbf rate is {actual} bytes/s, expected {rate:.0f}"
            return "present", ""

        status.check("shaping", a.netns, f"{a.dev} {a.root}", how)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return {"qdisc": live.qdiscs(netns)}
