"""MTU: declared on veth ends (both sides), bridges and VXLAN devices, set in both styles, seen
by `nsgen status` when it drifts, refused where the kernel would refuse it; and the Kubernetes
vxlan mode gives the overlay flannel's MTU, so a full-size don't-fragment ping crosses nodes."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nsgen.errors import TopologyError
from nsgen.load import load_topology, topology_from_data
from nsgen.plan import build_plan
from nsgen.render import render_scripts, write_scripts
from nsgen.sandbox import upstream
from nsgen.snapshot import take_snapshot
from nsgen.status import topology_status
from tests.harness import EXAMPLES, assert_same_state, run, sandboxed

K8S_VXLAN = EXAMPLES / "k8s-vxlan.yaml"
K8S_HOST_GW = EXAMPLES / "k8s-two-nodes.yaml"
NSGEN = (sys.executable, "-m", "nsgen")
IPV4_ICMP_HEADERS = 28
"""An IPv4 header (20 bytes) and an ICMP echo header (8): a ping of MTU - 28 bytes of payload
fills a packet of exactly the MTU."""
SRC = "jumbo.yaml"

# Two namespaces on a jumbo-frame cable, a VXLAN device in each over it (the all-zero FDB
# entry floods to the other end, which learning then answers), and a bridge of its own MTU.
JUMBO: dict[str, Any] = {
    "name": "jumbo",
    "namespaces": {
        "a": {
            "bridges": {"br0": {"mtu": 1400, "mac": "02:00:00:00:0a:00"}},
            "interfaces": [
                {
                    "name": "to-b",
                    "mtu": 9000,
                    "mac": "02:00:00:00:0a:01",
                    "addresses": ["192.0.2.1/30"],
                    "peer": {"netns": "b", "name": "to-a", "mtu": 9000, "addresses": ["192.0.2.2/30"]},
                }
            ],
            "vxlans": {
                "vx0": {"id": 42, "local": "192.0.2.1", "dev": "to-b", "mtu": 8950,
                        "addresses": ["198.51.100.1/24"]}
            },
            "fdb": [{"dev": "vx0", "lladdr": "00:00:00:00:00:00", "dst": "192.0.2.2"}],
        },
        "b": {
            "vxlans": {
                "vx0": {"id": 42, "local": "192.0.2.2", "dev": "to-a", "mtu": 8950,
                        "addresses": ["198.51.100.2/24"]}
            },
            "fdb": [{"dev": "vx0", "lladdr": "00:00:00:00:00:00", "dst": "192.0.2.1"}],
        },
    },
}  # fmt: skip


def jumbo() -> dict[str, Any]:
    return copy.deepcopy(JUMBO)


def nsgen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(*NSGEN, *args, timeout=300)


def mtus(netns: str) -> dict[str, int]:
    """Every link's MTU in a namespace, from `ip -j link`."""
    links = json.loads(run("ip", "-j", "link", "show", netns=netns).stdout)
    return {link["ifname"]: link["mtu"] for link in links}


def df_ping(netns: str, target: str, size: int) -> subprocess.CompletedProcess[str]:
    """One ping of `size` bytes in all (IPv4 and ICMP headers included), don't-fragment set."""
    payload = str(size - IPV4_ICMP_HEADERS)
    return run("ping", "-M", "do", "-s", payload, "-c", "1", "-W", "2", target, netns=netns)


def problems(data: dict[str, Any]) -> list[str]:
    """The lines `nsgen validate` prints; fails if the data is accepted."""
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, SRC)
    return info.value.lines()


# ---- the Kubernetes vxlan mode, for real ---------------------------------------------------


@sandboxed
def test_a_full_size_dont_fragment_ping_crosses_the_vxlan_overlay() -> None:
    """A pod sends the largest packet its eth0 allows, with DF set, to a pod on the other node:
    it must arrive (flannel gives pods the overlay's MTU, 1450 on a 1500 underlay)."""
    with upstream(["eth0"], routes_back=["10.10.0.0/24"]):
        before = take_snapshot()
        up = nsgen("up", "--quiet", K8S_VXLAN)
        assert up.returncode == 0, up.stderr
        try:
            pod_mtu = mtus("client-a")["eth0"]
            ping = df_ping("client-a", "10.244.1.2", pod_mtu)
            assert ping.returncode == 0, (pod_mtu, ping.stdout + ping.stderr)
            node1 = mtus("node1")
            ports = {name: mtu for name, mtu in node1.items() if name.startswith("veth")}
            assert (pod_mtu, node1["flannel.1"], node1["cni0"], node1["eth0"]) == (
                1450,
                1450,
                1450,
                1500,
            )
            assert set(ports.values()) == {1450} and len(ports) == 2, ports
            # a packet too big for the overlay is refused in the pod itself, not lost on the way
            too_big = df_ping("client-a", "10.244.1.2", 1500)
            assert too_big.returncode != 0
            assert "message too long, mtu=1450" in too_big.stdout + too_big.stderr
        finally:
            down = nsgen("down", "--quiet", "k8s-vxlan")
        assert down.returncode == 0, down.stderr
        assert_same_state(before)


