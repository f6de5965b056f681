"""`make bench`: time setup and teardown of the benchmark network (bench.topology) for several N,
by every method, inside a private nsgen sandbox; verify each result; write a table, a plot and
the raw numbers under bench/results/.

    python -m bench.run [--sizes 10,100,500,1000] [--runs 3] [--methods a,b,c,d,e,f]
                        [--timeout 300] [--out bench/results]

Each setup and each teardown is one command (a subprocess), timed wall-clock from start to
exit, with a hard timeout. After every setup: one ping (1 packet, 1 s) from the first to the
last namespace, and one through the NAT to the sandbox's simulated upstream host. After every
teardown: no namespace, no br0, no veth, no iptables rule, no sysctl change left (anything left
is removed and the run counts as failed). Between measurements the runner waits until the
machine is idle again (the kernel finishes destroying namespaces in the background).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import handmade
from bench.topology import (
    BRIDGE,
    NAME,
    check_size,
    ns_address,
    ns_name,
    write_topology,
)
from nsgen.fields import HOST
from nsgen.live import LiveState
from nsgen.sandbox import INTERNET_HOST, build_upstream, enter_sandbox, require_sandbox

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_SIZES = (10, 100, 500, 1000)
FLOOR = "f"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
OUR_STATE = (
    "bench",
    "bench-floor",
    "bench-cni",
    "bench-pyroute2",
    "bench-handmade",
    ".sysctl",
    ".sysctl.lock",
)
"""Entries of /run/nsgen the methods create (nsgen's record, the peers' saved values)."""


# ---- the methods -----------------------------------------------------------------------------


@dataclass
class Work:
    """One N's files: the topology, the rendered scripts, the logs."""

    n: int
    dir: Path

    @property
    def topology(self) -> Path:
        return self.dir / "topology.yaml"

    def scripts(self, style: str) -> Path:
        return self.dir / f"scripts-{style}"


Command = list[str]


@dataclass(frozen=True)
class Method:
    key: str
    label: str
    setup: Callable[[Work], Command]
    teardown: Callable[[Work], Command]
    prepare: Callable[[Work], float] | None = None
    """Untimed work before the runs of one N (rendering); returns its seconds."""


def _python(*args: str) -> Command:
    return [sys.executable, *args]


def _nsgen(*args: str) -> Command:
    script = Path(sys.executable).with_name("nsgen")
    return [str(script), *args] if script.exists() else _python("-m", "nsgen", *args)


def _render(style: str) -> Callable[[Work], float]:
    def prepare(work: Work) -> float:
        argv = _nsgen("render", str(work.topology), "-o", str(work.scripts(style)))
        if style != "default":
            argv += ["--style", style]
        start = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, check=False, env=_env())
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)} failed: {result.stderr.strip()}")
        return elapsed

    return prepare


def _write_handmade(work: Work) -> float:
    start = time.perf_counter()
    handmade.write(work.n, work.dir / "handmade")
    return time.perf_counter() - start


def _log(work: Work, what: str) -> str:
    return str(work.dir / f"{what}-{time.monotonic_ns()}.jsonl")


