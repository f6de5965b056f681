"""What the rest of nsgen calls: explain one packet, or give a check its computed verdict."""

from __future__ import annotations

import ipaddress

from nsgen.errors import UsageError
from nsgen.explain.endpoints import resolve_source, resolve_target
from nsgen.explain.hops import Explanation, Query, Verdict
from nsgen.explain.network import Environment, World, build_network, lab_world, this_machine
from nsgen.explain.path import Walker
from nsgen.model import Check, Topology

PROTOCOLS = ("icmp", "tcp", "udp")


def explain(
    topology: Topology,
    source: str,
    target: str,
    proto: str | None = None,
    port: int | None = None,
    listening: bool | None = None,
    world: World | None = None,
    env: Environment | None = None,
) -> Explanation:
    """The computed path of one packet from `source` to `target` (as checks name them) and of
    its reply, in `world` (default: nsgen lab's) on a kernel like this machine's (`env`).
    `proto` defaults to tcp when a port is given, else icmp."""
    proto = proto or ("tcp" if port is not None else "icmp")
    if proto not in PROTOCOLS:
        raise UsageError(f"--proto {proto}: expected tcp, udp or icmp")
    if proto == "icmp" and port is not None:
        raise UsageError("--port: an icmp echo (ping) has no port; give --proto tcp or udp")
    if proto != "icmp" and port is None:
        raise UsageError(f"--proto {proto} needs --port")
    world = world or lab_world(topology)
    env = env or this_machine()
    net = build_network(topology, world, env)
    netns, src = resolve_source(net, source)
    dst = resolve_target(net, target, netns)
    if src is not None and src.version != dst.version:
        raise UsageError(f"FROM {source} and TO {target} are of different IP versions")
    query = Query(source, netns, src, target, dst, proto, port, listening)
    paths = Walker(net).explain(query)
    assumptions = [
        f"beyond the uplinks: {world.origin}"
        + (
            " (an upstream namespace on 203.0.113.0/24 holding 192.0.2.10 and 198.51.100.53)"
            if world.upstream and world.uplinks
            else ""
        ),
        env.words,
        "every built-in chain's policy is ACCEPT (nsgen sets none)",
        "a namespace that does not set net.ipv4.ip_forward does not forward",
    ]
    return Explanation(query, paths, assumptions, net)


def explain_probe(
    topology: Topology,
    source: str,
    target: str,
    proto: str | None = None,
    port: int | None = None,
    listening: bool | None = None,
) -> Verdict:
    """The computed verdict of one probe: reach or blocked, and why, in plain words."""
    return explain(topology, source, target, proto, port, listening).verdict


def explain_check(topology: Topology, check: Check, idle: bool = False) -> Verdict:
    """The computed verdict of a declared check (ping, tcp, dns). A tcp check with `listen:
    true` finds its own listener; without, a program is assumed to listen, unless `idle`
    (nothing but the checks' listeners runs, as in a fresh lab)."""
    if check.kind == "dns":
        return _dns(topology, check)
    assert check.to is not None
    if check.kind == "tcp":
        listening = True if check.listen else (False if idle else None)
        return explain_probe(topology, check.from_, check.to, "tcp", check.port, listening)
    return explain_probe(topology, check.from_, check.to, "icmp")


def _dns(topology: Topology, check: Check) -> Verdict:
    assert check.name is not None
    spec = topology.host if check.from_ == "host" else topology.namespaces.get(check.from_)
    dns = spec.dns if spec is not None else None
    if dns is not None and check.name in dns.hosts:
        return Verdict(
            "reach",
            True,
            f"{check.name} is in /etc/netns/{check.from_}/hosts ({dns.hosts[check.name]}): "
            "it resolves without a packet",
            check.from_,
        )
    if dns is None or not dns.nameservers:
        return Verdict(
            "dropped",
            False,
            f"{check.from_} has no hosts entry for {check.name} and no nameserver of its own",
            check.from_,
        )
    server = dns.nameservers[0]
    if ipaddress.ip_address(server).is_loopback:
        # a stand-in nameserver inside the namespace (Docker's 127.0.0.11, a pod's
        # 127.0.0.1): no DNS server of the topology listens there
        return Verdict(
            "refused",
            False,
            f"{check.name} is not in /etc/netns/{check.from_}/hosts, and nothing listens for "
            f"DNS at {server} in {check.from_}: the query fails at once",
            check.from_,
        )
    verdict = explain_probe(topology, check.from_, server, "udp", 53)
    return Verdict(
        verdict.outcome,
        verdict.reach,
        f"the query to the nameserver {server}: {verdict.reason}",
        verdict.netns,
        verdict.hop,
        verdict.object,
        verdict.reply,
    )


def check_reason(topology: Topology, number: int) -> str:
    """Why check `number` (1-based), which failed, failed, on the computed path: the reason a
    failing check prints, in one line."""
    check = topology.checks[number - 1]
    try:
        verdict = explain_check(topology, check)
    except (UsageError, ValueError) as exc:
        return f"explain cannot compute this check: {exc}"
    live = "nsgen explain --live shows where the live network differs"
    if check.expect == "reach":
        if not verdict.reach:
            return verdict.reason
        if check.kind == "tcp" and not check.listen:
            return (
                f"the topology's computed path reaches ({verdict.reason}), if a program "
                f"listens on port {check.port} there (listen: true starts one); else {live}"
            )
        return f"the topology's computed path reaches ({verdict.reason}); {live}"
    if verdict.reach:
        return f"the topology lets it through: {verdict.reason}"
    return f"the topology's computed path is blocked ({verdict.reason}); {live}"
