"""The one reader of live kernel state: links, addresses, routes, neighbours, forwarding
entries, queueing disciplines, firewall rules, sysctls and files, per namespace. `nsgen status`
compares what it reads with the plan, the snapshot (tests and `nsgen lab`) keeps all of it for
a before/after comparison, and the benchmark checks with it what a method left behind.

It only reads. Each kind of state is read once per namespace (results are cached); a named
namespace is read through `ip -n` or `ip netns exec`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from nsgen.fields import HOST
from nsgen.state import STATE_ROOT

_T = TypeVar("_T")

CommandRunner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _subprocess_runner(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


class ProbeError(Exception):
    """Reading some live state failed (a command is missing, failed, or printed nonsense)."""


class LiveState:
    """Reads live kernel state, each kind once per namespace (results are cached).

    `run` executes a command and returns its result (it must not raise on a non-zero exit);
    `netns_dir`, `state_root` and `root` (prefixed to /etc/netns/... and /proc/sys/... paths
    read directly) exist so that tests can point them elsewhere.
    """

    def __init__(
        self,
        run: CommandRunner | None = None,
        netns_dir: Path = Path("/run/netns"),
        state_root: Path = STATE_ROOT,
        root: Path = Path("/"),
    ) -> None:
        self._run = run or _subprocess_runner
        self.netns_dir = netns_dir
        self.state_root = state_root
        self.root = root
        self._links: dict[str, dict[str, dict[str, Any]]] = {}
        self._routes: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._nat: dict[tuple[str, int], list[list[str]]] = {}
        self._sysctls: dict[str, dict[str, str]] = {}
        self._memos: dict[tuple[str, ...], Any] = {}
        self.commands: list[list[str]] = []
        """Every command run so far, in order (for tests and for --verbose output)."""

    # ---- running commands ----------------------------------------------------------------
    def _call(self, argv: list[str], ok: Iterable[int] = (0,)) -> str:
        self.commands.append(argv)
        try:
            result = self._run(argv)
        except FileNotFoundError:
            raise ProbeError(f"{argv[0]} is not installed") from None
        except (OSError, subprocess.SubprocessError) as exc:
            raise ProbeError(f"{argv[0]}: {exc}") from None
        if result.returncode not in ok:
            lines = (result.stderr or "").strip().splitlines()
            raise ProbeError(lines[-1] if lines else f"{argv[0]} exited {result.returncode}")
        return result.stdout or ""

    def _ip_json(self, netns: str, *args: str) -> list[dict[str, Any]]:
        prefix = ["ip"] if netns == HOST else ["ip", "-n", netns]
        text = self._call([*prefix, "-j", *args])
        try:
            data = json.loads(text or "[]")
        except json.JSONDecodeError as exc:
            raise ProbeError(f"ip printed invalid JSON: {exc}") from None
        if not isinstance(data, list):
            raise ProbeError("ip printed JSON that is not a list")
        return [entry for entry in data if isinstance(entry, dict)]

    # ---- what is read --------------------------------------------------------------------
    def has_netns(self, netns: str) -> bool:
        """Whether a named namespace exists (as `ip netns add` makes it: /run/netns/NAME)."""
        return netns == HOST or (self.netns_dir / netns).exists()

    def links(self, netns: str) -> dict[str, dict[str, Any]]:
        """Links by name, each with its 'addr_info' (from `ip -d -j addr show`)."""
        if netns not in self._links:
            entries = self._ip_json(netns, "-d", "addr", "show")
            self._links[netns] = {str(e["ifname"]): e for e in entries if "ifname" in e}
        return self._links[netns]

    def routes(self, netns: str, family: int) -> list[dict[str, Any]]:
        """The main routing table of one family (from `ip -j -4|-6 route show`)."""
        key = (netns, family)
        if key not in self._routes:
            self._routes[key] = self._ip_json(netns, f"-{family}", "route", "show")
        return self._routes[key]

    def nat_postrouting(self, netns: str, family: int = 4) -> list[list[str]]:
        """The nat table's POSTROUTING rules as iptables-save (family 6: ip6tables-save)
        prints them, split into words."""
        key = (netns, family)
        if key not in self._nat:
            prefix = [] if netns == HOST else ["ip", "netns", "exec", netns]
            text = self._call([*prefix, _SAVE[family]])
            rules: list[list[str]] = []
            table = ""
            for line in text.splitlines():
                if line.startswith("*"):
                    table = line[1:].strip()
                elif table == "nat" and line.startswith("-A POSTROUTING "):
                    try:
                        rules.append(shlex.split(line))
                    except ValueError:
                        rules.append(line.split())
            self._nat[key] = rules
        return self._nat[key]

    def iptables_has(
        self, netns: str, table: str, chain: str, words: list[str] | None, family: int = 4
    ) -> bool:
        """`iptables -C` for a rule (words given) or `-n -L` for a chain (words None);
        ip6tables for family 6."""
        prefix = [] if netns == HOST else ["ip", "netns", "exec", netns]
        program = _PROGRAM[family]
        if words is None:
            argv = [*prefix, program, "-w", "-t", table, "-n", "-L", chain]
        else:
            argv = [*prefix, program, "-w", "-t", table, "-C", chain, *words]
        self.commands.append(argv)
        try:
            result = self._run(argv)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ProbeError(f"{program}: {exc}") from None
        if result.returncode not in (0, 1):
            lines = (result.stderr or "").strip().splitlines()
            if not (words is None and "No chain" in (result.stderr or "")):
                raise ProbeError(lines[-1] if lines else f"{program} exited {result.returncode}")
        return result.returncode == 0

    def sysctls(self, netns: str, paths: list[str]) -> dict[str, str]:
        """Values of /proc/sys files (first line, stripped); a file that cannot be read is left
        out. Named namespaces are read with one `ip netns exec NS grep` for all `paths`."""
        if netns not in self._sysctls:
            values: dict[str, str] = {}
            if netns == HOST:
                for path in paths:
                    text = self.read_file(path)
                    if text is not None:
                        values[path] = text.strip().split("\n")[0].strip()
            elif paths:
                # grep exits 2 when a file is missing (-s: silently); the others still print.
                out = self._call(
                    ["ip", "netns", "exec", netns, "grep", "-sH", "", *paths], ok=(0, 1, 2)
                )
                for line in out.splitlines():
                    path, sep, value = line.partition(":")
                    if sep and path in paths and path not in values:
                        values[path] = value.strip()
            self._sysctls[netns] = values
        return self._sysctls[netns]

    def read_file(self, path: str) -> str | None:
        """A file's text (paths are absolute; read under `root`), or None if it does not exist."""
        try:
            return (self.root / path.lstrip("/")).read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise ProbeError(f"cannot read {path}: {exc.strerror}") from None

    # ---- what the snapshot reads (plain forms, without counters or timers) -------------
    def _memo(self, key: tuple[str, ...], read: Callable[[], _T]) -> _T:
        if key not in self._memos:
            self._memos[key] = read()
        return cast(_T, self._memos[key])

    def netns_list(self) -> list[str]:
        """`ip netns list`, line by line."""
        return self._memo(("netns-list",), lambda: self._call(["ip", "netns", "list"]).splitlines())

    def named_namespaces(self) -> list[str]:
        """The names in /run/netns, sorted."""
        return sorted(os.listdir(self.netns_dir)) if self.netns_dir.is_dir() else []

    def link_list(self, netns: str) -> dict[str, Any]:
        """`ip -j link show`, by link name (no details: a bridge's timers would tick)."""
        return self._memo(
            ("link", netns),
            lambda: {link["ifname"]: link for link in self._ip_json(netns, "link", "show")},
        )

    def addr_list(self, netns: str) -> dict[str, Any]:
        """Every link's addresses (`ip -j addr show`), by link name."""
        return self._memo(
            ("addr", netns),
            lambda: {
                link["ifname"]: link.get("addr_info", [])
                for link in self._ip_json(netns, "addr", "show")
            },
        )

    def route_tables(self, netns: str, family: int) -> list[dict[str, Any]]:
        """Every routing table of one family (`ip -j -4|-6 route show table all`)."""
        return self._memo(
            ("routes", netns, str(family)),
            lambda: self._ip_json(netns, f"-{family}", "route", "show", "table", "all"),
        )

    def neighbours(self, netns: str) -> list[dict[str, Any]]:
        """Every neighbour entry (`ip -j neigh show`), learnt ones included."""
        return self._memo(("neigh-all", netns), lambda: self._ip_json(netns, "neigh", "show"))

    def fdb(self, netns: str) -> list[dict[str, Any]]:
        """Forwarding-database entries toward a remote endpoint (see tunnel_fdb)."""
        return self.tunnel_fdb(netns)

    def permanent_neighbours(self, netns: str) -> list[dict[str, Any]]:
        """Neighbour entries nobody learnt: permanent ones (`ip -j neigh show nud permanent`).
        Learnt entries come and go with traffic, so they are not state."""
        return self._memo(
            ("neigh", netns),
            lambda: self._ip_json(netns, "neigh", "show", "nud", "permanent"),
        )

    def tunnel_fdb(self, netns: str) -> list[dict[str, Any]]:
        """Forwarding-database entries that send frames to a remote endpoint (`dst`), from
        `bridge -j fdb show`; a bridge's own learnt and local entries are left out."""

        def read() -> list[dict[str, Any]]:
            prefix = [] if netns == HOST else ["ip", "netns", "exec", netns]
            text = self._call([*prefix, "bridge", "-j", "fdb", "show"])
            try:
                entries = json.loads(text or "[]")
            except json.JSONDecodeError as exc:
                raise ProbeError(f"bridge printed invalid JSON: {exc}") from None
            return [e for e in entries if isinstance(e, dict) and "dst" in e]

        return self._memo(("fdb", netns), read)

    def qdiscs(self, netns: str) -> list[dict[str, Any]]:
        """Every queueing discipline (`tc -j qdisc show`), without its counters."""

        def read() -> list[dict[str, Any]]:
            prefix = [] if netns == HOST else ["ip", "netns", "exec", netns]
            text = self._call([*prefix, "tc", "-j", "qdisc", "show"])
            try:
                entries = json.loads(text or "[]")
            except json.JSONDecodeError as exc:
                raise ProbeError(f"tc printed invalid JSON: {exc}") from None
            return [
                {k: v for k, v in e.items() if k not in _QDISC_COUNTERS}
                for e in entries
                if isinstance(e, dict)
            ]

        return self._memo(("qdisc", netns), read)

    def iptables_rules(self, netns: str, family: int = 4) -> list[str]:
        """iptables-save (family 6: ip6tables-save) without comments and counters. A table
        that holds only its built-in chains with ACCEPT policies and no rules is left out:
        that is how every table starts, and the nf_tables backend creates one on first use
        whether or not the caller removes its rules."""

        def read() -> list[str]:
            prefix = [] if netns == HOST else ["ip", "netns", "exec", netns]
            try:
                text = self._call([*prefix, _SAVE[family]])
            except ProbeError:
                return [f"<{_SAVE[family]} unavailable>"]
            lines = [
                _COUNTERS.sub("[0:0]", line)
                for line in text.splitlines()
                if not line.startswith("#")
            ]
            kept: list[str] = []
            table: list[str] = []
            for line in lines:
                table.append(line)
                if line == "COMMIT":
                    if not all(_BUILTIN_CHAIN.fullmatch(entry) for entry in table[1:-1]):
                        kept.extend(table)
                    table = []
            return kept + table

        return self._memo(("iptables", netns, str(family)), read)

    def nft_table(self, netns: str, family: str, name: str) -> NftTable | None:
        """One nftables table (`nft -j list table`): its chains, each with the comment and
        the verdict of every rule, in order; None if the table does not exist."""

        def read() -> NftTable | None:
            prefix = [] if netns == HOST else ["ip", "netns", "exec", netns]
            argv = [*prefix, "nft", "-j", "list", "table", family, name]
            self.commands.append(argv)
            try:
                result = self._run(argv)
            except FileNotFoundError:
                raise ProbeError("nft is not installed") from None
            except (OSError, subprocess.SubprocessError) as exc:
                raise ProbeError(f"nft: {exc}") from None
            if result.returncode != 0:
                if "No such file or directory" in (result.stderr or ""):
                    return None
                lines = (result.stderr or "").strip().splitlines()
                raise ProbeError(lines[-1] if lines else f"nft exited {result.returncode}")
            try:
                data = json.loads(result.stdout or "{}")
            except json.JSONDecodeError as exc:
                raise ProbeError(f"nft printed invalid JSON: {exc}") from None
            if not isinstance(data, dict):
                raise ProbeError("nft printed JSON that is not an object")
            return _nft_table(data)

        return self._memo(("nft-table", netns, family, name), read)

    def nft_ruleset(self, netns: str) -> list[str]:
        """`nft -s list ruleset` (no counter values), line by line, each table's chains, maps
        and sets in name order (the order they were made in means nothing). In a table of
        iptables-nft's, a built-in chain left empty and accepting is left out, and so is the
        table when nothing else is in it, as `iptables_rules` leaves out such tables:
        iptables-nft makes them on first use and never removes them."""

        def read() -> list[str]:
            prefix = [] if netns == HOST else ["ip", "netns", "exec", netns]
            try:
                text = self._call([*prefix, "nft", "-s", "list", "ruleset"])
            except ProbeError:
                return ["<nft list ruleset unavailable>"]
            return _nft_tables(text)

        return self._memo(("nft", netns), read)

    def sysctl_values(self, netns: str, keys: Iterable[str]) -> dict[str, str]:
        """The values of sysctls given as paths under /proc/sys (net/ipv4/ip_forward), read
        inside the namespace; a missing one reads as '<missing>'."""
        keys = tuple(keys)

        def read() -> dict[str, str]:
            script = "; ".join(
                f"cat /proc/sys/{shlex.quote(k)} 2>/dev/null || echo '<missing>'" for k in keys
            )
            prefix = [] if netns == HOST else ["ip", "netns", "exec", netns]
            values = self._call([*prefix, "sh", "-c", script]).split()
            return dict(zip(keys, values, strict=True))

        return self._memo(("sysctl", netns, *keys), read)

    def sysctl_glob(self, netns: str, pattern: str) -> dict[str, str]:
        """The values of every sysctl matching a shell pattern of paths under /proc/sys
        (net/ipv6/conf/*/forwarding: one per link), read inside the namespace, by path."""

        def read() -> dict[str, str]:
            prefix = [] if netns == HOST else ["ip", "netns", "exec", netns]
            script = f"grep -sH '' /proc/sys/{pattern}"
            out = self._call([*prefix, "sh", "-c", script], ok=(0, 1, 2))
            values: dict[str, str] = {}
            for line in out.splitlines():
                path, sep, value = line.partition(":")
                if sep and path.startswith("/proc/sys/"):
                    values[path.removeprefix("/proc/sys/")] = value.strip()
            return values

        return self._memo(("sysctl-glob", netns, pattern), read)

    def files_under(self, root: str) -> dict[str, str]:
        """Every directory and file under `root` with the file's text (directories end in '/')."""
        found: dict[str, str] = {}
        base = self.root / root.lstrip("/")
        if not base.exists():
            return found
        for dirpath, dirnames, filenames in os.walk(base):
            for name in sorted(dirnames):
                found[str(Path(dirpath, name).relative_to(base)) + "/"] = ""
            for name in sorted(filenames):
                path = Path(dirpath, name)
                try:
                    found[str(path.relative_to(base))] = path.read_text(errors="replace")
                except OSError as exc:
                    found[str(path.relative_to(base))] = f"<unreadable: {exc}>"
        return found


