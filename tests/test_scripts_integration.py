"""The rendered setup.sh / teardown.sh of the seed, run for real inside a sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nsgen.sandbox import INTERNET_HOST, upstream
from nsgen.snapshot import diff_snapshots, take_snapshot
from tests.harness import (
    EXAMPLES,
    assert_same_state,
    make_canary,
    ping,
    render_example,
    run,
    sandboxed,
    wait_until_up,
)


def _masquerade_packets() -> int:
    rules = run("iptables", "-w", "-t", "nat", "-L", "POSTROUTING", "-v", "-x", "-n").stdout
    for line in rules.splitlines():
        if "nsgen:seed" in line:
            return int(line.split()[0])
    raise AssertionError(f"no nsgen:seed rule in:\n{rules}")


FIRST_LINES = {
    "batch": "[nsgen] 3/8 create veth pairs (2 veths)",
    "tutorial": "[nsgen] 3/17 create bridge br0",
}


@pytest.mark.parametrize("style", ["batch", "tutorial"])
@sandboxed
def test_seed_scripts_build_the_tutorial_network_and_teardown_restores_the_snapshot(
    tmp_path: Path, style: str
) -> None:
    scripts = render_example("seed", tmp_path, style)
    with upstream(["eth0"]):
        make_canary()
        before = take_snapshot()
        setup = run(scripts / "setup.sh")
        assert setup.returncode == 0, setup.stderr
        assert FIRST_LINES[style] in setup.stderr

        assert ping("192.168.15.1", netns="red"), "red -> blue"
        assert ping("192.168.15.2", netns="blue"), "blue -> red"
        assert ping("192.168.15.2"), "root namespace -> red over br0"
        packets = _masquerade_packets()
        assert ping(INTERNET_HOST, netns="blue"), "blue -> simulated internet through NAT"
        assert _masquerade_packets() > packets, "the masquerade rule did not count the ping"
        resolv = run("cat", "/etc/resolv.conf", netns="blue")
        assert resolv.stdout == "nameserver 198.51.100.53\n"
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"

        teardown = run(scripts / "teardown.sh")
        assert teardown.returncode == 0, teardown.stderr
        assert_same_state(before)
        assert ping("10.99.0.1"), "the user's bridge must still work"

        again = run(scripts / "teardown.sh")
        assert again.returncode == 0
        assert "nothing to do" in again.stderr
        assert_same_state(before)


@sandboxed
def test_setup_refuses_when_a_namespace_exists_and_changes_nothing(tmp_path: Path) -> None:
    scripts = render_example("seed", tmp_path)
    with upstream(["eth0"]):
        assert run("ip", "netns", "add", "red").returncode == 0
        assert run("ip", "link", "add", "br0", "type", "bridge").returncode == 0
        before = take_snapshot()
        setup = run(scripts / "setup.sh")
        assert setup.returncode == 1
        assert "preflight refused, nothing was changed" in setup.stderr
        assert "namespace red already exists" in setup.stderr
        assert "link br0 already exists in the root namespace" in setup.stderr
        assert_same_state(before)


@sandboxed
def test_setup_refuses_without_the_external_uplink(tmp_path: Path) -> None:
    scripts = render_example("seed", tmp_path)
    before = take_snapshot()
    setup = run(scripts / "setup.sh")
    assert setup.returncode == 1
    assert "external interface eth0 does not exist" in setup.stderr
    assert_same_state(before)


@sandboxed
def test_teardown_without_setup_touches_nothing_even_if_names_exist(tmp_path: Path) -> None:
    scripts = render_example("seed", tmp_path)
    with upstream(["eth0"]):
        assert run("ip", "netns", "add", "red").returncode == 0
        before = take_snapshot()
        teardown = run(scripts / "teardown.sh")
        assert teardown.returncode == 0
        assert "nothing to do" in teardown.stderr
        assert_same_state(before)


@sandboxed
def test_setup_run_twice_refuses_the_second_time(tmp_path: Path) -> None:
    scripts = render_example("seed", tmp_path)
    with upstream(["eth0"]):
        assert run(scripts / "setup.sh").returncode == 0
        wait_until_up("br0")
        during = take_snapshot()
        second = run(scripts / "setup.sh")
        assert second.returncode == 1
        assert "seed is already set up" in second.stderr
        assert_same_state(during)
        assert run(scripts / "teardown.sh").returncode == 0


@sandboxed
def test_ip_forward_gets_its_previous_value_back(tmp_path: Path) -> None:
    scripts = render_example("seed", tmp_path)
    with upstream(["eth0"]):
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        assert run(scripts / "setup.sh").returncode == 0
        assert run(scripts / "teardown.sh").returncode == 0
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"


_VOLATILE = {
    "ifindex",
    "link_index",
    "address",
    "broadcast",
    "perm_address",
    "link_netnsid",
    "link",
    "parentbus",
    "parentdev",
    "altnames",
}


def _comparable(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot without what differs between two identical builds (indexes, random MACs)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _VOLATILE}
        if isinstance(value, list):  # the kernel lists routes of equal rank in any order
            items = [strip(v) for v in value]
            return (
                sorted(items, key=json.dumps) if all(isinstance(i, dict) for i in items) else items
            )
        return value

    return strip({k: v for k, v in snapshot.items() if k != "run_nsgen"})


@pytest.mark.parametrize("example", sorted(p.stem for p in EXAMPLES.glob("*.yaml")))
@sandboxed
def test_batch_and_tutorial_styles_build_the_identical_network(
    tmp_path: Path, example: str
) -> None:
    states = {}
    with upstream(["eth0"]):
        for style in ("batch", "tutorial"):
            scripts = render_example(example, tmp_path / style, style)
            setup = run(scripts / "setup.sh")
            assert setup.returncode == 0, setup.stderr
            states[style] = _comparable(take_snapshot())
            assert run(scripts / "teardown.sh").returncode == 0
    differences = diff_snapshots(states["tutorial"], states["batch"])
    assert differences == [], "\n".join(differences)
