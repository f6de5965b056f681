"""What `nsgen up`/`down` show while they work, on a terminal (a pseudo-terminal here) and
elsewhere; what -q leaves out; and completion of the names of topologies that are up."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import yaml

from nsgen.sandbox import require_sandbox
from nsgen.snapshot import take_snapshot
from tests.harness import assert_same_state, sandboxed
from tests.test_cli import complete

NSGEN = (sys.executable, "-m", "nsgen")
COLUMNS = 80
LIVE = "\r\033[K"


def big(n: int) -> dict[str, Any]:
    """n namespaces on one bridge: n + 3 steps."""
    namespaces = {
        f"n{i}": {
            "interfaces": [
                {"peer": {"bridge": "br0"}, "addresses": [f"10.88.{i // 250}.{i % 250 + 2}/22"]}
            ]
        }
        for i in range(n)
    }
    return {
        "name": "big",
        "host": {"bridges": {"br0": {"addresses": ["10.88.3.254/22"]}}},
        "namespaces": namespaces,
    }


def on_a_terminal(*args: str | Path, timeout: float = 120) -> tuple[int, str]:
    """Run nsgen with stdin, stdout and stderr on a new 80x24 pseudo-terminal; returns its exit
    status and everything it wrote there."""
    require_sandbox()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    process = subprocess.Popen(
        [*NSGEN, *map(str, args)], stdin=slave, stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        return process.wait(timeout=max(1.0, deadline - time.monotonic())), screen.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


def nsgen(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    require_sandbox()
    return subprocess.run(
        [*NSGEN, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@sandboxed
def test_a_500_namespace_up_takes_one_line_of_a_terminal(tmp_path: Path) -> None:
    topology = tmp_path / "big.yaml"
    topology.write_text(yaml.safe_dump(big(500)))
    before = take_snapshot()
    code, screen = on_a_terminal("up", topology)
    assert code == 0, screen[-2000:]
    assert screen.count("\n") == 1, f"{screen.count(chr(10))} lines scrolled"
    assert screen.endswith(f"{LIVE}big is up (503 steps)\r\n")
    frames = screen.split(LIVE)
    counters = [int(m.group(1)) for m in (re.match(r"\[ *(\d+)/503\]", f) for f in frames) if m]
    assert len(counters) > 500, "the live line follows every step"
    assert counters == sorted(counters) and counters[-1] == 503, "the counter only rises"
    assert all(len(frame) < COLUMNS for frame in frames), "a wrapped line cannot be rewritten"
    code, screen = on_a_terminal("down", "big")
    assert code == 0, screen[-2000:]
    assert screen.count("\n") == 1
    assert screen.endswith(f"{LIVE}big is down\r\n")
    assert_same_state(before)


@sandboxed
def test_elsewhere_up_prints_every_step_in_order(tmp_path: Path) -> None:
    topology = tmp_path / "big.yaml"
    topology.write_text(yaml.safe_dump(big(500)))
    result = nsgen("up", topology)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[-1] == "big is up (503 steps)"
    steps = [re.fullmatch(r"\[ *(\d+)/503\] (.+)  ok  \d+ ms", line) for line in lines[:-1]]
    assert all(steps), [line for line, m in zip(lines, steps, strict=False) if not m][:3]
    assert [int(m.group(1)) for m in steps if m] == list(range(1, 504))
    titles = [m.group(2) for m in steps[3:] if m]
    assert sorted(titles) == sorted(f"configure namespace n{i}" for i in range(500))
    assert nsgen("down", "big", "-q").returncode == 0


@sandboxed
def test_quiet_prints_nothing_when_all_goes_well_and_the_failure_when_not(
    tmp_path: Path,
) -> None:
    topology = tmp_path / "small.yaml"
    topology.write_text(yaml.safe_dump(big(3) | {"name": "small"}))
    for args in (("up", topology, "-q"), ("up", topology, "-q"), ("down", "small", "-q")):
        result = nsgen(*args)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), args
    # br0 taken by someone else: preflight refuses, and -q still says so
    assert (
        subprocess.run(["ip", "link", "add", "br0", "type", "bridge"], check=False).returncode == 0
    )
    refused = nsgen("up", topology, "-q")
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.splitlines()[0] == "preflight refused, nothing was changed:"
    assert "br0" in refused.stderr
    subprocess.run(["ip", "link", "del", "br0"], check=True)


@sandboxed
def test_completion_offers_the_names_of_topologies_that_are_up(tmp_path: Path) -> None:
    topology = tmp_path / "small.yaml"
    topology.write_text(yaml.safe_dump(big(2) | {"name": "small"}))
    (tmp_path / "notes.txt").write_text("not a topology\n")
    assert complete("nsgen down s", cwd=tmp_path) == ["small.yaml"]
    assert nsgen("up", topology, "-q").returncode == 0
    assert complete("nsgen down s", cwd=tmp_path) == ["small", "small.yaml"]
    assert complete("nsgen down ", cwd=tmp_path) == ["small", "small.yaml"]
    assert nsgen("down", "small", "-q").returncode == 0
    assert complete("nsgen down ", cwd=tmp_path) == ["small.yaml"]
