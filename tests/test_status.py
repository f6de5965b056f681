"""nsgen.status: declared objects compared with live state. The integration tests bring the
seed up with `nsgen up` inside a sandbox, break one thing by hand and look at the rows; the
unit tests check the output formats and, with a fake command runner, what is (not) run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nsgen.load import load_topology
from nsgen.model import Topology
from nsgen.sandbox import upstream
from nsgen.status import (
    DIFFERENT,
    MISSING,
    PRESENT,
    LiveState,
    ObjectStatus,
    drifted,
    format_table,
    to_json,
    topology_status,
)
from tests.harness import EXAMPLES, run, sandboxed

SEED = EXAMPLES / "seed.yaml"

# Rows of the seed whose state the tests look at, as (kind, netns, name).
VETH_RED = ("veth", "red", "veth-red")
VETH_RED_BR = ("veth", "host", "veth-red-br")
ADDR_RED = ("address", "red", "192.168.15.2/24 dev veth-red")
ROUTES_RED = [
    ("route", "red", "192.168.1.0/24 via 192.168.15.254"),
    ("route", "red", "default via 192.168.15.254"),
]
MASQ = ("masquerade", "host", "-s 192.168.15.0/24 -o eth0")
MASQ_SPEC = [
    "-s",
    "192.168.15.0/24",
    "-o",
    "eth0",
    "-m",
    "comment",
    "--comment",
    "nsgen:seed",
    "-j",
    "MASQUERADE",
]
FORWARD = ("sysctl", "host", "net.ipv4.ip_forward=1")
EXTERNAL = ("external", "host", "eth0")


def _nsgen(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("nsgen")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "nsgen"]
    return run(*argv, *args)


@contextmanager
def _seed_up() -> Iterator[Topology]:
    """The seed, up (via `nsgen up`) on a simulated uplink eth0; `nsgen down` afterwards."""
    with upstream(["eth0"]):
        try:
            result = _nsgen("up", "--quiet", str(SEED))
            assert result.returncode == 0, result.stderr
            yield load_topology(SEED)
        finally:
            down = _nsgen("down", "--quiet", "seed")
            assert down.returncode == 0, down.stderr


def _by_key(rows: list[ObjectStatus]) -> dict[tuple[str, str, str], ObjectStatus]:
    table = {(r.kind, r.netns, r.name): r for r in rows}
    assert len(table) == len(rows), "two rows with the same kind, namespace and name"
    return table


def _not_present(rows: list[ObjectStatus]) -> dict[tuple[str, str, str], tuple[str, str]]:
    return {(r.kind, r.netns, r.name): (r.state, r.detail) for r in rows if r.state != PRESENT}


def _ok(*argv: str, netns: str | None = None) -> None:
    result = run(*argv, netns=netns)
    assert result.returncode == 0, result.stderr


# ---- integration: the seed, for real, inside a sandbox -------------------------------------


@sandboxed
def test_everything_is_present_after_up() -> None:
    with _seed_up() as topology:
        live = LiveState()
        rows = topology_status(topology, live)
        assert _not_present(rows) == {}
        assert not drifted(rows)
        assert [r.kind for r in rows].count("veth") == 4
        assert {r.kind for r in rows} == {
            "namespace",
            "loopback",
            "external",
            "bridge",
            "veth",
            "address",
            "route",
            "masquerade",
            "sysctl",
            "dns",
            "state",
        }
        assert _by_key(rows)[("state", "host", "/run/nsgen/seed")].state == PRESENT
        # one `ip -j` per namespace and kind, one iptables-save: 3 addr + 2 route (the host
        # declares no routes) + 1 iptables-save
        assert len(live.commands) == 6, live.commands
        assert format_table(rows).endswith("21 objects: 21 present, 0 missing, 0 different")


@sandboxed
def test_before_up_everything_is_missing() -> None:
    topology = load_topology(SEED)
    with upstream(["eth0"]):
        Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")
        live = LiveState()
        rows = topology_status(topology, live)
    table = _by_key(rows)
    # The uplink is not nsgen's (it exists before and after), and a sysctl always has a value.
    assert table[EXTERNAL].state == PRESENT
    assert (table[FORWARD].state, table[FORWARD].detail) == (DIFFERENT, "value is 0, expected 1")
    others = [r for r in rows if (r.kind, r.netns, r.name) not in (EXTERNAL, FORWARD)]
    assert others and all(r.state == MISSING for r in others), format_table(rows)
    assert table[("namespace", "red", "red")].detail == ""
    assert table[ADDR_RED].detail == "no namespace red"
    # nothing was run in the missing namespaces
    assert all(argv[:2] != ["ip", "-n"] and argv[:2] != ["ip", "netns"] for argv in live.commands)
    assert drifted(rows)


@sandboxed
def test_a_deleted_veth_pair_and_what_was_on_it_are_missing() -> None:
    with _seed_up() as topology:
        _ok("ip", "link", "del", "veth-red-br")
        rows = topology_status(topology)
        # deleting one end deletes the pair; red's address goes with it, and its routes via a
        # gateway on that subnet go with the address
        assert _not_present(rows) == {
            VETH_RED: (MISSING, ""),
            ADDR_RED: (MISSING, "no link veth-red"),
            VETH_RED_BR: (MISSING, ""),
            **{route: (MISSING, "") for route in ROUTES_RED},
        }
        assert drifted(rows)


@sandboxed
def test_a_deleted_address_is_missing() -> None:
    with _seed_up() as topology:
        _ok("ip", "addr", "del", "192.168.15.2/24", "dev", "veth-red", netns="red")
        rows = topology_status(topology)
        table = _by_key(rows)
        assert (table[ADDR_RED].state, table[ADDR_RED].detail) == (MISSING, "")
        assert table[VETH_RED].state == PRESENT
        # the kernel drops the routes whose gateway was reachable only through that address
        assert set(_not_present(rows)) == {ADDR_RED, *ROUTES_RED}


@sandboxed
def test_a_changed_sysctl_is_different() -> None:
    with _seed_up() as topology:
        Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")
        rows = topology_status(topology)
        assert _not_present(rows) == {FORWARD: (DIFFERENT, "value is 0, expected 1")}


@sandboxed
def test_a_deleted_masquerade_rule_is_missing() -> None:
    with _seed_up() as topology:
        _ok("iptables", "-w", "-t", "nat", "-D", "POSTROUTING", *MASQ_SPEC)
        rows = topology_status(topology)
        assert _not_present(rows) == {MASQ: (MISSING, "")}


RESOLV_DIFFERS = "line 1 is 'nameserver 192.0.2.1', expected 'nameserver 198.51.100.53'"


@sandboxed
def test_links_and_files_changed_by_hand_are_different() -> None:
    with _seed_up() as topology:
        _ok("ip", "link", "set", "veth-blue-br", "nomaster")
        _ok("ip", "link", "set", "br0", "down")
        _ok("ip", "link", "set", "lo", "down", netns="blue")
        _ok("ip", "link", "set", "veth-red-br", "netns", "blue")
        Path("/etc/netns/blue/resolv.conf").write_text("nameserver 192.0.2.1\n")
        # an untagged copy of the rule (not nsgen's) in place of the tagged one
        _ok("iptables", "-w", "-t", "nat", "-D", "POSTROUTING", *MASQ_SPEC)
        _ok("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", *MASQ_SPEC[:4], "-j", "MASQUERADE")
        rows = topology_status(topology)
        assert _not_present(rows) == {
            ("veth", "host", "veth-blue-br"): (DIFFERENT, "not attached to br0"),
            ("bridge", "host", "br0"): (DIFFERENT, "down"),
            ("loopback", "blue", "lo"): (DIFFERENT, "down"),
            VETH_RED_BR: (MISSING, "found in namespace blue"),
            ("dns", "blue", "/etc/netns/blue/resolv.conf"): (DIFFERENT, RESOLV_DIFFERS),
            MASQ: (DIFFERENT, "rule present without the comment nsgen:seed"),
        }
        _ok("iptables", "-w", "-t", "nat", "-D", "POSTROUTING", *MASQ_SPEC[:4], "-j", "MASQUERADE")


# ---- unit: output formats ---------------------------------------------------------------

ROWS = [
    ObjectStatus("namespace", "red", "red", PRESENT),
    ObjectStatus("veth", "host", "veth-red-br", DIFFERENT, "master is br1, expected br0"),
    ObjectStatus("address", "red", "192.168.15.2/24 dev veth-red", MISSING),
]


def test_format_table_aligns_columns_and_ends_with_a_summary() -> None:
    expected = """\
