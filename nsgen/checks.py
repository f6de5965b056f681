"""Declared connectivity checks: planned here (who probes what, how), spelled in check.sh by the
templates, and run by `nsgen check` / `nsgen lab --check` through that same check.sh."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from nsgen.errors import NsgenError
from nsgen.fields import ip_address
from nsgen.model import Topology


@dataclass(frozen=True)
class Probe:
    """One check as check.sh runs it."""

    number: int
    source: str  # namespace the probe runs in ("host": the root namespace)
    target: str  # address (empty for dns)
    kind: str  # ping, tcp or dns
    port: int | None
    listen_in: str | None  # tcp: namespace to start a listener in first
    name: str | None  # dns: the name to resolve
    expect: str  # reach or blocked
    timeout: float
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


def host_port(address: str, port: int | None) -> str:
    """'10.0.0.1:80', '[2001:db8::1]:80', or the address alone when there is no port."""
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def plan_probes(topology: Topology) -> list[Probe]:
    probes = []
    for number, check in enumerate(topology.checks, start=1):
        target, shown, family = "", "", check.family
        if check.to is not None:
            address = topology.first_address(check.to, check.family)
            target = address if address is not None else check.to
            with contextlib.suppress(ValueError):  # not an address: refused by validation
                family = ip_address(target).version
            about = f" ({check.to})" if address is not None else ""
            shown = f"{host_port(target, check.port)}{about}"
        records = {4: " (A)", 6: " (AAAA)"}.get(check.family or 0, "")
        what = {
            "ping": f"{check.from_} -> {shown} ping",
            "tcp": f"{check.from_} -> {shown} tcp",
            "dns": f"{check.from_} resolves {check.name}{records}",
        }[check.kind]
        probes.append(
            Probe(
                number=number,
                source=check.from_,
                target=target,
                kind=check.kind,
                port=check.port,
                listen_in=check.to if check.listen else None,
                name=check.name,
                expect=check.expect,
                timeout=check.timeout,
                label=what,
                family=family,
            )
        )
    return probes


@dataclass(frozen=True)
class CheckResult:
    number: int
    label: str
    expect: str
    passed: bool
    detail: str
    ms: float | None


def parse_results(tsv: str) -> list[CheckResult]:
    """check.sh's NSGEN_CHECK_FORMAT=tsv lines: number, PASS/FAIL, expect, ms, label, detail."""
    results = []
    for line in tsv.splitlines():
        fields = line.split("\t")
        if len(fields) != 6:
            continue
        number, verdict, expect, ms, label, detail = fields
        results.append(
            CheckResult(
                int(number), label, expect, verdict == "PASS", detail, float(ms) if ms else None
            )
        )
    return results


def run_check_script(script: str, timeout: float) -> list[CheckResult]:
    """Run a rendered check.sh (as text) and return its results."""
    if os.geteuid() != 0:
        raise NsgenError(
            "nsgen check enters namespaces and must run as root (try: sudo nsgen check FILE)"
        )
    with tempfile.TemporaryDirectory(prefix="nsgen-check-") as tmp:
        path = Path(tmp) / "check.sh"
        path.write_text(script)
        env = {**os.environ, "NSGEN_CHECK_FORMAT": "tsv"}
        try:
            done = subprocess.run(
                ["bash", str(path)],
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise NsgenError(f"check.sh did not finish within {timeout:g} s") from None
    results = parse_results(done.stdout)
    if not results and done.returncode != 0:
        raise NsgenError(f"check.sh failed (exit {done.returncode}): {done.stderr.strip()}")
    return results


def budget(probes: list[Probe]) -> float:
    """The longest a whole check run may take: every probe's timeout plus its overheads."""
    return sum(p.timeout + (3.0 if p.listen_in else 1.0) for p in probes) + 5.0


def format_results(results: list[CheckResult]) -> str:
    lines = []
    for r in results:
        verdict = "PASS" if r.passed else "FAIL"
        timing = f"  {r.ms:.1f} ms" if r.ms is not None and r.passed else ""
        shown = r.detail and not (r.passed and r.expect == "reach")
        detail = f"  ({r.detail})" if shown else ""
        lines.append(f"{verdict}  {r.label}  expect {r.expect}{timing}{detail}")
    passed = sum(r.passed for r in results)
    lines.append(f"{passed} passed, {len(results) - passed} failed")
    return "\n".join(lines)


def results_json(results: list[CheckResult], topology: str) -> str:
    passed = sum(r.passed for r in results)
    return json.dumps(
        {
            "topology": topology,
            "checks": [asdict(r) for r in results],
            "passed": passed,
            "failed": len(results) - passed,
        },
        indent=2,
        sort_keys=True,
    )
