"""`nsgen explain --live`: the computed path, checked against the running kernel hop by hop.

For every hop of the computed path it asks the kernel the same questions the model answered:
is each link there, up, and a port of the right bridge (`ip -d -j link`); which route does the
namespace pick (`ip -j route get DST [from SRC iif IIF] [mark M]`); is forwarding on; is every
nsgen rule the path relies on installed. Then it reads the firewall's counters, sends one
bounded probe packet (one ping, one tcp connection attempt, or one udp datagram), and reads
them again: each rule the computed path says matches must have counted it, and a rule that is
not nsgen's but counted it is named (a foreign DROP). Nothing is written, zeroed or flushed.

The firewall is read through a `FirewallReader`; `IptablesReader` reads iptables (the rules'
presence with `iptables -C`, their counters with `iptables-save -c`). Another backend adds a
reader of its own.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any, Protocol

from nsgen.backends.iptables import rule_words
from nsgen.errors import NsgenError, UsageError
from nsgen.explain.api import explain
from nsgen.explain.hops import (
    BridgeFact,
    Explanation,
    Fact,
    Hop,
    LinkFact,
    Path,
    PolicyFact,
    RouteFact,
    RuleFact,
    SysctlFact,
)
from nsgen.explain.network import (
    UPSTREAM,
    IPAddress,
    RuleEntry,
    Uplink,
    World,
    lab_world,
    this_machine,
)
from nsgen.fields import HOST
from nsgen.model import Topology
from nsgen.names import chain_tag
from nsgen.plan import recorded_firewall
from nsgen.sandbox import UPSTREAM_NETNS
from nsgen.state import StateDir

Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]

PROBE_SECONDS = 2
"""How long the probe may take (one packet, one answer)."""


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _in(netns: str) -> list[str]:
    """How a command starts in a namespace (by its live name)."""
    return [] if netns == HOST else ["ip", "netns", "exec", netns]


def _ip(netns: str) -> list[str]:
    return ["ip"] if netns == HOST else ["ip", "-n", netns]


# ---- the firewall, read --------------------------------------------------------------------


@dataclass(frozen=True)
class LiveRule:
    """A rule as the kernel holds it, with its packet counter."""

    table: str
    chain: str
    position: int
    text: str
    packets: int
    nsgen: bool
    """It carries the topology's tag."""

    @property
    def target(self) -> str:
        words = self.text.split()
        for flag in ("-j", "-g"):
            if flag in words[:-1]:
                return words[words.index(flag) + 1]
        return ""


@dataclass
class Counters:
    """One reading of a namespace's firewall: every rule with its counter, each model rule
    matched to its live rule, and the built-in chains' policies."""

    rules: list[LiveRule] = field(default_factory=list)
    mine: dict[tuple[str, str, int], LiveRule | None] = field(default_factory=dict)
    """(table, chain, number of the model rule) -> its live rule, None if it is missing."""
    policies: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)


class FirewallReader(Protocol):
    """Reads one namespace's firewall with its counters; it never changes anything."""

    name: str

    def read(self, netns: str, entries: list[RuleEntry]) -> Counters:
        """Every rule of the namespace (live name `netns`) with its counter, and where each
        of `entries` (nsgen's rules of that namespace) is, if it is there."""
        ...


