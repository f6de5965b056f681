"""The executor behind `nsgen up` and `nsgen down`: a plan's steps, run one by one (namespace
steps side by side) by `nsgen.workers`, with a journal, a log, rollback on failure, and clean
handling of SIGINT/SIGTERM; and teardown from a topology's record."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

from plumbum import local

from nsgen.console import Console, Log
from nsgen.errors import NsgenError, PreflightError
from nsgen.model import Topology
from nsgen.plan import Plan
from nsgen.render import RenderedStep, Renderer
from nsgen.state import StateDir, topology_lock
from nsgen.workers import Job, Runner


class StepFailed(NsgenError):
    exit_code = 3


class RollbackIncomplete(NsgenError):
    exit_code = 4


class Interrupted(NsgenError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DriftError(NsgenError):
    """The topology is up, but the live state no longer matches it."""

    exit_code = 1

    def __init__(self, topology: str, drift: list[str]) -> None:
        super().__init__(f"{topology} is up, but {len(drift)} object(s) drifted")
        self.topology = topology
        self.drift = drift

    def lines(self) -> list[str]:
        return [
            f"{self.topology} is up, but the live state no longer matches it:",
            *(f"  {line}" for line in self.drift),
            "nothing was changed; 'nsgen up --replace' rebuilds it (down, then up), "
            "'nsgen status' shows every object",
        ]


class NotRootError(NsgenError):
    exit_code = 1


@dataclass(frozen=True)
class UndoStep:
    number: int
    title: str
    undo: str


@dataclass(frozen=True)
class Applied:
    """What `down` needs: the steps' undo texts and the prelude they run with."""

    topology: str
    digest: str
    total: int
    prelude: str
    steps: list[UndoStep]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Applied:
        steps = [UndoStep(**step) for step in data["steps"]]
        return cls(data["topology"], data["digest"], data["total"], data["prelude"], steps)

    @classmethod
    def from_plan(cls, plan: Plan, steps: list[RenderedStep], prelude: str) -> Applied:
        undo = [UndoStep(s.number, s.title, s.undo) for s in steps if s.undo]
        return cls(plan.topology, plan.digest, len(steps), prelude, undo)


class _Signals:
    """While active, SIGINT/SIGTERM only set a flag; the running step finishes first."""

    def __init__(self) -> None:
        self.received: int | None = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    @contextmanager
    def deferred(self) -> Iterator[None]:
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


_HELP_HINT = re.compile(r"Try `\S+ -h' or '\S+ --help' for more information\.?")
"""The line iptables (and ip6tables, and their -restore) print after every error."""
_AT_LINE = re.compile(r"Error occurred at line: (\d+)|Command failed \S*:(\d+)")
"""Where in its input a batch failed: iptables-restore's words, then ip/bridge/tc -b's."""


def failure_reason(stderr: str) -> str:
    """The line of a failed step's error output that says what went wrong: the last line
    that is neither a hint to read the help nor a note of where in its input a batch
    program failed (that note is added in brackets). setup.sh picks the same line
    (templates/_runtime.sh, nsgen_reason)."""
    reason, at = "", ""
    for line in stderr.splitlines():
        line = line.strip()
        found = _AT_LINE.fullmatch(line)
        if found:
            at = f" (input line {found[1] or found[2]})"
        elif line and not _HELP_HINT.fullmatch(line):
            reason = line
    return (reason or "(no error output)") + at


def _groups(steps: list[RenderedStep]) -> Iterator[list[RenderedStep]]:
    """Consecutive parallel steps together, every other step alone."""
    group: list[RenderedStep] = []
    for step in steps:
        if step.parallel:
            group.append(step)
            continue
        if group:
            yield group
            group = []
        yield [step]
    if group:
        yield group


def _require_root(command: str) -> None:
    if os.geteuid() != 0:
        raise NotRootError(
            f"nsgen {command} changes the network and must run as root "
            f"(try: sudo nsgen {command} ...)"
        )


def _undo_all(
    runner: Runner,
    applied: Applied,
    begun: set[int] | frozenset[int],
) -> list[str]:
    """Undo, newest first, every step in `begun` that has an undo; return what failed."""
    leftovers = []
    for step in sorted(applied.steps, key=lambda s: -s.number):
        if step.number not in begun:
            continue
        record = runner.run("undo", step.number, applied.total, step.title, step.undo)
        if record.exit_code != 0:
            leftovers.append(f"step {step.number}/{applied.total} {step.title}")
    return leftovers


