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
What nsgen cannot know by design (the topology's own commands, `exec:`) is "unobserved": it
is listed, so that nobody takes it for checked, and it is not drift.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from nsgen.fields import HOST
from nsgen.kinds.registry import KINDS, kind_of
from nsgen.live import LiveState, ProbeError
from nsgen.model import Topology
from nsgen.plan import Plan, build_plan, recorded_firewall
from nsgen.state import StateDir

PRESENT = "present"
MISSING = "missing"
DIFFERENT = "different"
STATES = (PRESENT, MISSING, DIFFERENT)
UNOBSERVED = "unobserved"
"""An object whose effects nsgen cannot read (a command of the topology's): not drift."""

ROW_KINDS = (*dict.fromkeys(row for kind in KINDS for row in kind.rows), "state")
"""Every value ObjectStatus.kind takes: the rows of every kind, and the state record."""


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


# ---- comparing ---------------------------------------------------------------------------

RowState = tuple[str, str]
"""(state, detail) of one object, as a kind's check finds it."""


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


class Observer:
    """Builds the rows of one topology against one LiveState. Each kind adds the rows of its
    own objects (nsgen/kinds/, `observe`), through `check` and the comparisons here."""

    def __init__(self, topology: Topology, plan: Plan, live: LiveState) -> None:
        self.topology = topology
        self.plan = plan
        self.live = live
        self.rows: list[ObjectStatus] = []
        self._why_absent: dict[str, tuple[str, str] | None] = {}
        self._entry_errors: dict[str, str] = {}
        self.declared_links: set[tuple[str, str]] = set()
        for step in plan.steps:
            self.declared_links.update(kind_of(step.kind).declared_links(step))
        for kind in KINDS:
            self.declared_links.update(kind.declared_in(topology))

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

    def check(self, kind: str, netns: str, name: str, how: Callable[[], RowState]) -> None:
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

    # ---- comparisons several kinds use ------------------------------------------------------
    def namespace_row(self, netns: str) -> None:
        if not self.live.has_netns(netns):
            self.add("namespace", netns, netns, MISSING)
        elif self.absent(netns):
            error = self._entry_errors[netns]
            self.add("namespace", netns, netns, DIFFERENT, f"cannot be entered: {error}")
        else:
            self.add("namespace", netns, netns, PRESENT)

    def link_state(
        self,
        netns: str,
        name: str,
        kind: str | None = None,
        master: str | None = None,
        check_master: bool = False,
        up: bool = True,
    ) -> RowState:
        """A link compared with what is declared: its kind, up (unless not `up`), and its
        master (if `check_master`)."""
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

    def file_row(self, kind: str, netns: str, path: str, expected: str) -> None:
        """A file on the host's file system, compared with the text it should hold."""
        try:
            text = self.live.read_file(path)
        except ProbeError as exc:
            self.add(kind, netns, path, DIFFERENT, f"cannot check: {exc}")
            return
        if text is None:
            self.add(kind, netns, path, MISSING)
        elif text == expected:
            self.add(kind, netns, path, PRESENT)
        else:
            self.add(kind, netns, path, DIFFERENT, _first_difference(text, expected))

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
        namespaces = [s for s in self.plan.steps if s.kind == "namespace"]
        for step in namespaces:
            kind_of(step.kind).observe(step, self)
        for kind in KINDS:
            kind.observe_declared(self.topology, self)
        for step in self.plan.steps:
            if step.kind != "namespace":
                kind_of(step.kind).observe(step, self)
        self.state()
        return self.rows


def topology_status(topology: Topology, live: LiveState | None = None) -> list[ObjectStatus]:
    """One row per declared object, in a fixed order: namespaces (and their loopback), external
    interfaces, then every other object in plan order (bridges, addresses, veth ends, VXLAN,
    routes, neighbours, FDB entries, chains, rules, masquerade, sysctls, DNS files), and last
    the state record /run/nsgen/<topology>/.

    The firewall rows are those of the backend the topology was set up with: the one whose
    digest its record holds (`nsgen up --firewall` may have overridden the file's).

    Reads only; needs root for iptables-save and for anything inside a named namespace (rows
    that could not be read are "different" with a detail starting "cannot check:")."""
    live = live or LiveState()
    firewall = recorded_firewall(topology, StateDir(topology.name, live.state_root).digest())
    return Observer(topology, build_plan(topology, "tutorial", firewall), live).build()


# ---- output ------------------------------------------------------------------------------


def summary(rows: list[ObjectStatus]) -> dict[str, int]:
    """{'objects': N, 'present': .., 'missing': .., 'different': ..}, and 'unobserved' when
    there are such objects."""
    counts = {"objects": len(rows)}
    for state in STATES:
        counts[state] = sum(1 for row in rows if row.state == state)
    unobserved = sum(1 for row in rows if row.state == UNOBSERVED)
    if unobserved:
        counts[UNOBSERVED] = unobserved
    return counts


def summary_line(rows: list[ObjectStatus]) -> str:
    counts = summary(rows)
    word = "object" if counts["objects"] == 1 else "objects"
    states = [*STATES, UNOBSERVED] if UNOBSERVED in counts else STATES
    return f"{counts['objects']} {word}: " + ", ".join(f"{counts[s]} {s}" for s in states)


def drifted(rows: list[ObjectStatus]) -> bool:
    """True if any object is missing or different (an unobserved one is not drift)."""
    return any(row.state in (MISSING, DIFFERENT) for row in rows)


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
