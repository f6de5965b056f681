"""FROM and TO, as checks write them: a namespace (a container, a pod and a node are
namespaces once expanded), `host` (the root namespace), `upstream` (nsgen lab's simulated
upstream), an address, or a name a namespace's hosts file gives an address (a Kubernetes
Service, a Docker container's name)."""

from __future__ import annotations

import ipaddress

from nsgen.errors import UsageError
from nsgen.explain.network import UPSTREAM, IPAddress, Net
from nsgen.fields import HOST
from nsgen.sandbox import INTERNET_HOST


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def upstream_name(net: Net) -> str | None:
    """What the model calls the lab's upstream, if it models one."""
    return next((name for name, s in net.spaces.items() if s.outside), None)


def resolve_source(net: Net, text: str) -> tuple[str, IPAddress | None]:
    """The namespace a packet starts in, and its fixed source address if FROM is one."""
    if text in net.topology.namespaces or text == HOST:
        return text, None
    outside = upstream_name(net)
    if text == UPSTREAM and outside is not None:
        return outside, None
    ip = _ip(text)
    if ip is not None:
        owner = net.owner(ip)
        if owner is None:
            raise UsageError(f"FROM {text}: no namespace of the topology has this address")
        return owner[0].name, ip
    raise UsageError(
        f"FROM {text!r} is not a namespace of the topology, 'host', "
        f"{'upstream, ' if outside else ''}or an address one holds"
    )


def resolve_target(net: Net, text: str, source: str) -> IPAddress:
    """The address TO names (see the module docstring)."""
    ip = _ip(text)
    if ip is not None:
        return ip
    outside = upstream_name(net)
    if text == HOST and source == outside and net.world.uplinks:
        return net.world.uplinks[0].address.ip
    if text in net.topology.namespaces or text == HOST:
        first = net.topology.first_address(text)
        if first is None:
            raise UsageError(f"TO {text}: namespace {text} has no address to send to")
        return ipaddress.ip_address(first)
    if text == UPSTREAM and outside is not None:
        return ipaddress.ip_address(INTERNET_HOST)
    names: dict[str, set[str]] = {}
    for _, spec in net.topology.spaces():
        if spec.dns is not None and text in spec.dns.hosts:
            given = spec.dns.hosts[text]
            for address in [given] if isinstance(given, str) else list(given):  # type: ignore[call-overload]
                names.setdefault(str(address), set())
    if len(names) == 1:
        return ipaddress.ip_address(next(iter(names)))
    if len(names) > 1:
        raise UsageError(
            f"TO {text}: the hosts files of the topology give it different addresses "
            f"({', '.join(sorted(names))}): name one"
        )
    raise UsageError(
        f"TO {text!r} is not an address, a namespace of the topology, 'host', "
        f"{'upstream, ' if outside else ''}or a name in a namespace's hosts file (a Service)"
    )
