"""Rollback and teardown never strand a topology: preflight refuses, changing nothing, when an
object a step would add is already the user's (a default route included); every undo removes
exactly what its step added and counts what is gone as done; a record left by a failed undo
is finished by the next `down` (or cleared with --forget, which says what it leaves)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from nsgen.sandbox import upstream
from nsgen.snapshot import take_snapshot
from tests.faults import calls_made, fail_at, install_stand_ins
from tests.harness import EXAMPLES, assert_same_state, make_canary, run, sandboxed

ROOT_KINDS = """
name: strand
host:
  external: [eth0]
  bridges:
    br0: {addresses: [10.3.0.254/24]}
  routes:
    - {to: 10.8.0.0/24, via: 10.3.0.1}
  neighbors:
    - {dev: eth0, address: 203.0.113.9, lladdr: "02:00:00:00:00:09"}
  iptables:
    chains: [{name: STRAND-IN}]
    rules:
      - {chain: FORWARD, rule: "-i br0 -j STRAND-IN"}
      - {chain: FORWARD, rule: "-s 10.3.0.0/24 -o eth0 -j ACCEPT"}
  masquerade:
    - {source: 10.3.0.0/24, out: eth0}
  sysctls: {net.ipv4.ip_forward: 1}
namespaces:
  a:
    interfaces:
      - peer: {bridge: br0}
        addresses: [10.3.0.1/24]
    routes: [{to: default, via: 10.3.0.254}]
    dns: {nameservers: [198.51.100.53]}