@dataclass(frozen=True)
class NftTable:
    """What `nsgen status` reads of one nftables table."""

    chains: dict[str, list[tuple[str, str]]]
    """Chain name -> (comment, verdict) of each rule, in order: the verdict and interfaces as
    nsgen.backends.nftables.signature spells them ('drop iifname=br0', 'jump nat-X' ...)."""
    maps: dict[str, int]
    """Map name -> how many elements it holds."""


_VERDICTS = ("accept", "drop", "return", "masquerade", "snat", "dnat", "reject", "mangle")


def _signature(expr: list[Any]) -> str:
    """The verdict of a rule from its JSON statements (the last one that decides), and the
    interfaces it matches: `drop iifname=br-frontend`."""
    names = []
    for statement in expr:
        match = statement.get("match") if isinstance(statement, dict) else None
        if isinstance(match, dict) and isinstance(match.get("right"), str):
            left = match.get("left")
            key = left.get("meta", {}).get("key") if isinstance(left, dict) else None
            if key in ("iifname", "oifname"):
                names.append(f"{key}={match['right']}")
    verdict = _verdict(expr)
    return " ".join([verdict, *sorted(names)])


def _verdict(expr: list[Any]) -> str:
    for statement in reversed(expr):
        if not isinstance(statement, dict):
            continue
        for key in ("jump", "goto"):
            if key in statement:
                return f"{key} {statement[key].get('target', '')}"
        if "vmap" in statement:
            data = statement["vmap"].get("data")
            return f"vmap {data}" if isinstance(data, str) else "vmap"
        for key in _VERDICTS:
            if key in statement:
                return key
    return ""


