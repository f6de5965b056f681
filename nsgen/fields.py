"""Field types shared by every part of the topology format: names, addresses, rules, with
the validators that give their one-line error messages; and `Strict`, the base of every model.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
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

NAME_MAX = 64
"""Longest namespace or topology name nsgen accepts, in bytes. A namespace name is a file name
(/run/netns/<name>, /etc/netns/<name>/), which the kernel allows up to 255 bytes; 64 keeps
every name readable in a log line, a diagram and a host name (HOST_NAME_MAX is 64)."""

RESERVED_IFNAMES = ("all", "default")
"""Names the kernel refuses for a link: /proc/sys/net/ipv4/conf/all and .../default are its
own sysctl directories ('lo' exists in every namespace; nsgen.validate reports it)."""

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_TOPOLOGY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_SYSCTL_RE = re.compile(r"net(\.[A-Za-z0-9_-]+)+")
_SYSCTL_VALUE_RE = re.compile(r"-?[0-9]{1,20}")
SYSCTL_KEY_MAX = 255
"""Longest sysctl key nsgen writes: its /proc/sys path components must be file names."""


def shown(value: object, limit: int = 80) -> str:
    """repr(value), cut to a readable length for a message (a value may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _check_name(
    value: str,
    what: str,
    pattern: re.Pattern[str] = _NAME_RE,
    limit: int = IFNAMSIZ,
    whose: str = "the kernel's limit for interface names (IFNAMSIZ)",
) -> str:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if value.startswith("-"):
        raise ValueError(f"{shown(value)} is not a valid {what}: it must not start with '-'")
    if not pattern.fullmatch(value):
        allowed = "letters, digits, '_', '-'" + (", '.'" if pattern is _NAME_RE else "")
        hint = ", not starting with '.'" if value.startswith(".") else ""
        raise ValueError(f"{shown(value)} is not a valid {what}: use only {allowed}{hint}")
    size = len(value.encode())
    if size > limit:
        raise ValueError(
            f"{shown(value)} is not a valid {what}: {size} bytes, over {whose} of {limit}"
        )
    return value


DESCRIPTION_MAX = 4000
"""Longest description nsgen copies into the scripts' header, in characters."""

COMMENT_DIRECTIVES = (
    (re.compile(r"^\s*shellcheck", re.IGNORECASE), "shellcheck as a directive"),
    (re.compile(r"(?:^|\s)(?:vi|vim[<=>]?[0-9]*|Vim|ex):"), "vim as a modeline"),
    (re.compile(r"-\*-"), "Emacs as file variables ('-*- ... -*-')"),
    (re.compile(r"local variables:", re.IGNORECASE), "Emacs as a file variables list"),
    (re.compile(r"(?:^|\s)kate[-a-z]*:"), "Kate as a modeline"),
)
"""Comment text that a tool reading the rendered scripts takes as an instruction to it."""


def _description(value: str) -> str:
    if len(value) > DESCRIPTION_MAX:
        raise ValueError(
            f"the description is {len(value)} characters long, over the limit of {DESCRIPTION_MAX}"
        )
    for number, line in enumerate(value.split("\n"), start=1):
        bad = next((ch for ch in line if not ch.isprintable()), None)
        if bad is not None:
            raise ValueError(
                f"line {number} of the description holds the character {bad!r}: "
                "a description is lines of printable text"
            )
        if line.endswith("\\"):
            raise ValueError(
                f"line {number} of the description ends with a backslash, which would "
                "join the next line to it in the systemd unit"
            )
        for pattern, reader in COMMENT_DIRECTIVES:
            if pattern.search(line):
                raise ValueError(
                    f"line {number} of the description would be read by {reader} in "
                    "the scripts' header: reword it"
                )
    return value


LABEL_MAX = 64
"""Longest group name or kind (diagram labels), in characters."""


def _label(value: str) -> str:
    if not value or len(value) > LABEL_MAX or not value.isprintable():
        raise ValueError(
            f"{shown(value)} is not a valid label: 1 to {LABEL_MAX} printable characters "
            "on one line"
        )
    return value


def _ifname(value: str) -> str:
    _check_name(value, "interface name")
    if value in RESERVED_IFNAMES:
        raise ValueError(
            f"{value!r} is not a valid interface name: the kernel refuses it "
            f"(/proc/sys/net/ipv4/conf/{value} is its own)"
        )
    return value


def _nsname(value: str) -> str:
    _check_name(value, "namespace name", limit=NAME_MAX, whose="nsgen's limit")
    if value == HOST:
        raise ValueError(f"{HOST!r} is reserved for the root namespace: declare it under 'host:'")
    return value


def _nsref(value: str) -> str:
    if value == HOST:
        return value
    return _check_name(value, "namespace name", limit=NAME_MAX, whose="nsgen's limit")


def _topology_name(value: str) -> str:
    return _check_name(value, "topology name", _TOPOLOGY_RE, limit=NAME_MAX, whose="nsgen's limit")


def _family(value: str) -> str:
    return "IPv6" if ":" in value else "IPv4"


def _no_zone(value: str) -> None:
    """Refuse an IPv6 zone (scope) id: free text that would travel with the address into
    ip's batches and /etc/netns files. nsgen's addresses need none: an address belongs to
    the interface it is declared on."""
    if "%" in value:
        raise ValueError(
            f"{shown(value)} has a zone id ('%...'): nsgen takes addresses without one"
        )


AnyAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AnyInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@functools.cache
def special_address(ip: AnyAddress) -> str | None:
    """What makes `ip` unfit for a host or a gateway (multicast, loopback, unspecified, the
    limited broadcast), or None."""
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address (those belong to 'lo')"
    if ip.version == 4 and int(ip) == 0xFFFFFFFF:
        return "the limited broadcast address"
    return None


def subnet_role(ip: AnyAddress, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """'network' or 'broadcast' if `ip` is that address of `network` (which has them: not an
    IPv4 /31 or /32, an IPv6 /127 or /128), else ''. IPv6 has no broadcast; its network
    address is the subnet-router anycast address."""
    if network.prefixlen >= network.max_prefixlen - 1:
        return ""
    if ip == network.network_address:
        return "network"
    if ip.version == 4 and ip == network.broadcast_address:
        return "broadcast"
    return ""


def _ifaddr(value: str) -> str:
    _no_zone(value)
    if "/" not in value:
        raise ValueError(
            f"{shown(value)} has no prefix length (write it as ADDRESS/PREFIX, e.g. /24)"
        )
    try:
        iface = ip_interface(value)
    except ValueError:
        raise ValueError(
            f"{shown(value)} is not a valid {_family(value)} interface address"
        ) from None
    special = special_address(iface.ip)
    if special:
        raise ValueError(f"{shown(value)} is {special}, not a host address")
    role = subnet_role(iface.ip, iface.network)
    if role == "network" and iface.version == 6:
        raise ValueError(
            f"{shown(value)} is the subnet-router anycast address of {iface.network} (its "
            "network address), not a host address"
        )
    if role:
        raise ValueError(f"{shown(value)} is the {role} address of its subnet, not a host address")
    return str(iface)


def _ipaddr(value: str) -> str:
    _no_zone(value)
    try:
        return str(ip_address(value))
    except ValueError:
        raise ValueError(f"{shown(value)} is not a valid {_family(value)} address") from None


def _network(value: str) -> str:
    _no_zone(value)
    try:
        net = ip_network(value)
    except ValueError:
        raise ValueError(f"{shown(value)} is not a valid {_family(value)} subnet (CIDR)") from None
    if str(net) != value and "/" in value:
        raise ValueError(f"{shown(value)} has host bits set: the subnet is {net}")
    if "/" not in value:
        raise ValueError(f"{shown(value)} has no prefix length (write it as NETWORK/PREFIX)")
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


def _check_target(value: str) -> str:
    """A check's `to`: an address, or the name of a namespace (nsgen.validate checks that it
    is declared)."""
    _no_zone(value)
    try:
        return str(ip_address(value))
    except ValueError:
        pass
    if ":" in value:
        return _ipaddr(value)  # meant as an address: say what is wrong with it
    try:
        return _nsref(value)
    except ValueError:
        raise ValueError(
            f"{shown(value)} is neither an address nor a namespace's name (letters, digits, "
            f"'_', '-', '.', at most {NAME_MAX} bytes)"
        ) from None


def _hostname(value: str) -> str:
    if not _HOSTNAME_RE.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a valid host name (RFC 1123: labels of letters, digits "
            "and '-', joined by '.')"
        )
    return value


def _sysctl_key(value: str) -> str:
    if not _SYSCTL_RE.fullmatch(value) or len(value) > SYSCTL_KEY_MAX:
        raise ValueError(
            f"{shown(value)} is not a network sysctl nsgen manages: it must look like "
            f"net.ipv4.ip_forward (at most {SYSCTL_KEY_MAX} characters)"
        )
    return value


def _sysctl_value(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if -(10**20) < value < 10**20:
            return str(value)
        raise ValueError("this integer is not a valid sysctl value: it has over 20 digits")
    if isinstance(value, str) and _SYSCTL_VALUE_RE.fullmatch(value):
        return value
    words = str(value).lower() if isinstance(value, bool) else shown(value)  # YAML's words
    raise ValueError(
        f"{words} is not a valid sysctl value: nsgen writes integers only (at most 20 digits)"
    )


_CHAIN_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,27}")
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
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
        raise ValueError(f"{shown(value)} is not a MAC address (write it as 02:00:00:00:00:01)")
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
Table = Literal["filter", "nat", "mangle", "raw"]
description_text = Annotated[str, AfterValidator(_description)]
CheckTarget = Annotated[str, AfterValidator(_check_target)]
Label = Annotated[str, AfterValidator(_label)]


class Strict(BaseModel):
    """Base of every model: unknown keys are errors, values are never coerced between types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
