"""What a user sees when a topology file is wrong: one line per problem,
`FILE:LINE:COLUMN: path: reason`, every problem at once, in file order.

The exact wording of each class of error lives in the golden files of tests/errors/ (see
tests/test_error_cases.py); hostile input in tests/test_hostile.py. These tests assert the
behaviour around them: where a problem is placed (a key, a value, the mapping a key is missing
from, nowhere for a generated object), which stages run together, what `--json` and `-` give;
and, value by value, the name rules of every name field. They build their own small topology
(`base()`) instead of reading examples/seed.yaml, so that edits to the example do not change
them; only the seed tests read the example.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nsgen.cli import app
from nsgen.errors import TopologyError, UsageError
from nsgen.load import load_topology, parse_yaml, topology_from_data
from nsgen.model import Namespace, Topology
from nsgen.plan import build_plan
from nsgen.render import render_scripts
from tests.harness import shown
from tests.topologies import red_and_blue

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed.yaml"
SRC = "x.yaml"
NAME_CHARS = "use only letters, digits, '_', '-', '.'"
NAMESPACE_KEYS = ", ".join(sorted(Namespace.model_fields))


def base() -> dict[str, Any]:
    """A fresh copy of a valid topology (red and blue on the host bridge br0)."""
    return red_and_blue()


def red(data: dict[str, Any]) -> dict[str, Any]:
    return data["namespaces"]["red"]  # type: ignore[no-any-return]


def red_if(data: dict[str, Any]) -> dict[str, Any]:
    return red(data)["interfaces"][0]  # type: ignore[no-any-return]


def problems(data: Any) -> list[str]:
    """The lines the CLI would print for `data`; fails the test if `data` is accepted."""
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, SRC)
    lines = info.value.lines()
    assert lines, "a TopologyError must carry at least one problem"
    return lines


def problem(data: Any) -> str:
    """The single line reported for `data`."""
    lines = problems(data)
    assert len(lines) == 1, lines
    return lines[0]


def yaml_problems(text: str) -> list[str]:
    with pytest.raises(TopologyError) as info:
        topology_from_data(parse_yaml(text, SRC), SRC)
    return info.value.lines()


def run_validate(path: Path) -> Any:
    return CliRunner().invoke(app, ["validate", str(path)])


def cli_problems(tmp_path: Path, text: str, *args: str) -> list[str]:
    """What `nsgen validate [ARGS] FILE` prints for `text`, with FILE shown as `x.yaml`; it
    must refuse with exit 1, nothing on stdout, no traceback."""
    path = tmp_path / SRC
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", *args, str(path)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    return [line.replace(str(path), SRC, 1) for line in result.stderr.splitlines()]


def test_the_base_topology_of_these_tests_is_valid() -> None:
    topology = topology_from_data(base(), SRC)
    assert isinstance(topology, Topology)
    assert list(topology.namespaces) == ["red", "blue"]


# ---- the seed example and the CLI's happy path ------------------------------------------------


def test_seed_example_validates() -> None:
    result = run_validate(SEED)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith(f"{SEED}: topology 'seed' is valid: ")
    assert len(result.stdout.splitlines()) == 1


def test_seed_example_loads_with_load_topology() -> None:
    topology = load_topology(SEED)
    assert topology.name == "seed"


def test_validate_reports_counts_of_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(base(), sort_keys=False), encoding="utf-8")
    result = run_validate(path)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        f"{path}: topology 'lab' is valid: 2 namespace(s), 1 bridge(s), 2 veth pair(s), "
    )


def test_missing_file_is_a_usage_error_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    result = run_validate(path)
    assert result.exit_code == 2
    assert result.stderr == f"{path}: no such file\n"
    assert "Traceback" not in result.output
    with pytest.raises(UsageError):
        load_topology(path)


# ---- interface names -----------------------------------------------------------------------------

BAD_NAMES_CHARSET = [
    "$(touch /tmp/x)",
    "`touch /tmp/x`",
    "a;b",
    "a b",
    "a\nb",
    "a\tb",
    "a'b",
    'a"b',
    "a/b",
    "a:b",
    "a|b",
    "a&b",
    "é",
    "eth0\u200b",
    ".hidden",
    "_\x00",
]


def _not_leading_dot(value: str) -> str:
    return ", not starting with '.'" if value.startswith(".") else ""


@pytest.mark.parametrize("value", BAD_NAMES_CHARSET)
def test_interface_name_with_characters_outside_the_allowlist_is_rejected(value: str) -> None:
    data = base()
    red_if(data)["name"] = value
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].name: {value!r} is not a valid interface name: "
        f"{NAME_CHARS}{_not_leading_dot(value)}"
    )


def test_interface_name_longer_than_15_bytes_is_rejected() -> None:
    data = base()
    red_if(data)["name"] = "a" * 16
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].name: 'aaaaaaaaaaaaaaaa' is not a valid interface "
        "name: 16 bytes, over the kernel's limit for interface names (IFNAMSIZ) of 15"
    )


@pytest.mark.parametrize("value", ["all", "default"])
def test_interface_names_the_kernel_keeps_for_its_sysctls_are_rejected(value: str) -> None:
    """`ip link add all type bridge` fails with 'Invalid argument': /proc/sys/net/ipv4/conf/all
    is the kernel's own directory."""
    data = base()
    data["host"]["bridges"][value] = {}
    assert problem(data) == (
        f"{SRC}: host.bridges.{value}: {value!r} is not a valid interface name: the kernel "
        f"refuses it (/proc/sys/net/ipv4/conf/{value} is its own)"
    )