class IptablesReader:
    """The iptables backend's reader: `iptables -C` for each of nsgen's rules (present or
    not, in iptables' own matching), `iptables-save -c` for the counters. nsgen's rules of a
    chain keep their order in the kernel, so the present ones pair with the tagged live rules
    of that chain in order."""

    name = "iptables"

    def __init__(self, tag: str, run: Runner = _run) -> None:
        self.tag = tag
        self.run = run

    def read(self, netns: str, entries: list[RuleEntry]) -> Counters:
        counters = Counters()
        done = self.run([*_in(netns), "iptables-save", "-c"])
        if done.returncode != 0:
            raise LiveError(f"iptables-save in {netns}: {done.stderr.strip() or 'failed'}")
        table = ""
        positions: dict[tuple[str, str], int] = {}
        for line in done.stdout.splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
            elif line.startswith(":"):
                name, policy, count = [*line[1:].split(), "-", "[0:0]"][:3]
                counters.policies[(table, name)] = (policy, _packets(count))
            elif line.startswith("["):
                count, _, rest = line.partition(" ")
                words = shlex.split(rest)
                if len(words) < 2 or words[0] != "-A":
                    continue
                chain = words[1]
                positions[(table, chain)] = positions.get((table, chain), 0) + 1
                tagged = self.tag in words and words[words.index(self.tag) - 1] == "--comment"
                counters.rules.append(
                    LiveRule(
                        table,
                        chain,
                        positions[(table, chain)],
                        " ".join(words[2:]),
                        _packets(count),
                        tagged,
                    )
                )
        by_chain: dict[tuple[str, str], list[RuleEntry]] = {}
        for entry in entries:
            by_chain.setdefault((entry.table, entry.chain), []).append(entry)
        for (tbl, chain), mine in by_chain.items():
            live = [r for r in counters.rules if (r.table, r.chain) == (tbl, chain) and r.nsgen]
            present = [e for e in mine if self._present(netns, e)]
            for entry in mine:
                counters.mine[(tbl, chain, entry.number)] = None
            for entry, rule in zip(present, live, strict=False):
                counters.mine[(tbl, chain, entry.number)] = rule
        return counters

    def _present(self, netns: str, entry: RuleEntry) -> bool:
        words = rule_words(entry.rule, self.tag)
        argv = [*_in(netns), "iptables", "-w", "-t", entry.table, "-C", entry.chain, *words]
        return self.run(argv).returncode == 0


def _packets(count: str) -> int:
    try:
        return int(count.strip("[]").split(":")[0])
    except ValueError:
        return 0


class LiveError(NsgenError):
    """The kernel could not be asked (the topology is not up, a command failed)."""


# ---- the comparison ------------------------------------------------------------------------


@dataclass
class HopCheck:
    """What the kernel says about one hop of the computed path."""

    hop: Hop
    direction: str
    fine: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)


@dataclass
class LiveReport:
    explanation: Explanation
    path: Path
    hops: list[HopCheck]
    probe: str
    probe_reached: bool | None
    foreign: list[str]

    @property
    def first(self) -> HopCheck | None:
        return next((h for h in self.hops if h.differences), None)

    @property
    def same(self) -> bool:
        computed = self.path.verdict.reach
        agrees = self.probe_reached is None or self.probe_reached == computed
        return self.first is None and not self.foreign and agrees

    def text(self) -> str:
        q = self.explanation.query
        lines = [f"{q.label}: the computed path, checked against the kernel", ""]
        for check in self.hops:
            state = "differs" if check.differences else "as computed"
            lines.append(f"{check.direction} {check.hop.number:>2}  {check.hop.netns}: {state}")
            lines += [f"       - {d}" for d in check.differences]
        lines.append("")
        lines.append(f"probe: {self.probe}")
        lines += [f"foreign rule: {f}" for f in self.foreign]
        lines.append(f"computed: {self.path.verdict.word}: {self.path.verdict.reason}")
        first = self.first
        if first is not None:
            lines.append(
                f"the live path leaves the computed one at {first.direction} hop "
                f"{first.hop.number} ({first.hop.netns}): {first.differences[0]}"
            )
        elif self.foreign:
            lines.append(f"the live path leaves the computed one: {self.foreign[0]}")
        elif not self.same:
            lines.append(
                "every hop is as computed, but the probe's result differs (something outside "
                "the namespaces nsgen knows, or the far end)"
            )
        else:
            lines.append("the live path is the computed one")
        return "\n".join(lines) + "\n"

    def as_json(self) -> str:
        first = self.first
        return json.dumps(
            {
                "same": self.same,
                "probe": self.probe,
                "probe_reached": self.probe_reached,
                "computed": self.path.verdict.word,
                "foreign_rules": self.foreign,
                "first_difference": None
                if first is None
                else {
                    "direction": first.direction,
                    "hop": first.hop.number,
                    "namespace": first.hop.netns,
                    "what": first.differences[0],
                },
                "hops": [
                    {
                        "direction": h.direction,
                        "hop": h.hop.number,
                        "namespace": h.hop.netns,
                        "differences": h.differences,
                    }
                    for h in self.hops
                ],
            },
            indent=2,
        )


