"""Declared connectivity checks: planned here (who probes what, from where, how, and who
listens), spelled in check.sh by templates/check.sh.j2, and run by `nsgen check` and
`nsgen lab --check` through that same check.sh.

A check's `to` is an address, a namespace (a container, a pod, a node: its first address), a
Kubernetes Service (its cluster IP) or, from the lab's upstream, `host` (the address of the
host's first external interface, looked up when the check runs). A tcp check whose target is
a published port or a Service goes where `Topology.forwards` says the expanders' DNAT rules
send it: with `listen: true` a listener starts in every endpoint, each answering with its
namespace's name, and the check reports which one answered.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsgen.errors import NsgenError
from nsgen.fields import HOST
from nsgen.model import Check, Forward, Topology
from nsgen.sandbox import UPSTREAM_NETNS
from nsgen.state import STATE_ROOT, StateDir

UPSTREAM = "upstream"
"""`from: upstream` is nsgen lab's simulated upstream (the namespace UPSTREAM_NETNS), unless the
topology declares a namespace of that name."""

UPLINK_PREFIX = "dev:"
"""A probe target "dev:NAME" is NAME's first IPv4 address in the root namespace, read when the
check runs (the lab gives the stand-in uplink its address; the topology does not know it)."""

READ_WAIT = 0.2
"""Seconds a tcp probe without a listener of its own waits after connecting, to see a reset."""

LISTEN_WAIT = 2.0
"""Longest a tcp probe waits for its listeners to be ready."""

RESULTS = ("reach", "blocked", "reset", "error")
"""What a probe can find: an answer; none (no route, no reply, refused, not found); a
connection reset right after it was made; or no verdict (the probe could not run)."""


class NotUpError(NsgenError):
    """`nsgen check` on a topology that is not up: nothing was probed."""

    exit_code = 3


@dataclass(frozen=True)
class Listener:
    """A short-lived TCP listener a check starts in `netns` on `port` (IPv4 or IPv6); it
    answers every connection with the namespace's name."""

    netns: str
    port: int
    family: int  # 4 or 6: what to listen on


