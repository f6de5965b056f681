"""Names nsgen derives when a topology leaves them out (tutorial style: veth-red / veth-red-br)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nsgen.fields import HOST

if TYPE_CHECKING:
    from nsgen.model import Interface


def near_name(netns: str, iface: Interface) -> str:
    """Name of a veth end in the namespace that declares it: its own, or 'veth-<namespace>'."""
    if iface.name:
        return iface.name
    return f"veth-{netns}"


def peer_name(netns: str, iface: Interface) -> str:
    """Name of the far end of a veth pair declared in `netns`.

    In another named namespace, not on a bridge: 'veth-<that namespace>' (red's veth to blue
    has the ends veth-red and veth-blue, as in the tutorial's style). Otherwise:
    'veth-<netns>-br' on a bridge and
    'veth-<netns>-host' without one when the near end's name was derived, and
    '<netns>-<near name>' when it was given (router's 'front' gets 'router-front')."""
    if iface.peer.name:
        return iface.peer.name
    if iface.peer.netns != HOST and not iface.peer.bridge:
        return f"veth-{iface.peer.netns}"
    if iface.name is None:
        return f"veth-{netns}-br" if iface.peer.bridge else f"veth-{netns}-host"
    return f"{netns}-{iface.name}"


def chain_tag(topology: str) -> str:
    """The comment every iptables rule of a topology carries, so teardown finds exactly its own."""
    return f"nsgen:{topology}"