METHODS: dict[str, Method] = {
    m.key: m
    for m in (
        Method(
            "a",
            "nsgen scripts (default)",
            lambda w: [str(w.scripts("default") / "setup.sh")],
            lambda w: [str(w.scripts("default") / "teardown.sh")],
            _render("default"),
        ),
        Method(
            "b",
            "nsgen up/down",
            lambda w: _nsgen("up", str(w.topology), "--quiet", "--log", _log(w, "up")),
            lambda w: _nsgen("down", NAME, "--quiet", "--log", _log(w, "down")),
        ),
        Method(
            "c",
            "nsgen scripts (tutorial style)",
            lambda w: [str(w.scripts("tutorial") / "setup.sh")],
            lambda w: [str(w.scripts("tutorial") / "teardown.sh")],
            _render("tutorial"),
        ),
        Method(
            "d",
            "CNI bridge + host-local",
            lambda w: _python("-m", "bench.peers", "cni", "setup", str(w.n)),
            lambda w: _python("-m", "bench.peers", "cni", "teardown", str(w.n)),
        ),
        Method(
            "e",
            "pyroute2",
            lambda w: _python("-m", "bench.peers", "pyroute2", "setup", str(w.n)),
            lambda w: _python("-m", "bench.peers", "pyroute2", "teardown", str(w.n)),
        ),
        Method(
            "f",
            "floor (stdlib rtnetlink)",
            lambda w: _python("-m", "bench.floor", "setup", str(w.n)),
            lambda w: _python("-m", "bench.floor", "teardown", str(w.n)),
        ),
        Method(
            "g",
            "floor, IPv6 autoconf left on like (a)-(e)",
            lambda w: _python("-m", "bench.floor", "setup", "--ipv6-autoconf", str(w.n)),
            lambda w: _python("-m", "bench.floor", "teardown", str(w.n)),
        ),
        Method(
            "h",
            "hand-written batch script (no log, no rollback)",
            lambda w: ["bash", str(w.dir / "handmade" / "setup.sh")],
            lambda w: ["bash", str(w.dir / "handmade" / "teardown.sh")],
            _write_handmade,
        ),
    )
}


def label(key: str) -> str:
    return METHODS[key].label


def missing_requirements(keys: list[str]) -> list[str]:
    """What the chosen methods need and this machine lacks (bench/install.sh installs it)."""
    problems = []
    if "d" in keys:
        from bench.peers import CNI_PATH, cni_missing

        if missing := cni_missing():
            problems.append(f"CNI plugins missing in {CNI_PATH}: {', '.join(missing)}")
    if "e" in keys:
        from bench.peers import pyroute2_missing

        if problem := pyroute2_missing():
            problems.append(problem)
    for tool in ("ip", "iptables", "iptables-save", "ping"):
        if shutil.which(tool, path=_env()["PATH"]) is None:
            problems.append(f"{tool} is not installed")
    return problems


# ---- running one command ---------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [
        str(Path(sys.executable).parent),
        *env.get("PATH", "").split(":"),
        "/usr/local/sbin",
        "/usr/sbin",
        "/sbin",
        "/usr/bin",
        "/bin",
    ]
    env["PATH"] = ":".join(dict.fromkeys(p for p in paths if p))
    env["PYTHONPATH"] = ":".join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class Outcome:
    seconds: float
    ok: bool
    error: str = ""
    timed_out: bool = False
    phases: dict[str, float] = field(default_factory=dict)


def timed(argv: Command, timeout: float, log: Path) -> Outcome:
    """Run argv (in its own process group, output to log), wall-clock timed; on timeout kill
    that group (this process's own child and its descendants) and report it."""
    require_sandbox()
    with open(log, "wb") as out:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=_env(),
            start_new_session=True,
        )
        # Popen.wait(timeout) polls with sleeps of up to 50 ms, which would round every time
        # up to the next 50 ms; a pidfd becomes readable the moment the child exits.
        pidfd = os.pidfd_open(process.pid)
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            exited = poller.poll(int(timeout * 1000))
        finally:
            os.close(pidfd)
        elapsed = time.perf_counter() - start
        if not exited:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return Outcome(elapsed, False, f"timed out after {timeout:g} s", timed_out=True)
        code = process.wait()
    text = log.read_text(errors="replace")
    if code != 0:
        tail = " | ".join(text.strip().splitlines()[-3:])
        return Outcome(elapsed, False, f"exit {code}: {tail[-400:]}")
    phases: dict[str, float] = {}
    lines = text.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        try:
            phases = {k: float(v) for k, v in json.loads(lines[-1]).items()}
        except (ValueError, AttributeError):
            phases = {}
    return Outcome(elapsed, True, phases=phases)


