"""JSON Schema of the topology format, generated from the pydantic model in `nsgen.model`.

Editors and CI linters can check a topology file's shape with it (unknown keys, wrong types,
missing required keys). It describes structure only: name and address syntax, references
and uniqueness are checked by `nsgen validate`, which stays the authority.
"""

from __future__ import annotations

import json
from typing import Any

from nsgen.expand import expanders
from nsgen.model import Topology

DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The JSON Schema draft pydantic generates for (`$defs`, `$ref` with sibling keywords)."""

TITLE = "nsgen topology"


def topology_schema() -> dict[str, Any]:
    """The schema as a fresh dict: `$schema` first, a title, no `$id`, Field descriptions kept."""
    generated = Topology.model_json_schema(mode="validation")
    for module in expanders():
        model = getattr(module, "SCHEMA_MODEL", None)
        if model is None:
            continue
        sugar = model.model_json_schema(mode="validation")
        for name, definition in sugar.get("$defs", {}).items():
            if generated.setdefault("$defs", {}).setdefault(name, definition) != definition:
                raise ValueError(f"schema definition {name!r} is defined twice")
        for key in module.KEYS:
            generated["properties"][key] = sugar["properties"][key]
    generated.pop("$schema", None)
    generated.pop("$id", None)
    generated.pop("title", None)
    return {"$schema": DIALECT, "title": TITLE, **generated}


def schema_text() -> str:
    """The schema as JSON text: indented, keys sorted, a trailing newline; byte-identical runs."""
    return json.dumps(topology_schema(), indent=2, sort_keys=True) + "\n"
