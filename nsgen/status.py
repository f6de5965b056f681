"""`nsgen status`: every object a topology declares, compared with the live kernel state.

The objects come from the plan (the same names, addresses and rule specs `nsgen up` uses); the
live state is read, never changed, with few commands: per namespace one `ip -d -j addr show`
(links, their kind, flags, master and addresses), one `ip -j route show` per address family in
use, one `iptables-save` if the namespace has masquerade rules, one read of its sysctls; plus
/run/netns, /etc/netns and /run/nsgen on the file system. A namespace that does not exist is
not entered: what it should hold is reported missing without running anything in it.

Each object is "present", "missing" or "different" (with a short detail saying what differs).
What could not be read at all (no root, a namespace that cannot be entered, iptables-save not
installed) is "different" with a detail that starts "cannot check:", so it counts as drift.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nsgen.model import HOST, Topology
from nsgen.plan import Plan, Step, build_plan
from nsgen.state import STATE_ROOT, StateDir

PRESENT = "present"
MISSING = "missing"
DIFFERENT = "different"
STATES = (PRESENT, MISSING, DIFFERENT)

KINDS = (
    "namespace",
    "loopback",
    "external",
    "bridge",
    "veth",
    "address",
    "route",
    "vxlan",
    "masquerade",
    "chain",
    "rule",
    "sysctl",
    "dns",
    "state",
)
"""Every value ObjectStatus.kind takes, in the order rows of a topology come in."""


@dataclass(frozen=True)
class ObjectStatus:
    """One declared object and how the live system compares with it.

    `netns` is the namespace the object lives in ('host' for the root namespace); `name`
    identifies the object within its kind and namespace (an interface name, an address and its
    device, a route spec, a file path); `detail` says what differs, or why it is missing.
    """

    kind: str
    netns: str
    name: str
    state: str
    detail: str = ""


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
        self._nat: dict[str, list[list[str]]] = {}
        self._sysctls: dict[str, dict[str, str]] = {}
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

    def nat_postrouting(self, netns: str) -> list[list[str]]:
        """The nat table's POSTROUTING rules as iptables-save prints them, split into words."""
        if netns not in self._nat:
            prefix = [] if netns == HOST else ["ip", "netns", "exec", netns]
            text = self._call([*prefix, "iptables-save"])
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
            self._nat[netns] = rules
        return self._nat[netns]

    def iptables_has(self, netns: str, table: str, chain: str, words: list[str] | None) -> bool:
        """`iptables -C` for a rule (words given) or `-n -L` for a chain (words None)."""
        prefix = [] if netns == HOST else ["ip", "netns", "exec", netns]
        if words is None:
            argv = [*prefix, "iptables", "-w", "-t", table, "-n", "-L", chain]
        else:
            argv = [*prefix, "iptables", "-w", "-t", table, "-C", chain, *words]
        self.commands.append(argv)
        try:
            result = self._run(argv)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ProbeError(f"iptables: {exc}") from None
        if result.returncode not in (0, 1):
            lines = (result.stderr or "").strip().splitlines()
            if not (words is None and "No chain" in (result.stderr or "")):
                raise ProbeError(lines[-1] if lines else f"iptables exited {result.returncode}")
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


# ---- comparing ---------------------------------------------------------------------------