class Kernel:
    """Asks the running kernel about links, routes and sysctls (read only)."""

    def __init__(self, run: Runner = _run) -> None:
        self.run = run
        self._links: dict[str, dict[str, dict[str, Any]]] = {}

    def links(self, netns: str) -> dict[str, dict[str, Any]]:
        if netns not in self._links:
            done = self.run([*_ip(netns), "-d", "-j", "link", "show"])
            if done.returncode != 0:
                raise LiveError(f"namespace {netns}: {done.stderr.strip() or 'cannot be read'}")
            self._links[netns] = {e["ifname"]: e for e in json.loads(done.stdout or "[]")}
        return self._links[netns]

    def route_get(self, fact: RouteFact) -> tuple[dict[str, Any] | None, str]:
        argv = [*_ip(fact.netns), "-j", "route", "get", str(fact.dst)]
        if fact.iif is not None:
            argv += ["from", str(fact.src), "iif", fact.iif]
        if fact.mark:
            argv += ["mark", hex(fact.mark)]
        done = self.run(argv)
        if done.returncode != 0:
            return None, done.stderr.strip().removeprefix("RTNETLINK answers: ") or "failed"
        found = json.loads(done.stdout or "[]")
        return (found[0] if found else None), ""

    def sysctl(self, netns: str, key: str) -> str | None:
        path = "/proc/sys/" + key.replace(".", "/")
        done = self.run([*_in(netns), "cat", path])
        return done.stdout.strip() if done.returncode == 0 else None

    def has_netns(self, netns: str) -> bool:
        return netns == HOST or FilePath("/run/netns", netns).exists()


def _check_fact(kernel: Kernel, fact: Fact) -> str | None:
    """None if the kernel agrees with `fact`, else what differs, in words."""
    if isinstance(fact, LinkFact):
        links = kernel.links(fact.netns)
        link = links.get(fact.name)
        where = "the host" if fact.netns == HOST else fact.netns
        if link is None:
            return f"link {fact.name} does not exist in {where} (deleted?)"
        if "UP" not in link.get("flags", []):
            return f"link {fact.name} in {where} is down (ip link set {fact.name} down?)"
        if fact.master is not None and link.get("master") != fact.master:
            now = link.get("master")
            return f"link {fact.name} in {where} is not a port of {fact.master}" + (
                f" (it is a port of {now})" if now else ""
            )
        if link.get("operstate") == "DOWN" or "NO-CARRIER" in link.get("flags", []):
            other = f", {fact.peer}," if fact.peer else ""
            return f"link {fact.name} in {where} has no carrier: its other end{other} is down"
        return None
    if isinstance(fact, RouteFact):
        found, error = kernel.route_get(fact)
        route = fact.route
        asked = f"ip route get {fact.dst}" + (
            f" from {fact.src} iif {fact.iif}" if fact.iif else ""
        )
        if found is None:
            return f"{asked}: the kernel says '{error}', the model {route.text}"
        if route.origin == "local":
            if found.get("type") != "local":
                return f"{asked}: {fact.dst} is not local to the kernel (dev {found.get('dev')})"
            return None
        problems = []
        if found.get("type", "unicast") != "unicast":
            problems.append(f"type {found.get('type')}")
        if route.dev is not None and found.get("dev") != route.dev:
            problems.append(f"dev {found.get('dev')}, not {route.dev}")
        gateway = found.get("gateway")
        if route.via is not None and (
            gateway is None or ipaddress.ip_address(gateway) != route.via
        ):
            problems.append(f"via {gateway or 'no gateway'}, not {route.via}")
        if route.via is None and gateway is not None:
            problems.append(f"via {gateway}, not directly")
        if problems:
            return f"{asked}: the kernel picks {', '.join(problems)} (the model: {route.text})"
        return None
    if isinstance(fact, SysctlFact):
        value = kernel.sysctl(fact.netns, fact.key)
        if value != fact.value:
            return f"{fact.key} is {value} in {fact.netns}, not {fact.value}"
        return None
    return None


def _bridge_fdb(kernel: Kernel, fact: BridgeFact) -> str | None:
    """After the probe: a port the model says the frame leaves through must be forwarding."""
    if fact.out_port is None:
        return None
    port = kernel.links(fact.netns).get(fact.out_port)
    if port is None:
        return f"port {fact.out_port} of {fact.bridge} does not exist"
    state = (port.get("linkinfo", {}).get("info_slave_data", {}) or {}).get("state")
    if state not in (None, "forwarding"):
        return f"port {fact.out_port} of {fact.bridge} is {state}, not forwarding"
    return None


