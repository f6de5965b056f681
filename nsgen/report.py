"""What `nsgen validate --json` and `nsgen up --dry-run --json` print: a file's problems, or
its plan, as data. One shape for both (README, "Validation as data"):

    {"file": "bad.yaml", "valid": false,
     "problems": [{"file": "bad.yaml", "line": 12, "column": 9,
                   "path": "namespaces.red.interfaces[0].addresses[0]",
                   "message": "'192.168.15.300/24' is not a valid IPv4 interface address"}],
     "unlisted": 0}

    {"file": "seed.yaml", "valid": true, "problems": [], "unlisted": 0, "topology": "seed",
     "counts": {"namespaces": 2, "bridges": 1, "veth_pairs": 2, "steps": 8},
     "plan": {"style": "batch",
              "steps": [{"number": 1, "title": "...", "commands": ["..."], "undo": ["..."]}]}}

Problems come in file order; `unlisted` counts those beyond the first 1,000 (a file
with that many repeats a few mistakes). `line` and `column` are null for a problem with no
place in the file (a file that cannot be
read, or an object the Docker/Kubernetes vocabulary generated); `path` is "" for a problem of
the whole file. A step's `commands` and `undo` are the lines of its text in setup.sh (`undo`
is empty for a step undone by removing what owns it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nsgen.errors import NsgenError, TopologyError
from nsgen.load import load_topology, source_name
from nsgen.model import Topology
from nsgen.plan import Plan, build_plan
from nsgen.render import Renderer


def problems_data(error: NsgenError, file: str | Path) -> dict[str, Any]:
    """An error loading `file` as the document above (valid: false)."""
    source = source_name(file)
    if isinstance(error, TopologyError):
        problems = [
            {
                "file": error.source,
                "line": p.line or None,
                "column": p.column or None,
                "path": p.path,
                "message": p.message,
            }
            for p in error.problems
        ]
    else:  # a file that cannot be read: the message names the file itself
        message = str(error)
        if message.startswith(f"{source}: "):
            message = message[len(source) + 2 :]
        problems = [{"file": source, "line": None, "column": None, "path": "", "message": message}]
    unlisted = error.unlisted if isinstance(error, TopologyError) else 0
    return {"file": source, "valid": False, "problems": problems, "unlisted": unlisted}


def counts(topology: Topology, plan: Plan) -> dict[str, int]:
    """What `nsgen validate` counts in a valid file."""
    spaces = [spec for _, spec in topology.spaces()]
    return {
        "namespaces": len(topology.namespaces),
        "bridges": sum(len(spec.bridges) for spec in spaces),
        "veth_pairs": sum(len(spec.interfaces) for spec in spaces),
        "steps": len(plan.steps),
    }


def plan_data(topology: Topology, plan: Plan, file: str | Path, style: str) -> dict[str, Any]:
    """A valid file's plan as the document above (valid: true)."""
    return {
        "file": source_name(file),
        "valid": True,
        "problems": [],
        "unlisted": 0,
        "topology": plan.topology,
        "counts": counts(topology, plan),
        "plan": {
            "style": style,
            "steps": [
                {
                    "number": step.number,
                    "title": step.title,
                    "commands": step.do.splitlines(),
                    "undo": step.undo.splitlines(),
                }
                for step in Renderer().steps(plan)
            ],
        },
    }


def validation(file: str | Path, style: str = "batch") -> tuple[str, int]:
    """`file` checked and planned, as the JSON text to print and the exit status (0 valid, 1
    with problems, 2 if it cannot be read)."""
    try:
        topology = load_topology(file)
        plan = build_plan(topology, style)
    except NsgenError as error:
        return json.dumps(problems_data(error, file), indent=2), error.exit_code
    return json.dumps(plan_data(topology, plan, file, style), indent=2), 0