def _nft_table(data: dict[str, Any]) -> NftTable:
    chains: dict[str, list[tuple[str, str]]] = {}
    maps: dict[str, int] = {}
    for item in data.get("nftables", []):
        if "chain" in item:
            chains.setdefault(str(item["chain"]["name"]), [])
        elif "map" in item:
            maps[str(item["map"]["name"])] = len(item["map"].get("elem", []))
        elif "rule" in item:
            rule = item["rule"]
            comment = str(rule.get("comment", ""))
            chains.setdefault(str(rule["chain"]), []).append(
                (comment, _signature(rule.get("expr", [])))
            )
    return NftTable(chains, maps)


_IPTABLES_TABLE = re.compile(r"table (ip|ip6|arp|bridge) (filter|nat|mangle|raw|security) \{")
_EMPTY_BASE_CHAIN = re.compile(r"type \S+ hook \S+ priority \S+; policy accept;")


def _nft_tables(text: str) -> list[str]:
    """`nft list ruleset`'s text with every table's members (chains, maps, sets ...) in name
    order, and iptables-nft's empty built-in chains and empty tables left out."""
    out: list[str] = []
    table: list[str] = []
    for line in text.splitlines():
        if line.startswith("table "):
            table = [line]
        elif line == "}":
            out += _table_lines(table)
            table = []
        elif table:
            table.append(line)
        elif line.strip():
            out.append(line)
    return out + table


def _table_lines(table: list[str]) -> list[str]:
    header, properties, members = table[0], [], []
    member: list[str] = []
    for line in table[1:]:
        if member:
            member.append(line)
            if line == "\t}":
                members.append(member)
                member = []
        elif line.endswith("{"):
            member = [line]
        elif line.strip():
            properties.append(line)
    if _IPTABLES_TABLE.fullmatch(header):
        members = [
            m
            for m in members
            if not (
                len(m) == 3
                and m[0].startswith("\tchain ")
                and _EMPTY_BASE_CHAIN.fullmatch(m[1].strip())
            )
        ]
        if not members and not properties:
            return []
    return [header, *properties, *(line for m in sorted(members) for line in m), "}"]


_PROGRAM = {4: "iptables", 6: "ip6tables"}
_SAVE = {4: "iptables-save", 6: "ip6tables-save"}
_COUNTERS = re.compile(r"\[\d+:\d+\]")
_BUILTIN_CHAIN = re.compile(r":(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT \[0:0\]")
_QDISC_COUNTERS = frozenset(
    {"bytes", "packets", "drops", "overlimits", "requeues", "backlog", "qlen"}
)
