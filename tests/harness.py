"""Helpers for the integration tests: run a test body in a fresh sandbox, render examples,
run scripts and commands, and compare network snapshots."""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nsgen.load import load_topology
from nsgen.plan import build_plan
from nsgen.render import render_scripts, write_scripts
from nsgen.sandbox import require_sandbox, run_in_sandbox
from nsgen.snapshot import diff_snapshots, take_snapshot

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="builds namespaces: needs root")


def sandboxed(test: Callable[..., None]) -> Callable[..., None]:
    """Run the test body in a forked child inside a fresh sandbox (see nsgen.sandbox)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        run_in_sandbox(test, *args, **kwargs)

    return pytest.mark.integration(needs_root(wrapper))


def render_example(name: str, out: Path, style: str = "batch") -> Path:
    """Render examples/<name>.yaml into out/ (in the given style) and return out."""
    plan = build_plan(load_topology(EXAMPLES / f"{name}.yaml"), style)
    write_scripts(render_scripts(plan), out)
    return out


def run(
    *args: str | Path,
    netns: str | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (inside `netns` if given); never raises on a non-zero exit."""
    require_sandbox()
    argv = [str(a) for a in args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def ping(target: str, netns: str | None = None) -> bool:
    """One bounded ping (1 packet, 1 s)."""
    return run("ping", "-c", "1", "-W", "1", "-q", target, netns=netns).returncode == 0


def assert_same_state(before: dict[str, Any], after: dict[str, Any] | None = None) -> None:
    after = after if after is not None else take_snapshot()
    differences = diff_snapshots(before, after)
    assert differences == [], "network state changed:\n" + "\n".join(differences)


def make_canary() -> None:
    """State of "the user's" that nsgen must never touch: a bridge, a namespace and iptables
    and ip6tables rules in the nat and filter tables (one of each a MASQUERADE much like
    nsgen's own)."""
    for argv in (
        ["ip", "link", "add", "user-br", "type", "bridge"],
        ["ip", "addr", "add", "10.99.0.1/24", "dev", "user-br"],
        ["ip", "addr", "add", "fd99::1/64", "dev", "user-br", "nodad"],
        ["ip", "netns", "add", "user-ns"],
        [
            "iptables",
            "-w",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "10.99.0.0/24",
            "-o",
            "eth0",
            "-j",
            "MASQUERADE",
        ],
        ["iptables", "-w", "-A", "FORWARD", "-s", "10.99.0.0/24", "-j", "ACCEPT"],
        [
            "ip6tables",
            "-w",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "fd99::/64",
            "-o",
            "eth0",
            "-j",
            "MASQUERADE",
        ],
        ["ip6tables", "-w", "-A", "FORWARD", "-s", "fd99::/64", "-j", "ACCEPT"],
    ):
        result = run(*argv)
        assert result.returncode == 0, result.stderr


USER_TABLE = "inet user_fw"


def make_nft_canary() -> None:
    """ "The user's" own nftables table, as a firewall of theirs would keep it: a base chain on
    the input hook with a counter rule. nsgen must leave it exactly as it was."""
    for argv in (
        ["nft", "add", "table", "inet", "user_fw"],
        ["nft", "add chain inet user_fw input { type filter hook input priority 0 ; }"],
        ["nft", "add rule inet user_fw input ip saddr 10.99.0.0/24 counter accept"],
    ):
        result = run(*argv)
        assert result.returncode == 0, result.stderr


def wait_until_up(dev: str, netns: str | None = None, seconds: float = 5) -> None:
    """Wait (bounded) until a link's operstate is UP: a bridge reports it a moment after its
    first port comes up, and a snapshot taken in between would see UNKNOWN."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if "state UP" in run("ip", "-o", "link", "show", "dev", dev, netns=netns).stdout:
            return
        time.sleep(0.02)
    raise AssertionError(f"{dev} did not come up within {seconds} s")


def shown(value: str) -> str:
    """How a message shows a plain value: quoted, at most 60 characters and '…'
    (nsgen.errors cuts every quoted value of a problem so)."""
    return repr(value) if len(value) <= 60 else repr(value[:60])[:-1] + "…'"
