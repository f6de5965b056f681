"""Firewall rules as data: what a rule matches, what it does, and where it goes, in fields a
backend spells (iptables-restore input today), never as iptables text inside the model.

A topology may still write a rule the way the tutorial does, as iptables words in `rule:`
(`-s 10.0.0.0/8 -o eth0 -j ACCEPT`). That text is read here, once, with a table of the options
iptables itself takes; every option must be spelled in full, and anything that is not a match
or a target (a table, a chain, an operation, a comment of its own) is refused. What the
model keeps is the structured rule, so the Docker and Kubernetes expanders, the planner and
every backend see the same data, whoever wrote it.
"""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from nsgen.fields import (
    ChainName,
    IfName,
    Strict,
    Table,
    ip_address,
    ip_network,
)

Protocol = Literal["tcp", "udp", "sctp", "icmp", "icmpv6", "all"]
AddrType = Literal[
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
]
CtState = Literal["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT"]
RejectWith = Literal[
    "icmp-net-unreachable",
    "icmp-host-unreachable",
    "icmp-port-unreachable",
    "icmp-proto-unreachable",
    "icmp-net-prohibited",
    "icmp-host-prohibited",
    "icmp-admin-prohibited",
    "icmp6-no-route",
    "icmp6-adm-prohibited",
    "icmp6-addr-unreachable",
    "icmp6-port-unreachable",
    "tcp-reset",
]
Family = Literal[4, 6, "both"]
"""Which firewall a rule or chain goes into: IPv4's (iptables), IPv6's (ip6tables), or both."""

TERMINAL_TARGETS = ("ACCEPT", "DROP", "RETURN", "REJECT")
"""Targets that take no option of their own (REJECT takes an optional reject_with)."""
NAT_TARGETS = ("MASQUERADE", "DNAT", "SNAT")
BUILTIN_TARGETS = (*TERMINAL_TARGETS, *NAT_TARGETS, "MARK")

_MARK_RE = re.compile(r"0x[0-9a-fA-F]{1,8}(/0x[0-9a-fA-F]{1,8})?|[0-9]{1,10}(/[0-9]{1,10})?")
_PORTS_RE = re.compile(r"([0-9]{1,5})(:([0-9]{1,5}))?")
_PROBABILITY_RE = re.compile(r"0\.[0-9]{1,11}|1(\.0+)?")