def test_vxlan_mode_gives_the_pod_network_flannels_mtu_and_host_gw_keeps_the_default() -> None:
    vxlan, host_gw = load_topology(K8S_VXLAN), load_topology(K8S_HOST_GW)
    node1, pod = vxlan.namespaces["node1"], vxlan.namespaces["web-a"]
    assert node1.vxlans["flannel.1"].mtu == 1450
    assert node1.bridges["cni0"].mtu == 1450
    assert (pod.interfaces[0].mtu, pod.interfaces[0].peer.mtu) == (1450, 1450)
    assert node1.interfaces[0].mtu is None  # eth0, the underlay: the default 1500
    node1, pod = host_gw.namespaces["node1"], host_gw.namespaces["web-a"]
    assert node1.bridges["cni0"].mtu is None
    assert (pod.interfaces[0].mtu, pod.interfaces[0].peer.mtu) == (None, None)


# ---- any link, for real, in both styles ----------------------------------------------------


@sandboxed
def test_declared_mtus_carry_jumbo_frames_and_status_sees_an_mtu_or_mac_changed_by_hand(
    tmp_path: Path,
) -> None:
    before = take_snapshot()
    topology = topology_from_data(jumbo(), SRC)
    path = tmp_path / SRC
    path.write_text(json.dumps(JUMBO))  # JSON is YAML
    try:
        up = nsgen("up", "--quiet", path)
        assert up.returncode == 0, up.stderr
        assert (mtus("a")["to-b"], mtus("a")["vx0"], mtus("a")["br0"]) == (9000, 8950, 1400)
        assert mtus("b")["to-a"] == 9000
        # the largest packet vx0 takes, with DF set, crosses the tunnel in one piece
        ping = df_ping("a", "198.51.100.2", 8950)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert not [r for r in topology_status(topology) if r.state != "present"]

        run("ip", "link", "set", "to-a", "mtu", "1500", netns="b")
        run("ip", "link", "set", "br0", "mtu", "1500", netns="a")
        run("ip", "link", "set", "to-b", "address", "02:00:00:00:0a:99", netns="a")
        rows = {(r.kind, r.netns, r.name): (r.state, r.detail) for r in topology_status(topology)}
        assert rows[("veth", "b", "to-a")] == ("different", "mtu is 1500, expected 9000")
        assert rows[("bridge", "a", "br0")] == ("different", "mtu is 1500, expected 1400")
        assert rows[("veth", "a", "to-b")] == (
            "different",
            "address is 02:00:00:00:0a:99, expected 02:00:00:00:0a:01",
        )
        status = nsgen("status", path)
        assert status.returncode == 1
        assert "veth       b          to-a" in status.stdout
        assert "mtu is 1500, expected 9000" in status.stdout
    finally:
        down = nsgen("down", "--quiet", "jumbo")
    assert down.returncode == 0, down.stderr
    assert_same_state(before)


@sandboxed
def test_the_tutorial_style_sets_the_same_mtus_and_macs(tmp_path: Path) -> None:
    before = take_snapshot()
    plan = build_plan(topology_from_data(jumbo(), SRC), "tutorial")
    setup, teardown, _ = write_scripts(render_scripts(plan), tmp_path)
    result = run(setup)
    assert result.returncode == 0, result.stderr
    links = {link["ifname"]: link for link in json.loads(run("ip", "-j", "link", netns="a").stdout)}
    assert (links["to-b"]["mtu"], links["vx0"]["mtu"], links["br0"]["mtu"]) == (9000, 8950, 1400)
    assert (links["to-b"]["address"], links["br0"]["address"]) == (
        "02:00:00:00:0a:01",
        "02:00:00:00:0a:00",
    )
    assert run(teardown).returncode == 0
    assert_same_state(before)


