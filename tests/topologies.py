"""The topologies the unit tests start from, in one place: the tutorial's red and blue on the
host bridge br0 (as data, so that a test changes one field and sees what nsgen says), and
the variants some tests need. Each function returns a fresh copy."""

from __future__ import annotations

import copy
from typing import Any

_RED_AND_BLUE: dict[str, Any] = {
    "name": "lab",
    "description": "red and blue on br0, masqueraded out of eth0",
    "host": {
        "external": ["eth0"],
        "bridges": {"br0": {"addresses": ["10.0.0.254/24"]}},
        "masquerade": [{"source": "10.0.0.0/24", "out": "eth0"}],
        "sysctls": {"net.ipv4.ip_forward": 1},
    },
    "namespaces": {
        "red": {
            "interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["10.0.0.1/24"]}],
            "routes": [{"to": "default", "via": "10.0.0.254"}],
        },
        "blue": {
            "interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["10.0.0.2/24"]}],
            "routes": [{"to": "default", "via": "10.0.0.254"}],
            "dns": {"nameservers": ["192.0.2.53"]},
        },
    },
}


def red_and_blue() -> dict[str, Any]:
    """The shared base: red and blue on the host bridge br0 (10.0.0.0/24, the host .254),
    default routes via the host, masqueraded out of eth0, blue with a resolv.conf."""
    return copy.deepcopy(_RED_AND_BLUE)


def red_and_blue_bare() -> dict[str, Any]:
    """The shared base without a way out: no uplink, NAT, forwarding, blue's routes or
    resolver; red resolves through 192.0.2.53 in example.test, and checks red -> blue."""
    data = red_and_blue()
    data["description"] = "red and blue"
    data["host"] = {"bridges": data["host"]["bridges"]}
    data["namespaces"]["red"]["dns"] = {"nameservers": ["192.0.2.53"], "search": ["example.test"]}
    data["namespaces"]["blue"] = {"interfaces": data["namespaces"]["blue"]["interfaces"]}
    data["checks"] = [{"from": "red", "to": "blue"}]
    return data


def red_and_blue_on_two_bridges() -> dict[str, Any]:
    """The shared base with a second bridge br1 (10.1.0.0/24) that red joins as `side`, and
    no NAT, forwarding, blue routes or resolver: for rules that relate segments."""
    data = red_and_blue()
    data["host"] = {
        "external": ["eth0"],
        "bridges": {
            "br0": {"addresses": ["10.0.0.254/24"]},
            "br1": {"addresses": ["10.1.0.254/24"]},
        },
    }
    data.pop("description")
    data["namespaces"]["red"]["interfaces"].append(
        {"name": "side", "peer": {"bridge": "br1"}, "addresses": ["10.1.0.1/24"]}
    )
    data["namespaces"]["blue"] = {"interfaces": data["namespaces"]["blue"]["interfaces"]}
    return data
