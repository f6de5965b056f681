"""`nsgen lab`: the whole topology in a throwaway sandbox, with a simulated upstream standing in
for the machine's uplinks, then a command or a shell inside it, then teardown."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from nsgen.checks import CheckResult, format_results
from nsgen.console import Console
from nsgen.executor import Executor, Options, down_from_record
from nsgen.kinds.base import Firewall
from nsgen.model import Topology
from nsgen.plan import Plan, build_plan
from nsgen.sandbox import (
    DNS_SERVER,
    INTERNET_HOST,
    TEST_ZONE,
    build_upstream,
    enter_sandbox,
    start_dns,
    stop_dns,
)
from nsgen.snapshot import diff_snapshots, take_snapshot


@dataclass(frozen=True)
class LabResult:
    exit_code: int
    leftovers: list[str]


def _run_inside(command: list[str], name: str) -> int:
    """Run the user's command (or a shell) in the foreground; ^C belongs to it, not to us."""
    env = dict(os.environ)
    env["NSGEN_LAB"] = name
    env["PS1"] = f"(nsgen lab {name}) \\w# "
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.run(command, env=env, check=False).returncode
    finally:
        signal.signal(signal.SIGINT, previous)


def run_lab(
    topology: Topology,
    command: list[str] | None,
    console: Console,
    dns: bool = False,
    checks: Callable[[Plan], list[CheckResult]] | None = None,
    firewall: Firewall | None = None,
) -> LabResult:
    """Enter a new sandbox (this process stays in it), build the upstream and the topology,
    run the declared checks if `checks` is given, then `command` (default, without checks:
    an interactive shell), tear down, and compare with the state before `up`. The exit code
    is the command's, or 1 if a check failed. `firewall` overrides the topology's backend."""
    enter_sandbox()
    upstream = build_upstream(list(topology.host.external))
    try:
        if dns:
            start_dns(upstream)
        for name, (near, far) in upstream.uplinks.items():
            console.info(f"lab: stand-in uplink {name} {near} -> simulated upstream {far}")
        if upstream.uplinks:
            console.info(
                f"lab: simulated internet host {INTERNET_HOST}"
                + (f", DNS {DNS_SERVER} answering *.{TEST_ZONE}" if dns else "")
            )
        before = take_snapshot()
        plan = build_plan(topology, firewall=firewall)
        executor = Executor(plan)
        options = Options(console)
        console.info(executor.up(options))
        try:
            code = 0
            if checks is not None:
                results = checks(plan)
                console.say(format_results(results))
                code = 0 if all(r.passed for r in results) else 1
            if command is not None:
                code = _run_inside(command, topology.name) or code
            elif checks is None:
                console.info("lab: a shell inside the lab; 'exit' tears everything down")
                code = _run_inside(["bash", "--norc", "-i"], topology.name)
        finally:
            console.info(down_from_record(topology.name, executor, options))
        leftovers = diff_snapshots(before, take_snapshot())
        if leftovers:
            console.say("lab: teardown did not restore the state before up:")
            for line in leftovers:
                console.say(f"  {line}")
        else:
            console.info("lab: teardown restored the state before up exactly")
        return LabResult(code, leftovers)
    finally:
        stop_dns(upstream)