def test_both_styles_set_mtu_and_address_while_the_link_is_down() -> None:
    topology = topology_from_data(jumbo(), SRC)
    tutorial = render_scripts(build_plan(topology, "tutorial"))["setup.sh"]
    assert (
        "ip netns exec a ip link set to-b addrgenmode none\n"
        "ip netns exec a ip link set to-b address 02:00:00:00:0a:01\n"
        "ip netns exec a ip link set to-b mtu 9000\n"
        "ip netns exec a ip addr add 192.0.2.1/30 dev to-b\n"
        "ip netns exec a ip link set to-b up\n"
    ) in tutorial
    assert "ip netns exec b ip link set to-a mtu 9000\n" in tutorial
    batch = render_scripts(build_plan(topology))["setup.sh"]
    assert (
        "link add br0 type bridge\n"
        "link set br0 addrgenmode none\n"
        "link set br0 address 02:00:00:00:0a:00\n"
        "link set br0 mtu 1400\n"
        "link set br0 up\n"
    ) in batch
    assert (
        "link add vx0 type vxlan id 42 local 192.0.2.1 dev to-b dstport 4789\n"
        "link set vx0 addrgenmode none\n"
        "link set vx0 mtu 8950\n"
    ) in batch


# ---- validation --------------------------------------------------------------------------


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = data
    *parents, last = path.split("/")
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "namespaces/a/interfaces/0/mtu",
            70000,
            "namespaces.a.interfaces[0].mtu: 70000 is not an MTU: from 68 (IPv4's minimum) to 65535",
        ),
        (
            "namespaces/a/interfaces/0/peer/mtu",
            67,
            "namespaces.a.interfaces[0].peer.mtu: 67 is not an MTU: from 68 (IPv4's minimum) to 65535",
        ),
        (
            "namespaces/a/bridges/br0/mtu",
            "1400",
            "namespaces.a.bridges.br0.mtu: expected an integer, got '1400'",
        ),
        (
            "namespaces/a/vxlans/vx0/mtu",
            8960,
            "namespaces.a.vxlans.vx0.mtu: 8960 does not fit in to-b's MTU of 9000 with the 50 "
            "bytes VXLAN adds to each frame: at most 8950",
        ),
        (  # b's underlay has the veth default, 1500
            "namespaces/a/interfaces/0/peer/mtu",
            None,
            "namespaces.b.vxlans.vx0.mtu: 8950 does not fit in to-a's MTU of 1500 with the 50 "
            "bytes VXLAN adds to each frame: at most 1450",
        ),
        (
            "namespaces/a/interfaces/0/addresses",
            ["192.0.2.1/30", "2001:db8::1/64"],
            None,  # IPv6 is fine at 9000
        ),
    ],
)
def test_an_mtu_out_of_range_or_too_big_for_its_underlay_is_refused_at_its_path(
    path: str, value: Any, expected: str | None
) -> None:
    data = _set(jumbo(), path, value)
    if expected is None:
        topology_from_data(data, SRC)
        return
    assert problems(data) == [f"{SRC}: {expected}"]


def test_an_mtu_below_ipv6_s_minimum_on_a_link_with_ipv6_addresses_is_refused() -> None:
    data = jumbo()
    data["namespaces"]["a"]["interfaces"][0]["peer"].update(
        {"mtu": 1200, "addresses": ["192.0.2.2/30", "2001:db8::2/64"]}
    )
    data["namespaces"]["b"]["vxlans"]["vx0"]["mtu"] = 1150
    assert problems(data) == [
        f"{SRC}: namespaces.a.interfaces[0].peer.mtu: 1200 is below IPv6's minimum MTU of "
        "1280, and the link has IPv6 addresses: the kernel turns IPv6 off on it"
    ]


def test_a_vxlan_over_an_ipv6_underlay_leaves_room_for_70_bytes() -> None:
    data = jumbo()
    a = data["namespaces"]["a"]
    a["interfaces"][0]["addresses"] = ["2001:db8::1/64"]
    a["interfaces"][0]["peer"]["addresses"] = ["2001:db8::2/64"]
    a["vxlans"]["vx0"].update({"local": "2001:db8::1", "mtu": 8940})
    a["fdb"][0]["dst"] = "2001:db8::2"
    del data["namespaces"]["b"]
    del a["interfaces"][0]["peer"]["netns"]  # the far end in the root namespace
    a["interfaces"][0]["peer"]["name"] = "to-a"
    assert problems(data) == [
        f"{SRC}: namespaces.a.vxlans.vx0.mtu: 8940 does not fit in to-b's MTU of 9000 with the "
        "70 bytes VXLAN adds to each frame: at most 8930"
    ]
