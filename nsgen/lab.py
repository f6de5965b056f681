"""`nsgen lab`: the whole topology in a sandbox, with a simulated upstream standing in for the
machine's uplinks. One-shot (`run_lab`: build, a command or a shell, teardown), or detached:
`lab_up` leaves the sandbox to a keeper process (nsgen.keeper; its record: nsgen.labs), which
`lab_exec` enters from any terminal and `lab_down` tears down."""

from __future__ import annotations

import os
import selectors
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nsgen
from nsgen import labs
from nsgen.checks import CheckResult, format_results
from nsgen.console import Console
from nsgen.errors import NsgenError
from nsgen.executor import Executor, Options, down_from_record
from nsgen.kinds.base import Firewall
from nsgen.labs import LabRecord
from nsgen.model import Topology
from nsgen.plan import Plan, build_plan
from nsgen.sandbox import (
    DNS_SERVER,
    INTERNET_HOST,
    TEST_ZONE,
    Upstream,
    build_upstream,
    enter_sandbox,
    start_dns,
    stop_dns,
    use_lab_resolver,
)
from nsgen.snapshot import diff_snapshots, take_snapshot


class CommandNotFound(NsgenError):
    """The command given to run in the lab does not exist (exit 127, as a shell's)."""

    exit_code = 127


@dataclass(frozen=True)
class LabResult:
    exit_code: int
    leftovers: list[str]


# ---- inside the lab ---------------------------------------------------------------------------

_PACKAGE_PARENT = str(Path(nsgen.__file__).resolve().parent.parent)


def _with_this_nsgen(env: dict[str, str]) -> dict[str, str]:
    """`env` with this installation of nsgen importable by `python -m nsgen`."""
    paths = [_PACKAGE_PARENT, *filter(None, env.get("PYTHONPATH", "").split(":"))]
    return {**env, "PYTHONPATH": ":".join(dict.fromkeys(paths))}


@contextmanager
def _lab_environment(name: str, node: str | None) -> Iterator[dict[str, str]]:
    """The environment of a command or shell in the lab: NSGEN_LAB (and NSGEN_LAB_NODE), a
    prompt naming the lab, and `nsgen` on PATH: a two-line shim that runs this very
    installation (this Python, this package), whatever PATH sudo left."""
    with tempfile.TemporaryDirectory(prefix="nsgen-lab-") as bindir:
        shim = Path(bindir, "nsgen")
        python_path = _with_this_nsgen({})["PYTHONPATH"]
        shim.write_text(
            "#!/bin/sh\n"
            f"PYTHONPATH={shlex.quote(python_path)}${{PYTHONPATH:+:$PYTHONPATH}} "
            f'exec {shlex.quote(sys.executable)} -m nsgen "$@"\n'
        )
        shim.chmod(0o755)
        env = dict(os.environ)
        env["PATH"] = f"{bindir}:{env.get('PATH') or '/usr/sbin:/usr/bin:/sbin:/bin'}"
        env["NSGEN_LAB"] = name
        where = name
        if node is not None:
            env["NSGEN_LAB_NODE"] = node
            where = f"{name} {node}"
        env["PS1"] = f"(nsgen lab {where}) \\w# "
        yield env