KIND       NAMESPACE  OBJECT                        STATE      DETAIL
namespace  red        red                           present
veth       host       veth-red-br                   different  master is br1, expected br0
address    red        192.168.15.2/24 dev veth-red  missing
3 objects: 1 present, 1 missing, 1 different"""
    assert format_table(ROWS) == expected
    empty = "KIND  NAMESPACE  OBJECT  STATE  DETAIL\n0 objects: 0 present, 0 missing, 0 different"
    assert format_table([]) == empty


def test_to_json_is_deterministic_and_complete() -> None:
    text = to_json(ROWS, topology="seed")
    assert text == to_json(list(ROWS), topology="seed")
    assert json.loads(text) == {
        "topology": "seed",
        "drifted": True,
        "summary": {"objects": 3, "present": 1, "missing": 1, "different": 1},
        "objects": [
            {"kind": "namespace", "netns": "red", "name": "red", "state": "present", "detail": ""},
            {
                "kind": "veth",
                "netns": "host",
                "name": "veth-red-br",
                "state": "different",
                "detail": "master is br1, expected br0",
            },
            {
                "kind": "address",
                "netns": "red",
                "name": "192.168.15.2/24 dev veth-red",
                "state": "missing",
                "detail": "",
            },
        ],
    }
    assert list(json.loads(text)) == ["drifted", "objects", "summary", "topology"]
    assert "topology" not in json.loads(to_json(ROWS))
    assert not drifted(ROWS[:1])
    assert not json.loads(to_json([]))["drifted"]


# ---- unit: what is run, with a fake runner --------------------------------------------------


def _fake_live(tmp_path: Path, existing: list[str]) -> tuple[LiveState, list[list[str]]]:
    """A LiveState over empty directories whose commands all succeed with empty output, except
    that `ip -n NS` fails for any namespace (as for a stale /run/netns file)."""
    for name in existing:
        (tmp_path / "netns").mkdir(exist_ok=True)
        (tmp_path / "netns" / name).write_text("")
    sysctl = tmp_path / "root/proc/sys/net/ipv4/ip_forward"
    sysctl.parent.mkdir(parents=True)
    sysctl.write_text("1\n")
    calls: list[list[str]] = []

    def fake(argv: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        if argv[:2] == ["ip", "-n"]:
            return subprocess.CompletedProcess(argv, 255, "", "Invalid argument\n")
        return subprocess.CompletedProcess(argv, 0, "[]" if argv[0] == "ip" else "", "")

    live = LiveState(
        run=fake,
        netns_dir=tmp_path / "netns",
        state_root=tmp_path / "state",
        root=tmp_path / "root",
    )
    return live, calls


def test_a_missing_namespace_is_not_entered(tmp_path: Path) -> None:
    live, calls = _fake_live(tmp_path, existing=[])
    rows = topology_status(load_topology(SEED), live)
    assert calls == [["ip", "-j", "-d", "addr", "show"], ["iptables-save"]]
    table = _by_key(rows)
    assert table[FORWARD].state == PRESENT
    assert table[("namespace", "blue", "blue")].state == MISSING
    assert (table[ROUTES_RED[0]].state, table[ROUTES_RED[0]].detail) == (
        MISSING,
        "no namespace red",
    )
    assert table[("dns", "blue", "/etc/netns/blue/resolv.conf")].state == MISSING


def test_a_namespace_that_cannot_be_entered_is_different(tmp_path: Path) -> None:
    live, calls = _fake_live(tmp_path, existing=["red"])
    table = _by_key(topology_status(load_topology(SEED), live))
    assert (
        table[("namespace", "red", "red")].state,
        table[("namespace", "red", "red")].detail,
    ) == (DIFFERENT, "cannot be entered: Invalid argument")
    assert (table[ADDR_RED].state, table[ADDR_RED].detail) == (
        DIFFERENT,
        "cannot check: namespace red cannot be entered",
    )
    assert calls.count(["ip", "-n", "red", "-j", "-d", "addr", "show"]) == 1
    assert not any(argv[:3] == ["ip", "-n", "blue"] for argv in calls)


@sandboxed
def test_neighbour_and_fdb_entries_are_observed_and_their_removal_is_drift() -> None:
    """k8s-vxlan's flannel entries (a permanent ARP entry and an FDB entry per other node)
    are objects status compares like any other: present after up, missing once deleted."""
    example = SEED.parent / "k8s-vxlan.yaml"
    with upstream(["eth0"]):
        result = _nsgen("up", "--quiet", str(example))
        assert result.returncode == 0, result.stderr
        try:
            topology = load_topology(example)
            rows = topology_status(topology)
            assert _not_present(rows) == {}
            kinds = [r.kind for r in rows]
            assert kinds.count("neighbor") == 2 and kinds.count("fdb") == 2
            neighbour = next(r for r in rows if r.kind == "neighbor" and r.netns == "node1")
            fdb = next(r for r in rows if r.kind == "fdb" and r.netns == "node1")
            assert neighbour.name == "10.244.1.0 lladdr 0a:58:0a:f4:01:00 dev flannel.1"
            assert fdb.name == "0a:58:0a:f4:01:00 dev flannel.1 dst 10.10.0.2"
            _ok("ip", "neigh", "del", "10.244.1.0", "dev", "flannel.1", netns="node1")
            _ok("bridge", "fdb", "del", "0a:58:0a:f4:01:00", "dev", "flannel.1",
                "dst", "10.10.0.2", netns="node1")  # fmt: skip
            assert _not_present(topology_status(topology)) == {
                ("neighbor", "node1", neighbour.name): (MISSING, ""),
                ("fdb", "node1", fdb.name): (MISSING, ""),
            }
        finally:
            down = _nsgen("down", "--quiet", "k8s-vxlan")
            assert down.returncode == 0, down.stderr