def machine_world(topology: Topology, kernel: Kernel) -> World:
    """The world on this machine: the lab's when nsgen lab's upstream is there, else the
    uplinks' live addresses and the host's default gateway, with nothing beyond them."""
    if kernel.has_netns(UPSTREAM_NETNS):
        return lab_world(topology)
    uplinks = []
    for name in topology.host.external:
        link = kernel.links(HOST).get(name)
        done = kernel.run(["ip", "-j", "addr", "show", "dev", name])
        entries = json.loads(done.stdout or "[]") if done.returncode == 0 else []
        infos = [i for e in entries for i in e.get("addr_info", []) if i.get("family") == "inet"]
        if link is None or not infos:
            continue
        address = ipaddress.ip_interface(f"{infos[0]['local']}/{infos[0]['prefixlen']}")
        gateway = _default_gateway(kernel, name) or address.network.network_address
        uplinks.append(Uplink(name, address, gateway, ""))
    return World(tuple(uplinks), upstream=False, origin="this machine's uplinks")


def _default_gateway(kernel: Kernel, dev: str) -> IPAddress | None:
    done = kernel.run(["ip", "-j", "route", "show", "default"])
    for route in json.loads(done.stdout or "[]") if done.returncode == 0 else []:
        if route.get("dev") == dev and route.get("gateway"):
            return ipaddress.ip_address(route["gateway"])
    return None


def _probe(
    kernel: Kernel, netns: str, src: IPAddress | None, dst: IPAddress, proto: str, port: int | None
) -> tuple[str, bool | None]:
    """Send one bounded probe from `netns`; what it saw, and whether it got an answer (None:
    a udp datagram, whose answer depends on the program at the far end)."""
    seconds = str(PROBE_SECONDS)
    if proto == "icmp":
        argv = [*_in(netns), "ping", "-c", "1", "-W", seconds, "-q"]
        argv += ["-I", str(src)] if src is not None else []
        done = kernel.run([*argv, str(dst)])
        return (
            ("one ping: answered", True)
            if done.returncode == 0
            else (f"one ping: no answer within {seconds} s", False)
        )
    if proto == "tcp":
        script = 'exec 3<>"/dev/tcp/$0/$1"'
        done = kernel.run(
            [*_in(netns), "timeout", seconds, "bash", "-c", script, str(dst), str(port)]
        )
        if done.returncode == 0:
            return "one tcp connection: accepted", True
        if done.returncode == 124:
            return f"one tcp connection: no answer within {seconds} s", False
        return "one tcp connection: refused or unreachable", False
    script = 'printf nsgen-explain >"/dev/udp/$0/$1"'
    kernel.run([*_in(netns), "timeout", seconds, "bash", "-c", script, str(dst), str(port)])
    return "one udp datagram sent (its answer depends on the program there)", None


def _facts(hops: Iterable[Hop]) -> list[tuple[Hop, Fact]]:
    return [(hop, event.fact) for hop in hops for event in hop.events if event.fact is not None]


