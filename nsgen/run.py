"""The executor behind `nsgen up` and `nsgen down`: runs the rendered step texts (the very text
setup.sh holds) through plumbum in persistent bash workers, with a journal, a JSON Lines log,
console progress, rollback on failure, and clean handling of SIGINT/SIGTERM.

Steps confined to one namespace (`configure namespace X`) are the exception: their commands
(`ip -b -`, `bridge -b -`, `iptables-restore`, with the same input as in setup.sh) are started
by lane threads that have entered the namespace themselves with setns(2), which saves the
bash subshell and the nsenter of each such step."""

from __future__ import annotations

import json
import os
import queue
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any, cast

from plumbum import local
from plumbum.commands.processes import CommandNotFound

from nsgen.errors import NsgenError, PreflightError
from nsgen.kernel import setns_net
from nsgen.plan import Plan
from nsgen.render import Entered, RenderedStep, Renderer
from nsgen.state import StateDir, topology_lock


class StepFailed(NsgenError):
    exit_code = 3


class RollbackIncomplete(NsgenError):
    exit_code = 4


class Interrupted(NsgenError):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NotRootError(NsgenError):
    exit_code = 1


@dataclass(frozen=True)
class Record:
    """One line of the JSON Lines log: a step (or an undo) as it ran."""

    phase: str  # "do", "undo" or "preflight"
    step: int
    total: int
    title: str
    commands: str
    exit_code: int
    stdout: str
    stderr: str
    started: str
    duration_ms: float


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