def test_interface_name_of_exactly_15_bytes_is_accepted() -> None:
    data = base()
    red_if(data)["name"] = "a" * 15
    red_if(data)["peer"]["name"] = "b" * 15
    topology = topology_from_data(data, SRC)
    assert topology.namespaces["red"].interfaces[0].name == "a" * 15


def test_interface_name_starting_with_dash_is_rejected() -> None:
    data = base()
    red_if(data)["name"] = "-veth"
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].name: '-veth' is not a valid interface name: "
        "it must not start with '-'"
    )


def test_empty_interface_name_is_rejected() -> None:
    data = base()
    red_if(data)["name"] = ""
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].name: interface name must not be empty"
    )


@pytest.mark.parametrize(
    ("place", "path"),
    [
        ("peer.name", "namespaces.red.interfaces[0].peer.name"),
        ("peer.bridge", "namespaces.red.interfaces[0].peer.bridge"),
        ("external", "host.external[1]"),
        ("route.dev", "namespaces.red.routes[0].dev"),
        ("masquerade.out", "host.masquerade[0].out"),
        ("bridge", "host.bridges.$(touch /tmp/x)"),
    ],
)
def test_every_interface_name_field_rejects_shell_syntax(place: str, path: str) -> None:
    value = "$(touch /tmp/x)"
    data = base()
    if place == "peer.name":
        red_if(data)["peer"]["name"] = value
    elif place == "peer.bridge":
        red_if(data)["peer"]["bridge"] = value
    elif place == "external":
        data["host"]["external"].append(value)
    elif place == "route.dev":
        red(data)["routes"][0]["dev"] = value
    elif place == "masquerade.out":
        data["host"]["masquerade"][0]["out"] = value
    else:
        data["host"]["bridges"][value] = {}
    assert problem(data) == f"{SRC}: {path}: {value!r} is not a valid interface name: {NAME_CHARS}"


# ---- namespace names and the topology name ------------------------------------------------------


@pytest.mark.parametrize("value", [v for v in BAD_NAMES_CHARSET if v.isprintable()])
def test_namespace_name_with_characters_outside_the_allowlist_is_rejected(value: str) -> None:
    data = base()
    data["namespaces"][value] = {}
    assert problem(data) == (
        f"{SRC}: namespaces.{value}: {value!r} is not a valid namespace name: {NAME_CHARS}"
        f"{_not_leading_dot(value)}"
    )


