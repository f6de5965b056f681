"""The rendered setup.sh / teardown.sh of the seed, run for real inside a sandbox."""

from __future__ import annotations

from pathlib import Path

from nsgen.sandbox import INTERNET_HOST, upstream
from nsgen.snapshot import take_snapshot
from tests.harness import assert_same_state, make_canary, ping, render_example, run, sandboxed


def _masquerade_packets() -> int:
    rules = run("iptables", "-w", "-t", "nat", "-L", "POSTROUTING", "-v", "-x", "-n").stdout
    for line in rules.splitlines():
        if "nsgen:seed" in line:
            return int(line.split()[0])
    raise AssertionError(f"no nsgen:seed rule in:\n{rules}")


@sandboxed
def test_seed_scripts_build_the_tutorial_network_and_teardown_restores_the_snapshot(
    tmp_path: Path,
) -> None:
    scripts = render_example("seed", tmp_path)
    with upstream(["eth0"]):
        make_canary()
        before = take_snapshot()
        setup = run(scripts / "setup.sh")
        assert setup.returncode == 0, setup.stderr
        assert "[nsgen] 3/17 create bridge br0" in setup.stderr

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