def _iface(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return ipaddress.ip_interface(text)


def _route_dst(text: str) -> str:
    if text == "default":
        return text
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


def _address(text: object) -> str:
    """An address in the model's canonical spelling (as `ip` may abbreviate IPv6 otherwise)."""
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        return str(text)


def _route_name(to: str, via: str | None, dev: str | None) -> str:
    return " ".join([to, *(["via", via] if via else []), *(["dev", dev] if dev else [])])


def _kind_of(link: dict[str, Any]) -> str | None:
    info = link.get("linkinfo")
    return str(info["info_kind"]) if isinstance(info, dict) and "info_kind" in info else None


def _link_problems(
    link: dict[str, Any], kind: str | None, master: str | None, check_master: bool
) -> list[str]:
    problems = []
    actual_kind = _kind_of(link)
    if kind is not None and actual_kind != kind:
        problems.append(f"kind is {actual_kind or 'none'}, expected {kind}")
    if "UP" not in link.get("flags", []):
        problems.append("down")
    if check_master:
        actual = link.get("master")
        if actual != master:
            if master is None:
                problems.append(f"master is {actual}, expected none")
            elif actual is None:
                problems.append(f"not attached to {master}")
            else:
                problems.append(f"master is {actual}, expected {master}")
    return problems


def _first_difference(actual: str, expected: str) -> str:
    have, want = actual.splitlines(), expected.splitlines()
    for number, (a, b) in enumerate(zip(have, want, strict=False), start=1):
        if a != b:
            return f"line {number} is {a!r}, expected {b!r}"
    if len(have) != len(want):
        return f"{len(have)} lines, expected {len(want)}"
    return "differs in whitespace or the final newline"


class _Status:
    """Builds the rows of one topology against one LiveState."""

    def __init__(self, topology: Topology, plan: Plan, live: LiveState) -> None:
        self.topology = topology
        self.plan = plan
        self.live = live
        self.rows: list[ObjectStatus] = []
        self._why_absent: dict[str, tuple[str, str] | None] = {}
        self._entry_errors: dict[str, str] = {}
        self.declared_links: set[tuple[str, str]] = set()
        self.sysctl_paths: dict[str, list[str]] = {}
        for step in plan.steps:
            a = step.args
            if step.kind == "netns":
                self.declared_links.add((a["netns"], "lo"))
            elif step.kind == "bridge":
                self.declared_links.add((a["netns"], a["name"]))
            elif step.kind == "end":
                self.declared_links.add((a["netns"], a["dev"]))
            elif step.kind == "sysctl":
                self.sysctl_paths.setdefault(a["netns"], []).append(a["path"])
        for netns, spec in topology.spaces():
            for name in spec.external:
                self.declared_links.add((netns, name))

    def add(self, kind: str, netns: str, name: str, state: str, detail: str = "") -> None:
        self.rows.append(ObjectStatus(kind, netns, name, state, detail))

    def absent(self, netns: str) -> tuple[str, str] | None:
        """The state and detail of everything inside `netns` when it cannot be looked at: a
        namespace that does not exist holds nothing (missing); one that cannot be entered holds
        something unknown ("different", "cannot check"). None: it can be looked at."""
        if netns not in self._why_absent:
            self._why_absent[netns] = None
            if not self.live.has_netns(netns):
                self._why_absent[netns] = (MISSING, f"no namespace {netns}")
            elif netns != HOST:
                try:
                    self.live.links(netns)
                except ProbeError as exc:
                    self._entry_errors[netns] = str(exc)
                    reason = f"cannot check: namespace {netns} cannot be entered"
                    self._why_absent[netns] = (DIFFERENT, reason)
        return self._why_absent[netns]

    def check(self, kind: str, netns: str, name: str, how: Callable[[], tuple[str, str]]) -> None:
        """Add a row for an object inside `netns`: as absent() says, or as `how()` finds it."""
        absent = self.absent(netns)
        if absent is not None:
            self.add(kind, netns, name, *absent)
            return
        try:
            state, detail = how()
        except ProbeError as exc:
            state, detail = DIFFERENT, f"cannot check: {exc}"
        self.add(kind, netns, name, state, detail)

    # ---- one method per kind of object ---------------------------------------------------
    def namespace(self, a: dict[str, Any]) -> None:
        netns = a["netns"]
        if not self.live.has_netns(netns):
            self.add("namespace", netns, netns, MISSING)
        elif self.absent(netns):
            error = self._entry_errors[netns]
            self.add("namespace", netns, netns, DIFFERENT, f"cannot be entered: {error}")
        else:
            self.add("namespace", netns, netns, PRESENT)
        if a["loopback"]:
            self.check("loopback", netns, "lo", lambda: self._link(netns, "lo", None, None, False))

    def external(self, netns: str, name: str) -> None:
        self.check(
            "external", netns, name, lambda: self._link(netns, name, None, None, False, up=False)
        )

    def bridge(self, a: dict[str, Any]) -> None:
        netns, name = a["netns"], a["name"]
        self.check("bridge", netns, name, lambda: self._link(netns, name, "bridge", None, False))

    def end(self, a: dict[str, Any]) -> None:
        netns, dev = a["netns"], a["dev"]
        self.check("veth", netns, dev, lambda: self._link(netns, dev, "veth", a["bridge"], True))
        for address in a["addresses"]:
            self.address({"netns": netns, "dev": dev, "address": address})

    def _link(
        self,
        netns: str,
        name: str,
        kind: str | None,
        master: str | None,
        check_master: bool,
        up: bool = True,
    ) -> tuple[str, str]:
        link = self.live.links(netns).get(name)
        if link is None:
            return MISSING, self._elsewhere(netns, name, kind)
        problems = _link_problems(link, kind, master, check_master)
        if not up:
            problems = [p for p in problems if p != "down"]
        return (DIFFERENT, "; ".join(problems)) if problems else (PRESENT, "")

    def _elsewhere(self, netns: str, name: str, kind: str | None) -> str:
        """'in namespace X' if a link of that name and kind, not declared there, is in another
        namespace of the topology (e.g. moved by hand), else ''."""
        for other, _ in self.topology.spaces():
            if other == netns or (other, name) in self.declared_links or self.absent(other):
                continue
            try:
                link = self.live.links(other).get(name)
            except ProbeError:
                continue
            if link is not None and (kind is None or _kind_of(link) == kind):
                return f"found in namespace {other}"
        return ""

    def address(self, a: dict[str, Any]) -> None:
        netns, dev, address = a["netns"], a["dev"], a["address"]

        def how() -> tuple[str, str]:
            want = _iface(address)
            links = self.live.links(netns)
            found: list[tuple[str, ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = []
            for ifname, link in links.items():
                for info in link.get("addr_info", []):
                    try:
                        found.append((ifname, _iface(f"{info['local']}/{info['prefixlen']}")))
                    except (KeyError, ValueError):
                        continue
            if (dev, want) in found:
                return PRESENT, ""
            same_ip = [(ifname, iface) for ifname, iface in found if iface.ip == want.ip]
            for ifname, iface in same_ip:
                if ifname == dev:
                    return DIFFERENT, (
                        f"prefix is /{iface.network.prefixlen}, expected /{want.network.prefixlen}"
                    )
            if same_ip:
                return DIFFERENT, f"on {same_ip[0][0]}, expected on {dev}"
            if dev not in links:
                return MISSING, f"no link {dev}"
            return MISSING, ""

        self.check("address", netns, f"{address} dev {dev}", how)

    def route(self, a: dict[str, Any]) -> None:
        netns, to, via, dev = a["netns"], a["to"], a["via"], a["dev"]

        def how() -> tuple[str, str]:
            candidates = [
                r
                for r in self.live.routes(netns, a["family"])
                if _route_dst(str(r.get("dst", ""))) == to
            ]
            if not candidates:
                return MISSING, ""
            first: list[str] | None = None
            for route in candidates:
                problems = []
                kind = route.get("type", "unicast")
                if kind != "unicast":
                    problems.append(f"type is {kind}")
                gateway = route.get("gateway")
                if via is not None and (gateway is None or _address(gateway) != via):
                    problems.append(f"via {gateway or 'no gateway'}, expected via {via}")
                if via is None and gateway is not None:
                    problems.append(f"via {gateway}, expected no gateway")
                if dev is not None and route.get("dev") != dev:
                    problems.append(f"dev {route.get('dev')}, expected dev {dev}")
                if not problems:
                    return PRESENT, ""
                first = first or problems
            return DIFFERENT, "; ".join(first or [])

        self.check("route", netns, _route_name(to, via, dev), how)

    def masquerade(self, a: dict[str, Any]) -> None:
        netns, source, out, tag = a["netns"], a["source"], a["out"], a["tag"]
        want = [
            "-A",
            "POSTROUTING",
            "-s",
            source,
            "-o",
            out,
            "-m",
            "comment",
            "--comment",
            tag,
            "-j",
            "MASQUERADE",
        ]

        def option(rule: list[str], name: str) -> str | None:
            return rule[rule.index(name) + 1] if name in rule[:-1] else None

        def how() -> tuple[str, str]:
            rules = self.live.nat_postrouting(netns)
            if want in rules:
                return PRESENT, ""
            for rule in rules:
                if option(rule, "-s") != source or option(rule, "-j") != "MASQUERADE":
                    continue
                if option(rule, "--comment") == tag:
                    if option(rule, "-o") != out:
                        return DIFFERENT, f"out is {option(rule, '-o') or 'any'}, expected {out}"
                    return DIFFERENT, "rule is: " + " ".join(rule[2:])
                if option(rule, "-o") == out:
                    return DIFFERENT, f"rule present without the comment {tag}"
            return MISSING, ""

        self.check("masquerade", netns, f"-s {source} -o {out}", how)

    def chain(self, a: dict[str, Any]) -> None:
        netns, table, name = a["netns"], a["table"], a["name"]

        def how() -> tuple[str, str]:
            found = self.live.iptables_has(netns, table, name, None)
            return (PRESENT, "") if found else (MISSING, "")

        self.check("chain", netns, f"{table} {name}", how)

    def rule(self, a: dict[str, Any]) -> None:
        netns, table, chain, words = a["netns"], a["table"], a["chain"], list(a["words"])

        def how() -> tuple[str, str]:
            found = self.live.iptables_has(netns, table, chain, words)
            return (PRESENT, "") if found else (MISSING, "")

        shown = " ".join(w for w in words if w not in ("-m", "comment", "--comment", a.get("tag")))
        self.check("rule", netns, f"{table} {chain} {shown}", how)

    def vxlan(self, a: dict[str, Any]) -> None:
        netns, name = a["netns"], a["name"]
        self.check("vxlan", netns, name, lambda: self._link(netns, name, "vxlan", None, False))
        for address in a["addresses"]:
            self.address({"netns": netns, "dev": name, "address": address})

    def sysctl(self, a: dict[str, Any]) -> None:
        netns, key, value, path = a["netns"], a["key"], str(a["value"]), a["path"]

        def how() -> tuple[str, str]:
            values = self.live.sysctls(netns, self.sysctl_paths.get(netns, [path]))
            actual = values.get(path)
            if actual is None:
                return MISSING, f"{path} does not exist"
            try:
                same = int(actual) == int(value)
            except ValueError:
                same = actual == value
            return (PRESENT, "") if same else (DIFFERENT, f"value is {actual}, expected {value}")

        self.check("sysctl", netns, f"{key}={value}", how)

    def dns(self, a: dict[str, Any]) -> None:
        # The files live on the host's file system: they are checked whether or not the
        # namespace exists.
        netns = a["netns"]
        for (_, lines), path in zip(a["files"], a["paths"], strict=True):
            expected = "".join(f"{line}\n" for line in lines)
            try:
                text = self.live.read_file(path)
            except ProbeError as exc:
                self.add("dns", netns, path, DIFFERENT, f"cannot check: {exc}")
                continue
            if text is None:
                self.add("dns", netns, path, MISSING)
            elif text == expected:
                self.add("dns", netns, path, PRESENT)
            else:
                self.add("dns", netns, path, DIFFERENT, _first_difference(text, expected))

    def state(self) -> None:
        record = StateDir(self.plan.topology, self.live.state_root)
        name = str(record.path)
        if not record.exists():
            self.add("state", HOST, name, MISSING)
            return
        digest = record.digest()
        journal = record.journal()
        if digest != self.plan.digest:
            self.add(
                "state",
                HOST,
                name,
                DIFFERENT,
                "set up from another version of the topology"
                if digest
                else "no digest in the record",
            )
        elif not journal.complete:
            self.add(
                "state",
                HOST,
                name,
                DIFFERENT,
                f"journal incomplete: {len(journal.done)} steps done, no 'complete'",
            )
        else:
            self.add("state", HOST, name, PRESENT)

    # ---- all of it -----------------------------------------------------------------------
    def build(self) -> list[ObjectStatus]:
        steps: list[Step] = self.plan.steps
        for step in steps:
            if step.kind == "netns":
                self.namespace(step.args)
        for netns, spec in self.topology.spaces():
            for name in spec.external:
                self.external(netns, name)
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "bridge": self.bridge,
            "address": self.address,
            "end": self.end,
            "route": self.route,
            "masquerade": self.masquerade,
            "chain": self.chain,
            "rule": self.rule,
            "vxlan": self.vxlan,
            "sysctl": self.sysctl,
            "dns": self.dns,
        }
        for step in steps:
            handler = handlers.get(step.kind)
            if handler is not None:
                handler(step.args)
        self.state()
        return self.rows


def topology_status(topology: Topology, live: LiveState | None = None) -> list[ObjectStatus]:
    """One row per declared object, in a fixed order: namespaces (and their loopback), external
    interfaces, then bridges, veth ends, addresses, routes, masquerade rules, sysctls and DNS
    files in plan order, and last the state record /run/nsgen/<topology>/.

    Reads only; needs root for iptables-save and for anything inside a named namespace (rows
    that could not be read are "different" with a detail starting "cannot check:")."""
    return _Status(topology, build_plan(topology, "tutorial"), live or LiveState()).build()


# ---- output ------------------------------------------------------------------------------


def summary(rows: list[ObjectStatus]) -> dict[str, int]:
    """{'objects': N, 'present': .., 'missing': .., 'different': ..}."""
    counts = {"objects": len(rows)}
    for state in STATES:
        counts[state] = sum(1 for row in rows if row.state == state)
    return counts


def summary_line(rows: list[ObjectStatus]) -> str:
    counts = summary(rows)
    word = "object" if counts["objects"] == 1 else "objects"
    return f"{counts['objects']} {word}: " + ", ".join(f"{counts[s]} {s}" for s in STATES)


def drifted(rows: list[ObjectStatus]) -> bool:
    """True if any object is not present as declared."""
    return any(row.state != PRESENT for row in rows)


HEADER = ("KIND", "NAMESPACE", "OBJECT", "STATE", "DETAIL")


def format_table(rows: list[ObjectStatus]) -> str:
    """Aligned columns KIND NAMESPACE OBJECT STATE DETAIL, then the summary line; no trailing
    spaces, ends without a newline."""
    table = [HEADER, *((r.kind, r.netns, r.name, r.state, r.detail) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER) - 1)]
    lines = []
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
    lines.append(summary_line(rows))
    return "\n".join(lines)


def to_json(rows: list[ObjectStatus], topology: str | None = None) -> str:
    """Deterministic JSON: {"objects": [...rows in order...], "summary": {...}, "drifted": b},
    plus "topology" when given. Keys sorted, two-space indent, no trailing newline."""
    document: dict[str, Any] = {
        "objects": [asdict(row) for row in rows],
        "summary": summary(rows),
        "drifted": drifted(rows),
    }
    if topology is not None:
        document["topology"] = topology
    return json.dumps(document, indent=2, sort_keys=True)
