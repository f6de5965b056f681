"""The walk of one packet through the model, hop by hop, and of its reply.

A hop is one visit to one namespace: the packet enters through a link (or starts there), the
namespace decides (netfilter's hooks in their order, the route lookup between them, a bridge's
forwarding), and it leaves through a link toward the next namespace, or is delivered, or
stops. The kernel's order is kept:

- sent by a program: route lookup, OUTPUT (raw, mangle, nat, filter), a new lookup if nat
  changed the destination, POSTROUTING (mangle, nat), out;
- received: PREROUTING (raw, mangle, nat), the routing decision, then INPUT (mangle, filter,
  nat) for a local address, or (with forwarding on) the lookup, FORWARD (mangle, filter),
  POSTROUTING (mangle, nat), out;
- a frame a bridge forwards from port to port passes PREROUTING, FORWARD and POSTROUTING of
  the bridge's namespace when br_netfilter is loaded (with `-i` and `-o` the bridge); a frame
  for the bridge's own address goes up to that namespace's IP stack; a frame never leaves
  through the port it came in on unless that port is in hairpin mode;
- the nat table sees only a connection's first packet; replies are translated back by
  conntrack in every namespace that translated the request, and pass the other chains as
  ESTABLISHED.

A random rule (a Service spreading connections over its endpoints) splits the walk: each
branch is a `Path` with its probability.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, replace

from nsgen.explain.firewall import HOOK_TABLES, Carried, Context, Decision, Packet, traverse
from nsgen.explain.hops import (
    BridgeFact,
    Event,
    Fact,
    Hop,
    LinkFact,
    NatFact,
    Outcome,
    Path,
    PolicyFact,
    Query,
    RouteFact,
    RuleFact,
    SysctlFact,
    Verdict,
)
from nsgen.explain.network import (
    IPAddress,
    Link,
    Net,
    RouteEntry,
    RuleEntry,
    Space,
    StepRef,
    address,
)
from nsgen.fields import HOST

EPHEMERAL_PORT = 40000
"""The source port a client's connection is shown with (the kernel picks a free one)."""
VXLAN_SOURCE_PORT = 50000
MAX_HOPS = 32
"""A path longer than this is a loop (the packet's TTL would run out)."""

# ---- a branch of the walk ------------------------------------------------------------------


@dataclass(frozen=True)
class Conn:
    """A conntrack entry in one namespace: the request as it arrived, and its translations."""

    id: int
    netns: str
    orig: Packet
    dnat: tuple[IPAddress, int | None] | None = None
    snat: tuple[IPAddress, int | None] | None = None
    hop: int = 0
    decided: frozenset[str] = frozenset()
    """The translations the nat table has decided: 'dst' (PREROUTING, OUTPUT), 'src'
    (POSTROUTING, INPUT); each is asked once per connection."""

    def reply_matches(self, packet: Packet) -> bool:
        src, sport = self.dnat or (self.orig.dst, self.orig.dport)
        dst, dport = self.snat or (self.orig.src, self.orig.sport)
        return (
            packet.proto == self.orig.proto
            and packet.src == src
            and packet.dst == dst
            and packet.sport == sport
            and packet.dport == dport
        )

    def continues(self, packet: Packet) -> bool:
        """`packet` is the request again, in the same namespace (a later hook)."""
        now_dst = self.dnat or (self.orig.dst, self.orig.dport)
        return (
            packet.proto == self.orig.proto
            and packet.src == self.orig.src
            and packet.sport == self.orig.sport
            and (packet.dst, packet.dport) in ((self.orig.dst, self.orig.dport), now_dst)
        )


class Trace:
    """The state of one branch: its hops so far (request, then reply), its conntrack entries
    and how likely it is."""

    def __init__(self) -> None:
        self.request: list[Hop] = []
        self.reply: list[Hop] = []
        self.replying = False
        self.conns: dict[int, Conn] = {}
        self.probability = 1.0
        self.choices: list[str] = []
        self._ids = 0

    def fork(self, probability: float, choices: tuple[str, ...]) -> Trace:
        other = Trace()
        other.request = [h.copy() for h in self.request]
        other.reply = [h.copy() for h in self.reply]
        other.replying = self.replying
        other.conns = dict(self.conns)
        other.probability = self.probability * probability
        other.choices = [*self.choices, *choices]
        other._ids = self._ids
        return other

    @property
    def hops(self) -> list[Hop]:
        return self.reply if self.replying else self.request

    @property
    def hop(self) -> Hop:
        return self.hops[-1]

    def enter(self, space: Space, entered: str, packet: Packet) -> Hop:
        hop = Hop(len(self.hops) + 1, space.name, space.live_name, entered, packet.show())
        if packet.carry is not None:
            hop.tunnel = f"VXLAN VNI {packet.carry.vni}, carrying {packet.carry.inner.show()}"
        self.hops.append(hop)
        return hop

    def add(
        self, kind: str, text: str, step: StepRef | None = None, fact: Fact | None = None
    ) -> None:
        self.hop.events.append(Event(kind, text, step, fact))

    def new_conn(self, netns: str, packet: Packet) -> Conn:
        self._ids += 1
        conn = Conn(self._ids, netns, replace(packet, mark=0, carry=None), hop=self.hop.number)
        self.conns[conn.id] = conn
        return conn


@dataclass
class Ending:
    """How a branch of one direction ends: a verdict, or a delivery (verdict None)."""

    trace: Trace
    verdict: Verdict | None
    space: Space | None = None
    packet: Packet | None = None


Continue = Callable[[Trace, Packet], list[Ending]]


# ---- the walk ------------------------------------------------------------------------------