@pytest.mark.parametrize("value", ["a\nb", "a\tb", "a\x1b[31mb", "a\rb"])
def test_namespace_name_with_control_characters_is_reported_on_one_line(value: str) -> None:
    """The path repeats the namespace name raw: a newline in it splits the message in two,
    and an escape sequence reaches the terminal. Every problem must be one line."""
    data = base()
    data["namespaces"][value] = {}
    (line,) = problems(data)
    assert "\n" not in line and "\r" not in line
    assert line.isprintable(), repr(line)
    assert line.endswith(f"{value!r} is not a valid namespace name: {NAME_CHARS}")


def test_namespace_name_longer_than_64_bytes_is_rejected() -> None:
    data = base()
    data["namespaces"]["n" * 65] = {}
    assert problem(data) == (
        f"{SRC}: namespaces.{'n' * 65}: {shown('n' * 65)} is not a valid namespace name: "
        "65 bytes, over nsgen's limit of 64"
    )


def test_namespace_name_of_64_bytes_with_derived_interface_names_is_accepted() -> None:
    """A namespace name is a file name under /run/netns: `ip netns add database-primary` works,
    and so must the topology (issue 10: it was refused for being over 15 bytes)."""
    data = base()
    long_name = "database-primary-" + "x" * 47
    data["namespaces"][long_name] = data["namespaces"].pop("blue")
    data["namespaces"]["database-primary"] = {
        "interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["10.0.0.3/24"]}]
    }
    topology = topology_from_data(data, SRC)
    assert set(topology.namespaces) == {"red", long_name, "database-primary"}


def test_namespace_name_starting_with_dash_is_rejected() -> None:
    data = base()
    data["namespaces"]["-n"] = {}
    assert problem(data) == (
        f"{SRC}: namespaces.-n: '-n' is not a valid namespace name: it must not start with '-'"
    )


def test_namespace_named_host_is_rejected_as_reserved() -> None:
    data = base()
    data["namespaces"]["host"] = {}
    assert problem(data) == (
        f"{SRC}: namespaces.host: 'host' is reserved for the root namespace: declare it under "
        "'host:'"
    )


def test_peer_netns_with_shell_syntax_is_rejected() -> None:
    data = base()
    red_if(data)["peer"] = {"netns": "$(id)"}
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].peer.netns: '$(id)' is not a valid namespace "
        f"name: {NAME_CHARS}"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a.b", "use only letters, digits, '_', '-'"),
        ("$(id)", "use only letters, digits, '_', '-'"),
        ("a b", "use only letters, digits, '_', '-'"),
        ("a\nb", "use only letters, digits, '_', '-'"),
        ("-lab", "it must not start with '-'"),
        ("l" * 65, "65 bytes, over nsgen's limit of 64"),
    ],
)
def test_bad_topology_name_is_rejected(value: str, reason: str) -> None:
    data = base()
    data["name"] = value
    assert problem(data) == f"{SRC}: name: {shown(value)} is not a valid topology name: {reason}"


# ---- routes, places that may declare things ----------------------------------------------------------------------------


def test_gateway_behind_an_external_interface_is_not_checked() -> None:
    data = base()
    data["host"]["routes"] = [{"to": "192.168.1.0/24", "via": "172.16.0.1", "dev": "eth0"}]
    topology_from_data(data, SRC)


# ---- derived names ------------------------------------------------------------------------------


def _short(preferred: str) -> str:
    """The short form of a derived name: 'veth' and 7 hex digits of its sha256."""
    return "veth" + hashlib.sha256(preferred.encode()).hexdigest()[:7]


def test_derived_name_that_fits_keeps_the_tutorial_form() -> None:
    data = base()
    data["namespaces"]["abcdefg"] = data["namespaces"].pop("blue")  # veth-abcdefg-br: 15 bytes
    plan = build_plan(topology_from_data(data, SRC), "tutorial")
    assert "create veth pair veth-abcdefg <-> veth-abcdefg-br" in [s.title for s in plan.steps]


def test_derived_peer_name_over_15_bytes_gets_its_short_form() -> None:
    """Issue 10: a namespace `frontend` on a bridge failed, its veth-frontend-br being 16 bytes."""
    data = base()
    data["namespaces"]["frontend"] = data["namespaces"].pop("blue")
    plan = build_plan(topology_from_data(data, SRC), "tutorial")
    far = _short("veth-frontend-br")
    assert far == "veth6a5bbbe" and len(far) <= 15
    assert f"create veth pair veth-frontend <-> {far}" in [s.title for s in plan.steps]
    setup = render_scripts(plan)["setup.sh"]
    assert f"link add veth-frontend netns frontend type veth peer name {far}\n" in setup