@dataclass
class Options:
    console: Console
    log_path: Path | None = None
    lock_timeout: float = 30.0
    lanes: int = os.cpu_count() or 2
    """How many steps confined to one namespace may run at once."""
    strict: bool = False
    """Preflight refuses what it would only warn about (NSGEN_STRICT=1)."""


class Executor:
    """`up` and `down` of one topology's plan."""

    def __init__(
        self, plan: Plan, renderer: Renderer | None = None, topology: Topology | None = None
    ) -> None:
        """`topology`, when given, lets `up` compare a topology that is already up with the
        live state (drift is refused, or rebuilt with replace)."""
        self.plan = plan
        self.topology = topology
        self.renderer = renderer or Renderer()
        self.steps = self.renderer.steps(plan)
        self.prelude = self.renderer.prelude(plan, self.steps)
        self.state = StateDir(plan.topology)
        self.applied = Applied.from_plan(plan, self.steps, self.prelude)

    # ---- dry run --------------------------------------------------------------------------
    def describe(self) -> str:
        total = len(self.steps)
        lines = [f"plan for {self.plan.topology}: {total} steps (nothing is run)"]
        for step in self.steps:
            lines.append(f"[{step.number:>{len(str(total))}}/{total}] {step.title}")
            lines.extend(f"    $ {line}" for line in step.do.splitlines())
        return "\n".join(lines)

    # ---- up -------------------------------------------------------------------------------
    def up(self, options: Options, replace: bool = False) -> str:
        """Apply the plan; returns a one-line summary. Raises on refusal or failure."""
        _require_root("up")
        console = options.console
        with topology_lock(self.plan.topology, options.lock_timeout):
            if self.state.exists():
                verdict = self._already_up(replace)
                if verdict:
                    return verdict
                down_from_record(self.plan.topology, None, options, locked=True)
            self._preflight(options)
            signals = _Signals()
            with signals.deferred():
                self.state.create(self.plan.digest)
                self.state.write_plan(self.applied.to_json())
                log = Log(options.log_path or self.state.path / "log.jsonl")
                try:
                    runner = Runner(self.prelude, console, log, lanes=options.lanes)
                    try:
                        return self._apply(runner, signals)
                    finally:
                        runner.close()
                finally:
                    log.close()

    def _already_up(self, replace: bool) -> str | None:
        name = self.plan.topology
        digest = self.state.digest()
        journal = self.state.journal()
        if digest == self.plan.digest and journal.complete:
            drift = self._drift()
            if not drift:
                return f"{name} is already up and unchanged; nothing to do"
            if not replace:
                raise DriftError(name, drift)
        if replace:
            return None
        if digest == self.plan.digest:
            raise NsgenError(
                f"{name}: a previous run did not finish (killed?); its record is in "
                f"{self.state.path}; run 'nsgen down {name}' first"
            )
        raise NsgenError(
            f"{name} is up with a different topology (its record is in "
            f"{self.state.path}); run 'nsgen down {name}' first, or use --replace"
        )

    def _drift(self) -> list[str]:
        """What of the topology the live state no longer has as declared (empty without a
        topology to compare with)."""
        if self.topology is None:
            return []
        from nsgen.status import PRESENT, topology_status

        return [
            f"{row.kind} {row.name}"
            + ("" if row.netns == "host" else f" (in {row.netns})")
            + f": {row.state}"
            + (f", {row.detail}" if row.detail else "")
            for row in topology_status(self.topology)
            if row.state != PRESENT and row.kind != "state"
        ]

    def _preflight(self, options: Options) -> None:
        """setup.sh's preflight, run alone: raises its refusal; says its warnings."""
        script = self.renderer.preflight_script(self.plan, self.steps)
        # on stdin, not as an argument: a big topology's preflight is longer than the kernel
        # lets one argument be (128 KiB)
        with local.env(NSGEN_STRICT="1" if options.strict else ""):
            result = cast(
                "subprocess.Popen[bytes]",
                local["bash"].popen(["-s"], stdin=subprocess.PIPE, start_new_session=True),
            )
        _, stderr = result.communicate(script.encode())
        for line in stderr.decode(errors="replace").splitlines():
            if line.startswith("[nsgen] warning: "):
                options.console.say(line.removeprefix("[nsgen] "))
        if result.returncode != 0:
            reasons = [
                line.removeprefix("[nsgen]").strip()
                for line in stderr.decode(errors="replace").splitlines()
            ]
            reasons = [r for r in reasons if r and not r.startswith("preflight refused")]
            raise PreflightError(reasons or [f"preflight failed (exit {result.returncode})"])

    def _apply(self, runner: Runner, signals: _Signals) -> str:
        total = len(self.steps)
        begun: set[int] = set()

        def begin(job: Job) -> bool:
            if signals.received is not None:
                return False
            self.state.append(f"begin {job.number}")
            begun.add(job.number)
            return True

        for group in _groups(self.steps):
            jobs = [Job("do", s.number, total, s.title, s.do, s.netns, s.entered) for s in group]
            if len(group) == 1 and not group[0].parallel:
                if not begin(jobs[0]):
                    break
                records = [runner.run("do", jobs[0].number, total, jobs[0].title, jobs[0].commands)]
            else:
                records = runner.run_side_by_side(jobs, begin)
            failed = [r for r in records if r.exit_code != 0]
            for record in records:
                if record.exit_code == 0:
                    self.state.append(f"done {record.step}")
            if failed:
                record = failed[0]
                detail = failure_reason(record.stderr)
                runner.console.say(
                    f"step {record.step}/{total} ({record.title}) failed with "
                    f"exit status {record.exit_code}: {detail}"
                )
                self._roll_back(runner, begun, signals)
                raise StepFailed(
                    f"{self.plan.topology}: step {record.step}/{total} "
                    f"({record.title}) failed; rolled back, the host is as it was"
                )
            if signals.received is not None:
                break
        if signals.received is not None:
            name = signal.Signals(signals.received).name
            runner.console.say(f"{name} received: rolling back")
            self._roll_back(runner, begun, signals)
            raise Interrupted(
                f"{self.plan.topology}: interrupted by {name}; rolled back, the host is as it was",
                128 + signals.received,
            )
        self.state.append("complete")
        return f"{self.plan.topology} is up ({total} steps)"

    def _roll_back(self, runner: Runner, begun: set[int], signals: _Signals) -> None:
        runner.console.info(f"rolling back {len(begun)} step(s), newest first")
        leftovers = _undo_all(runner, self.applied, begun)
        if leftovers:
            raise RollbackIncomplete(
                f"{self.plan.topology}: rollback incomplete, still present: "
                + "; ".join(leftovers)
                + f" (record kept in {self.state.path}; fix the cause "
                f"and run 'nsgen down {self.plan.topology}')"
            )
        runner.log.close()
        self.state.remove()