class Walker:
    """Walks packets through one network (see the module docstring)."""

    def __init__(self, net: Net) -> None:
        self.net = net

    # -- entry points ---------------------------------------------------------------------
    def explain(self, query: Query) -> list[Path]:
        trace = Trace()
        space = self.net.space(query.netns)
        ports = query.proto in ("tcp", "udp")
        packet = Packet(
            query.src if query.src is not None else _unset(query.dst),
            query.dst,
            query.proto,
            EPHEMERAL_PORT if ports else None,
            query.port if ports else None,
        )
        paths: list[Path] = []
        for end in self.originate(trace, space, packet, query.src is None):
            paths.append(self._answer(end, query))
        return paths

    def _answer(self, end: Ending, query: Query) -> Path:
        """The request's ending, and if it was delivered, the answer and its way back."""
        trace = end.trace
        if end.verdict is not None:
            return self._path(trace, end.verdict, end.verdict)
        assert end.space is not None and end.packet is not None
        seen = end.packet
        hop = trace.hop.number
        where = end.space.name
        if query.proto in ("tcp", "udp") and query.listening is False:
            how = "a reset" if query.proto == "tcp" else "an icmp port unreachable"
            reason = (
                f"delivered to {where}, but nothing listens on {query.proto} port "
                f"{seen.dport} there: the kernel answers with {how}"
            )
            trace.add("stop", reason)
            verdict = Verdict("refused", False, reason, where, hop)
            return self._path(trace, verdict, verdict)
        what = {
            "icmp": "the kernel answers the echo request",
            "tcp": f"a program listening on tcp port {seen.dport} accepts",
            "udp": f"a program on udp port {seen.dport} answers",
        }[query.proto]
        if query.proto != "icmp" and query.listening is None:
            what += " (if one listens there)"
        trace.add("deliver", f"delivered to {_the(where)} as {seen.show()}: {what}")
        request = Verdict("delivered", True, f"delivered to {where} ({seen.show()})", where, hop)
        sent = min(trace.conns.values(), key=lambda c: c.id).orig
        reply = Packet(seen.dst, seen.src, seen.proto, seen.dport, seen.sport, reply=True)
        trace.replying = True
        # the reply does not split: conntrack holds every random choice the request made
        back = self.originate(trace, end.space, reply, False, new_hop=True)[0]
        trace = back.trace
        if back.verdict is not None:
            verdict = replace(
                back.verdict,
                reach=False,
                reason=f"the request is delivered to {where}, but the reply is lost: "
                f"{back.verdict.reason}",
                reply=True,
            )
            return self._path(trace, request, verdict)
        assert back.packet is not None and back.space is not None
        got = back.packet
        if (got.src, got.sport, got.dst) != (sent.dst, sent.dport, sent.src):
            reason = (
                f"the reply reaches {back.space.name} from {got.src}, but the request went to "
                f"{sent.dst}: {back.space.name} does not recognise it (the reply bypassed a "
                "translation the request went through)"
            )
            trace.add("stop", reason)
            verdict = Verdict(
                "dropped", False, reason, back.space.name, trace.hop.number, reply=True
            )
            return self._path(trace, request, verdict)
        trace.add("deliver", f"the reply is back in {_the(back.space.name)} ({got.show()})")
        verdict = Verdict(
            "reach",
            True,
            f"delivered to {where}, and the reply comes back: {query.source} reaches "
            f"{query.target}" + (f" port {query.port}" if query.port is not None else ""),
            where,
            hop,
        )
        return self._path(trace, request, verdict)

    def _path(self, trace: Trace, request: Verdict, verdict: Verdict) -> Path:
        return Path(
            probability=trace.probability,
            choices=list(trace.choices),
            hops=trace.request,
            request=request,
            reply=trace.reply,
            verdict=verdict,
        )

    # -- stopping --------------------------------------------------------------------------
    def _stop(
        self,
        trace: Trace,
        outcome: Outcome,
        reason: str,
        obj: str | None = None,
        step: StepRef | None = None,
    ) -> list[Ending]:
        trace.add("stop", reason, step)
        verdict = Verdict(
            outcome, False, reason, trace.hop.netns, trace.hop.number, obj, trace.replying
        )
        return [Ending(trace, verdict)]

    # -- sending ---------------------------------------------------------------------------
    def originate(
        self,
        trace: Trace,
        space: Space,
        packet: Packet,
        pick_source: bool,
        new_hop: bool = True,
    ) -> list[Ending]:
        """A program in `space` (or a tunnel device, `new_hop` False) sends `packet`, its
        source picked by the kernel if asked."""
        if new_hop:
            trace.enter(space, "", packet)
        route = self.lookup(space, packet.dst)
        if route is None:
            return self._no_route(trace, space, packet, None)
        nexthop = route.via or packet.dst
        if pick_source:
            src = self.source(space, route, nexthop)
            if src is None:
                return self._stop(
                    trace,
                    "no-route",
                    f"{_the(space.name)} has no {_family(packet)} address to send from",
                )
            packet = replace(packet, src=src)
            trace.hop.packet = packet.show()
        self._route_event(trace, space, packet, route, None)
        if pick_source:
            trace.add("source", f"source address {packet.src} ({self._src_words(space, route)})")
        conn = self._conn(trace, space, packet)

        def after_output(trace: Trace, packet: Packet) -> list[Ending]:
            now = self.lookup(space, packet.dst)
            if now is None:
                return self._no_route(trace, space, packet, None)
            if now != route:
                self._route_event(trace, space, packet, now, None, "rerouted after DNAT: ")
            if now.origin == "local":
                return self._loopback(trace, space, packet, conn)
            return self.hook(
                trace,
                space,
                "POSTROUTING",
                packet,
                None,
                now.dev,
                conn,
                now.via or packet.dst,
                lambda t, p: self.transmit(t, space, now, p),
            )

        out = "lo" if route.origin == "local" else route.dev
        return self.hook(trace, space, "OUTPUT", packet, None, out, conn, nexthop, after_output)

    def _loopback(
        self, trace: Trace, space: Space, packet: Packet, conn: Conn | None
    ) -> list[Ending]:
        trace.add("out", "to itself through lo (the loopback)")

        def arrived(trace: Trace, packet: Packet) -> list[Ending]:
            return self.hook(
                trace,
                space,
                "PREROUTING",
                packet,
                "lo",
                None,
                conn,
                None,
                lambda t, p: self.hook(
                    t,
                    space,
                    "INPUT",
                    p,
                    "lo",
                    None,
                    conn,
                    None,
                    lambda t2, p2: self.deliver(t2, space, space.links["lo"], p2),
                ),
            )

        return self.hook(trace, space, "POSTROUTING", packet, None, "lo", conn, None, arrived)

    def transmit(
        self, trace: Trace, space: Space, route: RouteEntry, packet: Packet
    ) -> list[Ending]:
        """The packet leaves `space` through the route's device, toward its next hop."""
        assert route.dev is not None
        dev = space.links[route.dev]
        nexthop = route.via or packet.dst
        trace.add(
            "out",
            f"out through {dev.name}" + ("" if route.via is None else f" toward {route.via}"),
            dev.step,
            self._link_fact(space, dev),
        )
        if dev.kind == "vxlan":
            return self._encapsulate(trace, space, dev, nexthop, packet)
        if dev.kind == "external" and not self.net.world.upstream:
            return self._leaves(trace, dev, packet)
        receivers = self.l2_receivers(dev)
        if not receivers:
            return self._stop(
                trace, "unreachable", f"nothing is connected to {dev.name} in {_the(space.name)}"
            )
        found = self._answering(receivers, nexthop)
        if found is None:
            return self._stop(
                trace,
                "unreachable",
                f"nobody on the link of {dev.name} answers ARP for {nexthop}: "
                f"{nexthop} is not an address of any namespace behind {dev.name}",
                f"route {route.text}",
            )
        receiver, entry = found
        if dev.kind == "bridge":
            port = self._port_toward(space, dev.name, receiver)
            trace.add(
                "bridge",
                f"bridge {dev.name} sends the frame out of its port {port.name}, behind which "
                f"{nexthop} lives",
                port.step,
                BridgeFact(space.live_name, dev.name, "(local)", port.name, port.hairpin),
            )
            assert port.peer is not None
            entry = self.net.link(*port.peer)
        return self.arrive(trace, entry, receiver, packet)

    def _leaves(self, trace: Trace, dev: Link, packet: Packet) -> list[Ending]:
        """Out of an uplink into a world nsgen does not model."""
        private = packet.src.is_private and not packet.src.is_global
        if private:
            return self._stop(
                trace,
                "dropped",
                f"it leaves the machine through {dev.name} with the private source address "
                f"{packet.src}: nobody outside can send a reply to it (no NAT on the way)",
            )
        trace.add(
            "stop",
            f"it leaves the machine through {dev.name} as {packet.show()}: beyond the uplink "
            "is outside the topology",
        )
        verdict = Verdict(
            "left",
            True,
            f"it leaves the machine through {dev.name} as {packet.src}; replies come back "
            "if the far end answers",
            trace.hop.netns,
            trace.hop.number,
        )
        return [Ending(trace, verdict)]

    def _encapsulate(
        self, trace: Trace, space: Space, dev: Link, nexthop: IPAddress, packet: Packet
    ) -> list[Ending]:
        assert dev.vxlan is not None
        lladdr = space.neighbors.get((dev.name, nexthop))
        if lladdr is None:
            return self._stop(
                trace,
                "unreachable",
                f"no neighbour entry for {nexthop} on {dev.name}: ARP does not cross this "
                "tunnel (nsgen writes permanent entries for it, as flannel does)",
            )
        vtep = space.fdb.get((dev.name, lladdr))
        if vtep is None:
            return self._stop(
                trace,
                "dropped",
                f"no forwarding-database entry for {lladdr} on {dev.name}: the tunnel does "
                "not know which host to send the frame to",
            )
        src = dev.vxlan.local
        outer = Packet(
            src if src is not None else _unset(vtep),
            vtep,
            "udp",
            VXLAN_SOURCE_PORT,
            dev.vxlan.port,
            reply=False,
            carry=Carried(packet, dev.vxlan.id, lladdr, dev.name),
        )
        trace.add(
            "tunnel",
            f"{nexthop} is at {lladdr} (permanent neighbour entry), which lives behind "
            f"{vtep} (FDB entry): the frame goes inside a VXLAN packet (VNI {dev.vxlan.id}), "
            f"udp to {vtep} port {dev.vxlan.port}",
            dev.step,
        )
        return self.originate(trace, space, outer, src is None, new_hop=False)

    # -- arriving --------------------------------------------------------------------------
    def arrive(self, trace: Trace, link: Link, receiver: Link, packet: Packet) -> list[Ending]:
        """The frame comes out of `link` (in its namespace) on its way to `receiver`."""
        space = self.net.space(link.netns)
        packet = replace(packet, mark=0)  # the mark does not cross namespaces
        if len(trace.hops) >= MAX_HOPS:
            return self._stop(trace, "dropped", "a routing loop: the packet's TTL runs out")
        came = f"from {link.peer[0]}" if link.peer else ""
        port = f", a port of bridge {link.master}" if link.master else ""
        trace.enter(space, came, packet)
        trace.add(
            "in",
            f"in through {link.name}{port}",
            link.step,
            self._link_fact(space, link),
        )
        if link.master is not None:
            return self.bridge(trace, space, space.links[link.master], link, receiver, packet)
        return self.receive(trace, space, link, packet, None)

    def bridge(
        self,
        trace: Trace,
        space: Space,
        bridge: Link,
        port: Link,
        receiver: Link,
        packet: Packet,
    ) -> list[Ending]:
        """A frame enters `bridge` through `port`, addressed to `receiver`."""
        if receiver is bridge:
            trace.add(
                "bridge",
                f"bridge {bridge.name}: the frame is for {bridge.name} itself (its address is "
                f"the next hop): up to {_the(space.name)}'s IP stack",
                bridge.step,
                BridgeFact(space.live_name, bridge.name, port.name, None, port.hairpin),
            )
            return self.receive(trace, space, bridge, packet, port)
        out = self._port_toward(space, bridge.name, receiver)
        return self._bridged(trace, space, bridge, port, out, packet, receiver)

    def _switch(
        self,
        trace: Trace,
        space: Space,
        bridge: Link,
        port: Link,
        out: Link,
        receiver: Link,
    ) -> Continue | list[Ending]:
        """The bridge's own decision for a frame from `port` to `out`: the ending when it will
        not send the frame (back out of its own port without hairpin mode), else how the frame
        leaves through `out` toward `receiver`, once the firewall (if any) lets it."""
        fact = BridgeFact(space.live_name, bridge.name, port.name, out.name, port.hairpin)
        if out is port and not port.hairpin:
            trace.add(
                "bridge",
                f"bridge {bridge.name} would send the frame back out of "
                f"{port.name}, the port it came in on",
                port.step,
                fact,
            )
            return self._stop(
                trace,
                "dropped",
                f"bridge {bridge.name} never sends a frame back out of the port it came in on "
                f"({port.name}) unless that port is in hairpin mode, and it is not",
                f"bridge {bridge.name} port {port.name}",
                port.step,
            )
        how = " (hairpin mode)" if out is port else ""
        trace.add(
            "bridge",
            f"bridge {bridge.name} forwards the frame from port {port.name} to "
            f"port {out.name}{how}",
            out.step,
            fact,
        )
        assert out.peer is not None
        far = self.net.link(*out.peer)

        def leave(trace: Trace, packet: Packet) -> list[Ending]:
            trace.add(
                "out",
                f"out of port {out.name}",
                out.step,
                self._link_fact(space, out),
            )
            return self.arrive(trace, far, receiver, packet)

        return leave

    def _bridged(
        self,
        trace: Trace,
        space: Space,
        bridge: Link,
        port: Link,
        out: Link,
        packet: Packet,
        receiver: Link,
    ) -> list[Ending]:
        """The bridge forwards a frame from `port` to `out` (layer 2, no routing), on its way
        to `receiver` (behind `out`, or behind another bridge `out` leads to)."""
        leave = self._switch(trace, space, bridge, port, out, receiver)
        if isinstance(leave, list):
            return leave
        if not space.br_netfilter:
            return leave(trace, packet)
        trace.add(
            "note",
            f"br_netfilter: the bridged frame passes {_the(space.name)}'s iptables with -i and -o "
            f"{bridge.name}",
            space.br_netfilter_step,
        )
        conn = self._conn(trace, space, packet)
        name = bridge.name
        arrived = packet.dst

        def routed(trace: Trace, packet: Packet) -> list[Ending]:
            if packet.dst != arrived:
                return self._after_bridged_dnat(trace, space, bridge, port, packet, conn)
            return self._forward_bridged(trace, space, bridge, packet, conn, leave)

        return self.hook(trace, space, "PREROUTING", packet, name, None, conn, None, routed)

    def _forward_bridged(
        self,
        trace: Trace,
        space: Space,
        bridge: Link,
        packet: Packet,
        conn: Conn | None,
        leave: Continue,
    ) -> list[Ending]:
        """br_netfilter: a bridged frame passes FORWARD and POSTROUTING with -i and -o the
        bridge, then leaves (`leave`)."""
        name = bridge.name
        return self.hook(
            trace,
            space,
            "FORWARD",
            packet,
            name,
            name,
            conn,
            None,
            lambda t, p: self.hook(t, space, "POSTROUTING", p, None, name, conn, None, leave),
        )

    def _after_bridged_dnat(
        self,
        trace: Trace,
        space: Space,
        bridge: Link,
        port: Link,
        packet: Packet,
        conn: Conn | None,
    ) -> list[Ending]:
        """br_netfilter, after PREROUTING changed the destination of a frame that came in
        through a port (a DNAT, or conntrack translating a reply back): if the new destination
        is on the same bridge, the frame stays bridged toward it; otherwise it is routed."""
        route = self.lookup(space, packet.dst)
        if route is not None and route.dev == bridge.name and not space.is_local(packet.dst):
            nexthop = route.via or packet.dst
            found = self._answering(self._bridge_receivers(space, bridge, None), nexthop)
            if found is None:
                return self._stop(
                    trace, "unreachable", f"nobody on {bridge.name} answers ARP for {nexthop}"
                )
            receiver, _ = found
            trace.add(
                "bridge",
                f"br_netfilter: after the translation, {packet.dst} is on "
                f"{bridge.name} too, so the frame stays bridged",
            )
            out = self._port_toward(space, bridge.name, receiver)
            leave = self._switch(trace, space, bridge, port, out, receiver)
            if isinstance(leave, list):
                return leave
            return self._forward_bridged(trace, space, bridge, packet, conn, leave)
        trace.add(
            "bridge",
            f"br_netfilter: after the translation, {packet.dst} is not on "
            f"{bridge.name}: {_the(space.name)} routes the packet",
        )
        if space.is_local(packet.dst):
            return self._local_in(trace, space, bridge, packet, conn)
        return self._forward(trace, space, bridge, packet, conn)

    def receive(
        self,
        trace: Trace,
        space: Space,
        link: Link,
        packet: Packet,
        port: Link | None,
    ) -> list[Ending]:
        """The IP stack of `space` receives the packet on `link` (`port`: the bridge port it
        came through, when `link` is a bridge)."""
        conn = self._conn(trace, space, packet)
        arrived = packet.dst

        def decide(trace: Trace, packet: Packet) -> list[Ending]:
            if space.is_local(packet.dst):
                return self._local_in(trace, space, link, packet, conn)
            if port is not None and space.br_netfilter and packet.dst != arrived:
                route = self.lookup(space, packet.dst)
                if route is not None and route.dev == link.name:
                    return self._after_bridged_dnat(trace, space, link, port, packet, conn)
            return self._forward(trace, space, link, packet, conn)

        return self.hook(trace, space, "PREROUTING", packet, link.name, None, conn, None, decide)

    def _local_in(
        self, trace: Trace, space: Space, link: Link, packet: Packet, conn: Conn | None
    ) -> list[Ending]:
        fact = RouteFact(
            space.live_name, packet.dst, packet.src, link.name, packet.mark, self._local(packet.dst)
        )
        trace.add(
            "route", f"{packet.dst} is an address of {_the(space.name)}: local delivery", None, fact
        )
        return self.hook(
            trace,
            space,
            "INPUT",
            packet,
            link.name,
            None,
            conn,
            None,
            lambda t, p: self.deliver(t, space, link, p),
        )

    def _forward(
        self, trace: Trace, space: Space, link: Link, packet: Packet, conn: Conn | None
    ) -> list[Ending]:
        family = packet.family
        key = "net.ipv4.ip_forward" if family == 4 else "net.ipv6.conf.all.forwarding"
        if space.outside:
            return self._stop(
                trace,
                "dropped",
                f"{packet.dst} is nowhere in the lab: its simulated upstream holds only "
                + ", ".join(
                    str(a.ip)
                    for _, a in space.addresses()
                    if not a.ip.is_loopback and a.version == family
                )
                + " and routes nothing further",
                "the lab's upstream",
            )
        if not space.forwarding[family]:
            return self._stop(
                trace,
                "dropped",
                f"{packet.dst} is not an address of {_the(space.name)}, and "
                f"{_the(space.name)} does not forward ({key} is 0): the packet is dropped",
                f"sysctl {key}",
                space.forwarding_step[family],
            )
        trace.add(
            "forward",
            f"{_the(space.name)} forwards ({key} = 1)",
            space.forwarding_step[family],
            SysctlFact(space.live_name, key, "1"),
        )
        route = self.lookup(space, packet.dst)
        if route is None:
            return self._no_route(trace, space, packet, link.name)
        self._route_event(trace, space, packet, route, link.name)
        assert route.dev is not None
        dev = route.dev

        def post(trace: Trace, packet: Packet) -> list[Ending]:
            return self.hook(
                trace,
                space,
                "POSTROUTING",
                packet,
                None,
                dev,
                conn,
                route.via or packet.dst,
                lambda t, p: self.transmit(t, space, route, p),
            )

        return self.hook(trace, space, "FORWARD", packet, link.name, dev, conn, None, post)

    def deliver(self, trace: Trace, space: Space, link: Link, packet: Packet) -> list[Ending]:
        carried = packet.carry
        if carried is None:
            return [Ending(trace, None, space, packet)]
        for device in space.links.values():
            spec = device.vxlan
            if spec is None or spec.port != packet.dport or spec.id != carried.vni:
                continue
            if spec.local is not None and spec.local != packet.dst:
                continue
            if spec.mac is not None and spec.mac != carried.lladdr:
                return self._stop(
                    trace,
                    "dropped",
                    f"{device.name} receives the frame, but it is for {carried.lladdr}, not "
                    f"its own MAC {spec.mac}",
                )
            trace.add(
                "tunnel",
                f"{device.name} (VNI {spec.id}) takes the VXLAN packet out of its udp wrapping",
                device.step,
            )
            inner = replace(carried.inner, mark=0)
            trace.enter(space, f"out of the tunnel {device.name}", inner)
            return self.receive(trace, space, device, inner, None)
        return self._stop(
            trace,
            "dropped",
            f"the VXLAN packet reaches {space.name}, but no VXLAN device there takes VNI "
            f"{carried.vni} on udp port {packet.dport}",
        )

    # -- netfilter -------------------------------------------------------------------------
    def _conn(self, trace: Trace, space: Space, packet: Packet) -> Conn | None:
        """The connection `packet` belongs to in `space`: for a request a new entry (or the
        one it already has there), for a reply the entry it answers (None: none)."""
        if packet.reply:
            for conn in trace.conns.values():
                if conn.netns == space.name and conn.reply_matches(packet):
                    return conn
            return None
        for conn in reversed(trace.conns.values()):
            if conn.netns == space.name and conn.continues(packet):
                return conn
        return trace.new_conn(space.name, packet)

    def hook(
        self,
        trace: Trace,
        space: Space,
        hook: str,
        packet: Packet,
        in_dev: str | None,
        out_dev: str | None,
        conn: Conn | None,
        nexthop: IPAddress | None,
        then: Continue,
    ) -> list[Ending]:
        """Run the tables of one netfilter hook in order, then `then` for every way the packet
        goes on."""
        branches: list[tuple[Trace, Packet]] = [(trace, packet)]
        endings: list[Ending] = []
        any_rules = space.has_rules()
        for table in HOOK_TABLES[hook]:
            following: list[tuple[Trace, Packet]] = []
            for tr, pk in branches:
                if table == "nat" and (pk.reply or self._decided(tr, conn, hook)):
                    following.append((tr, self._conntrack(tr, space, hook, pk, conn)))
                    continue
                if not space.chain(table, hook):
                    if table == "filter" and any_rules:
                        tr.add(
                            "chain",
                            f"filter {hook}: no rules, policy ACCEPT",
                            None,
                            PolicyFact(space.live_name, table, hook, "ACCEPT"),
                        )
                    if table == "nat" and conn is not None and not pk.reply:
                        self._mark_decided(tr, conn, hook)
                    following.append((tr, pk))
                    continue
                ctx = Context(space, hook, pk, in_dev, out_dev, self._ctstate(tr, conn, pk))
                decisions = traverse(table, ctx)
                for decision in decisions:
                    branch = tr
                    if len(decisions) > 1:
                        branch = tr.fork(decision.probability, decision.choices)
                    result = self._apply(
                        branch,
                        space,
                        decision,
                        replace(pk, mark=decision.mark),
                        conn,
                        out_dev,
                        nexthop,
                    )
                    if isinstance(result, Ending):
                        endings.append(result)
                    else:
                        following.append((branch, result))
            branches = following
        for tr, pk in branches:
            endings.extend(then(tr, pk))
        return endings

    def _decided(self, trace: Trace, conn: Conn | None, hook: str) -> bool:
        """The nat table has already decided this connection's translation of this kind (or
        the packet is not tracked)."""
        if conn is None:
            return True
        return _manip(hook) in trace.conns[conn.id].decided

    def _mark_decided(self, trace: Trace, conn: Conn, hook: str) -> None:
        current = trace.conns[conn.id]
        trace.conns[conn.id] = replace(current, decided=current.decided | {_manip(hook)})

    def _ctstate(self, trace: Trace, conn: Conn | None, packet: Packet) -> frozenset[str]:
        if conn is None:
            return frozenset({"INVALID"})
        current = trace.conns[conn.id]
        states = {"ESTABLISHED"} if packet.reply else {"NEW"}
        if current.dnat is not None:
            states.add("DNAT")
        if current.snat is not None:
            states.add("SNAT")
        return frozenset(states)

    def _conntrack(
        self, trace: Trace, space: Space, hook: str, packet: Packet, conn: Conn | None
    ) -> Packet:
        """nat for a packet whose connection is known: conntrack translates it without asking
        the nat chains (a reply is translated back)."""
        if conn is None or not packet.reply:
            return packet
        current = trace.conns[conn.id]
        if hook in ("PREROUTING", "OUTPUT") and current.snat is not None:
            was = packet.show()
            packet = replace(packet, dst=current.orig.src, dport=current.orig.sport)
            trace.add(
                "conntrack",
                f"conntrack: a reply of the connection translated at hop "
                f"{current.hop}: destination back to {packet.dst} ({was} becomes "
                f"{packet.show()})",
            )
        if hook in ("POSTROUTING", "INPUT") and current.dnat is not None:
            was = packet.show()
            packet = replace(packet, src=current.orig.dst, sport=current.orig.dport)
            trace.add(
                "conntrack",
                f"conntrack: a reply of the connection translated at hop "
                f"{current.hop}: source back to {packet.src} ({was} becomes "
                f"{packet.show()})",
            )
        return packet

    def _apply(
        self,
        trace: Trace,
        space: Space,
        decision: Decision,
        packet: Packet,
        conn: Conn | None,
        out_dev: str | None,
        nexthop: IPAddress | None,
    ) -> Packet | Ending:
        """Show one table's decision and carry it out: a verdict, or the packet as it goes on."""
        for hit in decision.hits:
            trace.hop.events.append(
                Event(
                    "hit",
                    f"matches {hit.entry.name} ({hit.entry.text})",
                    hit.entry.step,
                    RuleFact(space.live_name, hit.entry, hit.entry is decision.entry),
                )
            )
        head = f"{decision.table} {decision.hook}"
        entry = decision.entry
        for choice in decision.choices:
            trace.add("note", f"random choice: {choice}")
        if entry is None:
            through = _hit_names(decision)
            if through:
                last = decision.hits[-1].entry.rule.target
                text = (
                    f"{decision.table} {' -> '.join(through)} -> {last}: no rule there "
                    f"decides; back in {decision.hook}, nothing else matches: policy ACCEPT"
                )
            else:
                text = f"{head}: no rule matches: policy ACCEPT"
            trace.add(
                "chain",
                text,
                None,
                PolicyFact(space.live_name, decision.table, decision.hook, "ACCEPT"),
            )
            if decision.table == "nat" and conn is not None:
                self._mark_decided(trace, conn, decision.hook)
            return packet
        path = " -> ".join(_hit_names(decision))
        trace.add(
            "chain",
            f"{decision.table} {path}: {entry.text}",
            entry.step,
            RuleFact(space.live_name, entry, True),
        )
        target = decision.target
        obj = f"{entry.name} ({entry.text})"
        if target == "ACCEPT":
            if decision.table == "nat" and conn is not None:
                self._mark_decided(trace, conn, decision.hook)
            return packet
        if target == "DROP":
            return self._stop(
                trace, "dropped", f"dropped by {entry.name}: {describe(entry)}", obj, entry.step
            )[0]
        if target == "REJECT":
            how = entry.rule.reject_with or "icmp-port-unreachable"
            return self._stop(
                trace,
                "rejected",
                f"rejected by {entry.name}: {describe(entry)}; the sender gets {how} at once",
                obj,
                entry.step,
            )[0]
        assert conn is not None
        current = trace.conns[conn.id]
        was = packet.show()
        if target == "DNAT":
            assert entry.rule.to_destination is not None
            ip, port = _nat_target(entry.rule.to_destination)
            packet = replace(packet, dst=ip, dport=port if port and packet.dport else packet.dport)
            trace.conns[conn.id] = replace(current, dnat=(packet.dst, packet.dport))
            trace.add(
                "nat",
                f"DNAT: {was} becomes {packet.show()}",
                entry.step,
                NatFact(space.name, "DNAT", was, packet.show()),
            )
        elif target in ("SNAT", "MASQUERADE"):
            if target == "SNAT":
                assert entry.rule.to_source is not None
                ip, port = _nat_target(entry.rule.to_source)
                words = "SNAT"
            else:
                dev = space.links.get(out_dev or "")
                chosen = (
                    self._address_on(space, dev, nexthop or packet.dst) if dev is not None else None
                )
                if chosen is None:
                    return self._stop(
                        trace,
                        "dropped",
                        f"MASQUERADE finds no address on {out_dev} to give the packet",
                        obj,
                        entry.step,
                    )[0]
                ip, port = chosen, None
                words = f"MASQUERADE (the address of {out_dev})"
            packet = replace(packet, src=ip, sport=port if port and packet.sport else packet.sport)
            trace.conns[conn.id] = replace(current, snat=(packet.src, packet.sport))
            trace.add(
                "nat",
                f"{words}: {was} becomes {packet.show()}",
                entry.step,
                NatFact(space.name, target, was, packet.show()),
            )
        else:
            raise ValueError(f"explain does not know the target {target}")
        self._mark_decided(trace, conn, decision.hook)
        return packet

    # -- routing ---------------------------------------------------------------------------
    def lookup(self, space: Space, dst: IPAddress) -> RouteEntry | None:
        """The route the kernel picks for `dst`: the local table first, then the longest
        prefix of the main table."""
        if space.is_local(dst):
            return self._local(dst)
        best: RouteEntry | None = None
        for route in space.routes:
            if route.dst.version != dst.version or dst not in route.dst or route.dev is None:
                continue
            if best is None or route.dst.prefixlen > best.dst.prefixlen:
                best = route
        return best

    def _local(self, dst: IPAddress) -> RouteEntry:
        return RouteEntry(ipaddress.ip_network(dst), "lo", src=dst, origin="local")

    def source(self, space: Space, route: RouteEntry, nexthop: IPAddress) -> IPAddress | None:
        """The source address the kernel gives a packet it sends by `route`."""
        if route.src is not None:
            return route.src
        return self._address_on(space, space.links.get(route.dev or ""), nexthop)

    def _address_on(self, space: Space, dev: Link | None, toward: IPAddress) -> IPAddress | None:
        """An address of `dev` in the subnet of `toward`, else its first, else the namespace's
        first (inet_select_addr)."""
        family = toward.version
        if dev is not None:
            mine = [a for a in dev.addresses if a.version == family]
            for iface in mine:
                if toward in iface.network:
                    return iface.ip
            if mine:
                return mine[0].ip
        for link in space.links.values():
            if link.kind == "lo":
                continue
            for iface in link.addresses:
                if iface.version == family:
                    return iface.ip
        return None

    def _src_words(self, space: Space, route: RouteEntry) -> str:
        if route.origin == "local":
            return "its own address"
        return f"an address of {route.dev}"

    def _route_event(
        self,
        trace: Trace,
        space: Space,
        packet: Packet,
        route: RouteEntry,
        iif: str | None,
        prefix: str = "",
    ) -> None:
        fact = RouteFact(
            space.live_name, packet.dst, packet.src if iif else None, iif, packet.mark, route
        )
        if route.origin == "local":
            trace.add(
                "route",
                f"{prefix}{packet.dst} is an address of {_the(space.name)} (local table)",
                None,
                fact,
            )
            return
        words = {
            "connected": f"the subnet of {_the(space.name)}'s address on {route.dev}",
            "declared": "declared in the topology",
            "world": f"not nsgen's: {self.net.world.origin}",
        }[route.origin]
        trace.add(
            "route",
            f"{prefix}route {route.text} ({words}; longest prefix for {packet.dst})",
            route.step,
            fact,
        )

    def _no_route(
        self, trace: Trace, space: Space, packet: Packet, iif: str | None
    ) -> list[Ending]:
        if space.outside:
            return self._stop(
                trace,
                "no-route",
                f"the lab's upstream has no route to {packet.dst}: like the internet, it "
                "routes nothing to a private address it was not given (a MASQUERADE on the "
                "way out is what lets replies come back)",
                "routes of the lab's upstream",
            )
        how = (
            "the sender gets 'Network is unreachable'"
            if iif is None
            else "it is dropped (icmp net unreachable goes back)"
        )
        return self._stop(
            trace,
            "no-route",
            f"no route to {packet.dst} in {_the(space.name)}: none of its routes covers it, "
            f"so {how}",
            f"routes of {space.name}",
        )

    def _link_fact(self, space: Space, link: Link) -> LinkFact:
        peer = None
        if link.peer is not None:
            peer = f"{link.peer[1]} in {_the(link.peer[0])}"
        return LinkFact(space.live_name, link.name, link.master, link.kind, peer)

    # -- layer 2 ---------------------------------------------------------------------------
    def l2_receivers(self, dev: Link) -> list[tuple[Link, Link]]:
        """(receiver, entry) for a frame sent out of `dev`: `receiver` is a link with an IP
        stack that can answer ARP (a veth end off any bridge, or a bridge itself), `entry` the
        link the frame comes out of first (a bridge port, or the receiver)."""
        if dev.kind == "bridge":
            space = self.net.space(dev.netns)
            return [(r, e) for r, e in self._bridge_receivers(space, dev, None) if r is not dev]
        if dev.peer is None:
            return []
        far = self.net.link(*dev.peer)
        if far.master is None:
            return [(far, far)]
        space = self.net.space(far.netns)
        bridge = space.links[far.master]
        return [(r, far) for r, _ in self._bridge_receivers(space, bridge, far)]

    def _bridge_receivers(
        self,
        space: Space,
        bridge: Link,
        came_in: Link | None,
        passed: frozenset[tuple[str, str]] = frozenset(),
    ) -> list[tuple[Link, Link]]:
        """What a frame entering `bridge` (through `came_in`, or from the bridge's own stack)
        can reach: the bridge itself and the far end of every other port (each twice: as the
        receiver, and as the link the frame comes out of). A far end that is a port of another
        bridge (two bridges joined by a veth) leads on to what that bridge reaches, the frame
        coming out of that far end first; `passed` are the bridges the frame crossed already
        (validation refuses a loop between bridges, and this never follows one)."""
        found = [(bridge, bridge)]
        passed = passed | {(bridge.netns, bridge.name)}
        for port in space.ports(bridge.name):
            if port is came_in or port.peer is None:
                continue
            far = self.net.link(*port.peer)
            if far.master is None:
                found.append((far, far))
                continue
            far_space = self.net.space(far.netns)
            joined = far_space.links[far.master]
            if (joined.netns, joined.name) not in passed:
                beyond = self._bridge_receivers(far_space, joined, far, passed)
                found += [(r, far) for r, _ in beyond]
        return found

    def _answering(
        self, receivers: list[tuple[Link, Link]], nexthop: IPAddress
    ) -> tuple[Link, Link] | None:
        """The receiver whose namespace owns `nexthop` (Linux answers ARP for any of its
        addresses on any of its links, arp_ignore 0)."""
        for receiver, entry in receivers:
            if self.net.space(receiver.netns).is_local(nexthop):
                return receiver, entry
        return None

    def _port_toward(self, space: Space, bridge: str, receiver: Link) -> Link:
        """The port of `bridge` the frame for `receiver` leaves through: the one `receiver` is
        the far end of, or the one that leads to another bridge `receiver` is behind."""
        ports = [port for port in space.ports(bridge) if port.peer is not None]
        for port in ports:
            if port.peer == (receiver.netns, receiver.name):
                return port
        this = space.links[bridge]
        for port in ports:
            assert port.peer is not None
            far = self.net.link(*port.peer)
            if far.master is None:
                continue
            far_space = self.net.space(far.netns)
            joined = far_space.links[far.master]
            passed = frozenset({(this.netns, this.name)})
            if joined is not this and any(
                r is receiver for r, _ in self._bridge_receivers(far_space, joined, far, passed)
            ):
                return port
        raise AssertionError(f"no port of {bridge} leads to {receiver.netns} {receiver.name}")