def test_derived_names_of_both_ends_over_15_bytes_both_get_short_forms() -> None:
    data = base()
    data["namespaces"]["database-primary"] = data["namespaces"].pop("blue")
    plan = build_plan(topology_from_data(data, SRC), "tutorial")
    near, far = _short("veth-database-primary"), _short("veth-database-primary-br")
    assert f"create veth pair {near} <-> {far}" in [s.title for s in plan.steps]


def test_derived_host_side_name_of_a_root_veth_over_15_bytes_gets_its_short_form() -> None:
    data = base()
    data["namespaces"]["green"] = {}
    data["host"]["interfaces"] = [{"name": "abcdefghijk", "peer": {"netns": "green"}}]
    plan = build_plan(topology_from_data(data, SRC), "tutorial")
    assert "create veth pair abcdefghijk <-> veth-green" in [s.title for s in plan.steps]
    data["host"]["interfaces"] = [{"name": "abcdefghijk", "peer": {}}]
    plan = build_plan(topology_from_data(data, SRC), "tutorial")
    far = _short("host-abcdefghijk")
    assert f"create veth pair abcdefghijk <-> {far}" in [s.title for s in plan.steps]


def test_derived_peer_name_of_a_named_end_over_15_bytes_gets_its_short_form() -> None:
    data = base()
    red_if(data)["name"] = "frontend-0"  # its peer on br0 is derived as red-frontend-0 ...
    data["namespaces"]["redblue"] = data["namespaces"].pop("red")  # ... now redblue-frontend-0
    plan = build_plan(topology_from_data(data, SRC), "tutorial")
    far = _short("redblue-frontend-0")
    assert f"create veth pair frontend-0 <-> {far}" in [s.title for s in plan.steps]


def test_short_form_that_clashes_with_a_declared_name_is_rejected_naming_both() -> None:
    data = base()
    data["namespaces"]["frontend"] = data["namespaces"].pop("blue")
    data["host"]["bridges"]["veth6a5bbbe"] = {}  # the short form of veth-frontend-br
    assert problem(data) == (
        f"{SRC}: namespaces.frontend.interfaces[0].peer: the derived interface name "
        "'veth6a5bbbe' (short for 'veth-frontend-br') is already used in namespace host (by "
        "host.bridges.veth6a5bbbe): set namespaces.frontend.interfaces[0].peer.name explicitly"
    )


def test_explicit_peer_name_over_15_bytes_stays_an_error_naming_the_field() -> None:
    data = base()
    red_if(data)["peer"]["name"] = "veth-frontend-br"
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].peer.name: 'veth-frontend-br' is not a valid "
        "interface name: 16 bytes, over the kernel's limit for interface names (IFNAMSIZ) of 15"
    )


# ---- what only some namespaces may declare ------------------------------------------------------


def test_loopback_false_in_a_named_namespace_is_accepted() -> None:
    data = base()
    red(data)["loopback"] = False
    assert topology_from_data(data, SRC).namespaces["red"].loopback is False


# ---- other field rules: types, required keys, sysctls, dns --------------------------------------


@pytest.mark.parametrize("value", [True, 1.5])
def test_sysctl_value_of_the_wrong_type_is_one_problem(value: object) -> None:
    """A bool or float sysctl value is one mistake, reported once, at the key's own path."""
    data = base()
    data["host"]["sysctls"]["net.ipv4.ip_forward"] = value
    (line,) = problems(data)
    assert line.startswith(f"{SRC}: host.sysctls.net.ipv4.ip_forward: ")


# ---- YAML-level problems ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "got"),
    [
        ("- name: lab\n", "a list"),
        ("just a string\n", "'just a string'"),
        ("42\n", "42"),
        ("", "nothing"),
        ("# only a comment\n", "nothing"),
    ],
)
def test_file_that_is_not_a_mapping_is_rejected(text: str, got: str) -> None:
    assert yaml_problems(text) == [
        f"{SRC}: the file must hold a mapping (name:, host:, ...), got {got}"
    ]


