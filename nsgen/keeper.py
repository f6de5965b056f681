"""The keeper of a detached lab (`nsgen lab up`): a small process whose only job is to hold the
lab's sandbox by being alive in it.

`python -m nsgen.keeper` unshares a PID namespace and forks; the child, PID 1 of that
namespace, makes a fresh sandbox (network and mount namespace, nsgen.sandbox) with the lab's
resolver, and then waits, reaping orphans, until SIGTERM. Nothing of the lab is bind-mounted
outside it: the keeper is the only holder of its namespaces, so when it ends, however it ends
(SIGKILL included), the kernel kills every process of its PID namespace (the lab's dnsmasq, a
`lab shell`'s bash) and frees the namespaces, and with them every link, route and rule built
inside.

Protocol with the parent, on stdout: `pid N` (the keeper's PID as the parent sees it), then
`ready` once the sandbox is made. Before `ready`, a failure is one line on stderr and a
non-zero exit; after it, the keeper's stdin, stdout and stderr are /dev/null, so it holds
nothing of the terminal or pipes it was started from.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from nsgen import kernel
from nsgen.errors import NsgenError
from nsgen.sandbox import enter_sandbox, use_lab_resolver


def _reap(signum: int, frame: FrameType | None) -> None:
    """PID 1 inherits every orphan of its namespace: collect them, so none stays a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _leave(signum: int, frame: FrameType | None) -> None:
    os._exit(0)


def _keep() -> None:
    """PID 1 of the lab's PID namespace: make the sandbox, say ready, wait for SIGTERM."""
    os.chdir("/")  # hold no directory of the caller's busy
    try:
        enter_sandbox()
        use_lab_resolver()
    except (NsgenError, OSError) as error:
        print(f"lab keeper: {error}", file=sys.stderr, flush=True)
        os._exit(1)
    # PID 1 of a namespace gets only the signals it has handlers for (SIGKILL from outside
    # always ends it)
    signal.signal(signal.SIGTERM, _leave)
    signal.signal(signal.SIGCHLD, _reap)
    for ignored in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(ignored, signal.SIG_IGN)
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    _reap(signal.SIGCHLD, None)
    while True:
        signal.pause()


def main() -> None:
    try:
        kernel.check(kernel.libc().unshare(kernel.CLONE_NEWPID), "unshare(PID namespace)")
    except OSError as error:
        print(f"lab keeper: {error.strerror}", file=sys.stderr, flush=True)
        sys.exit(1)
    pid = os.fork()
    if pid == 0:
        _keep()
    print(f"pid {pid}", flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