def sh(
    *argv: str, netns: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    require_sandbox()
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    return subprocess.run(
        full, capture_output=True, text=True, timeout=timeout, check=False, env=_env()
    )


# ---- checks and cleanup ----------------------------------------------------------------------


def ping(source: str, target: str) -> bool:
    """One bounded ping (1 packet, 1 s) from a namespace of the sandbox to an address in one."""
    return sh("ping", "-c", "1", "-W", "1", "-q", target, netns=source).returncode == 0


def verify_setup(n: int) -> str:
    """'' if the first namespace reaches the last one, and the upstream through the NAT."""
    first, last = ns_name(1), str(ns_address(n))
    if not ping(first, last):
        return f"setup check: ping {first} -> {ns_name(n)} ({last}) failed"
    if not ping(first, INTERNET_HOST):
        return f"setup check: ping {first} -> {INTERNET_HOST} (upstream, through NAT) failed"
    return ""


_BUILTIN = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}


def _iptables_rules(live: LiveState) -> list[str]:
    """iptables-save as 'TABLE LINE' for every rule and every non-built-in chain. Tables and
    built-in chains are left out: the nf_tables backend creates a table on first use, and no
    method removes it."""
    table, lines = "", []
    for line in live.iptables_rules(HOST):
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A "):
            lines.append(f"{table} {line}")
        elif line.startswith(":") and line[1:].split()[0] not in _BUILTIN:
            lines.append(f"{table} {line.split()[0]}")
        elif line.startswith(":") and line.split()[1] != "ACCEPT":
            lines.append(f"{table} {' '.join(line.split()[:2])}")
    return lines


def state() -> dict[str, Any]:
    """What the methods may leave behind: names in /run/netns, root links, iptables, sysctl,
    /run/nsgen entries (read with nsgen's own reader of live state, as status and the
    snapshot do; root namespace only, so that N = 1000 costs nothing per namespace)."""
    live = LiveState()
    return {
        "netns": live.named_namespaces(),
        "links": sorted(live.link_list(HOST)),
        "iptables": _iptables_rules(live),
        "ip_forward": live.sysctl_values(HOST, ["net/ipv4/ip_forward"])["net/ipv4/ip_forward"],
        "run_nsgen": sorted(p for p in os.listdir("/run/nsgen") if p in OUR_STATE),
    }


def leftovers(baseline: dict[str, Any]) -> list[str]:
    now = state()
    found = []
    for key in ("netns", "links", "run_nsgen"):
        extra = sorted(set(now[key]) - set(baseline[key]))
        if extra:
            shown = ", ".join(extra[:5]) + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else "")
            found.append(f"{key}: {shown}")
    extra_rules = [r for r in now["iptables"] if r not in baseline["iptables"]]
    if extra_rules:
        found.append(f"iptables: {len(extra_rules)} line(s), e.g. {extra_rules[0]}")
    if now["ip_forward"] != baseline["ip_forward"]:
        found.append(f"ip_forward {baseline['ip_forward']} -> {now['ip_forward']}")
    return found