def test_load_topology_reports_yaml_problems_with_the_file_path(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nname: b\n", encoding="utf-8")
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert info.value.lines() == [
        f"{path}:2:1: name: key 'name' appears twice in one mapping (first at line 1)"
    ]


def test_a_problem_found_in_data_without_a_file_has_no_place() -> None:
    """topology_from_data of plain data (no text): the plain form, in the order found."""
    data = base()
    red(data)["loopback"] = "yes"
    assert problem(data) == f"{SRC}: namespaces.red.loopback: expected true or false, got 'yes'"


# ---- where a problem is placed ------------------------------------------------------------------

PLACES = """\
name: lab
host:
  bridges:
    br0: {addresses: [10.0.0.254/24], colour: blue}
namespaces:
  red:
    loopback: "yes"
    interfaces:
      - addresses: [10.0.0.1/24]
  $bad: {}
"""


def test_an_unknown_key_is_placed_at_the_key_and_a_bad_value_at_the_value(
    tmp_path: Path,
) -> None:
    assert cli_problems(tmp_path, PLACES) == [
        f"{SRC}:4:39: host.bridges.br0.colour: unknown key 'colour' (known keys: addresses, mac, mtu)",
        f"{SRC}:7:15: namespaces.red.loopback: expected true or false, got 'yes'",
        f"{SRC}:9:9: namespaces.red.interfaces[0].peer: required key is missing",
        f"{SRC}:10:3: namespaces.$bad: '$bad' is not a valid namespace name: {NAME_CHARS}",
    ]


def test_problems_of_every_stage_that_ran_come_in_file_order(tmp_path: Path) -> None:
    """Docker's own field errors run beside the core model's; the listing is by line, not by
    stage (the core problem on line 2 and the one on line 9 surround Docker's)."""
    text = """\
name: lab
descripton: x
networks:
  front: {subnet: 10.0.0.0/33}
containers:
  web: {networks: [front], publish: ["80"]}
namespaces:
  red:
    routes: [{to: defualt, via: 10.0.0.1}]
"""
    lines = cli_problems(tmp_path, text)
    assert [line.split(": ")[0] for line in lines] == [
        f"{SRC}:2:1",
        f"{SRC}:4:19",
        f"{SRC}:6:38",
        f"{SRC}:9:19",
    ]
    assert lines[1].endswith("'10.0.0.0/33' is not a valid IPv4 subnet (CIDR)")


def test_kubernetes_field_errors_come_with_the_core_model_errors_in_one_pass(
    tmp_path: Path,
) -> None:
    text = """\
name: lab
host: {bridges: {br0: {adresses: []}}}
cluster:
  mode: overlay
  node_network: {bridge: k8s-nodes, subnet: 10.10.0.0/24}
  pod_cidr: 10.244.0.0/16
  nodes: {node1: {pod: [a]}}
"""
    assert cli_problems(tmp_path, text) == [
        f"{SRC}:2:24: host.bridges.br0.adresses: unknown key 'adresses' "
        "(did you mean 'addresses'?)",
        f"{SRC}:4:9: cluster.mode: must be 'host-gw' or 'vxlan', got 'overlay'",
        f"{SRC}:7:19: cluster.nodes.node1.pod: unknown key 'pod' (did you mean 'pods'?)",
    ]


def test_cross_object_checks_wait_for_a_valid_model(tmp_path: Path) -> None:
    """A reference check needs every object well-formed: with a field error in the file, the
    undeclared bridge is not reported yet (it is, once the field error is fixed)."""
    text = "name: lab\nnamespaces:\n  red:\n    interfaces: [{peer: {bridge: br9}}]\n"
    assert cli_problems(tmp_path, text + "    bogus: 1\n") == [
        f"{SRC}:5:5: namespaces.red.bogus: unknown key 'bogus' (known keys: {NAMESPACE_KEYS})"
    ]
    assert cli_problems(tmp_path, text) == [
        f"{SRC}:4:34: namespaces.red.interfaces[0].peer.bridge: bridge 'br9' is not declared "
        "in namespace host (under host.bridges)"
    ]


def test_a_problem_of_a_generated_object_is_listed_last_without_a_place(tmp_path: Path) -> None:
    text = """\
name: lab
namespaces:
  red:
    interfaces: [{peer: {bridge: br-front}, addresses: [10.10.0.2/24]}]
    routes: [{to: 10.9.0.0/16, dev: eth9}]
networks:
  front: {subnet: 10.10.0.0/24}
containers:
  web: {networks: [front]}
"""
    assert cli_problems(tmp_path, text) == [
        f"{SRC}:5:37: namespaces.red.routes[0].dev: interface 'eth9' is not declared in "
        "namespace red",
        f"{SRC}: namespaces.web.interfaces[0].addresses[0]: address 10.10.0.2 is already "
        "assigned on the same segment, bridge br-front in the root namespace (at "
        "namespaces.red.interfaces[0].addresses[0]): two hosts would answer for it",
    ]


def test_a_dotted_key_and_a_key_that_is_not_printable_are_found_in_the_file(
    tmp_path: Path,
) -> None:
    text = (
        'name: lab\nhost:\n  sysctls:\n    net.ipv4.ip_forward: "on"\nnamespaces: {"a\\tb": {}}\n'
    )
    lines = cli_problems(tmp_path, text)
    assert [line.split(": ")[0] for line in lines] == [f"{SRC}:4:26", f"{SRC}:5:14"]
    assert lines[1].startswith(f"{SRC}:5:14: namespaces['a\\tb']: 'a\\tb' is not a valid")


def test_thousands_of_problems_list_the_first_hundred_and_count_the_rest(
    tmp_path: Path,
) -> None:
    text = "name: lab\nchecks:\n" + "".join("- {bogus: 1}\n" for _ in range(1500))
    lines = cli_problems(tmp_path, text)
    assert len(lines) == 101
    assert lines[0].startswith(f"{SRC}:3:4: checks[0].bogus: unknown key 'bogus'")
    assert lines[99].startswith(f"{SRC}:102:4: checks[99].bogus: ")
    assert lines[100] == f"{SRC}: and 1,400 more problem(s) not listed"


def test_values_in_messages_are_cut_to_a_readable_length(tmp_path: Path) -> None:
    text = f"name: lab\nnamespaces:\n  red: {{interfaces: [{{name: {'v' * 5000}, peer: {{}}}}]}}\n"
    (line,) = cli_problems(tmp_path, text)
    assert line == (
        f"{SRC}:3:29: namespaces.red.interfaces[0].name: '{'v' * 60}…' is not a valid interface "
        "name: 5000 bytes, over the kernel's limit for interface names (IFNAMSIZ) of 15"
    )


# ---- the file's words, not Python's -------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "key", "expected"),
    [
        ((), "masquerade", "it belongs under host:, namespaces.NAME: or networks.NAME:"),
        (
            ("namespaces", "red"),
            "peer",
            "it belongs under namespaces.NAME.interfaces[N]: or host.interfaces[N]:",
        ),
        (("host",), "pods", "it belongs under cluster.nodes.NAME:"),
        (("checks", 0), "form", "did you mean 'from'?"),
        (("checks", 0), "from_", "did you mean 'from'?"),
    ],
)
def test_an_unknown_key_says_where_it_belongs_or_what_was_meant(
    where: tuple[Any, ...], key: str, expected: str
) -> None:
    data = base()
    data["checks"] = [{"from": "red", "to": "blue"}]
    node: Any = data
    for part in where:
        node = node[part]
    if key == "from_":
        node.pop("from")
    node[key] = "red"
    (line,) = problems(data)
    assert line.endswith(f"unknown key {key!r} ({expected})"), line


