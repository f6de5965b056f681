"""The nftables backend: firewall rules as data, spelled in nft's language.

Each topology keeps its rules in a table of its own, `inet nsgen_<topology>`, in every
namespace that has rules; nothing outside that table is rewritten, flushed or deleted (only
preflight reads other tables' base chains). Inside it, iptables' places become chains named
as Docker 29 names its own: a built-in chain becomes a base chain `<table>-<CHAIN>` on the
same hook (nat POSTROUTING is `nat-POSTROUTING`, `type nat hook postrouting priority
srcnat`), and a chain of the topology's own is `<table>-<name>` (`nat-KUBE-SVC-WEB`), so that
chains of one name in two iptables tables (kube-proxy's KUBE-SERVICES in nat and in filter)
stay apart. A dispatch is a verdict map `<table>-<name>`. Every rule carries a counter and
the comment `nsgen:<topology>`.

The functions here return nft's words for one rule, chain or map; templates/kinds/
firewall-nft.j2 puts them into commands (`nft add rule ...`, or lines of one `nft -f -`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nsgen.errors import NsgenError
from nsgen.kinds.rules import Dispatch, DispatchEntry, Matches, Rule

FAMILY = "inet"
"""One table for both address families: a rule's addresses say which it matches."""


def table_name(topology: str) -> str:
    """The topology's own table (in the root namespace and in each namespace with rules)."""
    return f"nsgen_{topology}"


def chain_name(table: str, chain: str) -> str:
    """The nft chain that stands for iptables' chain `chain` of table `table`."""
    return f"{table}-{chain}"


@dataclass(frozen=True)
class BaseChain:
    """A chain on a netfilter hook: what iptables' built-in chain of a table is."""

    name: str
    type: str
    hook: str
    priority: str

    @property
    def spec(self) -> str:
        return f"{{ type {self.type} hook {self.hook} priority {self.priority} ; policy accept ; }}"


_HOOKS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("raw", "PREROUTING"): ("filter", "prerouting", "raw"),
    ("raw", "OUTPUT"): ("filter", "output", "raw"),
    ("mangle", "PREROUTING"): ("filter", "prerouting", "mangle"),
    ("mangle", "INPUT"): ("filter", "input", "mangle"),
    ("mangle", "FORWARD"): ("filter", "forward", "mangle"),
    ("mangle", "OUTPUT"): ("route", "output", "mangle"),
    ("mangle", "POSTROUTING"): ("filter", "postrouting", "mangle"),
    ("nat", "PREROUTING"): ("nat", "prerouting", "dstnat"),
    ("nat", "INPUT"): ("nat", "input", "100"),
    ("nat", "OUTPUT"): ("nat", "output", "-100"),
    ("nat", "POSTROUTING"): ("nat", "postrouting", "srcnat"),
    ("filter", "INPUT"): ("filter", "input", "filter"),
    ("filter", "FORWARD"): ("filter", "forward", "filter"),
    ("filter", "OUTPUT"): ("filter", "output", "filter"),
}
"""iptables' built-in chains as nftables base chains, at the priorities iptables-nft registers
them with (nat OUTPUT and INPUT have no priority keyword of their own in nft 1.0)."""


def base_chain(table: str, chain: str) -> BaseChain | None:
    """The base chain standing for a built-in chain; None if `chain` is not built in."""
    hook = _HOOKS.get((table, chain))
    return None if hook is None else BaseChain(chain_name(table, chain), *hook)


def base_chains(places: set[tuple[str, str]]) -> list[BaseChain]:
    """The base chains the given (table, chain) places need, in hook order."""
    return [chain for (t, c) in _HOOKS if (t, c) in places and (chain := base_chain(t, c))]


def quoted(value: object) -> str:
    """A string in nft's double quotes (interface names, comments)."""
    text = str(value)
    if any(ch in text for ch in '"\\\n') or not text.isprintable():
        raise NsgenError(f"{text!r} cannot be written as an nftables string")
    return f'"{text}"'


# ---- matches ---------------------------------------------------------------------------------