class Console:
    """Progress on stderr: one line per step; on a terminal the running step shows first."""

    def __init__(
        self, quiet: bool = False, verbose: bool = False, stream: IO[str] | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.verbose = verbose
        self.tty = self.stream.isatty()

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            self.say(text)

    def _label(self, phase: str, number: int, total: int) -> str:
        width = len(str(total))
        prefix = "undo " if phase == "undo" else ""
        return f"[{prefix}{number:>{width}}/{total}]"

    def begin(self, phase: str, number: int, total: int, title: str) -> None:
        if self.tty and not self.quiet:
            self.stream.write(f"{self._label(phase, number, total)} {title} ...")
            self.stream.flush()

    def end(self, record: Record) -> None:
        ok = record.exit_code == 0
        if self.quiet and ok:
            return
        line = (
            f"{self._label(record.phase, record.step, record.total)} {record.title}  "
            f"{'ok' if ok else 'FAILED'}  {record.duration_ms:.0f} ms"
        )
        if self.tty and not self.quiet:
            self.stream.write("\r\033[K")
        self.say(line)
        if self.verbose or not ok:
            for command in record.commands.splitlines():
                self.say(f"    $ {command}")
            for text in (record.stdout, record.stderr):
                for out in text.rstrip("\n").splitlines():
                    self.say(f"    | {out}")


class Log:
    """The JSON Lines log file; every record is flushed as it is written."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: Record) -> None:
        if self.file:
            self.file.write(json.dumps(asdict(record), sort_keys=True) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


_WORKER_LOOP = r"""
nsgen_outputs=$1
while IFS= read -r -d '' nsgen_job; do
  nsgen_key=${nsgen_job%%$'\n'*}
  (
    set -euo pipefail
    eval "${nsgen_job#*$'\n'}"
  ) >"$nsgen_outputs/$nsgen_key.out" 2>"$nsgen_outputs/$nsgen_key.err" </dev/null
  printf '%s %d\n' "$nsgen_key" "$?"
done
"""


class Worker:
    """One bash process that runs step texts sent to it, one after another, each in a
    subshell with `set -euo pipefail` and the scripts' prelude: no new process per step, and
    exactly the rendered text runs. Its own session keeps a terminal's ^C away from it."""

    def __init__(self, prelude: str, outputs: Path) -> None:
        self.outputs = outputs
        self.process = local["bash"].popen(
            ["-c", f"{prelude}\n{_WORKER_LOOP}", "nsgen-worker", str(outputs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.stdin = cast(IO[bytes], self.process.stdin)
        self.stdout = cast(IO[bytes], self.process.stdout)

    def send(self, key: str, text: str) -> None:
        self.stdin.write(f"{key}\n{text}\0".encode())
        self.stdin.flush()

    def receive(self) -> tuple[str, int, str, str]:
        """The next finished job: key, exit status, stdout, stderr."""
        line = self.stdout.readline().decode()
        if not line:
            raise NsgenError("the step runner (bash) exited unexpectedly")
        key, _, status = line.strip().rpartition(" ")
        texts = []
        for suffix in ("out", "err"):
            path = self.outputs / f"{key}.{suffix}"
            texts.append(path.read_text(errors="replace"))
            path.unlink()
        return key, int(status), texts[0], texts[1]

    def close(self) -> None:
        self.stdin.close()
        self.process.wait()


class _EnteredLane:
    """A thread's way into namespaces: for each job it enters the named namespace, starts the
    job's commands there (a child process starts in the namespace of the thread that made
    it) and goes back to `home` (an open fd of nsgen's own namespace)."""

    def __init__(self, home: int) -> None:
        self.home = home
        self.programs: dict[str, Any] = {}

    def run(self, netns: str, commands: tuple[Entered, ...]) -> tuple[int, str, str]:
        """Like `set -e` over the commands: stops at the first that fails. Raises only if
        the thread cannot go back to its own namespace (it must not run anything more)."""
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            return 1, "", f"cannot open /run/netns/{netns}: {error.strerror}\n"
        outs: list[str] = []
        errs: list[str] = []
        status = 0
        try:
            try:
                setns_net(fd)
            except OSError as error:
                return 1, "", f"cannot enter namespace {netns}: {error}\n"
            try:
                for command in commands:
                    status = self._spawn(command, outs, errs)
                    if status != 0:
                        break
            finally:
                setns_net(self.home)
        finally:
            os.close(fd)
        return status, "".join(outs), "".join(errs)

    def _spawn(self, command: Entered, outs: list[str], errs: list[str]) -> int:
        program = self.programs.get(command.argv[0])
        if program is None:
            try:
                program = self.programs[command.argv[0]] = local[command.argv[0]]
            except CommandNotFound:
                errs.append(f"{command.argv[0]}: command not found\n")
                return 127
        process = cast(
            "subprocess.Popen[bytes]",
            program.popen(
                list(command.argv[1:]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            ),
        )
        out, err = process.communicate(command.stdin.encode())
        outs.append(out.decode(errors="replace"))
        errs.append(err.decode(errors="replace"))
        return process.returncode


@dataclass(frozen=True)
class Job:
    phase: str
    number: int
    total: int
    title: str
    commands: str
    netns: str = ""
    entered: tuple[Entered, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.phase}-{self.number}"


class Runner:
    """Runs step texts through persistent workers; each run becomes a log Record."""

    def __init__(self, prelude: str, console: Console, log: Log, lanes: int = 1) -> None:
        self.prelude = prelude
        self.console = console
        self.log = log
        self.lanes = max(1, lanes)
        self._tmp = tempfile.TemporaryDirectory(prefix="nsgen-steps-")
        self.workers: list[Worker] = []

    def _worker(self, index: int) -> Worker:
        while len(self.workers) <= index:
            self.workers.append(Worker(self.prelude, Path(self._tmp.name)))
        return self.workers[index]

    def _record(
        self, job: Job, started: str, clock: float, status: int, out: str, err: str
    ) -> Record:
        record = Record(
            job.phase,
            job.number,
            job.total,
            job.title,
            job.commands,
            status,
            out,
            err,
            started,
            round((time.perf_counter() - clock) * 1000, 3),
        )
        self.log.write(record)
        self.console.end(record)
        return record

    def run(self, phase: str, number: int, total: int, title: str, commands: str) -> Record:
        job = Job(phase, number, total, title, commands)
        self.console.begin(phase, number, total, title)
        started, clock = _now(), time.perf_counter()
        worker = self._worker(0)
        worker.send(job.key, commands)
        _, status, out, err = worker.receive()
        return self._record(job, started, clock, status, out, err)

    def run_side_by_side(self, jobs: list[Job], before: Callable[[Job], bool]) -> list[Record]:
        """Run jobs on up to `lanes` workers at once. `before(job)` is called as each job is
        handed out and may refuse it (returning False) to stop handing out more: then the
        jobs already running finish, and the records of all that ran come back."""
        if jobs and all(job.entered for job in jobs):
            return self._run_entered(jobs, before)
        pending = list(jobs)
        running: dict[int, tuple[Job, str, float]] = {}
        records: list[Record] = []
        selector = selectors.DefaultSelector()
        stop = False
        try:
            for index in range(min(self.lanes, len(jobs))):
                selector.register(self._worker(index).stdout, selectors.EVENT_READ, index)

            def hand_out(index: int) -> None:
                nonlocal stop
                if stop or not pending:
                    return
                job = pending.pop(0)
                if not before(job):
                    stop = True
                    return
                running[index] = (job, _now(), time.perf_counter())
                self.workers[index].send(job.key, job.commands)

            for index in range(min(self.lanes, len(jobs))):
                hand_out(index)
            while running:
                for key, _ in selector.select():
                    index = key.data
                    _, status, out, err = self.workers[index].receive()
                    job, started, clock = running.pop(index)
                    record = self._record(job, started, clock, status, out, err)
                    records.append(record)
                    if status != 0:
                        stop = True
                    hand_out(index)
        finally:
            selector.close()
        return records

    def _run_entered(self, jobs: list[Job], before: Callable[[Job], bool]) -> list[Record]:
        """run_side_by_side for namespace steps: lane threads enter each job's namespace and
        start its commands; this thread hands out the jobs and writes every record."""
        try:
            home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:  # nothing handed out yet: the first job fails, unbegun
            reason = f"cannot open nsgen's own network namespace: {error.strerror}\n"
            return [self._record(jobs[0], _now(), time.perf_counter(), 1, "", reason)]
        pending = list(jobs)
        lock = threading.Lock()
        finished: queue.Queue[tuple[Job, str, float, int, str, str] | None] = queue.Queue()
        stop = threading.Event()

        def take() -> Job | None:
            with lock:
                if stop.is_set() or not pending:
                    return None
                job = pending.pop(0)
                if not before(job):
                    stop.set()
                    return None
                return job

        def lane() -> None:
            entered = _EnteredLane(home)
            try:
                while (job := take()) is not None:
                    started, clock = _now(), time.perf_counter()
                    try:
                        status, out, err = entered.run(job.netns, job.entered)
                    except OSError as error:  # stranded in the namespace: stop this lane
                        stop.set()
                        finished.put((job, started, clock, 1, "", f"{error}\n"))
                        return
                    if status != 0:
                        stop.set()
                    finished.put((job, started, clock, status, out, err))
            finally:
                finished.put(None)

        threads = [
            threading.Thread(target=lane, name=f"nsgen-lane-{i}", daemon=True)
            for i in range(min(self.lanes, len(jobs)))
        ]
        for thread in threads:
            thread.start()
        records: list[Record] = []
        running = len(threads)
        while running:
            item = finished.get()
            if item is None:
                running -= 1
                continue
            job, started, clock, status, out, err = item
            records.append(self._record(job, started, clock, status, out, err))
        for thread in threads:
            thread.join()
        os.close(home)
        return records

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = []
        self._tmp.cleanup()


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


class Executor:
    """`up` and `down` of one topology's plan."""

    def __init__(self, plan: Plan, renderer: Renderer | None = None) -> None:
        self.plan = plan
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
            self._preflight()
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
            return f"{name} is already up and unchanged; nothing to do"
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

    def _preflight(self) -> None:
        script = self.renderer.preflight_script(self.plan, self.steps)
        # on stdin, not as an argument: a big topology's preflight is longer than the kernel
        # lets one argument be (128 KiB)
        result = cast(
            "subprocess.Popen[bytes]",
            local["bash"].popen(["-s"], stdin=subprocess.PIPE, start_new_session=True),
        )
        _, stderr = result.communicate(script.encode())
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
                detail = (record.stderr.strip().splitlines() or ["(no error output)"])[-1]
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
    name: str, executor: Executor | None, options: Options, locked: bool = False
) -> str:
    """Tear a topology down from its record in /run/nsgen/<name>/ (plan.json and journal).

    A record written by setup.sh has no plan.json: then the topology file's own plan (the
    `executor`) is used, if its digest matches the record's."""
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
        if leftovers:
            raise RollbackIncomplete(
                f"{name}: teardown incomplete, still present: "
                + "; ".join(leftovers)
                + f" (record kept in {state.path})"
            )
        state.remove()
        return f"{name} is down"

    if locked:
        return work()
    with topology_lock(name, options.lock_timeout):
        return work()