def _run_inside(command: list[str], env: dict[str, str]) -> int:
    """Run a command (or a shell) in the foreground; ^C belongs to it, not to us. Returns its
    exit status (128+N if signal N ended it; 127 if it does not exist)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = subprocess.run(command, env=env, check=False).returncode
    except FileNotFoundError:
        raise CommandNotFound(f"{command[0]}: command not found") from None
    finally:
        signal.signal(signal.SIGINT, previous)
    return 128 - code if code < 0 else code


def _shell() -> list[str]:
    """bash for a person at a terminal, or reading commands from a pipe (no prompts then)."""
    return ["bash", "--norc", "-i"] if sys.stdin.isatty() else ["bash", "--norc"]


# ---- building --------------------------------------------------------------------------------


def _build_upstream(
    topology: Topology, console: Console, dns: bool, keeper: int | None = None
) -> Upstream:
    """The simulated upstream (and its dnsmasq with `dns`, in the PID namespace of the lab
    whose `keeper` pidfd is given), announced on the console."""
    upstream = build_upstream(list(topology.host.external))
    if dns and keeper is not None:
        with labs.children_in_lab(keeper):
            start_dns(upstream, orphan=True)
    elif dns:
        start_dns(upstream)
    for name, (near, far) in upstream.uplinks.items():
        console.info(f"lab: stand-in uplink {name} {near} -> simulated upstream {far}")
    if upstream.uplinks:
        console.info(
            f"lab: simulated internet host {INTERNET_HOST}"
            + (f", DNS {DNS_SERVER} answering *.{TEST_ZONE}" if dns else "")
        )
    return upstream


def show_results(results: list[CheckResult], console: Console) -> bool:
    """Check verdicts on stdout (with --quiet only the failures, and the count if any);
    returns whether all passed."""
    passed = all(r.passed for r in results)
    lines = format_results(results).splitlines()
    if console.quiet:
        failed = [line for line in lines[:-1] if line.startswith("FAIL")]
        lines = [] if passed else [*failed, lines[-1]]
    for line in lines:
        console.result(line)
    return passed


def _report_teardown(leftovers: list[str], console: Console) -> None:
    if leftovers:
        console.say("lab: teardown did not restore the state before up:")
        for line in leftovers:
            console.say(f"  {line}")
    else:
        console.info("lab: teardown restored the state before up exactly")


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
    use_lab_resolver()
    upstream = _build_upstream(topology, console, dns)
    try:
        before = take_snapshot()
        plan = build_plan(topology, firewall=firewall)
        executor = Executor(plan)
        options = Options(console)
        console.info(executor.up(options))
        try:
            code = 0
            if checks is not None:
                code = 0 if show_results(checks(plan), console) else 1
            with _lab_environment(topology.name, None) as env:
                if command is not None:
                    code = _run_inside(command, env) or code
                elif checks is None:
                    console.info("lab: a shell inside the lab; 'exit' tears everything down")
                    code = _run_inside(_shell(), env)
        finally:
            console.info(down_from_record(topology.name, executor, options))
        leftovers = diff_snapshots(before, take_snapshot())
        _report_teardown(leftovers, console)
        return LabResult(code, leftovers)
    finally:
        stop_dns(upstream)


# ---- detached labs ---------------------------------------------------------------------------

KEEPER_START_SECONDS = 30.0


def start_keeper() -> tuple[int, int]:
    """Start a keeper (nsgen.keeper) and wait until its sandbox is made; returns its PID and
    start time."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nsgen.keeper"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a terminal's ^C or hangup must not reach the keeper
        env=_with_this_nsgen(dict(os.environ)),
    )
    assert process.stdout is not None and process.stderr is not None
    received = {process.stdout: b"", process.stderr: b""}
    deadline = time.monotonic() + KEEPER_START_SECONDS
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        selector.register(process.stderr, selectors.EVENT_READ)
        while selector.get_map() and b"ready\n" not in received[process.stdout]:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 4096)
                pipe: Any = key.fileobj
                if chunk:
                    received[pipe] += chunk
                else:
                    selector.unregister(pipe)
    process.stdout.close()
    process.stderr.close()
    process.wait(timeout=KEEPER_START_SECONDS)  # the keeper's parent: it exits at once
    lines = received[process.stdout].decode().splitlines()
    pid = int(lines[0].split()[1]) if lines and lines[0].startswith("pid ") else None
    start = labs.start_time(pid) if pid is not None else None
    if pid is not None and start is not None and "ready" in lines:
        return pid, start
    if pid is not None and start is not None:
        labs.kill_keeper(pid, start)
    reason = received[process.stderr].decode(errors="replace").strip().splitlines()
    raise NsgenError(
        reason[-1] if reason else f"lab keeper: not ready within {KEEPER_START_SECONDS:g} s"
    )