_L4PROTO = {"icmpv6": "ipv6-icmp"}
_STATUSES = {"SNAT": "snat", "DNAT": "dnat"}


def _family(address: str) -> str:
    return "ip6" if ":" in address else "ip"


def _address(value: str) -> str:
    """An address as nft writes it: a host address without /32 (or /128)."""
    return value.removesuffix("/32") if "." in value else value.removesuffix("/128")


def _ports(value: object) -> str:
    return str(value).replace(":", "-")


def _matches(rule: Rule) -> list[str]:
    """nft's words for what a rule matches (negated ones from `rule.not_`), interfaces first,
    then addresses, protocol and ports, address types, connection state, mark, random share."""
    words: list[str] = []
    sources: list[tuple[Matches, str]] = [(rule, "")]
    if rule.not_ is not None:
        sources.append((rule.not_, "!= "))
    for field, expr in (("in_interface", "iifname"), ("out_interface", "oifname")):
        for matches, op in sources:
            value = getattr(matches, field)
            if value is not None:
                words.append(f"{expr} {op}{quoted(value)}")
    for field, key in (("source", "saddr"), ("destination", "daddr")):
        for matches, op in sources:
            value = getattr(matches, field)
            if value is not None:
                words.append(f"{_family(value)} {key} {op}{_address(value)}")
    words += _transport(rule)
    for field, key in (("src_type", "saddr"), ("dst_type", "daddr")):
        for matches, op in sources:
            value = getattr(matches, field)
            if value is not None:
                words.append(f"fib {key} type {op}{str(value).lower()}")
    for matches, op in sources:
        if matches.ctstate:
            words += _ctstate(matches.ctstate, negated=bool(op))
    for matches, op in sources:
        if matches.mark is not None:
            value, _, mask = matches.mark.partition("/")
            words.append(
                f"meta mark & {mask} {op or '== '}{value}" if mask else f"meta mark {op}{value}"
            )
    if rule.probability is not None and float(rule.probability) < 1:
        words.append(f"numgen random mod 1000000000 < {round(float(rule.probability) * 1e9)}")
    if rule.not_ is not None and rule.not_.probability is not None:
        raise NsgenError("a negated probability cannot be written for nftables")
    return words


def _transport(rule: Rule) -> list[str]:
    """Protocol and ports: `tcp dport 80` where a port is matched, else `meta l4proto tcp`."""
    words: list[str] = []
    protocol = rule.protocol
    ports = [
        (field, matches, op)
        for field in ("sport", "dport")
        for matches, op in ((rule, ""), (rule.not_, "!= "))
        if matches is not None and getattr(matches, field) is not None
    ]
    if protocol is not None and protocol != "all":
        if ports:
            for field, matches, op in ports:
                words.append(f"{protocol} {field} {op}{_ports(getattr(matches, field))}")
        else:
            words.append(f"meta l4proto {_L4PROTO.get(protocol, protocol)}")
    if rule.not_ is not None and rule.not_.protocol is not None:
        if rule.not_.protocol == "all":
            raise NsgenError("'! -p all' matches nothing and cannot be written for nftables")
        words.append(f"meta l4proto != {_L4PROTO.get(rule.not_.protocol, rule.not_.protocol)}")
    return words


def _ctstate(states: Sequence[str], negated: bool) -> list[str]:
    plain = [s.lower() for s in states if s not in _STATUSES]
    status = [_STATUSES[s] for s in states if s in _STATUSES]
    if plain and status:
        raise NsgenError(
            f"--ctstate {','.join(states)} mixes states and NAT statuses, which nftables "
            "matches apart (ct state, ct status): write two rules"
        )
    if status and negated:
        raise NsgenError("a negated --ctstate SNAT/DNAT cannot be written for nftables")
    op = "!= " if negated else ""
    if plain:
        return [f"ct state {op}{','.join(plain)}"]
    return [f"ct status {','.join(status)}"]


# ---- what a rule does ------------------------------------------------------------------------