def clean_up(baseline: dict[str, Any]) -> None:
    """Remove what a failed or killed method left: only what is not in the baseline (taken
    before the benchmark created anything), so nothing else is touched."""
    require_sandbox()
    now = state()
    for name in sorted(set(now["netns"]) - set(baseline["netns"])):
        sh("ip", "netns", "delete", name)
    for name in sorted(set(now["links"]) - set(baseline["links"])):
        if name != BRIDGE:
            sh("ip", "link", "delete", name)
    if BRIDGE in set(now["links"]) - set(baseline["links"]):
        sh("ip", "link", "delete", BRIDGE)
    chains: list[tuple[str, str]] = []
    for entry in now["iptables"]:
        if entry in baseline["iptables"]:
            continue
        table, line = entry.split(" ", 1)
        if line.startswith("-A "):
            sh("iptables", "-w", "-t", table, "-D", *shlex.split(line)[1:])
        elif line.startswith(":") and len(line.split()) == 1:
            chains.append((table, line[1:]))
    for table, chain in chains:  # chains we created (not in the baseline), emptied above
        sh("iptables", "-w", "-t", table, "-F", chain)
    for table, chain in chains:
        sh("iptables", "-w", "-t", table, "-X", chain)
    IP_FORWARD.write_text(baseline["ip_forward"] + "\n")
    for entry in set(now["run_nsgen"]) - set(baseline["run_nsgen"]):
        path = Path("/run/nsgen", entry)
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def _cpu() -> tuple[int, int]:
    """(all jiffies, kernel jiffies: system + irq + softirq) from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return sum(values), values[2] + values[5] + values[6]


def settle(limit: float, window: float = 0.25, quiet: float = 0.1) -> float:
    """Wait until the kernel is quiet (under 10 % of all CPU time in kernel mode over a quarter
    second): it destroys deleted namespaces in the background, on one core, for seconds after
    the last one is gone from /run/netns. Kernel time rather than idle time, so that other
    users' programs on the machine do not keep this waiting. Returns the seconds waited (at
    most `limit`)."""
    start = time.perf_counter()
    before = _cpu()
    while time.perf_counter() - start < limit:
        time.sleep(window)
        after = _cpu()
        total = after[0] - before[0]
        if total > 0 and (after[1] - before[1]) / total < quiet:
            break
        before = after
    return time.perf_counter() - start


# ---- the benchmark ---------------------------------------------------------------------------


@dataclass
class Cell:
    """One method at one N."""

    setup: list[float] = field(default_factory=list)
    teardown: list[float] = field(default_factory=list)
    settle: list[float] = field(default_factory=list)
    settle_after_setup: list[float] = field(default_factory=list)
    phases: list[dict[str, dict[str, float]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: str = ""
    prepare_seconds: float | None = None

    def median(self, what: str) -> float | None:
        values: list[float] = getattr(self, what)
        return statistics.median(values) if values else None


def say(text: str) -> None:
    print(text, flush=True)


def run_once(
    method: Method,
    work: Work,
    baseline: dict[str, Any],
    cell: Cell,
    timeout: float,
    settle_limit: float,
) -> bool:
    """One setup, check, teardown, check. Returns False if the method must not go on at this N
    (a timeout)."""
    require_sandbox()
    logs = work.dir / "logs"
    logs.mkdir(exist_ok=True)
    tag = f"{method.key}-{work.n}-{len(cell.setup) + len(cell.failures)}"
    up = timed(method.setup(work), timeout, logs / f"{tag}-setup.log")
    if not up.ok:
        cell.failures.append(f"setup: {up.error}")
        clean_up(baseline)
        return not up.timed_out
    problem = verify_setup(work.n)
    settled_up = settle(settle_limit)
    down = timed(method.teardown(work), timeout, logs / f"{tag}-teardown.log")
    left = leftovers(baseline)
    if left:
        clean_up(baseline)
    if problem or not down.ok or left:
        cell.failures.append(
            "; ".join(
                filter(
                    None,
                    [
                        problem,
                        f"teardown: {down.error}" if not down.ok else "",
                        f"teardown left {'; '.join(left)}" if left else "",
                    ],
                )
            )
        )
        return not down.timed_out
    cell.setup.append(up.seconds)
    cell.teardown.append(down.seconds)
    cell.settle_after_setup.append(settled_up)
    cell.settle.append(settle(settle_limit))
    if up.phases or down.phases:
        cell.phases.append({"setup": up.phases, "teardown": down.phases})
    return True


def benchmark(
    sizes: list[int],
    runs: int,
    keys: list[str],
    timeout: float,
    settle_limit: float,
    workroot: Path,
) -> dict[str, dict[int, Cell]]:
    """Enter a new sandbox (this process stays in it) and measure() there."""
    enter_sandbox()
    return measure(sizes, runs, keys, timeout, settle_limit, workroot)


def _prepare(work: Work, keys: list[str]) -> tuple[dict[str, float | None], dict[str, str]]:
    """Write the topology and render the scripts. Returns the render seconds by method, and
    the methods whose preparation failed, with why."""
    work.dir.mkdir(parents=True, exist_ok=True)
    write_topology(work.n, work.topology)
    seconds: dict[str, float | None] = {}
    failed: dict[str, str] = {}
    for key in keys:
        prepare = METHODS[key].prepare
        try:
            seconds[key] = prepare(work) if prepare is not None else None
        except (RuntimeError, OSError) as exc:
            failed[key] = " ".join(str(exc).split())[-300:]
    return seconds, failed


def measure(
    sizes: list[int],
    runs: int,
    keys: list[str],
    timeout: float,
    settle_limit: float,
    workroot: Path,
    warmup: bool = True,
) -> dict[str, dict[int, Cell]]:
    """The benchmark, in the current sandbox: the stand-in uplink, then for each N every run
    of every method (interleaved, so that slow drifts of the machine spread over all of them).
    With `warmup`, one untimed run of each method first, at the smallest N if it is ≤ 100."""
    require_sandbox()
    build_upstream(["eth0"])
    baseline = state()
    cells: dict[str, dict[int, Cell]] = {k: {} for k in keys}
    stopped: dict[str, str] = {}
    if warmup and sizes[0] <= 100:
        work = Work(sizes[0], workroot / "warmup")
        _, broken = _prepare(work, keys)
        for key in keys:
            if key in broken:
                say(f"warm-up N={sizes[0]} {key}: preparation failed: {broken[key]}")
                continue
            scratch = Cell()
            run_once(METHODS[key], work, baseline, scratch, timeout, settle_limit)
            say(f"warm-up N={sizes[0]} {key}: " + ("ok" if scratch.setup else scratch.failures[0]))
        shutil.rmtree(work.dir, ignore_errors=True)
    settle(settle_limit)
    for index, n in enumerate(sizes):
        work = Work(n, workroot / f"n{n}")
        active = [key for key in keys if key not in stopped]
        renders, broken = _prepare(work, active)
        for key in keys:
            cell = cells[key][n] = Cell(prepare_seconds=renders.get(key))
            if key in broken:
                cell.failures.append(f"preparation failed: {broken[key]}")
                cell.skipped = "could not be prepared"
                say(f"N={n:<5} {key} {label(key)}: {cell.failures[-1]}")
            elif key in stopped:
                cell.skipped = stopped[key]
                say(f"N={n:<5} {key} {label(key)}: skipped ({cell.skipped})")
        for run in range(runs):
            for key in active:
                cell = cells[key][n]
                if cell.skipped:
                    continue
                if not run_once(METHODS[key], work, baseline, cell, timeout, settle_limit):
                    cell.skipped = f"timed out at N={n}"
                    stopped[key] = f"exceeded the {timeout:g} s timeout at N={n}"
                last = (
                    f"setup {cell.setup[-1]:.3f} s, teardown {cell.teardown[-1]:.3f} s"
                    if len(cell.setup) > run
                    else f"FAILED: {cell.failures[-1]}"
                )
                say(f"N={n:<5} {key} {label(key)}: run {run + 1}/{runs}: {last}")
        if index + 1 < len(sizes):
            grow = sizes[index + 1] / n
            for key in active:
                worst = max((cells[key][n].median(w) or 0.0) for w in ("setup", "teardown"))
                if key not in stopped and worst * grow > timeout:
                    stopped[key] = (
                        f"predicted {worst * grow:.1f} s at N={sizes[index + 1]} "
                        f"(from {worst:.1f} s at N={n}) > the {timeout:g} s timeout"
                    )
        shutil.rmtree(work.dir, ignore_errors=True)
    return cells


# ---- reporting -------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _fmt1(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _ratio(value: float | None, floor: float | None) -> str:
    return "—" if value is None or not floor else f"{value / floor:.1f}x"


def gist(failure: str) -> str:
    """The telling part of a failure: for a command's output tail ('A | B | C'), its last line
    (a traceback's exception, a script's last message) first."""
    head, sep, tail = failure.partition(": ")
    if sep and " | " in tail:
        parts = [p.strip() for p in tail.split(" | ") if p.strip()]
        return f"{head}: {' / '.join(reversed(parts))}"
    return failure


def table(cells: dict[str, dict[int, Cell]], sizes: list[int], labels: dict[str, str]) -> list[str]:
    rows = [
        "| method | N | setup s | teardown s | setup / (f) | teardown / (f) "
        "| kernel busy after setup s | after teardown s | runs ok | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, by_n in cells.items():
        for n in sizes:
            cell = by_n.get(n)
            if cell is None:
                continue
            floor = cells.get(FLOOR, {}).get(n)
            setup, teardown = cell.median("setup"), cell.median("teardown")
            notes = []
            if cell.skipped:
                notes.append(f"skipped: {cell.skipped}")
            if cell.failures:
                notes.append(f"{len(cell.failures)} failed: {gist(cell.failures[0])[:200]}")
            rows.append(
                f"| ({key}) {labels[key]} | {n} | {_fmt(setup)} | {_fmt(teardown)} | "
                f"{_ratio(setup, floor.median('setup') if floor else None)} | "
                f"{_ratio(teardown, floor.median('teardown') if floor else None)} | "
                f"{_fmt1(cell.median('settle_after_setup'))} | {_fmt1(cell.median('settle'))} | "
                f"{len(cell.setup)}/{len(cell.setup) + len(cell.failures)} | "
                f"{'; '.join(notes).replace('|', '/')} |"
            )
    return rows


def floor_phases(cells: dict[str, dict[int, Cell]]) -> list[str]:
    """The floor's own breakdown, per namespace (medians over runs), in milliseconds."""
    rows = []
    for n, cell in sorted(cells.get(FLOOR, {}).items()):
        if not cell.phases:
            continue
        rows.append(
            f"N={n} (ms per namespace, medians of {len(cell.phases)} runs; "
            f"wall setup {1000 * (cell.median('setup') or 0) / n:.3f}, "
            f"teardown {1000 * (cell.median('teardown') or 0) / n:.3f}):"
        )
        for what in ("setup", "teardown"):
            names = list(dict.fromkeys(k for p in cell.phases for k in p.get(what, {})))
            for name in names:
                values = [p[what][name] for p in cell.phases if name in p.get(what, {})]
                rows.append(f"  {what:8} {name}: {1000 * statistics.median(values) / n:.3f}")
    return rows