def _address_or_subnet(value: str) -> str:
    """A host address or a subnet, as iptables' -s/-d take them; written canonically."""
    if "/" in value:
        try:
            network = ip_network(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an address or a subnet") from None
        if str(network) != value:
            raise ValueError(f"{value!r} has host bits set: the subnet is {network}")
        return value
    try:
        return str(ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an address or a subnet") from None


def _ports(value: object) -> str:
    """A port or a range `LOW:HIGH`, as --sport/--dport take them."""
    text = str(value)
    match = _PORTS_RE.fullmatch(text) if isinstance(value, int | str) else None
    if match is None or isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port or a range LOW:HIGH")
    low = int(match[1])
    high = int(match[3]) if match[3] else low
    if not (1 <= low <= 65535 and 1 <= high <= 65535) or high < low:
        raise ValueError(f"{value!r} is not a port (1-65535) or a range LOW:HIGH with LOW <= HIGH")
    return text


def _mark(value: str) -> str:
    if not _MARK_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a mark: write VALUE or VALUE/MASK, e.g. 0x4000/0x4000")
    return value


def _probability(value: str) -> str:
    if not _PROBABILITY_RE.fullmatch(value) or float(value) <= 0:
        raise ValueError(f"{value!r} is not a probability: a decimal above 0 and at most 1")
    return value


def _destination(value: str) -> str:
    """DNAT's --to-destination, SNAT's --to-source: ADDRESS, IPV4:PORT or [IPV6]:PORT."""
    address, port = split_destination(value)
    try:
        ip_address(address)
    except ValueError:
        raise ValueError(
            f"{value!r} is not ADDRESS, IPV4:PORT or [IPV6]:PORT (an IPv6 address with a "
            "port goes in brackets)"
        ) from None
    if port is not None:
        _ports(port)
    return value


def _jump_target(value: str) -> str:
    """-j's target: one nsgen knows, or a chain's name."""
    if value in BUILTIN_TARGETS or re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,27}", value):
        return value
    raise ValueError(
        f"{_cut(value)} is neither a target nsgen knows ({', '.join(BUILTIN_TARGETS)}) nor a "
        "chain name (1 to 28 letters, digits, '_', '-', '.')"
    )


JumpTarget = Annotated[str, AfterValidator(_jump_target)]


def split_destination(value: str) -> tuple[str, str | None]:
    """A NAT target's address and port (None: no port): '10.0.0.2:80', '[fd00::2]:80',
    'fd00::2', '10.0.0.2'."""
    if value.startswith("[") and "]" in value:
        address, _, rest = value[1:].partition("]")
        return address, rest[1:] if rest.startswith(":") else (rest or None)
    if value.count(":") == 1:
        address, _, port = value.partition(":")
        return address, port
    return value, None


AddressOrSubnet = Annotated[str, AfterValidator(_address_or_subnet)]
Ports = Annotated[
    object,
    AfterValidator(_ports),
    WithJsonSchema(
        {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9]+(:[0-9]+)?$"}]}
    ),
]
Mark = Annotated[str, AfterValidator(_mark)]
Probability = Annotated[str, AfterValidator(_probability)]
NatDestination = Annotated[str, AfterValidator(_destination)]


class Matches(Strict):
    """What a packet must look like for a rule to apply; every field given must hold."""

    source: AddressOrSubnet | None = Field(None, description="Source address or subnet (-s).")
    destination: AddressOrSubnet | None = Field(
        None, description="Destination address or subnet (-d)."
    )
    in_interface: IfName | None = Field(None, description="Arriving through this interface (-i).")
    out_interface: IfName | None = Field(None, description="Leaving through this interface (-o).")
    protocol: Protocol | None = Field(None, description="Transport protocol (-p).")
    sport: Ports | None = Field(None, description="Source port or LOW:HIGH (needs protocol).")
    dport: Ports | None = Field(None, description="Destination port or LOW:HIGH (needs protocol).")
    src_type: AddrType | None = Field(
        None, description="Kind of source address (-m addrtype --src-type)."
    )
    dst_type: AddrType | None = Field(
        None, description="Kind of destination address, e.g. LOCAL (-m addrtype --dst-type)."
    )
    ctstate: list[CtState] | None = Field(
        None, description="Connection tracking states (-m conntrack --ctstate)."
    )
    mark: Mark | None = Field(None, description="Packet mark VALUE[/MASK] (-m mark --mark).")
    probability: Probability | None = Field(
        None,
        description="Match this share of packets at random (-m statistic --mode random).",
    )

    def given(self) -> dict[str, Any]:
        """The fields that are set, by name, in declaration order."""
        return {name: value for name, value in self if value is not None}


class Rule(Matches):
    """One firewall rule: its place (table, chain, position), what it matches, what it does.

    Write it either as fields (`{chain: FORWARD, source: 10.0.0.0/8, jump: ACCEPT}`) or as
    iptables words in `rule:` (`-s 10.0.0.0/8 -j ACCEPT`); the words are read into the fields.
    Every rule nsgen installs carries the topology's tag, so teardown removes exactly it."""

    table: Table = Field("filter", description="filter, nat, mangle or raw.")
    chain: ChainName = Field(description="A built-in chain of the table, or a declared chain.")
    family: Family | None = Field(
        None,
        description="4 (iptables), 6 (ip6tables) or both. Default: the family of the rule's "
        "addresses, 4 if it has none. In words: -4 or -6.",
    )
    insert: bool = Field(False, description="Insert at the top of the chain instead of appending.")
    rule: str | None = Field(
        None,
        description="Matches and a target in iptables' words, e.g. '-s 10.0.0.0/8 -j ACCEPT' "
        "(instead of the fields).",
    )
    not_: Matches | None = Field(
        None,
        alias="not",
        description="Matches that must NOT hold (iptables' '!'), e.g. not: {out_interface: br0}.",
    )
    jump: JumpTarget | None = Field(
        None,
        description="Target: ACCEPT, DROP, RETURN, REJECT, MASQUERADE, DNAT, SNAT, MARK or an "
        "own chain (-j).",
    )
    goto: ChainName | None = Field(None, description="Continue in this own chain (-g).")
    to_destination: NatDestination | None = Field(
        None, description="DNAT: ADDRESS[:PORT] (--to-destination)."
    )
    to_source: NatDestination | None = Field(None, description="SNAT: ADDRESS (--to-source).")
    reject_with: RejectWith | None = Field(None, description="REJECT: the ICMP error to send.")
    set_mark: Mark | None = Field(None, description="MARK: set the mark (--set-mark).")
    or_mark: Mark | None = Field(None, description="MARK: OR bits into the mark (--or-mark).")
    xor_mark: Mark | None = Field(None, description="MARK: XOR bits into the mark (--xor-mark).")
    dispatch: Dispatch | None = Field(
        None,
        description="Instead of jump or goto: send the packet on by the value of some fields "
        "(an nftables verdict map; one rule per entry in iptables), or at random.",
    )

    model_config = Strict.model_config | {"populate_by_name": True}

    @model_validator(mode="before")
    @classmethod
    def _read_words(cls, data: Any) -> Any:
        """`rule:` text becomes fields; it may not also give a field by name."""
        if not isinstance(data, dict) or not isinstance(data.get("rule"), str):
            return data
        try:
            fields = read_rule(data["rule"])
        except ValueError as exc:
            raise ValueError(f"rule {_cut(data['rule'])}: {exc}") from None
        both = sorted(set(fields) & {k for k, v in data.items() if v is not None})
        if both:
            raise ValueError(
                f"rule {data['rule']!r} and the key(s) {', '.join(both)} both say what "
                "the rule does: give one or the other"
            )
        return {**{k: v for k, v in data.items() if k != "rule"}, **fields}

    @model_validator(mode="after")
    def _coherent(self) -> Rule:
        targets = [t for t in (self.jump, self.goto) if t is not None]
        if self.dispatch is not None:
            self._coherent_dispatch(targets)
        elif len(targets) != 1:
            raise ValueError("a rule needs exactly one target: 'jump' (-j) or 'goto' (-g)")
        target = self.jump
        options = {
            "to_destination": "DNAT",
            "to_source": "SNAT",
            "reject_with": "REJECT",
            "set_mark": "MARK",
            "or_mark": "MARK",
            "xor_mark": "MARK",
        }
        for option, owner in options.items():
            if getattr(self, option) is not None and target != owner:
                raise ValueError(f"{option} belongs to the target {owner}, not {target or 'goto'}")
        if target == "DNAT" and self.to_destination is None:
            raise ValueError("a DNAT rule needs to_destination (--to-destination)")
        if target == "SNAT" and self.to_source is None:
            raise ValueError("an SNAT rule needs to_source (--to-source)")
        marks = [m for m in (self.set_mark, self.or_mark, self.xor_mark) if m is not None]
        if target == "MARK" and len(marks) != 1:
            raise ValueError("a MARK rule needs exactly one of set_mark, or_mark, xor_mark")
        if target in NAT_TARGETS and self.table != "nat":
            raise ValueError(f"{target} works only in the nat table (table: nat)")
        for matches in (self, self.not_):
            if matches is None:
                continue
            if (matches.sport or matches.dport) and self.protocol not in ("tcp", "udp", "sctp"):
                raise ValueError("sport and dport need protocol tcp, udp or sctp")
        return self

    @model_serializer(mode="wrap")
    def _dispatch_only_when_given(self, handler: SerializerFunctionWrapHandler) -> Any:
        """A rule without a dispatch serializes as it did before there were dispatches, so a
        topology's digest (of its serialized form) stays what it was."""
        data = handler(self)
        if self.dispatch is None and isinstance(data, dict):
            data.pop("dispatch", None)
        return data

    def _coherent_dispatch(self, targets: list[str]) -> None:
        dispatch = self.dispatch
        assert dispatch is not None
        if targets:
            raise ValueError(
                "a dispatch rule has no jump or goto of its own: its entries say where packets go"
            )
        options = [o for o in _TARGET_FIELDS if getattr(self, o) is not None]
        if options:
            raise ValueError(f"{options[0]} belongs to a target, and a dispatch rule has none")
        if self.insert:
            raise ValueError("a dispatch rule is appended (insert: true is not supported)")
        if dispatch.by == "random" and self.probability is not None:
            raise ValueError("a dispatch by random picks its own shares: drop probability")
        for field in dispatch.key_fields():
            for matches in (self, self.not_):
                if matches is not None and getattr(matches, field) is not None:
                    raise ValueError(
                        f"{field} is the dispatch's key: its entries give it, not the rule"
                    )
        key = dispatch.key_fields()
        ports = {"sport", "dport"} & set(key)
        if ports and "protocol" not in key and self.protocol not in _PORT_PROTOCOLS:
            raise ValueError(
                f"a dispatch by {', '.join(sorted(ports))} needs protocol tcp, udp or sctp "
                "(in the rule or in the key)"
            )

    @property
    def target(self) -> str:
        """The jump target or the goto chain (a dispatch rule has none: see `dispatch`)."""
        return str(self.jump if self.jump is not None else self.goto)

    def addresses(self) -> list[tuple[str, str, int]]:
        """Every address the rule holds: (field, as written, its family), in field order
        (negated matches as not.source, not.destination)."""
        found: list[tuple[str, str, int]] = []
        for prefix, matches in (("", self), ("not.", self.not_)):
            if matches is None:
                continue
            for name in ("source", "destination"):
                value = getattr(matches, name)
                if value is not None:
                    found.append((prefix + name, value, 6 if ":" in value else 4))
        for name in ("to_destination", "to_source"):
            value = getattr(self, name)
            if value is not None:
                address, _ = split_destination(value)
                found.append((name, value, 6 if ":" in address else 4))
        return found

    @property
    def families(self) -> tuple[int, ...]:
        """The firewalls the rule goes into: its `family`, else its addresses' family (a
        dispatch's: its key's), else IPv4. (nsgen.kinds.firewall refuses a rule whose
        addresses and family disagree.)"""
        if self.family == "both":
            return (4, 6)
        if self.family is not None:
            return (self.family,)
        found = {family for _, _, family in self.addresses()}
        if not found and self.dispatch is not None:  # a dispatch's key holds the addresses
            return (self.dispatch.family,)
        return (6,) if found == {6} else (4,)


# ---- reading iptables words ------------------------------------------------------------------

_MATCH_OPTIONS: dict[str, str] = {
    "-s": "source",
    "--source": "source",
    "--src": "source",
    "-d": "destination",
    "--destination": "destination",
    "--dst": "destination",
    "-i": "in_interface",
    "--in-interface": "in_interface",
    "-o": "out_interface",
    "--out-interface": "out_interface",
    "-p": "protocol",
    "--protocol": "protocol",
}
_MODULE_OPTIONS: dict[str, dict[str, str]] = {
    "tcp": {"--sport": "sport", "--source-port": "sport", "--dport": "dport",
            "--destination-port": "dport"},
    "udp": {"--sport": "sport", "--source-port": "sport", "--dport": "dport",
            "--destination-port": "dport"},
    "sctp": {"--sport": "sport", "--source-port": "sport", "--dport": "dport",
             "--destination-port": "dport"},
    "addrtype": {"--src-type": "src_type", "--dst-type": "dst_type"},
    "conntrack": {"--ctstate": "ctstate"},
    "state": {"--state": "ctstate"},
    "mark": {"--mark": "mark"},
    "statistic": {"--mode": "mode", "--probability": "probability"},
}  # fmt: skip
_TARGET_OPTIONS: dict[str, dict[str, str]] = {
    "DNAT": {"--to-destination": "to_destination"},
    "SNAT": {"--to-source": "to_source"},
    "REJECT": {"--reject-with": "reject_with"},
    "MARK": {"--set-mark": "set_mark", "--or-mark": "or_mark", "--xor-mark": "xor_mark"},
}
_COMMANDS = {
    "-t": "--table",
    "-A": "--append",
    "-C": "--check",
    "-D": "--delete",
    "-I": "--insert",
    "-R": "--replace",
    "-L": "--list",
    "-S": "--list-rules",
    "-F": "--flush",
    "-Z": "--zero",
    "-N": "--new-chain",
    "-X": "--delete-chain",
    "-P": "--policy",
    "-E": "--rename-chain",
    "-v": "--verbose",
    "-n": "--numeric",
    "-x": "--exact",
    "-w": "--wait",
    "-W": "--wait-interval",
    "-h": "--help",
    "-f": "--fragment",
    "-c": "--set-counters",
}
_ALL_LONG = sorted(
    {*_COMMANDS.values(), "--line-numbers", "--modprobe", "--match", "--jump", "--goto"}
    | {"--ipv4", "--ipv6"}
    | {o for o in _MATCH_OPTIONS if o.startswith("--")}
    | {o for table in _MODULE_OPTIONS.values() for o in table}
    | {o for table in _TARGET_OPTIONS.values() for o in table}
    | {"--comment", "--to-ports", "--to", "--random", "--persistent", "--log-prefix"}
)
_UNDERSTOOD = (
    "-4, -6, -s, -d, -i, -o, -p, --sport, --dport, -m addrtype|conntrack|state|mark|statistic|"
    "tcp|udp with their options, -j/-g and the options of DNAT, SNAT, REJECT and MARK"
)


def read_rule(text: str) -> dict[str, Any]:
    """The fields of a rule written as iptables matches and a target; ValueError (a one-line
    reason naming the word) for anything else. Options must be spelled in full: iptables
    accepts unambiguous abbreviations (`--pol` for `--policy`), which would let a rule smuggle
    in what nsgen refuses, so nsgen reads none."""
    if not text.strip():
        raise ValueError("a rule must not be empty")
    if not text.isprintable():
        raise ValueError("a rule is one line of printable text")
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot split the rule into words: {exc}") from None
    fields: dict[str, Any] = {}
    negated: dict[str, Any] = {}
    modules: list[str] = []
    target: str | None = None
    i = 0
    negate = False

    def value_of(option: str) -> str:
        if i + 1 >= len(words) or (words[i + 1].startswith("-") and words[i + 1] != "-"):
            raise ValueError(f"{option} needs a value")
        return words[i + 1]

    def put(field: str, value: Any) -> None:
        into = negated if negate else fields
        if field in fields or field in negated:
            raise ValueError(f"{shown(field)} is given twice")
        into[field] = value

    while i < len(words):
        word = words[i]
        if word == "!":
            if negate:
                raise ValueError("'!' is given twice in a row")
            negate = True
            i += 1
            continue
        if word in ("-j", "--jump", "-g", "--goto"):
            if negate:
                raise ValueError(f"{word} cannot be negated")
            if target is not None:
                raise ValueError("a rule has one target: -j or -g is given twice")
            target = value_of(word)
            fields["jump" if word in ("-j", "--jump") else "goto"] = target
            i += 2
            continue
        if word in ("-4", "--ipv4", "-6", "--ipv6"):
            if negate:
                raise ValueError(f"{word} cannot be negated")
            put("family", 4 if word in ("-4", "--ipv4") else 6)
            i += 1
            continue
        if word in ("-m", "--match"):
            if negate:
                raise ValueError(f"{word} cannot be negated (negate its option)")
            module = value_of(word)
            if module == "comment":
                raise ValueError(
                    "a rule may not carry a comment of its own: nsgen tags every rule with "
                    "the topology's comment, and teardown finds its rules by it"
                )
            if module not in _MODULE_OPTIONS:
                raise ValueError(
                    f"-m {module} is not a match nsgen understands (it understands "
                    f"{', '.join(sorted(_MODULE_OPTIONS))})"
                )
            modules.append(module)
            i += 2
            continue
        if word in _MATCH_OPTIONS:
            field = _MATCH_OPTIONS[word]
            put(field, value_of(word))
            negate = False
            i += 2
            continue
        module_option = _module_option(word, modules, fields.get("protocol"))
        if module_option is not None:
            field = module_option
            value = value_of(word)
            if field == "mode":
                if value != "random" or negate:
                    raise ValueError("-m statistic: only --mode random is supported")
            elif field == "ctstate":
                put(field, value.split(","))
            else:
                put(field, value)
            negate = False
            i += 2
            continue
        target_option = _TARGET_OPTIONS.get(target or "", {}).get(word)
        if target_option is not None:
            if negate:
                raise ValueError(f"{word} cannot be negated")
            put(target_option, value_of(word))
            i += 2
            continue
        raise ValueError(_unknown(word, target))
    if negate:
        raise ValueError("the rule ends with '!': negate an option that follows it")
    if "probability" in {**fields, **negated} and "statistic" not in modules:
        raise ValueError("--probability needs -m statistic --mode random")
    if negated:
        fields["not"] = negated
    return fields


def _module_option(word: str, modules: list[str], protocol: object) -> str | None:
    """The field an option of a loaded match module (or of -p tcp/udp, which loads it) names."""
    loaded = [*modules]
    if isinstance(protocol, str) and protocol in ("tcp", "udp", "sctp"):
        loaded.append(protocol)
    for module in loaded:
        field = _MODULE_OPTIONS[module].get(word)
        if field is not None:
            return field
    return None


def _unknown(word: str, target: str | None) -> str:
    if word in _COMMANDS or word in _COMMANDS.values() or word == "--line-numbers":
        return (
            f"{word}: give only matches and a target; the table, chain and operation come "
            "from the keys table, chain and insert"
        )
    for module, options in _MODULE_OPTIONS.items():
        if word in options:
            return f"{word} needs -m {module} before it"
    for owner, options in _TARGET_OPTIONS.items():
        if word in options:
            return f"{word} is an option of the target {owner} (after -j {owner})"
    if word.startswith("--"):
        expanded = [o for o in _ALL_LONG if o.startswith(word) and o != word]
        if expanded:
            meaning = expanded[0] if len(expanded) == 1 else " or ".join(expanded)
            return (
                f"{word} is an abbreviation (iptables would read {meaning}): nsgen reads "
                "options spelled in full only"
            )
    if word.startswith("-"):
        return f"{word} is not an option nsgen understands in a rule (it understands {_UNDERSTOOD})"
    return f"{word!r} is not an option: a rule is options and their values ({_UNDERSTOOD})"


def _cut(text: str, limit: int = 60) -> str:
    """A value for a message: quoted, and cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def shown(field: str) -> str:
    """How a field is named in messages: iptables' option."""
    spelled = {
        "source": "-s",
        "destination": "-d",
        "in_interface": "-i",
        "out_interface": "-o",
        "protocol": "-p",
        "sport": "--sport",
        "dport": "--dport",
        "src_type": "--src-type",
        "dst_type": "--dst-type",
        "ctstate": "--ctstate",
        "mark": "--mark",
        "probability": "--probability",
        "to_destination": "--to-destination",
        "to_source": "--to-source",
        "reject_with": "--reject-with",
        "set_mark": "--set-mark",
        "or_mark": "--or-mark",
        "xor_mark": "--xor-mark",
    }
    return spelled.get(field, field)


class Chain(Strict):
    """A chain of the topology's own; teardown empties and deletes it."""

    table: Table = "filter"
    name: ChainName
    family: Family | None = Field(
        None,
        description="4 (iptables), 6 (ip6tables) or both. Default: every family of the rules "
        "that go into it or jump to it; 4 if there are none.",
    )
    inline: bool = Field(
        False,
        description="Entered only through dispatch entries. nftables makes it a chain of its "
        "own, as Docker's per-network chains are; iptables, which has no verdict maps, writes "
        "its rules in place of each entry that leads to it, each with that entry's match.",
    )

    @model_serializer(mode="wrap")
    def _inline_only_when_set(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Serialized as before there were inline chains unless it is one (see Rule's)."""
        data = handler(self)
        if not self.inline and isinstance(data, dict):
            data.pop("inline", None)
        return data


class Iptables(Strict):
    """The firewall of one namespace, whatever the backend that installs it (the key keeps
    the tutorial's name)."""

    chains: list[Chain] = Field(default_factory=list, description="Own chains, created first.")
    rules: list[Rule] = Field(default_factory=list, description="Rules, in order.")
    _expanded: list[Rule] | None = PrivateAttr(None)
    """expanded_rules' answer, kept: the planner and `nsgen explain` see the same objects."""


# ---- dispatch: one rule that sends packets on by a field's value ------------------------------

DispatchKey = Literal[
    "source", "destination", "in_interface", "out_interface", "protocol", "sport", "dport"
]
_PORT_PROTOCOLS = ("tcp", "udp", "sctp")
_TARGET_FIELDS = ("to_destination", "to_source", "reject_with", "set_mark", "or_mark", "xor_mark")
_MAP_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,27}")


def _map_name(value: str) -> str:
    if not _MAP_NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid dispatch name: 1 to 28 letters, digits, '_', '-', '.', "
            "starting with a letter"
        )
    return value


MapName = Annotated[str, AfterValidator(_map_name)]


class DispatchEntry(Strict):
    """One value of a dispatch's key (the fields named in `by`) and the chain it leads to."""

    source: AddressOrSubnet | None = Field(None, description="Source address (one, or /32).")
    destination: AddressOrSubnet | None = Field(
        None, description="Destination address (one, or /32)."
    )
    in_interface: IfName | None = Field(None, description="Arriving through this interface.")
    out_interface: IfName | None = Field(None, description="Leaving through this interface.")
    protocol: Protocol | None = Field(None, description="Transport protocol.")
    sport: Ports | None = Field(None, description="Source port (one).")
    dport: Ports | None = Field(None, description="Destination port (one).")
    jump: ChainName | None = Field(None, description="Continue in this chain, then come back.")
    goto: ChainName | None = Field(None, description="Continue in this chain for good.")

    @model_validator(mode="after")
    def _one_target(self) -> DispatchEntry:
        if (self.jump is None) == (self.goto is None):
            raise ValueError("a dispatch entry needs exactly one of jump or goto (a chain)")
        return self

    @property
    def target(self) -> str:
        return str(self.jump if self.jump is not None else self.goto)

    def key(self) -> dict[str, Any]:
        """The entry's match fields (its value of the dispatch's key)."""
        return {
            name: value
            for name, value in self
            if value is not None and name not in ("jump", "goto")
        }


class Dispatch(Strict):
    """Where a packet goes next, looked up by the value of some of its fields: `by` names the
    fields, each entry gives their values and a chain. nftables spells it as one rule with a
    verdict map (named `name`); iptables, as one rule per entry. With `by: random`, each entry
    takes an equal share of the connections (nftables: `numgen random mod N`; iptables: the
    statistic match with probabilities 1/N, 1/(N-1), ..., as kube-proxy writes them)."""

    name: MapName | None = Field(
        None, description="Name of the verdict map (nftables); needed unless by is random."
    )
    by: list[DispatchKey] | Literal["random"] = Field(
        description="The key: fields whose values the entries give (e.g. [destination, "
        "protocol, dport]), or random."
    )
    entries: list[DispatchEntry] = Field(min_length=1, description="Values and chains, in order.")

    @model_validator(mode="after")
    def _entries_fit_the_key(self) -> Dispatch:
        keys = self.key_fields()
        if self.by != "random":
            if not keys:
                raise ValueError("by needs at least one field (or: random)")
            if len(set(keys)) != len(keys):
                raise ValueError("by names a field twice")
            if self.name is None:
                raise ValueError("a dispatch by fields needs a name (its verdict map's)")
        seen: dict[tuple[Any, ...], int] = {}
        for i, entry in enumerate(self.entries):
            given = entry.key()
            if set(given) != set(keys):
                want = ", ".join(keys) if keys else "no match field (by: random)"
                raise ValueError(
                    f"entries[{i}] gives {', '.join(given) or 'nothing'}: expected {want}"
                )
            for name in ("source", "destination"):
                value = given.get(name)
                if value is not None and "/" in value and not value.endswith(("/32", "/128")):
                    raise ValueError(
                        f"entries[{i}].{name}: a dispatch key is one address, not {value}"
                    )
            for name in ("sport", "dport"):
                if name in given and ":" in str(given[name]):
                    raise ValueError(
                        f"entries[{i}].{name}: a dispatch key is one port, not a range"
                    )
            ported = {"sport", "dport"} & set(given)
            if ported and "protocol" in given and given["protocol"] not in _PORT_PROTOCOLS:
                raise ValueError(f"entries[{i}]: sport and dport need protocol tcp, udp or sctp")
            if keys:
                value = tuple(str(given[k]) for k in keys)
                if value in seen:
                    raise ValueError(f"entries[{i}] repeats the key of entries[{seen[value]}]")
                seen[value] = i
        families = {
            4 if "." in str(e.key().get(k)) else 6
            for e in self.entries
            for k in ("source", "destination")
            if k in keys
        }
        if len(families) > 1:
            raise ValueError("a dispatch keyed by addresses holds one family (IPv4 or IPv6)")
        return self

    def key_fields(self) -> list[str]:
        """The key's fields, in order (none for random)."""
        return [] if self.by == "random" else list(self.by)

    @property
    def family(self) -> int:
        """6 if the key's addresses are IPv6, else 4."""
        for entry in self.entries:
            for value in (entry.source, entry.destination):
                if value is not None and ":" in value:
                    return 6
        return 4


Rule.model_rebuild()


def shares(count: int) -> list[str | None]:
    """The probabilities of a random dispatch over `count` entries, as iptables' statistic
    match takes them: entry i (of n) matches 1/(n-i) of what reaches it, and the last takes the
    rest (kube-proxy's spelling, with 11 decimals)."""
    return [f"{1 / (count - i):.11f}" if i < count - 1 else None for i in range(count)]


def expanded_rules(firewall: Iptables) -> list[Rule]:
    """The namespace's rules as plain rules, each with one target: a dispatch becomes one rule
    per entry, an entry that leads to an inline chain becomes that chain's rules with the
    entry's match added, and the rules of inline chains are not listed where they are declared.
    A packet meets the same verdicts as with the dispatch: this is what a backend without
    verdict maps installs (iptables), and a plain list any reader of the rules can walk
    (`nsgen explain` walks it). Asked twice, it gives the same rule objects."""
    if firewall._expanded is None:
        firewall._expanded = _expanded(firewall)
    return firewall._expanded


def _expanded(firewall: Iptables) -> list[Rule]:
    inline = {(c.table, c.name) for c in firewall.chains if c.inline}
    bodies: dict[tuple[str, str], list[Rule]] = {place: [] for place in inline}
    for rule in firewall.rules:
        if (rule.table, rule.chain) in inline:
            bodies[(rule.table, rule.chain)].append(rule)
    out: list[Rule] = []
    for rule in firewall.rules:
        if (rule.table, rule.chain) in inline:
            continue
        if rule.dispatch is None:
            out.append(rule)
        else:
            out.extend(_dispatched(rule, rule.dispatch, bodies))
    return out


def _dispatched(
    rule: Rule, dispatch: Dispatch, bodies: dict[tuple[str, str], list[Rule]]
) -> list[Rule]:
    common = rule.model_dump(by_alias=True, exclude_none=True, exclude={"dispatch"})
    common.pop("insert", None)
    out: list[Rule] = []
    if dispatch.by == "random":
        for entry, share in zip(dispatch.entries, shares(len(dispatch.entries)), strict=True):
            data = {**common, ("jump" if entry.jump else "goto"): entry.target}
            if share is not None:
                data["probability"] = share
            out.append(Rule.model_validate(data))
        return out
    for entry in dispatch.entries:
        key = entry.key()
        body = bodies.get((rule.table, entry.target)) if entry.jump else None
        if body is None:
            out.append(
                Rule.model_validate(
                    {**common, **key, ("jump" if entry.jump else "goto"): entry.target}
                )
            )
            continue
        for inner in body:
            # an inline chain may hold rules of both families: each entry writes out those of
            # its own families, in the families both have
            families = tuple(f for f in inner.families if f in rule.families)
            if not families:
                continue
            data = inner.model_dump(by_alias=True, exclude_none=True)
            data.pop("insert", None)
            negated = {**common.get("not", {}), **data.get("not", {})}
            merged = {**common, **data, **key, "chain": rule.chain}
            merged.pop("family", None)
            if negated:
                merged["not"] = negated
            written = Rule.model_validate(merged)
            if written.families != families:
                merged["family"] = "both" if len(families) == 2 else families[0]
                written = Rule.model_validate(merged)
            out.append(written)
    return out