def lab_up(
    topology: Topology,
    file: Path,
    console: Console,
    name: str | None = None,
    dns: bool = False,
    firewall: Firewall | None = None,
) -> LabRecord:
    """Build the topology in a new sandbox held by a keeper, and leave it up (`firewall`: the
    backend, default the topology's). This process joins the keeper's namespaces to build (and
    so ends up inside them; it should exit after)."""
    if os.geteuid() != 0:
        raise NsgenError("nsgen lab up makes a sandbox and must run as root (try: sudo)")
    lab = labs.check_lab_name(name or topology.name)
    labs.claim(lab)
    keeper: tuple[int, int] | None = None
    try:
        keeper = start_keeper()
        record = LabRecord(
            name=lab,
            file=str(file) if str(file) == "-" else str(file.resolve()),
            topology=topology.name,
            since=datetime.now(UTC).isoformat(timespec="seconds"),
            keeper_pid=keeper[0],
            keeper_start=keeper[1],
            dns=dns,
            nodes=labs.lab_nodes(list(topology.namespaces)),
        )
        record.save()
        pidfd = labs.keeper(record)
        if pidfd is None:
            raise NsgenError(f"lab {lab}: its keeper ended while it was being built")
        try:
            labs.enter(pidfd)  # not its PID namespace: the executor starts threads
            _build_upstream(topology, console, dns, keeper=pidfd)
        finally:
            os.close(pidfd)
        record.save_before(take_snapshot())
        console.info(Executor(build_plan(topology, firewall=firewall)).up(Options(console)))
        record.state = "up"
        record.save()
        return record
    except BaseException:
        if keeper is not None:
            labs.kill_keeper(*keeper)
        labs.remove(lab)
        raise


def lab_exec(name: str, node: str, command: list[str] | None) -> int:
    """Run `command` (default: a shell) in NODE of a lab that is up; returns its exit status."""
    record, pidfd = labs.live(name)
    try:
        netns = record.node_netns(node)
        labs.enter(pidfd, children_too=True)  # the command dies with the lab
    finally:
        os.close(pidfd)
    argv = command or _shell()
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    with _lab_environment(record.name, node) as env:
        return _run_inside(argv, env)


def lab_down(name: str, console: Console) -> list[str]:
    """Tear down a lab: end the processes started in it, undo the topology from its record,
    compare the state with the snapshot taken before `up`, end the keeper (which takes the
    sandbox with it) and remove the record. Returns the differences (empty if none)."""
    record = labs.read(labs.check_lab_name(name))
    if record is None:
        raise NsgenError(f"no lab named {name} (nsgen lab list shows the labs)")
    pidfd = labs.keeper(record)
    if pidfd is None:
        labs.remove(name)
        console.info(
            f"lab {name} was gone already: its keeper (PID {record.keeper_pid}) had ended, "
            "and its sandbox with it; record removed"
        )
        return []
    try:
        try:
            before: dict[str, Any] | None = record.before()
        except FileNotFoundError:  # a `lab up` that never got as far as building
            before = None
        labs.end_lab_processes(record, pidfd)
        labs.enter(pidfd)
        console.info(down_from_record(record.topology, None, Options(console)))
        leftovers = diff_snapshots(before, take_snapshot()) if before is not None else []
        _report_teardown(leftovers, console)
    finally:
        labs.stop_keeper(pidfd)
        os.close(pidfd)
        labs.remove(name)
    return leftovers


@dataclass(frozen=True)
class LabRow:
    name: str
    file: str
    since: str
    state: str


def lab_list() -> list[LabRow]:
    """Every lab with its state; a gone lab is listed once more, and its record removed."""
    rows = []
    for name in labs.names():
        record, state = labs.lab_status(name)
        since = ""
        if record is not None:
            since = datetime.fromisoformat(record.since).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        rows.append(LabRow(name, record.file if record else "", since, state))
        if state == "gone":
            labs.remove(name)
    return rows
