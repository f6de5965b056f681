"""The processes that run steps for `nsgen up` and `nsgen down`: persistent bash workers that
run the rendered step texts (the very text setup.sh holds) through plumbum, and lane threads
that enter a namespace themselves (setns(2)) to start a namespace step's commands there,
which saves the bash subshell and the nsenter of each such step."""

from __future__ import annotations

import os
import queue
import selectors
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from plumbum import local
from plumbum.commands.processes import CommandNotFound

from nsgen.console import Console, Log, Record, now
from nsgen.errors import NsgenError
from nsgen.kernel import setns_net
from nsgen.render import Entered

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
        started, clock = now(), time.perf_counter()
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
                running[index] = (job, now(), time.perf_counter())
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
            return [self._record(jobs[0], now(), time.perf_counter(), 1, "", reason)]
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
                    started, clock = now(), time.perf_counter()
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
