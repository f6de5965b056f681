"""The benchmark's topology for N namespaces, in nsgen's format, and the names and addresses
every method uses for it: host bridge br0 with the gateway address, namespaces ns1..nsN each
with one veth to br0, an address and a default route, masquerade of the subnet out of eth0,
and IPv4 forwarding on."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

NAME = "bench"
"""The topology's name (nsgen's state lives in /run/nsgen/bench/)."""
BRIDGE = "br0"
UPLINK = "eth0"
"""The external interface the subnet is masqueraded out of (a stand-in, in the sandbox)."""
SUBNET = ipaddress.IPv4Network("10.200.0.0/22")
GATEWAY = SUBNET[1]
"""br0's address: the namespaces' default gateway."""
PREFIX = SUBNET.prefixlen
MAX_N = SUBNET.num_addresses - 3
"""Namespaces the subnet can hold: all hosts but the gateway (network, broadcast excluded)."""


def ns_name(index: int) -> str:
    """The index-th namespace (1-based)."""
    return f"ns{index}"


def ns_address(index: int) -> ipaddress.IPv4Address:
    """Address of the index-th namespace: ns1 has .2, right after the gateway."""
    if not 1 <= index <= MAX_N:
        raise ValueError(f"namespace index {index} is outside 1..{MAX_N}")
    return SUBNET[1 + index]


def inner_veth(index: int) -> str:
    """The veth end inside the namespace (nsgen's default name: veth-<namespace>)."""
    return f"veth-{ns_name(index)}"


def host_veth(index: int) -> str:
    """The veth end on br0 in the root namespace (nsgen's default: <near name>-br)."""
    return f"{inner_veth(index)}-br"


def check_size(n: int) -> None:
    if not 2 <= n <= MAX_N:
        raise ValueError(f"N={n}: the benchmark needs 2..{MAX_N} namespaces (subnet {SUBNET})")


def topology(n: int) -> dict[str, Any]:
    """The nsgen topology (as data) for n namespaces."""
    check_size(n)
    namespaces = {
        ns_name(i): {
            "interfaces": [
                {"peer": {"bridge": BRIDGE}, "addresses": [f"{ns_address(i)}/{PREFIX}"]}
            ],
            "routes": [{"to": "default", "via": str(GATEWAY)}],
        }
        for i in range(1, n + 1)
    }
    return {
        "name": NAME,
        "description": f"benchmark: {n} namespaces on {BRIDGE}, masqueraded out of {UPLINK}",
        "host": {
            "external": [UPLINK],
            "bridges": {BRIDGE: {"addresses": [f"{GATEWAY}/{PREFIX}"]}},
            "masquerade": [{"source": str(SUBNET), "out": UPLINK}],
            "sysctls": {"net.ipv4.ip_forward": 1},
        },
        "namespaces": namespaces,
    }


def topology_yaml(n: int) -> str:
    import yaml  # here, not at the top: the floor imports this module and starts fast

    return yaml.safe_dump(topology(n), sort_keys=False, default_flow_style=None, width=100)


def write_topology(n: int, path: Path) -> Path:
    """Write the topology for n namespaces to path (YAML) and return path."""
    path.write_text(topology_yaml(n), encoding="utf-8")
    return path


if __name__ == "__main__":
    import sys

    sys.stdout.write(topology_yaml(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
