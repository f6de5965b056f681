"""A veth end on a bridge at both ends: two bridges joined by a cable, in two namespaces or in
one, carry frames between the namespaces on each; MAC addresses are as declared; and what
would break a segment (a bridge that is not there, a loop, a multicast or repeated MAC) is
refused at its path."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgen.errors import TopologyError
from nsgen.explain import explain_check
from nsgen.load import load_topology, topology_from_data
from nsgen.model import Check
from nsgen.plan import build_plan
from nsgen.render import render_scripts, write_scripts
from nsgen.snapshot import take_snapshot
from nsgen.status import topology_status
from tests.harness import EXAMPLES, assert_same_state, run, sandboxed, wait_until_up

TWO_SWITCHES = EXAMPLES / "two-switches.yaml"
NSGEN = (sys.executable, "-m", "nsgen")
SRC = "two-switches.yaml"
PC1_MAC, PC2_MAC = "02:00:00:00:01:01", "02:00:00:00:02:01"


def example() -> dict[str, Any]:
    return yaml.safe_load(TWO_SWITCHES.read_text())  # type: ignore[no-any-return]


def nsgen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(*NSGEN, *args, timeout=120)


def links(netns: str | None) -> dict[str, dict[str, Any]]:
    out = run("ip", "-j", "link", "show", netns=netns).stdout
    return {link["ifname"]: link for link in json.loads(out)}


def learnt_on(netns: str | None, bridge: str, mac: str) -> str | None:
    """The port through which `bridge` learnt `mac`, from `bridge -j fdb show`."""
    out = run("bridge", "-j", "fdb", "show", "br", bridge, netns=netns).stdout
    for entry in json.loads(out):
        if entry.get("mac") == mac and "permanent" not in entry.get("state", ""):
            return str(entry["ifname"])
    return None


def neighbour(netns: str, address: str) -> str | None:
    out = run("ip", "-j", "neigh", "show", address, netns=netns).stdout
    entries = json.loads(out)
    return str(entries[0]["lladdr"]) if entries and "lladdr" in entries[0] else None


def ping(target: str, netns: str) -> bool:
    """One ping that allows for one lost ARP request: right after setup the kernel may still
    be activating a new link (it does so within a second), and ARP asks again after one."""
    return run("ping", "-c", "1", "-W", "3", "-q", target, netns=netns).returncode == 0


def problems(data: dict[str, Any]) -> list[str]:
    """The lines `nsgen validate` prints; fails if the data is accepted."""
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, SRC)
    return info.value.lines()


# ---- for real ------------------------------------------------------------------------------


@sandboxed
def test_the_example_s_two_bridges_carry_frames_between_the_namespaces_on_each() -> None:
    """sw1 is a bridge of the root namespace, br0 one of namespace sw2; the cable between
    them is a port of each."""
    before = take_snapshot()
    up = nsgen("up", "--quiet", TWO_SWITCHES)
    assert up.returncode == 0, up.stderr
    try:
        assert ping("198.51.100.2", netns="pc1")
        # pc1's frames crossed sw1, the cable and sw2's br0 with pc1's own MAC ...
        assert neighbour("pc2", "198.51.100.1") == PC1_MAC
        assert learnt_on("sw2", "br0", PC1_MAC) == "trunk"
        assert learnt_on(None, "sw1", PC2_MAC) == "trunk"
        assert learnt_on(None, "sw1", PC1_MAC) == "pc1-port"
        # ... which is the MAC declared, as the kernel shows it
        assert links("pc1")["eth0"]["address"] == PC1_MAC
        assert links("pc2")["eth0"]["address"] == PC2_MAC
        root, sw2 = links(None), links("sw2")
        assert (root["trunk"]["master"], sw2["trunk"]["master"]) == ("sw1", "br0")
        assert (root["trunk"]["mtu"], sw2["trunk"]["mtu"]) == (9000, 9000)
        assert sw2["br0"]["mtu"] == 1500  # a bridge keeps the smallest MTU of its ports
        rows = topology_status(load_topology(TWO_SWITCHES))
        assert {(r.kind, r.netns, r.name): r.state for r in rows if r.kind == "veth"} == {
            ("veth", "host", "trunk"): "present",
            ("veth", "sw2", "trunk"): "present",
            ("veth", "pc1", "eth0"): "present",
            ("veth", "host", "pc1-port"): "present",
            ("veth", "pc2", "eth0"): "present",
            ("veth", "sw2", "pc2-port"): "present",
        }
    finally:
        down = nsgen("down", "--quiet", "two-switches")
    assert down.returncode == 0, down.stderr
    assert_same_state(before)


# Two switches that are both namespaces (the batched style).
SWITCHES: dict[str, Any] = {
    "name": "switches",
    "namespaces": {
        "sw1": {
            "bridges": {"br0": {}},
            "interfaces": [
                {"name": "trunk", "bridge": "br0",
                 "peer": {"netns": "sw2", "name": "trunk", "bridge": "br0"}}
            ],
        },
        "sw2": {"bridges": {"br0": {}}},
        "left": {"interfaces": [{"mac": PC1_MAC, "addresses": ["198.51.100.1/24"],
                                 "peer": {"netns": "sw1", "bridge": "br0", "name": "left"}}]},
        "right": {"interfaces": [{"addresses": ["198.51.100.2/24"],
                                  "peer": {"netns": "sw2", "bridge": "br0", "name": "right"}}]},
    },
}  # fmt: skip


@sandboxed
def test_two_bridges_in_two_named_namespaces_joined_by_a_veth(tmp_path: Path) -> None:
    before = take_snapshot()
    path = tmp_path / "switches.yaml"
    path.write_text(yaml.safe_dump(SWITCHES))
    up = nsgen("up", "--quiet", path)
    assert up.returncode == 0, up.stderr
    try:
        # Both ends of the cable are the first link of a new namespace, so they have the same
        # interface index, and the kernel takes up to a second to see the later one's carrier
        # (its link-state event is not urgent): until then that bridge port forwards nothing.
        for switch in ("sw1", "sw2"):
            wait_until_up("trunk", switch)
        assert ping("198.51.100.2", netns="left")
        assert neighbour("right", "198.51.100.1") == PC1_MAC
        assert learnt_on("sw2", "br0", PC1_MAC) == "trunk"
        assert learnt_on("sw1", "br0", PC1_MAC) == "left"
    finally:
        down = nsgen("down", "--quiet", "switches")
    assert down.returncode == 0, down.stderr
    assert_same_state(before)


# Two bridges of the root namespace joined by a cable, in the tutorial style.
ROOT_BRIDGES: dict[str, Any] = {
    "name": "root-bridges",
    "host": {
        "bridges": {"br-a": {"mac": "02:00:00:00:00:0a"}, "br-b": {}},
        "interfaces": [
            {"name": "a-b", "bridge": "br-a", "peer": {"name": "b-a", "bridge": "br-b"}}
        ],
    },
    "namespaces": {
        "left": {
            "interfaces": [
                {"mac": PC1_MAC, "addresses": ["198.51.100.1/24"], "peer": {"bridge": "br-a"}}
            ]
        },
        "right": {
            "interfaces": [
                {"addresses": ["198.51.100.2/24"], "peer": {"bridge": "br-b", "mac": PC2_MAC}}
            ]
        },
    },
}


@sandboxed
def test_two_bridges_of_one_namespace_joined_by_a_veth_in_the_tutorial_style(
    tmp_path: Path,
) -> None:
    before = take_snapshot()
    plan = build_plan(topology_from_data(ROOT_BRIDGES, "root-bridges.yaml"), "tutorial")
    setup, teardown, _ = write_scripts(render_scripts(plan), tmp_path)
    result = run(setup)
    assert result.returncode == 0, result.stderr
    try:
        assert ping("198.51.100.2", netns="left")
        assert neighbour("right", "198.51.100.1") == PC1_MAC
        assert learnt_on(None, "br-b", PC1_MAC) == "b-a"
        root = links(None)
        assert (root["a-b"]["master"], root["b-a"]["master"]) == ("br-a", "br-b")
        assert root["br-a"]["address"] == "02:00:00:00:00:0a"
        assert root["veth-right-br"]["address"] == PC2_MAC  # a far end's MAC
    finally:
        down = run(teardown)
    assert down.returncode == 0, down.stderr
    assert_same_state(before)


# ---- validation ------------------------------------------------------------------------------


def test_a_near_end_s_bridge_must_be_declared_in_its_namespace() -> None:
    data = example()
    data["host"]["interfaces"][0]["bridge"] = "br9"
    assert problems(data) == [
        f"{SRC}: host.interfaces[0].bridge: bridge 'br9' is not declared in namespace host "
        "(under host.bridges)"
    ]


def test_the_far_end_s_bridge_written_on_the_near_end_gets_a_hint() -> None:
    data = example()
    pc1 = data["namespaces"]["pc1"]["interfaces"][0]
    pc1["bridge"] = pc1["peer"].pop("bridge")
    assert problems(data) == [
        f"{SRC}: namespaces.pc1.interfaces[0].bridge: bridge 'sw1' is not declared in "
        "namespace pc1 (under namespaces.pc1.bridges); the root namespace has one: to attach "
        "the far end, write peer: {bridge: sw1}"
    ]


def test_hairpin_on_the_near_end_needs_its_bridge() -> None:
    data = example()
    data["namespaces"]["pc1"]["interfaces"][0]["hairpin"] = True
    assert problems(data) == [
        f"{SRC}: namespaces.pc1.interfaces[0].hairpin: hairpin is a bridge port setting: it "
        "needs bridge"
    ]


def test_a_cable_from_a_bridge_to_itself_is_a_loop() -> None:
    data = copy.deepcopy(ROOT_BRIDGES)
    data["host"]["interfaces"][0]["peer"]["bridge"] = "br-a"
    assert problems(data) == [
        f"{SRC}: host.interfaces[0].peer.bridge: both ends on bridge br-a make a loop: a "
        "broadcast would circle through the cable for ever (bridges run no spanning tree)"
    ]


def test_a_second_cable_between_two_bridges_is_a_loop() -> None:
    data = example()
    second = copy.deepcopy(data["host"]["interfaces"][0])
    second["name"] = second["peer"]["name"] = "trunk2"
    data["host"]["interfaces"].append(second)
    assert problems(data) == [
        f"{SRC}: host.interfaces[1].peer.bridge: bridges sw1 (the root namespace) and br0 "
        "(namespace sw2) are joined already: a second cable makes a loop, and a broadcast "
        "would circle for ever (bridges run no spanning tree)"
    ]


@pytest.mark.parametrize(
    ("mac", "reason"),
    [
        (
            "01:00:5e:00:00:01",
            "01:00:5e:00:00:01 is a multicast MAC address: the kernel gives a device only a "
            "unicast one",
        ),
        (
            "00:00:00:00:00:00",
            "00:00:00:00:00:00 is the all-zero MAC address: the kernel gives a device only a "
            "unicast one",
        ),
        (
            "02:00:00:00:01",
            "'02:00:00:00:01' is not a MAC address (write it as 02:00:00:00:00:01)",
        ),
    ],
)
def test_a_link_s_mac_is_a_unicast_address(mac: str, reason: str) -> None:
    data = example()
    data["namespaces"]["pc1"]["interfaces"][0]["mac"] = mac
    data["namespaces"]["sw2"]["bridges"]["br0"]["mac"] = mac
    data["namespaces"]["pc2"]["interfaces"][0]["peer"]["mac"] = mac
    assert problems(data) == [
        f"{SRC}: namespaces.sw2.bridges.br0.mac: {reason}",
        f"{SRC}: namespaces.pc1.interfaces[0].mac: {reason}",
        f"{SRC}: namespaces.pc2.interfaces[0].peer.mac: {reason}",
    ]


def test_one_mac_twice_on_a_segment_is_refused_and_on_two_segments_is_not() -> None:
    data = example()
    data["namespaces"]["sw2"]["bridges"]["br0"]["mac"] = PC1_MAC  # sw2 comes before pc1
    data["namespaces"]["pc2"]["interfaces"][0]["peer"]["mac"] = PC2_MAC
    assert problems(data) == [
        f"{SRC}: namespaces.pc1.interfaces[0].mac: MAC address {PC1_MAC} is already used on "
        "the same Ethernet segment (at namespaces.sw2.bridges.br0.mac)",
        f"{SRC}: namespaces.pc2.interfaces[0].peer.mac: MAC address {PC2_MAC} is already used "
        "on the same Ethernet segment (at namespaces.pc2.interfaces[0].mac)",
    ]
    del data["namespaces"]["sw2"]["bridges"]["br0"]["mac"]
    del data["namespaces"]["pc2"]["interfaces"][0]["peer"]["mac"]
    data["namespaces"]["pc2"]["interfaces"][0]["mac"] = PC1_MAC
    data["host"]["interfaces"][0]["peer"]["bridge"] = None  # cut the cable
    topology_from_data(data, SRC)  # two segments now: the same MAC on each is fine


def test_explain_follows_a_frame_across_both_bridges_and_the_cable() -> None:
    topology = load_topology(TWO_SWITCHES)
    assert (
        explain_check(topology, Check.model_validate({"from": "pc1", "to": "pc2"})).word == "reach"
    )
    assert (
        explain_check(topology, Check.model_validate({"from": "pc2", "to": "pc1"})).word == "reach"
    )
    data = example()
    data["host"]["interfaces"][0]["peer"]["bridge"] = None  # cut the cable from sw2's br0
    assert explain_check(
        topology_from_data(data, SRC), Check.model_validate({"from": "pc1", "to": "pc2"})
    ).word == ("blocked")