def _the(netns: str) -> str:
    """A namespace in a sentence: 'the host' for the root namespace."""
    return "the host" if netns == HOST else netns


def _manip(hook: str) -> str:
    return "dst" if hook in ("PREROUTING", "OUTPUT") else "src"


def _hit_names(decision: Decision) -> list[str]:
    names: list[str] = []
    for hit in decision.hits:
        if hit.entry.rule.jump == "MARK" and hit.entry is not decision.entry:
            continue
        names.append(f"{hit.entry.chain} rule {hit.entry.number}")
    return names


def _nat_target(text: str) -> tuple[IPAddress, int | None]:
    if text.count(":") == 1:
        host, port = text.split(":")
        return address(host), int(port.split("-")[0])
    return address(text), None


def _unset(dst: IPAddress) -> IPAddress:
    return ipaddress.ip_address("0.0.0.0" if dst.version == 4 else "::")


def _family(packet: Packet) -> str:
    return f"IPv{packet.family}"


def describe(entry: RuleEntry) -> str:
    """A rule in plain words: 'nothing goes from br-frontend to br-backend'."""
    rule = entry.rule
    parts: list[str] = []
    if rule.in_interface:
        parts.append(f"arriving through {rule.in_interface}")
    if rule.not_ and rule.not_.in_interface:
        parts.append(f"not arriving through {rule.not_.in_interface}")
    if rule.out_interface:
        parts.append(f"leaving through {rule.out_interface}")
    if rule.not_ and rule.not_.out_interface:
        parts.append(f"not leaving through {rule.not_.out_interface}")
    if rule.source:
        parts.append(f"from {rule.source}")
    if rule.destination:
        parts.append(f"to {rule.destination}")
    if rule.sport:
        parts.append(f"from port {rule.sport}")
    if rule.dport:
        parts.append(f"to port {rule.dport}")
    subject = f"{rule.protocol} packets" if rule.protocol not in (None, "all") else "packets"
    verb = {"DROP": "are dropped", "REJECT": "are rejected"}.get(rule.target, rule.target)
    if not parts and subject == "packets":
        return f"every packet that reaches it: {entry.text}"
    what = " ".join([subject, ", ".join(parts)]).strip()
    if (
        rule.in_interface
        and rule.out_interface
        and rule.in_interface != rule.out_interface
        and rule.target in ("DROP", "REJECT")
    ):
        return (
            f"isolation between {rule.in_interface} and {rule.out_interface}: {what} {verb} "
            f"({entry.text})"
        )
    return f"{what} {verb} ({entry.text})"
