"""The few system calls nsgen makes itself, through ctypes (Python 3.11 has no os.setns):
entering a network namespace (`nsgen up`), making the sandbox (nsgen.sandbox) and joining a
detached lab's namespaces (nsgen.labs)."""

from __future__ import annotations

import ctypes
import functools
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_BIND = 0x1000


@functools.cache
def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    """Raise OSError ("WHAT failed: REASON") if a libc call returned non-zero."""
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what} failed: {os.strerror(error)}")


def setns_net(fd: int) -> None:
    """Move the calling thread (only it) into the network namespace open on `fd`."""
    check(libc().setns(fd, CLONE_NEWNET), "setns")


def setns(fd: int, nstype: int) -> None:
    """Join the namespaces `nstype` names (CLONE_NEW* bits): those of the process whose pidfd
    is `fd`, all at once, or the one namespace file open on `fd`. Joining a mount namespace
    needs a single-threaded caller; a PID namespace is joined by the caller's children, not by
    the caller."""
    check(libc().setns(fd, nstype), "setns")
