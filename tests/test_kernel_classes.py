"""Validation catches what the kernel would refuse, or take and then mis-build (issue 10,
section 6): each class is one line `FILE: path: reason`, exit 1, before any command runs.

The last test runs the very commands such a topology would need, in the sandbox, and shows the
kernel's own reaction to each class: so each check here stands for a real refusal or a real
silent mis-build, not a guess."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nsgen.cli import app
from nsgen.errors import TopologyError
from nsgen.load import topology_from_data
from tests.harness import run, sandboxed
from tests.topologies import red_and_blue_on_two_bridges

SRC = "k.yaml"


def base() -> dict[str, Any]:
    """The shared red-and-blue topology on two bridges (tests/topologies.py)."""
    return red_and_blue_on_two_bridges()


def red(data: dict[str, Any]) -> dict[str, Any]:
    return data["namespaces"]["red"]  # type: ignore[no-any-return]


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, SRC)
    lines = info.value.lines()
    assert len(lines) == 1, lines
    return lines[0]


def test_the_base_topology_is_valid() -> None:
    topology_from_data(base(), SRC)


# ---- overlapping subnets in one namespace ----------------------------------------------------


def test_overlapping_subnets_on_two_bridges_of_the_root_namespace_are_rejected() -> None:
    data = base()
    data["host"]["bridges"]["br1"]["addresses"] = ["10.0.0.253/16"]
    red(data)["interfaces"].pop()
    assert problem(data) == (
        f"{SRC}: host.bridges.br1.addresses[0]: its subnet 10.0.0.0/16 overlaps 10.0.0.0/24 of "
        "br0 (at host.bridges.br0.addresses[0]) in the root namespace: the kernel would reach "
        "the shared addresses through one of the two interfaces only"
    )


def test_the_same_subnet_on_two_interfaces_of_a_namespace_is_rejected() -> None:
    data = base()
    data["host"]["bridges"]["br1"]["addresses"] = ["10.0.0.253/24"]
    red(data)["interfaces"][1]["addresses"] = ["10.0.0.3/24"]
    lines = _all(data)
    assert (
        f"{SRC}: host.bridges.br1.addresses[0]: its subnet 10.0.0.0/24 overlaps 10.0.0.0/24 of "
        "br0 (at host.bridges.br0.addresses[0]) in the root namespace: the kernel would reach "
        "the shared addresses through one of the two interfaces only"
    ) in lines
    assert (
        f"{SRC}: namespaces.red.interfaces[1].addresses[0]: its subnet 10.0.0.0/24 overlaps "
        "10.0.0.0/24 of veth-red (at namespaces.red.interfaces[0].addresses[0]) in namespace "
        "red: the kernel would reach the shared addresses through one of the two interfaces only"
    ) in lines
    assert len(lines) == 2


def _all(data: dict[str, Any]) -> list[str]:
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, SRC)
    return info.value.lines()


def test_overlapping_ipv6_subnets_in_one_namespace_are_rejected() -> None:
    data = base()
    red(data)["interfaces"][0]["addresses"].append("fd00::1/64")
    red(data)["interfaces"][1]["addresses"].append("fd00::2/48")
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[1].addresses[1]: its subnet fd00::/48 overlaps "
        "fd00::/64 of veth-red (at namespaces.red.interfaces[0].addresses[1]) in namespace red: "
        "the kernel would reach the shared addresses through one of the two interfaces only"
    )


def test_overlapping_addresses_on_one_interface_are_accepted() -> None:
    data = base()
    red(data)["interfaces"][0]["addresses"].append("10.0.0.9/16")
    topology_from_data(data, SRC)


def test_a_host_address_inside_another_interfaces_subnet_is_accepted() -> None:
    """flannel's VTEP: flannel.1 holds 10.244.0.0/32 while cni0 holds 10.244.0.1/24. A /32
    makes no subnet route, so the kernel routes nothing differently."""
    data = base()
    red(data)["vxlans"] = {"vx0": {"id": 1, "dev": "veth-red", "addresses": ["10.0.0.7/32"]}}
    topology_from_data(data, SRC)


def test_the_same_subnet_in_two_namespaces_is_accepted() -> None:
    topology_from_data(base(), SRC)  # red and blue are both on 10.0.0.0/24


# ---- network and broadcast addresses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (
            "10.0.0.255/24",
            "'10.0.0.255/24' is the broadcast address of its subnet, not a host address",
        ),
        ("10.0.0.0/24", "'10.0.0.0/24' is the network address of its subnet, not a host address"),
        (
            "fd00::/64",
            "'fd00::/64' is the subnet-router anycast address of fd00::/64 (its network "
            "address), not a host address",
        ),
        ("224.0.0.5/24", "'224.0.0.5/24' is a multicast address, not a host address"),
        ("ff02::5/64", "'ff02::5/64' is a multicast address, not a host address"),
        (
            "127.0.0.5/8",
            "'127.0.0.5/8' is a loopback address (those belong to 'lo'), not a host address",
        ),
        ("::1/128", "'::1/128' is a loopback address (those belong to 'lo'), not a host address"),
        ("0.0.0.0/8", "'0.0.0.0/8' is the unspecified address, not a host address"),
        (
            "255.255.255.255/32",
            "'255.255.255.255/32' is the limited broadcast address, not a host address",
        ),
    ],
)
def test_an_address_that_is_not_a_host_address_is_rejected(address: str, reason: str) -> None:
    data = base()
    data["namespaces"]["blue"]["interfaces"][0]["addresses"] = [address]
    assert problem(data) == f"{SRC}: namespaces.blue.interfaces[0].addresses[0]: {reason}"


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.9.0.0/31", "10.9.0.1/31"],
        ["10.9.0.0/32"],
        ["fd01::/127", "fd01::1/127"],
        ["fd02::/128"],
    ],
)
def test_point_to_point_and_host_prefixes_use_every_address(addresses: list[str]) -> None:
    """RFC 3021 /31 and IPv6 /127 links have no network or broadcast address to avoid."""
    data = base()
    red(data)["interfaces"].append(
        {"name": "p2p", "peer": {"netns": "blue", "name": "p2p", "addresses": addresses[1:]}}
    )
    red(data)["interfaces"][-1]["addresses"] = addresses[:1]
    topology_from_data(data, SRC)


# ---- one address, two hosts on one segment ---------------------------------------------------


def test_an_address_shared_on_one_bridge_is_rejected() -> None:
    data = base()
    data["namespaces"]["blue"]["interfaces"][0]["addresses"] = ["10.0.0.1/24"]
    assert problem(data) == (
        f"{SRC}: namespaces.blue.interfaces[0].addresses[0]: address 10.0.0.1 is already assigned "
        "on the same segment, bridge br0 in the root namespace (at "
        "namespaces.red.interfaces[0].addresses[0]): two hosts would answer for it"
    )


def test_an_address_shared_by_the_ends_of_one_veth_pair_is_rejected() -> None:
    data = base()
    red(data)["interfaces"].append(
        {
            "name": "p2p",
            "peer": {"netns": "blue", "name": "p2p", "addresses": ["10.9.0.1/30"]},
            "addresses": ["10.9.0.1/30"],
        }
    )
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[2].peer.addresses[0]: address 10.9.0.1 is already "
        "assigned on the same segment, the two ends of one veth pair (at "
        "namespaces.red.interfaces[2].addresses[0]): two hosts would answer for it"
    )


# ---- gateways and routes ----------------------------------------------------------------------


def test_a_gateway_that_is_an_own_address_is_rejected() -> None:
    data = base()
    red(data)["routes"][0]["via"] = "10.0.0.1"
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[0].via: gateway 10.0.0.1 is an address of namespace red "
        "itself (at namespaces.red.interfaces[0].addresses[0]): a gateway is the next hop, "
        "another host"
    )


@pytest.mark.parametrize(("via", "role"), [("10.0.0.0", "network"), ("10.0.0.255", "broadcast")])
def test_a_gateway_that_is_the_network_or_broadcast_address_is_rejected(
    via: str, role: str
) -> None:
    data = base()
    red(data)["routes"][0]["via"] = via
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[0].via: gateway {via} is the {role} address of "
        "10.0.0.0/24 (at namespaces.red.interfaces[0].addresses[0]), not a host"
    )


@pytest.mark.parametrize(
    ("via", "what"),
    [
        ("224.0.0.1", "a multicast address"),
        ("127.0.0.1", "a loopback address (those belong to 'lo')"),
        ("0.0.0.0", "the unspecified address"),
    ],
)
def test_a_gateway_that_is_no_host_address_is_rejected(via: str, what: str) -> None:
    data = base()
    red(data)["routes"][0]["via"] = via
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[0].via: gateway {via} is {what}: a gateway is a host address"
    )


def test_a_gateway_outside_the_subnets_of_the_given_dev_is_rejected() -> None:
    data = base()
    red(data)["routes"][0]["dev"] = "side"
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[0].via: gateway 10.0.0.254 is outside every subnet on side "
        "(attached: 10.1.0.0/24)"
    )


def test_a_gateway_on_the_given_dev_is_accepted() -> None:
    data = base()
    red(data)["routes"].append({"to": "192.168.7.0/24", "via": "10.1.0.254", "dev": "side"})
    topology_from_data(data, SRC)


def test_a_route_to_a_connected_ipv4_subnet_is_rejected() -> None:
    data = base()
    red(data)["routes"].append({"to": "10.1.0.0/24", "via": "10.0.0.254"})
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[1].to: 10.1.0.0/24 is the subnet of side's address "
        "10.1.0.1/24 (at namespaces.red.interfaces[1].addresses[0]), which the kernel routes "
        "already: the kernel refuses a second route to it ('File exists')"
    )


def test_a_route_to_a_connected_ipv6_subnet_is_rejected() -> None:
    data = base()
    red(data)["interfaces"][0]["addresses"].append("fd00::1/64")
    red(data)["interfaces"][1]["addresses"].append("fd01::1/64")
    red(data)["routes"].append({"to": "fd01::/64", "via": "fd00::254"})
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[1].to: fd01::/64 is the subnet of side's address "
        "fd01::1/64 (at namespaces.red.interfaces[1].addresses[1]), which the kernel routes "
        "already: the kernel's own route to it would always win over this one"
    )


def test_a_route_through_a_bridge_of_another_namespace_names_where_it_is() -> None:
    data = base()
    red(data)["routes"][0]["dev"] = "br0"
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[0].dev: interface 'br0' is not declared in namespace red "
        "(it is an interface of the root namespace: a route leaves through an interface of its "
        "own namespace)"
    )


# ---- VXLAN --------------------------------------------------------------------------------------


def vxlan(**extra: Any) -> dict[str, Any]:
    return {"id": 7, "dev": "veth-red", "local": "10.0.0.1", **extra}


def test_two_vxlans_with_one_vni_and_port_in_a_namespace_are_rejected() -> None:
    data = base()
    red(data)["vxlans"] = {"vx0": vxlan(), "vx1": vxlan(dev="side", local="10.1.0.1")}
    assert problem(data) == (
        f"{SRC}: namespaces.red.vxlans.vx1.id: VNI 7 on UDP port 4789 is already the VXLAN "
        "vx0's in namespace red: the kernel refuses a second device for it"
    )


@pytest.mark.parametrize(
    ("mac", "kind"), [("01:00:5e:00:00:01", "a multicast"), ("00:00:00:00:00:00", "the all-zero")]
)
def test_a_vxlan_mac_the_kernel_refuses_is_rejected(mac: str, kind: str) -> None:
    data = base()
    red(data)["vxlans"] = {"vx0": vxlan(mac=mac)}
    assert problem(data) == (
        f"{SRC}: namespaces.red.vxlans.vx0.mac: {mac} is {kind} MAC address: the kernel gives a "
        "device only a unicast one"
    )


def test_a_vxlan_local_address_the_namespace_lacks_is_rejected() -> None:
    data = base()
    red(data)["vxlans"] = {"vx0": vxlan(local="10.0.0.99")}
    assert problem(data) == (
        f"{SRC}: namespaces.red.vxlans.vx0.local: 10.0.0.99 is not an address of namespace red: "
        "the tunnel's packets would leave from an address it does not have"
    )


# ---- IPv6 where only IPv4 firewalling exists ------------------------------------------------


def test_an_ipv6_masquerade_out_of_a_link_without_an_ipv6_address_is_rejected() -> None:
    """NAT66 gives leaving packets an IPv6 address of the interface they leave through."""
    data = base()
    data["host"]["masquerade"] = [{"source": "fd00::/64", "out": "br0"}]
    assert problem(data) == (
        f"{SRC}: host.masquerade[0].out: br0 has no IPv6 address: masquerading fd00::/64 "
        "(NAT66) gives leaving packets an IPv6 address of br0"
    )


# ---- the CLI: one line each, exit 1 ------------------------------------------------------------


def validate(tmp_path: Path, data: dict[str, Any]) -> tuple[int, list[str]]:
    path = tmp_path / "topo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = CliRunner().invoke(app, ["validate", str(path)])
    lines = result.output.splitlines()
    # FILE:LINE:COLUMN: (or FILE: for an object the file does not spell), then the problem
    place = re.compile(rf"{re.escape(str(path))}(:\d+:\d+)?: ")
    assert all(place.match(line) for line in lines), lines
    return result.exit_code, [place.sub("", line, count=1) for line in lines]


def test_each_class_is_one_line_of_nsgen_validate_with_exit_1(tmp_path: Path) -> None:
    data = base()
    data["host"]["bridges"]["br1"]["addresses"] = ["10.0.0.253/16"]
    red(data)["interfaces"].pop()
    data["namespaces"]["blue"]["interfaces"][0]["addresses"] = ["10.0.0.1/24"]
    red(data)["routes"][0]["via"] = "10.0.0.1"
    data["host"]["masquerade"] = [{"source": "fd00::/64", "out": "br1"}]
    code, lines = validate(tmp_path, data)
    assert code == 1
    assert [line.split(": ")[0] for line in lines] == [  # in the file's order
        "host.bridges.br1.addresses[0]",
        "host.masquerade[0].out",
        "namespaces.red.routes[0].via",
        "namespaces.blue.interfaces[0].addresses[0]",
    ]


def test_a_broadcast_address_is_one_line_of_nsgen_validate_with_exit_1(tmp_path: Path) -> None:
    data = base()
    red(data)["interfaces"][1]["addresses"] = ["10.1.0.255/24"]
    assert validate(tmp_path, data) == (
        1,
        [
            "namespaces.red.interfaces[1].addresses[0]: '10.1.0.255/24' is the broadcast "
            "address of its subnet, not a host address"
        ],
    )


# ---- the kernel's own reaction to each class ---------------------------------------------------

KERNEL = [
    # (what validation refuses, the commands, the kernel's answer to the last: a message it
    #  refuses with, or None where it takes the command and the network is silently wrong)
    ("interface name 'all'", [["ip", "link", "add", "all", "type", "bridge"]], "Invalid argument"),
    (
        "the same subnet on two bridges",
        [
            ["ip", "addr", "add", "10.0.0.1/24", "dev", "b0"],
            ["ip", "addr", "add", "10.0.0.2/24", "dev", "b1"],
        ],
        None,
    ),
    (
        "a second route to a connected subnet",
        [
            ["ip", "addr", "add", "10.0.0.1/24", "dev", "b0"],
            ["ip", "route", "add", "10.0.0.0/24", "via", "10.0.0.5"],
        ],
        "File exists",
    ),
    (
        "a gateway outside the subnets of its dev",
        [
            ["ip", "addr", "add", "10.0.0.1/24", "dev", "b0"],
            ["ip", "addr", "add", "10.1.0.1/24", "dev", "b1"],
            ["ip", "route", "add", "10.9.0.0/24", "via", "10.0.0.5", "dev", "b1"],
        ],
        "Nexthop has invalid gateway",
    ),
    (
        "an IPv6 gateway that is an own address",
        [
            ["ip", "-6", "addr", "add", "fd00::1/64", "dev", "b0", "nodad"],
            ["ip", "-6", "route", "add", "fd09::/64", "via", "fd00::1"],
        ],
        "Gateway can not be a local address",
    ),
    (
        "an IPv4 gateway that is an own address",
        [
            ["ip", "addr", "add", "10.0.0.1/24", "dev", "b0"],
            ["ip", "route", "add", "10.9.0.0/24", "via", "10.0.0.1"],
        ],
        None,
    ),
    (
        "a multicast gateway",
        [
            ["ip", "addr", "add", "10.0.0.1/24", "dev", "b0"],
            ["ip", "route", "add", "10.9.0.0/24", "via", "224.0.0.1"],
        ],
        "Nexthop has invalid gateway",
    ),
    (
        "a multicast IPv6 address",
        [["ip", "-6", "addr", "add", "ff02::5/64", "dev", "b0"]],
        "multicast",
    ),
    (  # taken, and then it is also the anycast address every router on the link answers
        "the IPv6 subnet-router anycast address",
        [["ip", "-6", "addr", "add", "fd00::/64", "dev", "b0"]],
        None,
    ),
    (
        "the IPv6 unspecified address",
        [["ip", "-6", "addr", "add", "::/64", "dev", "b0"]],
        "Invalid",
    ),
    ("an IPv4 broadcast address", [["ip", "addr", "add", "10.0.0.255/24", "dev", "b0"]], None),
    (
        "a multicast MAC",
        [["ip", "link", "set", "b0", "address", "01:00:5e:00:00:01"]],
        "Cannot assign",
    ),
    (
        "two VXLANs with one VNI and port",
        [
            [
                "ip",
                "link",
                "add",
                "vx0",
                "type",
                "vxlan",
                "id",
                "5",
                "local",
                "10.77.0.1",
                "dstport",
                "4789",
            ],
            [
                "ip",
                "link",
                "add",
                "vx1",
                "type",
                "vxlan",
                "id",
                "5",
                "local",
                "10.77.0.2",
                "dstport",
                "4789",
            ],
        ],
        "already exists",
    ),
]


@sandboxed
def test_the_kernel_refuses_or_silently_misbuilds_each_class() -> None:
    for what, commands, answer in KERNEL:
        for bridge in ("b0", "b1"):
            assert run("ip", "link", "add", bridge, "type", "bridge").returncode == 0
            assert run("ip", "link", "set", bridge, "up").returncode == 0
        *before, last = commands
        for argv in before:
            done = run(*argv)
            assert done.returncode == 0, (what, argv, done.stderr)
        result = run(*last)
        if answer is None:
            assert result.returncode == 0, (what, result.stderr)
        else:
            assert result.returncode != 0 and answer in result.stderr, (what, result.stderr)
        for link in ("b0", "b1", "vx0", "vx1", "all"):
            run("ip", "link", "delete", link)
    routes = run("ip", "route", "show").stdout
    assert routes == "", routes
