"""An explanation as text for a reader, as JSON for a program, and as a Mermaid sequence
diagram for a picture."""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from typing import Any

from nsgen.explain.hops import Event, Explanation, Hop, NatFact, Path, Verdict
from nsgen.explain.network import RouteEntry, RuleEntry, StepRef

SHOWN = (
    "route",
    "source",
    "in",
    "out",
    "bridge",
    "note",
    "forward",
    "chain",
    "nat",
    "conntrack",
    "tunnel",
    "deliver",
    "stop",
)
"""Event kinds a reader sees (a `hit`, a rule's counter counting, is for --live and JSON)."""


# ---- text ----------------------------------------------------------------------------------


def text(explanation: Explanation) -> str:
    """The explanation for a reader: hop by hop, the request, then the reply, then the
    verdict; one section per branch of a random choice."""
    lines = [explanation.query.label, ""]
    paths = explanation.paths
    for number, path in enumerate(paths, start=1):
        if len(paths) > 1:
            lines.append(
                f"branch {number} of {len(paths)} ({path.probability:.0%}): {_branch(path)}"
            )
            lines += [f"  {choice}" for choice in path.choices]
            lines.append("")
        lines += _direction("request", path.hops)
        if path.reply:
            lines += _direction("reply", path.reply)
        lines += [f"verdict: {_verdict(path.verdict)}", ""]
    if len(paths) > 1:
        lines += [f"overall: {_verdict(explanation.verdict)}", ""]
    lines.append("assuming: " + "; ".join(explanation.assumptions))
    return "\n".join(lines) + "\n"


def _branch(path: Path) -> str:
    """'node1 sends it to 10.244.0.2:8080 (web-a)'."""
    where = path.request.netns or "?"
    for hop in path.hops:
        for event in hop.events:
            if isinstance(event.fact, NatFact) and event.fact.kind == "DNAT":
                after = event.fact.after.split(" -> ")[-1]
                return f"{hop.netns} sends it to {after} ({where})"
    return f"to {where}"


def _direction(title: str, hops: list[Hop]) -> list[str]:
    lines = [title]
    for hop in hops:
        where = f" ({hop.entered})" if hop.entered else ""
        inside = f" (inside: {hop.tunnel})" if hop.tunnel else ""
        lines.append(f"{hop.number:>3}  {hop.netns}{where}: {hop.packet}{inside}")
        for event in hop.events:
            if event.kind not in SHOWN:
                continue
            lines.append(f"       - {event.text}")
            if event.step is not None:
                lines.append(f"           {event.step}")
    lines.append("")
    return lines


def _verdict(verdict: Verdict) -> str:
    where = f" (hop {verdict.hop}{' of the reply' if verdict.reply else ''})" if verdict.hop else ""
    return f"{verdict.word}{where}: {verdict.reason}"


# ---- JSON ----------------------------------------------------------------------------------


def as_data(explanation: Explanation) -> dict[str, Any]:
    """The explanation as plain data (hops, events with their steps and facts, verdicts)."""
    q = explanation.query
    return {
        "from": q.source,
        "to": q.target,
        "namespace": q.netns,
        "destination": str(q.dst),
        "proto": q.proto,
        "port": q.port,
        "verdict": _verdict_data(explanation.verdict),
        "paths": [
            {
                "probability": round(path.probability, 6),
                "choices": path.choices,
                "request": [_hop_data(h) for h in path.hops],
                "delivered": _verdict_data(path.request),
                "reply": [_hop_data(h) for h in path.reply],
                "verdict": _verdict_data(path.verdict),
            }
            for path in explanation.paths
        ],
        "assumptions": explanation.assumptions,
    }


def as_json(explanation: Explanation) -> str:
    return json.dumps(as_data(explanation), indent=2)


def _verdict_data(verdict: Verdict) -> dict[str, Any]:
    return {
        "result": verdict.word,
        "outcome": verdict.outcome,
        "reason": verdict.reason,
        "namespace": verdict.netns,
        "hop": verdict.hop,
        "object": verdict.object,
        "on_reply": verdict.reply,
    }


def _hop_data(hop: Hop) -> dict[str, Any]:
    return {
        "hop": hop.number,
        "namespace": hop.netns,
        "entered": hop.entered,
        "packet": hop.packet,
        "events": [_event_data(e) for e in hop.events],
    }


def _event_data(event: Event) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": event.kind, "text": event.text}
    data["step"] = _step_data(event.step)
    if event.fact is not None:
        data["fact"] = {"type": type(event.fact).__name__, **_plain(event.fact)}
    return data


def _step_data(step: StepRef | None) -> dict[str, Any] | None:
    if step is None:
        return None
    return {"number": step.number, "total": step.total, "title": step.title}


def _plain(value: Any) -> Any:
    if isinstance(value, RuleEntry):
        return {
            "table": value.table,
            "chain": value.chain,
            "number": value.number,
            "rule": value.text,
            "step": _step_data(value.step),
        }
    if isinstance(value, RouteEntry):
        return {"route": value.text, "origin": value.origin, "step": _step_data(value.step)}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# ---- Mermaid -------------------------------------------------------------------------------


def mermaid(explanation: Explanation) -> str:
    """A sequence diagram: one participant per namespace, an arrow per hop (dashed for the
    reply), notes for the decisions; `alt` blocks for the branches of a random choice."""
    names: list[str] = []
    for path in explanation.paths:
        for hop in [*path.hops, *path.reply]:
            if hop.netns not in names:
                names.append(hop.netns)
    ids = {name: f"n{i}" for i, name in enumerate(names)}
    lines = ["sequenceDiagram"]
    lines += [f"    participant {ids[n]} as {_safe(n)}" for n in names]
    paths = explanation.paths
    for number, path in enumerate(paths, start=1):
        indent = "    "
        if len(paths) > 1:
            word = "alt" if number == 1 else "else"
            lines.append(
                f"    {word} branch {number} ({path.probability:.0%}): {_safe(_branch(path))}"
            )
            indent = "        "
        lines += _arrows(path.hops, ids, indent, "->>")
        lines += _arrows(path.reply, ids, indent, "-->>")
        last = (path.reply or path.hops)[-1]
        lines.append(f"{indent}Note over {ids[last.netns]}: {_safe(_verdict(path.verdict))}")
    if len(paths) > 1:
        lines.append("    end")
    return "\n".join(lines) + "\n"


def _arrows(hops: list[Hop], ids: dict[str, str], indent: str, arrow: str) -> list[str]:
    lines: list[str] = []
    previous: Hop | None = None
    for hop in hops:
        if previous is not None:
            lines.append(
                f"{indent}{ids[previous.netns]}{arrow}{ids[hop.netns]}: {_safe(hop.packet)}"
            )
        notes = [
            e.text
            for e in hop.events
            if e.kind in ("chain", "nat", "conntrack", "stop", "tunnel", "bridge")
            and "policy" not in e.text
        ]
        routes = [e.text for e in hop.events if e.kind == "route"]
        for note in [*routes[:1], *notes]:
            lines.append(f"{indent}Note over {ids[hop.netns]}: {_safe(note)}")
        previous = hop
    return lines


_ESCAPES = {
    "#": "#35;",
    ";": "#59;",
    '"': "#quot;",
    "&": "#amp;",
    "<": "#lt;",
    ">": "#gt;",
    "%": "#37;",
}


def _safe(text: str) -> str:
    """Text Mermaid takes literally in a message or a note: its #entity; codes for what it
    would read as markup, and for ';', which would end the statement."""
    return "".join(_ESCAPES.get(c, " " if not c.isprintable() else c) for c in text)
