"""The kind registry holds: every kind of network object has each of its parts (how its steps
read in a script, how they are undone, what preflight checks, how status observes it, what the
snapshot reads), and the planner keeps its invariants for every example."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from nsgen.kinds.base import LANE_ORDER, Kind, Step
from nsgen.kinds.registry import KINDS, kind_of
from nsgen.live import LiveState
from nsgen.load import load_topology
from nsgen.model import Topology
from nsgen.plan import FIREWALLS, Plan, build_plan
from nsgen.render import Renderer
from nsgen.status import ROW_KINDS, Observer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def plans() -> list[tuple[str, Topology, Plan]]:
    out = []
    for example in EXAMPLES:
        topology = load_topology(example)
        for firewall in FIREWALLS:
            for style in ("tutorial", "batch"):
                plan = build_plan(topology, style, firewall)
                out.append((f"{example.stem}/{firewall}/{style}", topology, plan))
    return out


PLANS = plans()


def macros(kind: Kind, template: str | None = None) -> set[str]:
    """The macros of one of the kind's templates (default: all of them, together)."""
    found: set[str] = set()
    for name in [template] if template else kind.templates():
        text = (ROOT / "templates" / name).read_text()
        found |= set(re.findall(r"\{% macro (\w+)\(", text))
    return found


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_spells_each_of_its_steps_and_its_preconditions(kind: Kind) -> None:
    for _, _, plan in PLANS:
        for step in [s for top in plan.steps for s in (top.parts or (top,))]:
            if step.kind in kind.step_kinds():
                template = kind.template_of(step)
                assert f"do_{step.kind}" in macros(kind, template), f"{template}: no do_{step.kind}"
    for check in [c for _, _, plan in PLANS for c in plan.preflight]:
        if check.name in kind.preflight:
            assert f"preflight_{check.name}" in macros(kind, check.template)
    defined = macros(kind)
    for step_kind in kind.step_kinds():
        assert f"do_{step_kind}" in defined, f"{kind.templates()} have no do_{step_kind}"
    for name in kind.preflight:
        assert f"preflight_{name}" in defined, f"{kind.templates()} have no preflight_{name}"
    assert kind.summary and kind.rows


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_step_a_kind_plans_has_an_undo_or_an_owner(kind: Kind) -> None:
    for label, _, plan in PLANS:
        for step in [s for top in plan.steps for s in (top.parts or (top,))]:
            if step.kind in kind.step_kinds() and step.owner is None:
                defined = macros(kind, kind.template_of(step))
                assert f"undo_{step.kind}" in defined, f"{label}: {step.title} has no undo"


def _fake_live(tmp_path: Path, plan: Plan) -> LiveState:
    """A LiveState for which every namespace exists and every command prints nothing useful:
    every object reads as missing or different, but it is observed."""
    netns_dir = tmp_path / "netns"
    netns_dir.mkdir(exist_ok=True)
    for step in plan.steps:
        if step.kind == "namespace":
            (netns_dir / step.args.netns).touch()

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        if "sh" in argv or "grep" in argv:  # one value per sysctl read
            out = "0\n" * max(3, argv[-1].count("cat /proc"))
        else:
            out = "[]"
        return subprocess.CompletedProcess(argv, 0, out, "")

    return LiveState(run, netns_dir=netns_dir, state_root=tmp_path / "run", root=tmp_path)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_status_observes_every_kind_the_planner_emits(kind: Kind, tmp_path: Path) -> None:
    """A kind with no status check fails here: each of its planned objects must become at least
    one row, of a row kind it declares."""
    seen = False
    for label, topology, plan in PLANS:
        if not label.endswith("/tutorial"):
            continue
        observer = Observer(topology, plan, _fake_live(tmp_path, plan))
        kind.observe_declared(topology, observer)
        declared = len(observer.rows)
        seen = seen or declared > 0
        for step in plan.steps:
            if step.kind not in kind.step_kinds():
                continue
            seen = True
            before = len(observer.rows)
            kind.observe(step, observer)
            if step.kind not in ("veth",):  # a pair is observed through its two ends
                assert len(observer.rows) > before, f"{label}: status ignores {step.title}"
        assert {row.kind for row in observer.rows} <= set(kind.rows)
        if not kind.observable:  # listed, never taken for checked, never drift
            assert {row.state for row in observer.rows} <= {"unobserved"}, label
    assert seen, f"no example uses {kind.name}: add one, so that its coverage is tested"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_the_snapshot_reads_something_for_every_kind(kind: Kind, tmp_path: Path) -> None:
    """Except for a kind that says nsgen cannot know its effects (`observable`): that one
    reads nothing, and says so."""
    live = _fake_live(tmp_path, PLANS[0][2])
    reads = kind.snapshot(live, "host") or kind.snapshot_host(live)
    assert bool(reads) == kind.observable, kind.name


def test_every_status_row_kind_is_a_kinds_word() -> None:
    assert set(ROW_KINDS) == {row for kind in KINDS for row in kind.rows} | {"state"}


def test_every_step_kind_belongs_to_exactly_one_kind() -> None:
    owners: dict[str, str] = {}
    for kind in KINDS:
        for step in kind.step_kinds():
            assert step not in owners, f"{step} is planned by {owners[step]} and {kind.name}"
            owners[step] = kind.name


# ---- the planner's invariants, for every example ---------------------------------------------


def _parts(plan: Plan) -> list[Step]:
    return [s for top in plan.steps for s in (top.parts or (top,))]


LABELS = [p[0] for p in PLANS]


@pytest.mark.parametrize("label", LABELS)
def test_within_a_namespace_links_come_before_what_sits_on_them(label: str) -> None:
    """Where a step runs (its namespace, or the root one for what is done from there), no step
    of an earlier kind in the registry follows a later one: a link before its address, an
    address before a route through it, a chain before its rules."""
    plan = next(p for name, _, p in PLANS if name == label)
    order = {kind.name: i for i, kind in enumerate(KINDS)}
    last: dict[str, int] = {}
    for step in _parts(plan):
        kind = kind_of(step.kind)
        rank = order[kind.name]
        space = step.args.netns if kind.enters_for(step) else "host"
        assert rank >= last.get(space, 0) or step.kind == "loopback", (
            f"{label}: {step.title} comes after a later kind in {space}"
        )
        last[space] = max(rank, last.get(space, 0))


@pytest.mark.parametrize("label", [name for name in LABELS if name.endswith("/batch")])
def test_each_kind_s_lines_go_to_its_own_program(label: str) -> None:
    plan = next(p for name, _, p in PLANS if name == label)
    programs = {"ip": "ip -b -", "bridge": "bridge -b -", "tc": "tc -b -"}
    renderer = Renderer()
    for step, rendered in zip(plan.steps, renderer.steps(plan), strict=True):
        if step.kind != "ns_batch":
            continue
        for part in step.parts:
            lane = kind_of(part.kind).lane_of(part)
            assert lane in LANE_ORDER
            if lane not in programs:
                continue
            line = renderer._kind_macro("do", part, batch=True).splitlines()[0]
            block = next(c.stdin for c in rendered.entered if " ".join(c.argv) == programs[lane])
            assert line in block.splitlines(), f"{label}: {line!r} not in {programs[lane]}"
