"""Names nsgen derives when a topology leaves them out, by one rule for every vocabulary.

A derived interface name keeps its readable form when it fits the kernel's limit
(IFNAMSIZ: 15 bytes): the tutorial's `veth-red` and `veth-red-br`, Docker's `br-frontend`.
When it does not fit, it becomes a short form of the same shape as the names Docker and the
bridge CNI plugin give veth ends: a prefix and hex digits of the sha256 of what the name
stands for (`veth` + 7 digits; Docker's bridges `br-` + 12). The same file therefore always
gives the same names, and every derived name fits the kernel.

A short form can, rarely, clash with another name in the same namespace: `nsgen.validate`
reports a clash of any two names (derived or not) in one namespace, and the expanders, which
know every name of theirs, step past a clash with `unique_short_name`.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from nsgen.fields import HOST, IFNAMSIZ

if TYPE_CHECKING:
    from nsgen.model import Interface

VETH_PREFIX = "veth"
VETH_DIGITS = 7
"""`veth` + 7 hex digits: the shape of Docker's and the bridge CNI plugin's host-side names."""


def fits(name: str) -> bool:
    """True if the kernel takes `name` as an interface name by length (at most IFNAMSIZ bytes)."""
    return len(name.encode()) <= IFNAMSIZ


def short_name(seed: str, prefix: str = VETH_PREFIX, digits: int = VETH_DIGITS) -> str:
    """`prefix` and the first `digits` hex digits of sha256(seed): a name that always fits,
    the same for the same seed."""
    name = prefix + hashlib.sha256(seed.encode()).hexdigest()[:digits]
    assert fits(name), name
    return name


def unique_short_name(
    seed: str, taken: set[str], prefix: str = VETH_PREFIX, digits: int = VETH_DIGITS
) -> str:
    """short_name(seed), or, if a name in `taken` has it already, that of seed#1, seed#2, ...;
    the name is added to `taken`. Deterministic for the same seeds in the same order."""
    name = short_name(seed, prefix, digits)
    counter = 0
    while name in taken:
        counter += 1
        name = short_name(f"{seed}#{counter}", prefix, digits)
    taken.add(name)
    return name


def fitted(preferred: str, prefix: str = VETH_PREFIX, digits: int = VETH_DIGITS) -> str:
    """`preferred` when it fits IFNAMSIZ, otherwise its short form (seeded with `preferred`
    itself, so two different long names get two different short ones)."""
    return preferred if fits(preferred) else short_name(preferred, prefix, digits)


def near_name(netns: str, iface: Interface) -> str:
    """Name of a veth end in the namespace that declares it: its own, or 'veth-<namespace>'
    (its short form when that is over 15 bytes)."""
    if iface.name:
        return iface.name
    return fitted(f"veth-{netns}")


def preferred_peer_name(netns: str, iface: Interface) -> str:
    """The readable name the far end of a veth pair declared in `netns` would get, before
    fitting it into IFNAMSIZ.

    In another named namespace, not on a bridge: 'veth-<that namespace>' (red's veth to blue
    has the ends veth-red and veth-blue, as in the tutorial's style). Otherwise:
    'veth-<netns>-br' on a bridge and
    'veth-<netns>-host' without one when the near end's name was derived, and
    '<netns>-<near name>' when it was given (router's 'front' gets 'router-front')."""
    if iface.peer.netns != HOST and not iface.peer.bridge:
        return f"veth-{iface.peer.netns}"
    if iface.name is None:
        return f"veth-{netns}-br" if iface.peer.bridge else f"veth-{netns}-host"
    return f"{netns}-{iface.name}"


def peer_name(netns: str, iface: Interface) -> str:
    """Name of the far end of a veth pair declared in `netns`: its own, or the preferred name
    (see `preferred_peer_name`) when it fits, else that name's short form."""
    if iface.peer.name:
        return iface.peer.name
    return fitted(preferred_peer_name(netns, iface))


def chain_tag(topology: str) -> str:
    """The comment every iptables rule of a topology carries, so teardown finds exactly its own."""
    return f"nsgen:{topology}"
