"""Names nsgen derives when a topology leaves them out (tutorial style: veth-red / veth-red-br)."""

from __future__ import annotations

from nsgen.model import HOST, Interface


def near_name(netns: str, iface: Interface) -> str:
    """Name of a veth end in the namespace that declares it: its own, or 'veth-<namespace>'."""
    if iface.name:
        return iface.name
    return f"veth-{netns}"


def peer_name(netns: str, iface: Interface) -> str:
    """Name of the far end of a veth pair declared in `netns`."""
    if iface.peer.name:
        return iface.peer.name
    near = near_name(netns, iface)
    if iface.peer.bridge:
        return f"{near}-br"
    if iface.peer.netns != HOST:
        return f"veth-{iface.peer.netns}"
    return f"{near}-host"


def chain_tag(topology: str) -> str:
    """The comment every iptables rule of a topology carries, so teardown finds exactly its own."""
    return f"nsgen:{topology}"
