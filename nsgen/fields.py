"""Field types shared by every part of the topology format: names, addresses, rules, with
the validators that give their one-line error messages; and `Strict`, the base of every model.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
import shlex
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, WithJsonSchema

# Parsed addresses are immutable: the same text parsed by the field check, the cross-object
# checks and the planner is parsed once (a 1,000-namespace topology has thousands).
ip_interface = functools.cache(ipaddress.ip_interface)
ip_address = functools.cache(ipaddress.ip_address)


@functools.cache
def ip_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """ipaddress.ip_network(value, strict=False), cached."""
    return ipaddress.ip_network(value, strict=False)


HOST = "host"
"""How a topology names the root namespace (the machine's own network stack)."""

IFNAMSIZ = 15
"""Longest interface name the kernel accepts, in bytes (IFNAMSIZ is 16 with the NUL)."""

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_TOPOLOGY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_SYSCTL_RE = re.compile(r"net(\.[A-Za-z0-9_-]+)+")
_SYSCTL_VALUE_RE = re.compile(r"-?[0-9]+")


def _check_name(value: str, what: str, pattern: re.Pattern[str] = _NAME_RE) -> str:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if value.startswith("-"):
        raise ValueError(f"{value!r} is not a valid {what}: it must not start with '-'")
    if not pattern.fullmatch(value):
        allowed = "letters, digits, '_', '-'" + (", '.'" if pattern is _NAME_RE else "")
        raise ValueError(f"{value!r} is not a valid {what}: use only {allowed}")
    if len(value.encode()) > IFNAMSIZ:
        raise ValueError(
            f"{value!r} is not a valid {what}: {len(value.encode())} bytes, over the limit of "
            f"{IFNAMSIZ}"
        )
    return value


def _description(value: str) -> str:
    if any(not (ch.isprintable() or ch == "\n") for ch in value):
        raise ValueError("the description may hold printable text and line breaks only")
    return value


def _ifname(value: str) -> str:
    return _check_name(value, "interface name")


def _nsname(value: str) -> str:
    _check_name(value, "namespace name")
    if value == HOST:
        raise ValueError(f"{HOST!r} is reserved for the root namespace: declare it under 'host:'")
    return value


def _nsref(value: str) -> str:
    return value if value == HOST else _check_name(value, "namespace name")


def _topology_name(value: str) -> str:
    return _check_name(value, "topology name", _TOPOLOGY_RE)


def _family(value: str) -> str:
    return "IPv6" if ":" in value else "IPv4"


def _ifaddr(value: str) -> str:
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length (write it as ADDRESS/PREFIX, e.g. /24)")
    try:
        iface = ip_interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid {_family(value)} interface address") from None
    if (
        iface.ip == iface.network.network_address
        and iface.network.prefixlen < iface.max_prefixlen - 1
    ):
        raise ValueError(f"{value!r} is the network address of its subnet, not a host address")
    return str(iface)


def _ipaddr(value: str) -> str:
    try:
        return str(ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid {_family(value)} address") from None


def _network(value: str) -> str:
    try:
        net = ip_network(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid {_family(value)} subnet (CIDR)") from None
    if str(net) != value and "/" in value:
        raise ValueError(f"{value!r} has host bits set: the subnet is {net}")
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length (write it as NETWORK/PREFIX)")
    return str(net)


def _route_dest(value: str) -> str:
    if value == "default":
        return value
    if not any(ch.isdigit() or ch == ":" for ch in value):  # a word, not an address
        if difflib.get_close_matches(value, ["default"], n=1):
            raise ValueError(f"{value!r} is not a route destination (did you mean 'default'?)")
        raise ValueError(
            f"{value!r} is not a route destination: write 'default' or a subnet "
            "(NETWORK/PREFIX, IPv4 or IPv6)"
        )
    return _network(value)


def _hostname(value: str) -> str:
    if not _HOSTNAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid host name")
    return value


def _sysctl_key(value: str) -> str:
    if not _SYSCTL_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a network sysctl nsgen manages: it must look like "
            "net.ipv4.ip_forward"
        )
    return value


def _sysctl_value(value: object) -> str:
    text = str(value)
    if (
        not isinstance(value, int | str)
        or isinstance(value, bool)
        or not (_SYSCTL_VALUE_RE.fullmatch(text))
    ):
        shown = str(value).lower() if isinstance(value, bool) else repr(value)  # YAML's words
        raise ValueError(f"{shown} is not a valid sysctl value: nsgen writes integers only")
    return text


_CHAIN_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,27}")
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
_RULE_FORBIDDEN = {
    "-t",
    "--table",
    "-A",
    "--append",
    "-I",
    "--insert",
    "-D",
    "--delete",
    "-N",
    "--new-chain",
    "-X",
    "--delete-chain",
    "-F",
    "--flush",
    "-P",
    "--policy",
    "-Z",
    "--zero",
    "-R",
    "--replace",
    "-E",
    "--rename-chain",
    "-L",
    "--list",
    "-S",
}


def _chain(value: str) -> str:
    if not _CHAIN_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid chain name: 1 to 28 letters, digits, '_', "
            "'-', '.', not starting with '-' or '.'"
        )
    return value


def _mac(value: str) -> str:
    if not _MAC_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a MAC address (write it as 02:00:00:00:00:01)")
    return value


def _rule(value: str) -> str:
    if not value.strip():
        raise ValueError("a rule must not be empty")
    if not value.isprintable():
        raise ValueError(f"{value!r}: a rule is one line of printable text")
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid rule: {exc}") from None
    used = sorted(_RULE_FORBIDDEN.intersection(words))
    if used:
        raise ValueError(
            f"{value!r}: give only matches and a target; the table, chain and "
            f"operation come from the other keys (remove {', '.join(used)})"
        )
    return value


IfName = Annotated[str, AfterValidator(_ifname)]
NsName = Annotated[str, AfterValidator(_nsname)]
NsRef = Annotated[str, AfterValidator(_nsref)]
TopologyName = Annotated[str, AfterValidator(_topology_name)]
IfAddr = Annotated[str, AfterValidator(_ifaddr)]
IpAddr = Annotated[str, AfterValidator(_ipaddr)]
Subnet = Annotated[str, AfterValidator(_network)]
RouteDest = Annotated[str, AfterValidator(_route_dest)]
HostName = Annotated[str, AfterValidator(_hostname)]
SysctlKey = Annotated[str, AfterValidator(_sysctl_key)]
SysctlValue = Annotated[
    object,
    AfterValidator(_sysctl_value),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^-?[0-9]+$"}]}),
]
ChainName = Annotated[str, AfterValidator(_chain)]
MacAddr = Annotated[str, AfterValidator(_mac)]
RuleText = Annotated[str, AfterValidator(_rule)]
Table = Literal["filter", "nat", "mangle", "raw"]
description_text = Annotated[str, AfterValidator(_description)]


class Strict(BaseModel):
    """Base of every model: unknown keys are errors, values are never coerced between types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