_REJECT = {
    "icmp-net-unreachable": "icmp type net-unreachable",
    "icmp-host-unreachable": "icmp type host-unreachable",
    "icmp-port-unreachable": "icmp type port-unreachable",
    "icmp-proto-unreachable": "icmp type prot-unreachable",
    "icmp-net-prohibited": "icmp type net-prohibited",
    "icmp-host-prohibited": "icmp type host-prohibited",
    "icmp-admin-prohibited": "icmp type admin-prohibited",
    "icmp6-no-route": "icmpv6 type no-route",
    "icmp6-adm-prohibited": "icmpv6 type admin-prohibited",
    "icmp6-addr-unreachable": "icmpv6 type addr-unreachable",
    "icmp6-port-unreachable": "icmpv6 type port-unreachable",
    "tcp-reset": "tcp reset",
}


def _nat_to(value: str) -> str:
    if value.count(":") > 1:  # IPv6, with or without [ADDRESS]:PORT
        return f"ip6 to {value}"
    return f"ip to {value}"


def _mark_set(rule: Rule) -> str:
    if rule.or_mark is not None:
        return f"meta mark set meta mark or {rule.or_mark}"
    if rule.xor_mark is not None:
        return f"meta mark set meta mark xor {rule.xor_mark}"
    assert rule.set_mark is not None
    value, _, mask = rule.set_mark.partition("/")
    if not mask:
        return f"meta mark set {value}"
    keep = 0xFFFFFFFF ^ int(mask, 0)
    return f"meta mark set meta mark and {keep:#010x} xor {value}"


def _statement(rule: Rule, table: str) -> str:
    """What the rule does: a verdict, a jump or goto to one of the table's chains, or NAT."""
    target = rule.target
    if rule.goto is not None:
        return f"goto {chain_name(table, target)}"
    simple = {"ACCEPT": "accept", "DROP": "drop", "RETURN": "return", "MASQUERADE": "masquerade"}
    if target in simple:
        return simple[target]
    if target == "REJECT":
        return "reject" if rule.reject_with is None else f"reject with {_REJECT[rule.reject_with]}"
    if target == "DNAT":
        assert rule.to_destination is not None
        return f"dnat {_nat_to(rule.to_destination)}"
    if target == "SNAT":
        assert rule.to_source is not None
        return f"snat {_nat_to(rule.to_source)}"
    if target == "MARK":
        return _mark_set(rule)
    return f"jump {chain_name(table, target)}"


def _verdict(entry: DispatchEntry, table: str) -> str:
    word = "jump" if entry.jump is not None else "goto"
    return f"{word} {chain_name(table, entry.target)}"


def _does(rule: Rule) -> str:
    """What a rule does: its statement, or a dispatch's verdict map lookup."""
    dispatch = rule.dispatch
    if dispatch is None:
        return _statement(rule, rule.table)
    if dispatch.by == "random":
        picks = ", ".join(
            f"{i} : {_verdict(entry, rule.table)}" for i, entry in enumerate(dispatch.entries)
        )
        return f"numgen random mod {len(dispatch.entries)} vmap {{ {picks} }}"
    return f"{key_expr(dispatch)} vmap @{map_name(rule.table, dispatch)}"


def family_match(rule: Rule) -> list[str]:
    """`meta nfproto ipv4` (or ipv6) for a rule of one family that names no address: in an
    `inet` table such a rule would see both families, where iptables and ip6tables hold each
    family's rules apart. A rule that matches an address (or a dispatch keyed by one) is of
    that address's family already (`ip saddr`, `ip6 daddr`), and one of both families needs
    none. (A NAT target's address does not match: `dnat ip to` alone would see IPv6 too.)"""
    matched = [field for field, _, _ in rule.addresses() if not field.startswith("to_")]
    if len(rule.families) != 1 or matched:
        return []
    dispatch = rule.dispatch
    if dispatch is not None and {"source", "destination"} & set(dispatch.key_fields()):
        return []
    return [f"meta nfproto ipv{rule.families[0]}"]