def test_the_known_top_level_keys_include_the_docker_and_kubernetes_vocabulary() -> None:
    data = base()
    data["zzzz"] = 1
    (line,) = problems(data)
    known = line.split("(known keys: ")[1].rstrip(")").split(", ")
    assert {"networks", "containers", "cluster", "hosts", "name", "namespaces"} <= set(known)
    assert known == sorted(known)


@pytest.mark.parametrize(
    ("value", "got"), [(None, "null"), (True, "true"), ([1, 2], "a list"), ({"a": 1}, "a mapping")]
)
def test_wrong_types_are_named_in_yamls_words(value: Any, got: str) -> None:
    data = base()
    data["name"] = value
    assert problem(data) == f"{SRC}: name: expected a string, got {got}"


@pytest.mark.parametrize(
    ("to", "reason"),
    [
        ("defualt", "'defualt' is not a route destination (did you mean 'default'?)"),
        ("Default", "'Default' is not a route destination (did you mean 'default'?)"),
        (
            "anywhere",
            "'anywhere' is not a route destination: write 'default' or a subnet "
            "(NETWORK/PREFIX, IPv4 or IPv6)",
        ),
        ("fd00::1/64", "'fd00::1/64' has host bits set: the subnet is fd00::/64"),
    ],
)
def test_a_route_destination_that_is_a_word_is_not_called_an_ipv4_subnet(
    to: str, reason: str
) -> None:
    data = base()
    red(data)["routes"][0]["to"] = to
    assert problem(data) == f"{SRC}: namespaces.red.routes[0].to: {reason}"