@dataclass(frozen=True)
class Probe:
    """One check as check.sh runs it."""

    number: int
    source: str  # `from` as written
    netns: str  # where the probe runs: "host" (the root namespace), a namespace, the upstream
    to: str | None  # `to` as written
    target: str  # the address probed, or "dev:NAME" (see UPLINK_PREFIX); empty for dns
    kind: str  # ping, tcp or dns
    port: int | None
    name: str | None  # dns: the name to resolve
    expect: str  # reach or blocked
    timeout: float
    listeners: tuple[Listener, ...]
    label: str  # "red -> 192.168.15.1 (blue) ping"
    family: int | None = None  # 4 or 6: of the target; dns: of the records asked for

    @property
    def seconds(self) -> str:
        """The timeout as timeout(1) takes it."""
        return f"{self.timeout:g}"

    @property
    def whole_seconds(self) -> int:
        """The timeout rounded up, for ping -W."""
        return max(1, -int(-self.timeout // 1))

    @property
    def read_wait(self) -> str:
        """How long a tcp probe reads after connecting: a listener's name comes at once; an
        unknown server is given READ_WAIT to show a reset."""
        return self.seconds if self.listeners else f"{min(READ_WAIT, self.timeout):g}"


def printable(text: str) -> str:
    """`text` with every character that is not printable spelled as a \\x, \\u escape: a label
    or reason is always one line of plain text, in a script comment or a record."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def host_port(address: str, port: int | None) -> str:
    """'10.0.0.1:80', '[2001:db8::1]:80', or the address alone when there is no port."""
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _address(text: str) -> str | None:
    """The canonical spelling of an IP address, or None if `text` is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def local_addresses(topology: Topology) -> dict[str, str]:
    """Every address the topology assigns, with the namespace that holds it."""
    found: dict[str, str] = {}

    def add(netns: str, values: list[str]) -> None:
        for value in values:
            found.setdefault(str(ipaddress.ip_interface(value).ip), netns)

    for netns, spec in topology.spaces():
        for iface in spec.interfaces:
            add(netns, iface.addresses)
            add(iface.peer.netns, iface.peer.addresses)
        for bridge in spec.bridges.values():
            add(netns, bridge.addresses)
        for vxlan in spec.vxlans.values():
            add(netns, vxlan.addresses)
    return found


def _namespaces(topology: Topology) -> set[str]:
    return {netns for netns, _ in topology.spaces()}


def service_names(topology: Topology) -> dict[str, str]:
    """Kubernetes Services a check may name in `to`, with their cluster IPs."""
    return {f.name: str(f.address) for f in topology.forwards if f.kind == "ClusterIP"}


def source_namespace(topology: Topology, source: str) -> str:
    """Where a check `from: source` runs."""
    if source == UPSTREAM and source not in topology.namespaces:
        return UPSTREAM_NETNS
    return source


def _target(topology: Topology, check: Check, runs_in: str) -> tuple[str, list[str]]:
    """The address a check probes, and what it is (for the label)."""
    to = check.to
    if to is None:
        return "", []
    address = _address(to)
    if address is not None:
        return address, []
    if to == HOST and runs_in == UPSTREAM_NETNS and topology.host.external:
        uplink = topology.host.external[0]
        return UPLINK_PREFIX + uplink, [f"{HOST}'s {uplink} address"]
    if to in _namespaces(topology):
        first = topology.first_address(to, check.family)
        return (first, [to]) if first is not None else (to, [])
    services = service_names(topology)
    if to in services:
        return services[to], [f"Service {to}"]
    return to, []  # validation refuses it; check.sh then reports what the probe finds


def _forward(
    topology: Topology, check: Check, target: str, owners: dict[str, str]
) -> Forward | None:
    """The published port or Service a tcp check's target and port stand for, if any."""
    if check.kind != "tcp":
        return None
    for forward in topology.forwards:
        if forward.protocol != "tcp" or forward.port != check.port:
            continue
        if forward.address is not None:
            if _address(forward.address) == target:
                return forward
        elif target.startswith(UPLINK_PREFIX):
            if HOST in forward.netns:
                return forward
        elif owners.get(target) in forward.netns:
            return forward
    return None


def _forward_words(forward: Forward) -> str:
    return {
        "publish": f"published by {forward.name}",
        "ClusterIP": f"Service {forward.name}",
        "NodePort": f"NodePort of {forward.name}",
    }[forward.kind]


def _family(address: str) -> int:
    return 6 if ":" in address else 4


def _listeners(
    topology: Topology, check: Check, target: str, forward: Forward | None, owners: dict[str, str]
) -> tuple[Listener, ...]:
    """Where a `listen: true` check starts its listeners: in every endpoint of the forward its
    target stands for, else in the namespace its `to` names or that holds its address."""
    if not check.listen or check.port is None:
        return ()
    if forward is not None:
        return tuple(Listener(e.netns, e.port, _family(e.address)) for e in forward.endpoints)
    owner = check.to if check.to in _namespaces(topology) else owners.get(target)
    if owner is None:
        return ()
    return (Listener(owner, check.port, _family(target)),)


def plan_probes(topology: Topology) -> list[Probe]:
    """Every declared check as a Probe, in order."""
    owners = local_addresses(topology)
    probes = []
    for number, check in enumerate(topology.checks, start=1):
        runs_in = source_namespace(topology, check.from_)
        target, words = _target(topology, check, runs_in)
        forward = _forward(topology, check, target, owners)
        if forward is not None and _forward_words(forward) not in words:
            words.append(_forward_words(forward))
        listeners = _listeners(topology, check, target, forward, owners)
        if check.kind == "dns":
            records = {4: " (A)", 6: " (AAAA)"}.get(check.family or 0, "")
            what = f"{check.from_} resolves {check.name}{records}"
        else:
            shown = (
                f"{HOST}:{check.port}"
                if target.startswith(UPLINK_PREFIX)
                else host_port(target, check.port)
            )
            about = f" ({', '.join(words)})" if words else ""
            what = f"{check.from_} -> {shown}{about} {check.kind}"
        probes.append(
            Probe(
                number=number,
                source=check.from_,
                netns=runs_in,
                to=check.to,
                target=target,
                kind=check.kind,
                port=check.port,
                name=check.name,
                expect=check.expect,
                timeout=check.timeout,
                listeners=listeners,
                label=printable(what),
                family=check.family or (_family(target) if _address(target) else None),
            )
        )
    return probes


# ---- is it up? -------------------------------------------------------------------------------


def why_not_up(topology: str, digest: str, root: Path = STATE_ROOT) -> str | None:
    """Why the topology with this name and digest is not up now (None: it is): its record in
    /run/nsgen/<name>/ must exist, hold the same digest and a journal that says `complete`.
    check.sh asks the same questions of the same files."""
    state = StateDir(topology, root)
    if not state.exists():
        return f"no record in {state.path}/"
    if state.digest() != digest:
        return f"its record in {state.path}/ is of another version of the topology (sha256 differs)"
    if not state.journal().complete:
        return f"its setup did not finish (the journal in {state.path}/ does not say complete)"
    return None


def require_up(topology: str, digest: str, root: Path = STATE_ROOT) -> None:
    """Raise NotUpError unless the topology is up (see `why_not_up`)."""
    reason = why_not_up(topology, digest, root)
    if reason is not None:
        raise NotUpError(
            f"{topology} is not up: {reason}; no check was run "
            "(nsgen up builds it; --anyway probes whatever is there)"
        )


# ---- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    probe: Probe
    result: str  # one of RESULTS
    reason: str  # what the probe saw: "reply", "network unreachable (no route)", ...
    ms: float | None
    endpoint: str | None  # the listener that answered (a namespace's name), when known
    why: str = ""
    """For a failed check: the verdict of the path computed from the topology
    (nsgen.explain.check_reason)."""

    @property
    def passed(self) -> bool:
        return self.result == self.probe.expect

    def as_json(self) -> dict[str, Any]:
        p = self.probe
        return {
            "number": p.number,
            "label": p.label,
            "from": p.source,
            "to": p.to,
            "address": None if p.target.startswith(UPLINK_PREFIX) or not p.target else p.target,
            "kind": p.kind,
            "port": p.port,
            "name": p.name,
            "expect": p.expect,
            "result": self.result,
            "passed": self.passed,
            "reason": self.reason,
            "ms": self.ms,
            "endpoint": self.endpoint,
            "why": self.why,
        }


_RECORD = re.compile(
    r"nsgen-check\t(?P<number>[0-9]{1,6})\t(?P<verdict>PASS|FAIL)\t(?P<result>[a-z]+)"
    r"\t(?P<ms>[0-9]{0,9}(?:\.[0-9]{1,6})?)\t(?P<reason>[^\t]*)\t(?P<endpoint>[^\t]*)"
)


def parse_results(tsv: str, probes: list[Probe]) -> list[CheckResult]:
    """check.sh's NSGEN_CHECK_FORMAT=tsv output: one record per check, in order, each
    `nsgen-check`, number, PASS/FAIL, result, ms, reason, endpoint (tab-separated; check.sh
    replaces control characters in the free-text fields). Anything else is an error."""
    by_number = {p.number: p for p in probes}
    results: list[CheckResult] = []
    for line in tsv.splitlines():
        match = _RECORD.fullmatch(line)
        if match is None:
            raise NsgenError(f"check.sh printed a line that is not a record: {printable(line)!r}")
        number = int(match["number"])
        probe = by_number.pop(number, None)
        if probe is None or match["result"] not in RESULTS:
            raise NsgenError(f"check.sh printed an unexpected record: {printable(line)!r}")
        result = CheckResult(
            probe,
            match["result"],
            match["reason"],
            float(match["ms"]) if match["ms"] not in ("", ".") else None,
            match["endpoint"] or None,
        )
        if result.passed != (match["verdict"] == "PASS"):
            raise NsgenError(f"check.sh's verdict contradicts its result: {printable(line)!r}")
        results.append(result)
    return results


def run_check_script(script: str, probes: list[Probe], timeout: float) -> list[CheckResult]:
    """Run a rendered check.sh (as text) and return its results. The caller has decided that
    the checks run (NSGEN_CHECK_ANYWAY=1: check.sh does not ask again)."""
    if os.geteuid() != 0:
        raise NsgenError(
            "nsgen check enters namespaces and must run as root (try: sudo nsgen check FILE)"
        )
    with tempfile.TemporaryDirectory(prefix="nsgen-check-") as tmp:
        path = Path(tmp) / "check.sh"
        path.write_text(script)
        env = {**os.environ, "NSGEN_CHECK_FORMAT": "tsv", "NSGEN_CHECK_ANYWAY": "1"}
        # its own process group: on a timeout the listeners it started go with it
        process = subprocess.Popen(
            ["bash", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise NsgenError(f"check.sh did not finish within {timeout:g} s") from None
    results = parse_results(stdout, probes)
    if len(results) != len(probes):
        lines = stderr.strip().splitlines()
        raise NsgenError(
            f"check.sh stopped after {len(results)} of {len(probes)} checks "
            f"(exit {process.returncode}): {lines[-1] if lines else 'no message'}"
        )
    return results


def budget(probes: list[Probe]) -> float:
    """The longest a whole check run may take: every probe's timeout plus its overheads."""
    return sum(p.timeout + (1.0 + LISTEN_WAIT if p.listeners else 1.0) for p in probes) + 5.0


def _ms(ms: float | None) -> str:
    return f"{ms:.1f} ms" if ms is not None else ""


def format_results(results: list[CheckResult]) -> str:
    """One line per check and a closing 'N passed, N failed'."""
    lines = []
    for r in results:
        verdict = "PASS" if r.passed else "FAIL"
        if r.passed and r.result == "reach":
            said = f"  (answered by {r.endpoint})" if r.endpoint else ""
            tail = f"  {_ms(r.ms)}{said}" if r.ms is not None else said
        else:
            tail = "  (" + ", ".join(x for x in (r.reason, _ms(r.ms)) if x) + ")"
        lines.append(f"{verdict}  {r.probe.label}  expect {r.probe.expect}{tail}")
        if r.why and not r.passed:
            lines.append(f"      why: {r.why}")
    passed = sum(r.passed for r in results)
    lines.append(f"{passed} passed, {len(results) - passed} failed")
    return "\n".join(lines)


def results_json(results: list[CheckResult], topology: str) -> str:
    passed = sum(r.passed for r in results)
    return json.dumps(
        {
            "topology": topology,
            "checks": [r.as_json() for r in results],
            "passed": passed,
            "failed": len(results) - passed,
        },
        indent=2,
        sort_keys=True,
    )