def explain_live(
    topology: Topology,
    source: str,
    target: str,
    proto: str | None,
    port: int | None,
    run: Runner = _run,
    reader: FirewallReader | None = None,
) -> LiveReport:
    """Compute the path in the world this machine has, then check it against the kernel (see
    the module docstring)."""
    if reader is None:
        firewall = recorded_firewall(topology, StateDir(topology.name).digest())
        if firewall != "iptables":
            raise UsageError(
                f"{topology.name} is up with firewall: {firewall}, and --live reads only "
                "iptables' rule counters so far; without --live, explain computes the same "
                "path (both backends install the same rules)"
            )
        reader = IptablesReader(chain_tag(topology.name), run)
    kernel = Kernel(run)
    world = machine_world(topology, kernel)
    explanation = explain(topology, source, target, proto, port, None, world, this_machine())
    missing = [
        h.netns
        for p in explanation.paths
        for h in [*p.hops, *p.reply]
        if not kernel.has_netns(h.live)
    ]
    if missing:
        raise LiveError(
            f"namespace {missing[0]} does not exist: is {topology.name} up here? "
            "(inside a lab: nsgen lab FILE -- nsgen explain --live ...)"
        )
    spaces = sorted({h.live for p in explanation.paths for h in [*p.hops, *p.reply]})
    entries = {
        live: [
            entry
            for space in explanation.net.spaces.values()
            if space.live_name == live
            for rules in space.chains.values()
            for entry in rules
        ]
        for live in spaces
    }
    before = {live: reader.read(live, entries[live]) for live in spaces}
    q = explanation.query
    probe, reached = _probe(kernel, _live_name(q.netns), q.src, q.dst, q.proto, q.port)
    after = {live: reader.read(live, entries[live]) for live in spaces}
    path = _taken(explanation, before, after)
    foreign = _foreign(before, after)
    checks: list[HopCheck] = []
    for direction, hops in (("request", path.hops), ("reply", path.reply)):
        for hop in hops:
            check = HopCheck(hop, direction)
            # a foreign rule that counted the probe is the first thing to say about the
            # first hop through its namespace
            check.differences += foreign.pop(hop.live, [])
            for _, fact in _facts([hop]):
                problem = _check_fact(kernel, fact)
                if isinstance(fact, BridgeFact):
                    problem = _bridge_fdb(kernel, fact)
                if isinstance(fact, RuleFact):
                    problem = _rule(fact, before, after, direction)
                if isinstance(fact, PolicyFact):
                    problem = _policy(fact, after)
                if problem is not None and problem not in check.differences:
                    check.differences.append(problem)
            checks.append(check)
    left = [finding for findings in foreign.values() for finding in findings]
    return LiveReport(explanation, path, checks, probe, reached, left)


def _live_name(netns: str) -> str:
    return UPSTREAM_NETNS if netns == UPSTREAM else netns


def _key(entry: RuleEntry) -> tuple[str, str, int]:
    return (entry.table, entry.chain, entry.number)


def _taken(
    explanation: Explanation, before: dict[str, Counters], after: dict[str, Counters]
) -> Path:
    """The branch the probe took: the one whose deciding rules counted it (a random choice
    goes one way per connection); the first if none tells."""
    best, score = explanation.paths[0], -1
    for path in explanation.paths:
        counted = 0
        for _, fact in _facts(path.hops):
            if isinstance(fact, RuleFact) and fact.decided:
                b = before[fact.netns].mine.get(_key(fact.entry))
                a = after[fact.netns].mine.get(_key(fact.entry))
                if a is not None and b is not None and a.packets > b.packets:
                    counted += 1
        if counted > score:
            best, score = path, counted
    return best


def _rule(
    fact: RuleFact,
    before: dict[str, Counters],
    after: dict[str, Counters],
    direction: str,
) -> str | None:
    entry = fact.entry
    step = f", {entry.step}" if entry.step else ""
    live = after[fact.netns].mine.get(_key(entry))
    if live is None:
        return (
            f"{entry.name} ({entry.text}{step}) is missing from the kernel: removed by hand, "
            "or never installed"
        )
    was = before[fact.netns].mine.get(_key(entry))
    if direction == "request" and was is not None and live.packets <= was.packets:
        return (
            f"{entry.name} ({entry.text}) did not count the probe: the packet never reached "
            "it, or took another way"
        )
    return None


def _policy(fact: PolicyFact, after: dict[str, Counters]) -> str | None:
    policy, _ = after[fact.netns].policies.get((fact.table, fact.chain), ("ACCEPT", 0))
    if policy != fact.policy:
        return (
            f"the policy of {fact.table} {fact.chain} is {policy}, not {fact.policy} "
            "(set outside nsgen)"
        )
    return None


def _foreign(before: dict[str, Counters], after: dict[str, Counters]) -> dict[str, list[str]]:
    """Per namespace, the rules that are not nsgen's and counted the probe while deciding its
    fate (a DROP or a REJECT someone else put there)."""
    found: dict[str, list[str]] = {}
    for netns, reading in after.items():
        earlier = {(r.table, r.chain, r.text): r.packets for r in before[netns].rules}
        for rule in reading.rules:
            grew = rule.packets > earlier.get((rule.table, rule.chain, rule.text), rule.packets)
            if not grew or rule.nsgen or rule.target not in ("DROP", "REJECT"):
                continue
            where = "the host" if netns == HOST else netns
            found.setdefault(netns, []).append(
                f"{rule.table} {rule.chain} rule {rule.position} in {where} is not nsgen's and "
                f"counted the probe: -A {rule.chain} {rule.text}"
            )
    return found