# ---- validation as data (--json) and standard input ---------------------------------------------


def test_validate_json_gives_each_problem_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / SRC
    path.write_text(PLACES, encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", "--json", str(path)])
    assert result.exit_code == 1
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["file"] == str(path)
    assert report["valid"] is False
    assert report["unlisted"] == 0
    assert report["problems"][0] == {
        "file": str(path),
        "line": 4,
        "column": 39,
        "path": "host.bridges.br0.colour",
        "message": "unknown key 'colour' (known keys: addresses, mac, mtu)",
    }
    assert [(p["line"], p["column"]) for p in report["problems"]] == [
        (4, 39),
        (7, 15),
        (9, 9),
        (10, 3),
    ]


def test_validate_json_of_a_file_it_cannot_read_is_a_problem_without_a_place(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nope.yaml"
    result = CliRunner().invoke(app, ["validate", "--json", str(path)])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["problems"] == [
        {"file": str(path), "line": None, "column": None, "path": "", "message": "no such file"}
    ]


def test_validate_json_of_a_valid_file_is_the_plan_up_dry_run_shows() -> None:
    result = CliRunner().invoke(app, ["validate", "--json", str(SEED)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["valid"] is True and report["problems"] == []
    assert report["topology"] == "seed"
    assert report["counts"] == {"namespaces": 2, "bridges": 1, "veth_pairs": 2, "steps": 8}
    steps = report["plan"]["steps"]
    assert [s["number"] for s in steps] == list(range(1, 9))
    dry = CliRunner().invoke(app, ["up", "--dry-run", str(SEED)])
    assert dry.exit_code == 0, dry.output
    text = dry.stdout.splitlines()
    for step in steps:
        assert f"[{step['number']}/8] {step['title']}" in text
        for command in step["commands"]:
            assert f"    $ {command}" in text
    assert any(step["undo"] for step in steps)
    same = CliRunner().invoke(app, ["up", "--dry-run", "--json", str(SEED)])
    assert json.loads(same.stdout) == report


def test_up_json_without_dry_run_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["up", "--json", str(SEED)])
    assert result.exit_code == 2
    assert result.stderr == "up: --json goes with --dry-run\n"


@pytest.mark.parametrize(
    "args",
    [
        ["validate"],
        ["validate", "--json"],
        ["up", "--dry-run"],
        ["diagram"],
        ["render", "-o", "OUT"],
    ],
    ids=" ".join,
)
def test_dash_reads_the_topology_from_stdin_for_every_command_that_takes_a_file(
    args: list[str], tmp_path: Path
) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    from_file = CliRunner().invoke(app, [*args, str(SEED)])
    from_stdin = CliRunner().invoke(app, [*args, "-"], input=SEED.read_bytes())
    assert from_file.exit_code == from_stdin.exit_code == 0, from_stdin.output
    assert from_stdin.stdout == from_file.stdout.replace(str(SEED), "<stdin>")