def down_from_record(
    name: str,
    executor: Executor | None,
    options: Options,
    locked: bool = False,
    forget: bool = False,
) -> str:
    """Tear a topology down from its record in /run/nsgen/<name>/ (plan.json and journal).

    A record written by setup.sh has no plan.json: then the topology file's own plan (the
    `executor`) is used, if its digest matches the record's. Every undo removes exactly
    what its step added and counts what is gone as done, so a record left by a failed run
    can be finished once the cause is fixed; with `forget`, the record is cleared even if
    some undo fails, and the summary lists what is left behind."""
    _require_root("down")
    state = StateDir(name)

    def work() -> str:
        if not state.exists():
            return f"{name} is not up: nothing to do"
        data = state.read_plan()
        if data is not None:
            applied = Applied.from_json(data)
        elif executor is None:
            raise NsgenError(
                f"{name} was set up by its setup.sh (no plan.json in {state.path}); "
                "give the topology file (nsgen down FILE) or run its teardown.sh"
            )
        elif state.digest() != executor.plan.digest:
            raise NsgenError(
                f"{state.path} was made from a different version of {name}; use the "
                "teardown.sh rendered with it"
            )
        else:
            applied = executor.applied
        log = Log(options.log_path or state.path / "log.jsonl")
        try:
            runner = Runner(applied.prelude, options.console, log)
            try:
                leftovers = _undo_all(runner, applied, state.journal().begun)
            finally:
                runner.close()
        finally:
            log.close()
        if leftovers and forget:
            state.remove()
            return f"{name} is forgotten; left behind: " + "; ".join(leftovers)
        if leftovers:
            raise RollbackIncomplete(
                f"{name}: teardown incomplete, still present: "
                + "; ".join(leftovers)
                + f" (record kept in {state.path}; fix what stopped them and run "
                f"'nsgen down {name}' again, or 'nsgen down {name} --forget')"
            )
        state.remove()
        return f"{name} is down"

    if locked:
        return work()
    with topology_lock(name, options.lock_timeout):
        return work()