"""
"""A topology with an object of every kind the root namespace can hold."""


def nsgen(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    script = Path(sys.executable).with_name("nsgen")
    result = run(str(script), *map(str, args), env=env, timeout=120)
    return result.returncode, result.stderr


def write(tmp_path: Path, text: str, **changes: object) -> Path:
    data = yaml.safe_load(text)
    data.update(changes)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def ok(*argv: str) -> None:
    result = run(*argv)
    assert result.returncode == 0, f"{argv}: {result.stderr}"


def _users_file(path: str) -> None:
    Path(path).parent.mkdir()
    Path(path).write_text("nameserver 192.0.2.53\n")


CONFLICTS: dict[str, tuple[Callable[[], None], str]] = {
    "namespace": (lambda: ok("ip", "netns", "add", "a"), "namespace a already exists"),
    "link": (
        lambda: ok("ip", "link", "add", "br0", "type", "bridge"),
        "link br0 already exists in the root namespace",
    ),
    "route": (
        lambda: ok("ip", "route", "add", "10.8.0.0/24", "via", "203.0.113.1"),
        "the root namespace already has a route to 10.8.0.0/24 (ip -4 route show exact "
        "10.8.0.0/24)",
    ),
    "a bridge's subnet": (
        lambda: ok("ip", "route", "add", "10.3.0.0/24", "via", "203.0.113.1"),
        "the root namespace already has a route to 10.3.0.0/24",
    ),
    "address": (
        lambda: ok("ip", "addr", "add", "10.3.0.254/32", "dev", "eth0"),
        "address 10.3.0.254 is already assigned in the root namespace",
    ),
    "neighbour": (
        lambda: ok("ip", "neigh", "add", "203.0.113.9", "lladdr", "02:00:00:00:00:10", "dev", "eth0"),
        "a neighbour entry for 203.0.113.9 on eth0 already exists",
    ),
    "chain": (
        lambda: ok("iptables", "-w", "-N", "STRAND-IN"),
        "iptables chain STRAND-IN already exists in table filter",
    ),
    "rule": (
        lambda: ok("iptables", "-w", "-A", "FORWARD", "-s", "10.3.0.0/24", "-o", "eth0", "-m",
                   "comment", "--comment", "nsgen:strand", "-j", "ACCEPT"),
        "an iptables rule tagged like this one is already in filter FORWARD",
    ),
    "masquerade": (
        lambda: ok("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", "10.3.0.0/24", "-o",
                   "eth0", "-m", "comment", "--comment", "nsgen:strand", "-j", "MASQUERADE"),
        "a masquerade rule tagged nsgen:strand for 10.3.0.0/24 out of eth0 is already present",
    ),
    "file": (lambda: _users_file("/etc/netns/a/resolv.conf"), "/etc/netns/a/resolv.conf already exists"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(CONFLICTS))
@sandboxed
def test_preflight_refuses_an_object_of_the_users_and_changes_nothing(
    tmp_path: Path, kind: str
) -> None:
    make_user_object, message = CONFLICTS[kind]
    path = write(tmp_path, ROOT_KINDS)
    with upstream(["eth0"]):
        make_user_object()
        before = take_snapshot()
        code, stderr = nsgen("up", path)
        assert code == 1, stderr
        assert "preflight refused, nothing was changed:" in stderr
        assert message in stderr
        assert_same_state(before)


@sandboxed
def test_preflight_finds_own_chains_of_either_family_in_each_table_listed_once(
    tmp_path: Path,
) -> None:
    """Preflight lists each table's chains once (PROGRAM-save -t TABLE) and looks every own
    chain up in that list: an IPv6 chain of the user's in nat and one in filter are each
    found, in their own family and table, and nothing else is named."""
    with upstream(["eth0"]):
        ok("ip6tables", "-w", "-t", "nat", "-N", "NSGEN-docker-dual-DNAT")
        ok("ip6tables", "-w", "-N", "NSGEN-docker-dual-FWD")
        ok("iptables", "-w", "-N", "users-own")
        before = take_snapshot()
        code, stderr = nsgen("up", EXAMPLES / "docker-dual.yaml")
        assert code == 1, stderr
        named = [line for line in stderr.splitlines() if " chain " in line]
        assert named == [
            "  ip6tables chain NSGEN-docker-dual-FWD already exists in table filter",
            "  ip6tables chain NSGEN-docker-dual-DNAT already exists in table nat",
        ]
        assert_same_state(before)


@sandboxed
def test_a_default_route_beside_the_machines_own_is_refused_by_preflight(tmp_path: Path) -> None:
    """The reproduced case: host.routes has a default route, and the machine has one already
    (the lab's upstream gives the root namespace a default route via 203.0.113.1)."""
    data = yaml.safe_load(ROOT_KINDS)
    data["host"]["routes"] = [{"to": "default", "via": "10.3.0.1"}]
    path = tmp_path / "default.yaml"
    path.write_text(yaml.safe_dump(data))
    with upstream(["eth0"]):
        before = take_snapshot()
        for command in (["up", path],):
            code, stderr = nsgen(*command)
            assert code == 1, stderr
            assert (
                "the root namespace already has a default route (ip -4 route show exact default)"
                in stderr
            )
        assert_same_state(before)


@sandboxed
def test_a_fault_at_every_undo_leaves_a_record_that_the_next_down_finishes(tmp_path: Path) -> None:
    path = write(tmp_path, ROOT_KINDS)
    env = install_stand_ins(tmp_path / "bin")
    with upstream(["eth0"]):
        make_canary()
        before = take_snapshot()
        assert nsgen("up", "-q", path)[0] == 0
        code, stderr = nsgen("down", "-q", path, env=fail_at(env, 0))
        assert code == 0, stderr
        total = calls_made(env)
        assert total >= 4, total
        assert_same_state(before)
        for k in range(1, total + 1):
            assert nsgen("up", "-q", path)[0] == 0
            code, stderr = nsgen("down", "-q", path, env=fail_at(env, k))
            assert code == 4, f"undo fault {k}: exit {code}\n{stderr}"
            assert "teardown incomplete, still present:" in stderr
            assert "run 'nsgen down strand' again, or 'nsgen down strand --forget'" in stderr
            code, stderr = nsgen("down", "-q", "strand")
            assert code == 0, f"after undo fault {k}: {stderr}"
            assert_same_state(before)


@sandboxed
def test_a_failed_step_with_a_failed_undo_is_finished_by_down_and_by_teardown_sh(
    tmp_path: Path,
) -> None:
    """Exit 4 (a step failed, then an undo failed too): the record stays, and both `nsgen
    down` and the rendered teardown.sh finish it once nothing stops them."""
    path = write(tmp_path, ROOT_KINDS)
    out = tmp_path / "out"
    nsgen_cli = Path(sys.executable).with_name("nsgen")
    assert run(nsgen_cli, "render", path, "-o", out, "--style", "tutorial").returncode == 0
    env = install_stand_ins(tmp_path / "bin")
    # the root route fails, and on the way back so does deleting the bridge
    failing = {**fail_at(env, 0), "NSGEN_FAIL_MATCH": "route add 10.8.0.0|link delete br0"}
    with upstream(["eth0"]):
        before = take_snapshot()
        code, stderr = nsgen("up", "--style", "tutorial", path, env=failing)
        assert code == 4, stderr
        assert "rollback incomplete, still present:" in stderr
        assert run("ip", "link", "show", "br0").returncode == 0  # the leftover
        assert nsgen("down", "-q", "strand") == (0, "")
        assert_same_state(before)

        setup = run(out / "setup.sh", env=failing)
        assert setup.returncode == 4, setup.stderr
        assert "rollback incomplete; these steps could not be undone:" in setup.stderr
        done = run(out / "teardown.sh")
        assert done.returncode == 0, done.stderr
        assert_same_state(before)


@sandboxed
def test_forget_clears_a_record_whose_undo_cannot_succeed_and_names_what_it_leaves(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, ROOT_KINDS)
    out = tmp_path / "out"
    assert run(Path(sys.executable).with_name("nsgen"), "render", path, "-o", out).returncode == 0
    env = install_stand_ins(tmp_path / "bin")
    stuck = {**fail_at(env, 0), "NSGEN_FAIL_MATCH": "^--noflush -w$"}  # iptables-restore
    with upstream(["eth0"]):
        before = take_snapshot()
        for how in ("nsgen", "teardown.sh"):
            if how == "nsgen":
                assert nsgen("up", "-q", path)[0] == 0
                code, stderr = nsgen("down", "strand", "--forget", env=stuck)
                assert code == 0, stderr
                assert "strand is forgotten; left behind: step 6/" in stderr
            else:
                assert run(out / "setup.sh").returncode == 0
                done = run(out / "teardown.sh", "--forget", env=stuck)
                assert done.returncode == 0, done.stderr
                assert "forgetting strand; what these steps made is left behind:" in done.stderr
            assert not Path("/run/nsgen/strand").exists()
            # what was left behind is the rules; remove them by their exact spec
            for table, chain, rule in (
                ("filter", "FORWARD", "-i br0 -m comment --comment nsgen:strand -j STRAND-IN"),
                ("filter", "FORWARD", "-s 10.3.0.0/24 -o eth0 -m comment --comment nsgen:strand -j ACCEPT"),
                ("nat", "POSTROUTING", "-s 10.3.0.0/24 -o eth0 -m comment --comment nsgen:strand -j MASQUERADE"),
            ):  # fmt: skip
                ok("iptables", "-w", "-t", table, "-D", chain, *rule.split())
            ok("iptables", "-w", "-X", "STRAND-IN")
            assert_same_state(before)


@sandboxed
def test_an_undo_removes_only_its_own_object_and_counts_a_gone_one_as_done(
    tmp_path: Path,
) -> None:
    """After up, someone replaces nsgen's route with one of their own to the same destination
    and moves nsgen's address: down leaves the user's route alone, and finishes."""
    path = write(tmp_path, ROOT_KINDS)
    with upstream(["eth0"]):
        before = take_snapshot()
        assert nsgen("up", "-q", path)[0] == 0
        ok("ip", "route", "del", "10.8.0.0/24", "via", "10.3.0.1")
        ok("ip", "route", "add", "10.8.0.0/24", "via", "203.0.113.1")  # the user's own
        code, stderr = nsgen("down", "-q", "strand")
        assert code == 0, stderr
        assert run("ip", "route", "show", "exact", "10.8.0.0/24").stdout.startswith(
            "10.8.0.0/24 via 203.0.113.1 dev eth0"
        )
        ok("ip", "route", "del", "10.8.0.0/24", "via", "203.0.113.1")
        assert_same_state(before)
