"""The JSON Schema generated from the model: examples pass, unknown keys fail, text is stable."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from nsgen.model import Topology
from nsgen.schema import DIALECT, schema_text, topology_schema

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SEED = ROOT / "examples" / "seed.yaml"


def _validator() -> jsonschema.protocols.Validator:
    schema = topology_schema()
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema)


def _errors(data: Any) -> list[str]:
    return [e.message for e in _validator().iter_errors(data)]


def _seed() -> dict[str, Any]:
    data = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _walk(node: Any) -> Any:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_schema_is_a_valid_2020_12_schema() -> None:
    schema = topology_schema()
    assert schema["$schema"] == DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "nsgen topology"
    assert schema["additionalProperties"] is False
    assert not any(isinstance(n, dict) and "$id" in n for n in _walk(schema))
    _validator()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_validate(example: Path) -> None:
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    assert _errors(data) == []


def test_seed_sysctl_is_an_integer_and_validates() -> None:
    data = _seed()
    assert data["host"]["sysctls"]["net.ipv4.ip_forward"] == 1
    assert _errors(data) == []


def test_field_descriptions_come_through() -> None:
    schema = topology_schema()
    defs = schema["$defs"]
    assert "root namespace" in defs["Peer"]["properties"]["netns"]["description"]
    assert "net.ipv4.ip_forward" in defs["Namespace"]["properties"]["sysctls"]["description"]
    assert schema["properties"]["name"]["description"]
    assert defs["Masquerade"]["description"].startswith("Source NAT")


def _set(data: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


# Cases the schema can express: the schema and the model must agree on each.
CASES = [
    ("unknown top-level key", ["colour"], "red", False),
    ("unknown namespace key", ["namespaces", "red", "rutes"], [], False),
    ("unknown peer key", ["namespaces", "red", "interfaces", 0, "peer", "brige"], "br0", False),
    ("unknown bridge key", ["host", "bridges", "br0", "stp"], True, False),
    ("sysctl as a string", ["host", "sysctls", "net.ipv4.ip_forward"], "1", True),
    ("sysctl as a boolean", ["host", "sysctls", "net.ipv4.ip_forward"], True, False),
    ("sysctl as a float", ["host", "sysctls", "net.ipv4.ip_forward"], 1.5, False),
    ("name as a number", ["name"], 7, False),
    (
        "addresses not a list",
        ["namespaces", "red", "interfaces", 0, "addresses"],
        "10.0.0.1/24",
        False,
    ),
    ("loopback as a string", ["namespaces", "red", "loopback"], "yes", False),
    ("loopback false", ["namespaces", "red", "loopback"], False, True),
    ("peer missing", ["namespaces", "red", "interfaces", 0], {"addresses": []}, False),
]


@pytest.mark.parametrize(
    ("path", "value", "valid"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_schema_agrees_with_the_model(path: list[Any], value: Any, valid: bool) -> None:
    data = _set(_seed(), path, value)
    assert (_errors(data) == []) is valid
    try:
        Topology.model_validate(data)
        model_valid = True
    except ValidationError:
        model_valid = False
    assert model_valid is valid


def test_missing_name_fails() -> None:
    data = _seed()
    del data["name"]
    assert _errors(data)


def test_unknown_key_message_names_the_key() -> None:
    messages = _errors(_set(_seed(), ["colour"], "red"))
    assert any("colour" in m for m in messages), messages


def test_schema_text_is_deterministic() -> None:
    text = schema_text()
    assert text == schema_text()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert json.loads(text) == topology_schema()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_topology_schema_is_a_fresh_dict() -> None:
    first = topology_schema()
    first["$defs"]["Peer"]["properties"].clear()
    first["title"] = "changed"
    assert topology_schema()["$defs"]["Peer"]["properties"]
    assert topology_schema()["title"] == "nsgen topology"