def plot(
    cells: dict[str, dict[int, Cell]], labels: dict[str, str], info: dict[str, Any], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for axis, what in zip(axes, ("setup", "teardown"), strict=True):
        for key, by_n in cells.items():
            points = [(n, c.median(what)) for n, c in sorted(by_n.items()) if c.median(what)]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, marker="o", label=f"({key}) {labels[key]}")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("namespaces (N)")
        axis.set_title(f"{what} (median wall-clock seconds)")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds")
    axes[1].legend(fontsize=8)
    figure.suptitle(
        f"N namespaces on one bridge with NAT ({info['nproc']} CPUs, kernel {info['kernel']})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, env=_env())
    except OSError:
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def nsgen_revision() -> str:
    """Which nsgen was measured: the git revision of the tree bench/ sits in (with -dirty for
    uncommitted changes), or the contents of a .commit file in a tree without .git."""
    marker = ROOT / ".commit"
    if marker.exists():
        return marker.read_text().strip()
    out = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "nsgen": f"{ROOT} ({nsgen_revision()})",
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "iproute2": _version(["ip", "-V"]),
        "iptables": _version(["iptables", "-V"]),
        "cni_plugins": _version(
            ["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"]
        ),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_results(
    cells: dict[str, dict[int, Cell]], sizes: list[int], options: dict[str, Any], out: Path
) -> list[str]:
    """results.json (every raw number), then results.md and results.png from it."""
    out.mkdir(parents=True, exist_ok=True)
    raw = {
        **machine(),
        "options": options,
        "methods": {
            key: {
                "label": label(key),
                "sizes": {
                    str(n): {
                        "setup_seconds": c.setup,
                        "teardown_seconds": c.teardown,
                        "settle_seconds_after_setup": c.settle_after_setup,
                        "settle_seconds_after_teardown": c.settle,
                        "setup_median": c.median("setup"),
                        "teardown_median": c.median("teardown"),
                        "render_seconds": c.prepare_seconds,
                        "phases": c.phases,
                        "failures": c.failures,
                        "skipped": c.skipped,
                    }
                    for n, c in by_n.items()
                },
            }
            for key, by_n in cells.items()
        },
    }
    (out / "results.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    return report(raw, out)


def load_cells(raw: dict[str, Any]) -> dict[str, dict[int, Cell]]:
    """The cells back from a results.json."""
    return {
        key: {
            int(n): Cell(
                setup=c["setup_seconds"],
                teardown=c["teardown_seconds"],
                settle=c["settle_seconds_after_teardown"],
                settle_after_setup=c.get("settle_seconds_after_setup", []),
                phases=c["phases"],
                failures=c["failures"],
                skipped=c["skipped"],
                prepare_seconds=c["render_seconds"],
            )
            for n, c in method["sizes"].items()
        }
        for key, method in raw["methods"].items()
    }


def report(raw: dict[str, Any], out: Path) -> list[str]:
    """Write results.md and results.png from the data of a results.json; return the lines."""
    cells = load_cells(raw)
    labels = {key: method["label"] for key, method in raw["methods"].items()}
    options = raw["options"]
    lines = [
        "# nsgen benchmark results",
        "",
        f"nsgen {raw['nsgen']}.",
        f"{raw['date']}, {raw['nproc']} CPUs, kernel {raw['kernel']}, {raw['iproute2']}, "
        f"{raw['iptables']}, CNI plugins {raw['cni_plugins']}, Python {raw['python']}.",
        f"Medians of {options['runs']} run(s), wall-clock seconds of each setup and teardown "
        f"command; ratios to the floor (f). Timeout {options['timeout']:g} s per command.",
        "",
        *table(cells, options["sizes"], labels),
        "",
    ]
    renders = [
        f"N={n}: {c.prepare_seconds:.2f} s"
        for n, c in cells.get("a", {}).items()
        if c.prepare_seconds is not None
    ]
    if renders:
        lines += [f"`nsgen render` (not in the times above): {', '.join(renders)}.", ""]
    phases = floor_phases(cells)
    if phases:
        lines += ["## The floor's breakdown", "", "```", *phases, "```", ""]
    (out / "results.md").write_text("\n".join(lines), encoding="utf-8")
    try:
        plot(cells, labels, raw, out / "results.png")
    except ImportError:
        lines.append("(no plot: matplotlib is not installed; run bench/install.sh)")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="comma-separated N values (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per method and N (default 3)")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated method letters (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds one setup or teardown may take; a method that exceeds "
        "it (or is predicted to, from the previous N) skips bigger N "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        help="at most this many seconds of waiting for the kernel to go quiet "
        "after each teardown (default %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite results.md and results.png from OUT/results.json",
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
        for n in args.sizes:
            check_size(n)
    except ValueError as exc:
        parser.error(f"--sizes: {exc}")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)} (choose from {', '.join(METHODS)})")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        raw = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
        say("\n".join(report(raw, args.out)))
        return 0
    if os.geteuid() != 0:
        say("bench: needs root (it builds namespaces, inside a private sandbox)")
        return 1
    problems = missing_requirements(args.methods)
    if problems:
        for problem in problems:
            say(f"bench: {problem}")
        say("bench: run bench/install.sh (as root) first")
        return 1
    say(
        f"bench: sizes {args.sizes}, {args.runs} run(s), methods "
        + ", ".join(f"({k}) {label(k)}" for k in args.methods)
    )
    workroot = Path(tempfile.mkdtemp(prefix="nsgen-bench-"))
    outcome: dict[str, list[str]] = {}

    def child() -> None:
        cells = benchmark(args.sizes, args.runs, args.methods, args.timeout, args.settle, workroot)
        options = {
            "sizes": args.sizes,
            "runs": args.runs,
            "methods": args.methods,
            "timeout": args.timeout,
        }
        outcome["lines"] = write_results(cells, args.sizes, options, args.out)
        say("\n".join(outcome["lines"]))
        say(f"bench: wrote {args.out}/results.md, results.json, results.png")

    try:
        _in_sandbox(child)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    return 0


def _in_sandbox(function: Callable[[], None]) -> None:
    """Run function in a forked child that enters the sandbox (benchmark() does); the sandbox
    and everything left in it vanish with the child."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            function()
            status = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code != 0:
        raise SystemExit(f"bench: failed (exit {code})")


if __name__ == "__main__":
    sys.exit(main())