def rule_expr(rule: Rule, tag: str, by_family: bool = False) -> str:
    """A rule as nft writes it after `add rule FAMILY TABLE CHAIN`: its matches, a counter,
    what it does, and the topology's comment. `by_family` (the topology has IPv6): a rule of
    one family that names no address says which (`family_match`); without IPv6 anywhere there
    is no IPv6 traffic to tell apart, and the rules read as they always have."""
    family = family_match(rule) if by_family else []
    return " ".join([*family, *_matches(rule), "counter", _does(rule), f"comment {quoted(tag)}"])


def rule_text(rule: Rule, by_family: bool = False) -> str:
    """A rule as a reader writes it: its matches and what it does."""
    family = family_match(rule) if by_family else []
    return " ".join([*family, *_matches(rule), _does(rule)])


def masquerade_expr(source: str, out: str, tag: str) -> str:
    """The tutorial's masquerade: packets from `source` leaving through `out`."""
    return (
        f"oifname {quoted(out)} {_family(source)} saddr {source} counter masquerade "
        f"comment {quoted(tag)}"
    )


# ---- dispatch maps ---------------------------------------------------------------------------

_KEY_TYPES = {
    "source": ("saddr", "addr"),
    "destination": ("daddr", "addr"),
    "in_interface": ("iifname", "ifname"),
    "out_interface": ("oifname", "ifname"),
    "protocol": ("meta l4proto", "inet_proto"),
    "sport": ("th sport", "inet_service"),
    "dport": ("th dport", "inet_service"),
}


def map_name(table: str, dispatch: Dispatch) -> str:
    assert dispatch.name is not None
    return f"{table}-{dispatch.name}"


def key_expr(dispatch: Dispatch) -> str:
    """What the verdict map is looked up by: `ip daddr . meta l4proto . th dport`."""
    family = "ip6" if dispatch.family == 6 else "ip"
    parts = []
    for field in dispatch.key_fields():
        expr, kind = _KEY_TYPES[field]
        parts.append(f"{family} {expr}" if kind == "addr" else expr)
    return " . ".join(parts)


def map_type(dispatch: Dispatch) -> str:
    """The map's type: `ipv4_addr . inet_proto . inet_service : verdict`."""
    family = "ipv6_addr" if dispatch.family == 6 else "ipv4_addr"
    parts = []
    for field in dispatch.key_fields():
        kind = _KEY_TYPES[field][1]
        parts.append(family if kind == "addr" else kind)
    return " . ".join(parts) + " : verdict"


def element(entry: DispatchEntry, dispatch: Dispatch, table: str) -> str:
    """One map element: the entry's key values and its verdict."""
    values = []
    for field in dispatch.key_fields():
        value = getattr(entry, field)
        if field in ("source", "destination"):
            values.append(_address(str(value)))
        elif field in ("in_interface", "out_interface"):
            values.append(quoted(value))
        elif field == "protocol":
            values.append(_L4PROTO.get(str(value), str(value)))
        else:
            values.append(str(value))
    return f"{' . '.join(values)} : {_verdict(entry, table)}"


# ---- what status compares --------------------------------------------------------------------


def signature(rule: Rule) -> str:
    """What `nsgen status` compares of a rule with what `nft -j list table` shows: its
    verdict and the interfaces it matches ('drop iifname=br-frontend', 'jump nat-KUBE-SVC-WEB',
    'vmap @nat-service-ips', 'masquerade oifname=eth0' ...)."""
    dispatch = rule.dispatch
    if dispatch is not None:
        verdict = "vmap" if dispatch.by == "random" else f"vmap @{map_name(rule.table, dispatch)}"
    else:
        statement = _statement(rule, rule.table).split()
        if statement[0] in ("jump", "goto"):
            verdict = " ".join(statement[:2])
        elif statement[:3] == ["meta", "mark", "set"]:
            verdict = "mangle"
        else:
            verdict = statement[0]
    names = [
        f"{key}={getattr(matches, field)}"
        for field, key in (("in_interface", "iifname"), ("out_interface", "oifname"))
        for matches in (rule, rule.not_)
        if matches is not None and getattr(matches, field) is not None
    ]
    return " ".join([verdict, *sorted(names)])


def masquerade_signature(out: str) -> str:
    """signature() of the tutorial's masquerade."""
    return f"masquerade oifname={out}"
