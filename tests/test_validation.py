"""What a user sees when a topology file is wrong: one line per problem, `FILE: path: reason`.

The tests drive the loader (`parse_yaml`, `topology_from_data`, `load_topology`) and the
`nsgen validate FILE` command, and assert the exact messages. They build their own small
topology (`base()`) instead of reading examples/seed.yaml, so that edits to the example do not
change these messages; only `test_seed_example_validates` reads the example.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nsgen.cli import app
from nsgen.errors import TopologyError, UsageError
from nsgen.load import load_topology, parse_yaml, topology_from_data
from nsgen.model import Namespace, Topology

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed.yaml"
SRC = "x.yaml"
NAME_CHARS = "use only letters, digits, '_', '-', '.'"

_BASE: dict[str, Any] = {
    "name": "lab",
    "description": "red and blue on br0, masqueraded out of eth0",
    "host": {
        "external": ["eth0"],
        "bridges": {"br0": {"addresses": ["10.0.0.254/24"]}},
        "masquerade": [{"source": "10.0.0.0/24", "out": "eth0"}],
        "sysctls": {"net.ipv4.ip_forward": 1},
    },
    "namespaces": {
        "red": {
            "interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["10.0.0.1/24"]}],
            "routes": [{"to": "default", "via": "10.0.0.254"}],
        },
        "blue": {
            "interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["10.0.0.2/24"]}],
            "routes": [{"to": "default", "via": "10.0.0.254"}],
            "dns": {"nameservers": ["192.0.2.53"]},
        },
    },
}


def base() -> dict[str, Any]:
    """A fresh copy of a valid topology (red and blue on the host bridge br0)."""
    return copy.deepcopy(_BASE)


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


def assert_cli_rejects(
    tmp_path: Path, text: str, expected: list[str], *, any_order: bool = False
) -> None:
    """`nsgen validate` prints exactly `expected` (FILE: is prefixed here) and exits 1."""
    path = tmp_path / "topo.yaml"
    path.write_text(text, encoding="utf-8")
    result = run_validate(path)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    got = result.stderr.splitlines()
    want = [f"{path}: {line}" for line in expected]
    if any_order:
        got, want = sorted(got), sorted(want)
    assert got == want


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


def test_file_that_is_not_utf8_is_a_usage_error_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    result = run_validate(path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path}: cannot read: ")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output


def test_directory_given_as_file_is_a_usage_error_without_traceback(tmp_path: Path) -> None:
    result = run_validate(tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{tmp_path}: cannot read: ")
    assert "Traceback" not in result.output


# ---- unknown keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "key", "expected"),
    [
        ((), "namespace", "namespace: unknown key 'namespace' (did you mean 'namespaces'?)"),
        ((), "descripton", "descripton: unknown key 'descripton' (did you mean 'description'?)"),
        (("host",), "bridge", "host.bridge: unknown key 'bridge' (did you mean 'bridges'?)"),
        (
            ("host", "bridges", "br0"),
            "adresses",
            "host.bridges.br0.adresses: unknown key 'adresses' (did you mean 'addresses'?)",
        ),
        (
            ("namespaces", "red", "interfaces", 0),
            "adresses",
            "namespaces.red.interfaces[0].adresses: unknown key 'adresses' "
            "(did you mean 'addresses'?)",
        ),
        (
            ("namespaces", "red", "interfaces", 0, "peer"),
            "brige",
            "namespaces.red.interfaces[0].peer.brige: unknown key 'brige' (did you mean 'bridge'?)",
        ),
        (
            ("namespaces", "red", "routes", 0),
            "vía",
            "namespaces.red.routes[0].vía: unknown key 'vía' (did you mean 'via'?)",
        ),
        (
            ("host", "masquerade", 0),
            "source_",
            "host.masquerade[0].source_: unknown key 'source_' (did you mean 'source'?)",
        ),
        (
            ("namespaces", "blue", "dns"),
            "nameserver",
            "namespaces.blue.dns.nameserver: unknown key 'nameserver' "
            "(did you mean 'nameservers'?)",
        ),
    ],
)
def test_unknown_key_is_rejected_with_a_did_you_mean_hint(
    where: tuple[Any, ...], key: str, expected: str
) -> None:
    data = base()
    node: Any = data
    for part in where:
        node = node[part]
    node[key] = "x"
    assert problem(data) == f"{SRC}: {expected}"


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    data = base()
    red(data)["zzzz"] = 1
    known = ", ".join(sorted(Namespace.model_fields))
    assert "bridges, dns, exec, external" in known
    assert problem(data) == (
        f"{SRC}: namespaces.red.zzzz: unknown key 'zzzz' (known keys: {known})"
    )


def test_unknown_key_is_reported_by_the_cli_with_exit_1(tmp_path: Path) -> None:
    assert_cli_rejects(
        tmp_path,
        "name: lab\nnamespace:\n  red: {}\n",
        ["namespace: unknown key 'namespace' (did you mean 'namespaces'?)"],
    )


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


@pytest.mark.parametrize("value", BAD_NAMES_CHARSET)
def test_interface_name_with_characters_outside_the_allowlist_is_rejected(value: str) -> None:
    data = base()
    red_if(data)["name"] = value
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].name: {value!r} is not a valid interface name: "
        f"{NAME_CHARS}"
    )


def test_interface_name_longer_than_15_bytes_is_rejected() -> None:
    data = base()
    red_if(data)["name"] = "a" * 16
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].name: 'aaaaaaaaaaaaaaaa' is not a valid interface "
        "name: 16 bytes, over the limit of 15"
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


def test_bad_interface_name_is_reported_by_the_cli_with_exit_1(tmp_path: Path) -> None:
    text = (
        "name: lab\n"
        "host:\n"
        "  bridges: {br0: {}}\n"
        "namespaces:\n"
        "  red:\n"
        "    interfaces:\n"
        "      - name: '$(touch /tmp/x)'\n"
        "        peer: {bridge: br0}\n"
    )
    assert_cli_rejects(
        tmp_path,
        text,
        [
            "namespaces.red.interfaces[0].name: '$(touch /tmp/x)' is not a valid interface name: "
            + NAME_CHARS
        ],
    )


# ---- namespace names and the topology name ------------------------------------------------------


@pytest.mark.parametrize("value", [v for v in BAD_NAMES_CHARSET if v.isprintable()])
def test_namespace_name_with_characters_outside_the_allowlist_is_rejected(value: str) -> None:
    data = base()
    data["namespaces"][value] = {}
    assert problem(data) == (
        f"{SRC}: namespaces.{value}: {value!r} is not a valid namespace name: {NAME_CHARS}"
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


def test_namespace_name_longer_than_15_bytes_is_rejected() -> None:
    data = base()
    data["namespaces"]["n" * 16] = {}
    assert problem(data) == (
        f"{SRC}: namespaces.{'n' * 16}: {'n' * 16!r} is not a valid namespace name: "
        "16 bytes, over the limit of 15"
    )


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
        ("l" * 16, "16 bytes, over the limit of 15"),
    ],
)
def test_bad_topology_name_is_rejected(value: str, reason: str) -> None:
    data = base()
    data["name"] = value
    assert problem(data) == f"{SRC}: name: {value!r} is not a valid topology name: {reason}"


# ---- addresses and subnets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("10.0.0.300/24", "'10.0.0.300/24' is not a valid IPv4 interface address"),
        ("10.0.0.3/33", "'10.0.0.3/33' is not a valid IPv4 interface address"),
        ("fd00::zz/64", "'fd00::zz/64' is not a valid IPv6 interface address"),
        ("10.0.0.3", "'10.0.0.3' has no prefix length (write it as ADDRESS/PREFIX, e.g. /24)"),
        ("10.0.0.0/24", "'10.0.0.0/24' is the network address of its subnet, not a host address"),
    ],
)
def test_bad_interface_address_is_rejected(value: str, reason: str) -> None:
    data = base()
    red_if(data)["addresses"] = [value]
    assert problem(data) == f"{SRC}: namespaces.red.interfaces[0].addresses[0]: {reason}"


def test_bad_bridge_address_is_rejected() -> None:
    data = base()
    data["host"]["bridges"]["br0"]["addresses"] = ["192.168.15.300/24"]
    assert problem(data) == (
        f"{SRC}: host.bridges.br0.addresses[0]: '192.168.15.300/24' is not a valid IPv4 "
        "interface address"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("10.0.0.1/24", "'10.0.0.1/24' has host bits set: the subnet is 10.0.0.0/24"),
        ("10.0.0.0", "'10.0.0.0' has no prefix length (write it as NETWORK/PREFIX)"),
        ("10.0.0.300/24", "'10.0.0.300/24' is not a valid IPv4 subnet (CIDR)"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not a valid IPv4 subnet (CIDR)"),
        ("fd00::1/64", "'fd00::1/64' has host bits set: the subnet is fd00::/64"),
    ],
)
def test_bad_masquerade_source_subnet_is_rejected(value: str, reason: str) -> None:
    data = base()
    data["host"]["masquerade"][0]["source"] = value
    assert problem(data) == f"{SRC}: host.masquerade[0].source: {reason}"


def test_route_destination_with_host_bits_set_is_rejected() -> None:
    data = base()
    red(data)["routes"][0]["to"] = "192.168.1.1/24"
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[0].to: '192.168.1.1/24' has host bits set: the subnet is "
        "192.168.1.0/24"
    )


def test_invalid_gateway_address_is_rejected() -> None:
    data = base()
    red(data)["routes"][0]["via"] = "10.0.0.999"
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[0].via: '10.0.0.999' is not a valid IPv4 address"
    )


def test_nameserver_that_is_not_an_address_is_rejected() -> None:
    data = base()
    data["namespaces"]["blue"]["dns"]["nameservers"] = ["dns.example"]
    assert problem(data) == (
        f"{SRC}: namespaces.blue.dns.nameservers[0]: 'dns.example' is not a valid IPv4 address"
    )


def test_bad_address_is_reported_by_the_cli_with_exit_1(tmp_path: Path) -> None:
    text = "name: lab\nhost:\n  bridges:\n    br0: {addresses: [192.168.15.300/24]}\n"
    assert_cli_rejects(
        tmp_path,
        text,
        [
            "host.bridges.br0.addresses[0]: '192.168.15.300/24' is not a valid IPv4 "
            "interface address"
        ],
    )


# ---- duplicates ---------------------------------------------------------------------------------


def test_duplicate_interface_name_in_one_namespace_is_rejected() -> None:
    data = base()
    red(data)["interfaces"].append({"name": "veth-red", "peer": {"bridge": "br0", "name": "p1"}})
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[1]: interface name 'veth-red' is already used in "
        "namespace red (by namespaces.red.interfaces[0])"
    )


def test_derived_peer_name_colliding_with_an_explicit_one_is_rejected() -> None:
    data = base()
    red_if(data)["peer"]["name"] = "veth-blue-br"  # what blue's peer is named by default
    assert problem(data) == (
        f"{SRC}: namespaces.blue.interfaces[0].peer: interface name 'veth-blue-br' is already "
        "used in namespace host (by namespaces.red.interfaces[0].peer)"
    )


def test_peer_name_colliding_with_a_bridge_is_rejected() -> None:
    data = base()
    red_if(data)["peer"]["name"] = "br0"
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].peer: interface name 'br0' is already used in "
        "namespace host (by host.bridges.br0)"
    )


def test_peer_name_colliding_with_an_external_interface_is_rejected() -> None:
    data = base()
    red_if(data)["peer"]["name"] = "eth0"
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].peer: interface name 'eth0' is already used in "
        "namespace host (by host.external[0])"
    )


def test_external_interface_listed_twice_is_rejected() -> None:
    data = base()
    data["host"]["external"].append("eth0")
    assert problem(data) == (
        f"{SRC}: host.external[1]: interface name 'eth0' is already used in namespace host "
        "(by host.external[0])"
    )


def test_veth_looped_back_into_its_own_namespace_needs_distinct_end_names() -> None:
    data = base()
    red(data)["interfaces"].append({"name": "loop1", "peer": {"netns": "red", "name": "loop1"}})
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[1].peer: interface name 'loop1' is already used in "
        "namespace red (by namespaces.red.interfaces[1])"
    )


def test_veth_looped_back_into_its_own_namespace_cannot_use_the_derived_peer_name() -> None:
    data = base()
    red(data)["interfaces"].append({"name": "loop0", "peer": {"netns": "red"}})
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[1].peer: interface name 'veth-red' is already used in "
        "namespace red (by namespaces.red.interfaces[0])"
    )


def test_duplicate_address_across_namespaces_is_rejected() -> None:
    data = base()
    data["namespaces"]["blue"]["interfaces"][0]["addresses"] = ["10.0.0.1/24"]
    assert problem(data) == (
        f"{SRC}: namespaces.blue.interfaces[0].addresses[0]: address 10.0.0.1 is already "
        "assigned (at namespaces.red.interfaces[0].addresses[0])"
    )


def test_duplicate_address_with_a_different_prefix_length_is_rejected() -> None:
    data = base()
    red_if(data)["addresses"] = ["10.0.0.254/16"]
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].addresses[0]: address 10.0.0.254 is already "
        "assigned (at host.bridges.br0.addresses[0])"
    )


def test_duplicate_ipv6_address_is_found_whatever_its_spelling() -> None:
    data = base()
    red_if(data)["addresses"].append("fd00:0:0::1/64")
    data["namespaces"]["blue"]["interfaces"][0]["addresses"].append("FD00::1/64")
    assert problem(data) == (
        f"{SRC}: namespaces.blue.interfaces[0].addresses[1]: address fd00::1 is already "
        "assigned (at namespaces.red.interfaces[0].addresses[1])"
    )


def test_duplicate_route_in_one_namespace_is_rejected() -> None:
    data = base()
    red(data)["routes"].append({"to": "default", "via": "10.0.0.254"})
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[1].to: a route to default is already declared "
        "(at namespaces.red.routes[0])"
    )


def test_duplicate_masquerade_rule_is_rejected() -> None:
    data = base()
    data["host"]["masquerade"].append({"source": "10.0.0.0/24", "out": "eth0"})
    assert problem(data) == (
        f"{SRC}: host.masquerade[1]: the same rule is already declared (at host.masquerade[0])"
    )


def test_duplicate_interface_is_reported_by_the_cli_with_exit_1(tmp_path: Path) -> None:
    data = base()
    red(data)["interfaces"].append({"name": "veth-red", "peer": {"bridge": "br0", "name": "p1"}})
    assert_cli_rejects(
        tmp_path,
        yaml.safe_dump(data, sort_keys=False),
        [
            "namespaces.red.interfaces[1]: interface name 'veth-red' is already used in "
            "namespace red (by namespaces.red.interfaces[0])"
        ],
    )


# ---- references to things that do not exist ----------------------------------------------------


def test_peer_in_an_undeclared_namespace_is_rejected() -> None:
    data = base()
    red_if(data)["peer"] = {"netns": "green"}
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].peer.netns: namespace 'green' is not declared"
    )


def test_peer_on_an_undeclared_bridge_is_rejected() -> None:
    data = base()
    red_if(data)["peer"]["bridge"] = "br1"
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].peer.bridge: bridge 'br1' is not declared in "
        "namespace host (under host.bridges)"
    )


def test_peer_bridge_is_looked_up_in_the_peer_namespace() -> None:
    data = base()
    red_if(data)["peer"]["netns"] = "blue"  # br0 is in host, not in blue
    assert problem(data) == (
        f"{SRC}: namespaces.red.interfaces[0].peer.bridge: bridge 'br0' is not declared in "
        "namespace blue (under namespaces.blue.bridges)"
    )


def test_route_through_an_undeclared_device_is_rejected() -> None:
    data = base()
    red(data)["routes"][0]["dev"] = "eth9"
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[0].dev: interface 'eth9' is not declared in namespace red"
    )


def test_masquerade_out_of_an_undeclared_interface_is_rejected() -> None:
    data = base()
    data["host"]["masquerade"][0]["out"] = "eth1"
    assert problem(data) == (
        f"{SRC}: host.masquerade[0].out: interface 'eth1' is not declared in namespace host"
    )


def test_masquerade_out_of_an_interface_of_another_namespace_is_rejected() -> None:
    data = base()
    data["host"]["masquerade"][0]["out"] = "veth-red"  # lives in red, not in host
    assert problem(data) == (
        f"{SRC}: host.masquerade[0].out: interface 'veth-red' is not declared in namespace host"
    )


def test_undeclared_reference_is_reported_by_the_cli_with_exit_1(tmp_path: Path) -> None:
    data = base()
    red_if(data)["peer"] = {"netns": "green"}
    assert_cli_rejects(
        tmp_path,
        yaml.safe_dump(data, sort_keys=False),
        ["namespaces.red.interfaces[0].peer.netns: namespace 'green' is not declared"],
    )


# ---- routes and gateways ------------------------------------------------------------------------


def test_gateway_outside_every_attached_subnet_is_rejected() -> None:
    data = base()
    red(data)["routes"][0]["via"] = "10.9.9.9"
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[0].via: gateway 10.9.9.9 is outside every subnet "
        "attached to namespace red (attached: 10.0.0.0/24)"
    )


def test_gateway_in_a_namespace_without_addresses_lists_none_attached() -> None:
    data = base()
    red_if(data)["addresses"] = []
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[0].via: gateway 10.0.0.254 is outside every subnet "
        "attached to namespace red (attached: none)"
    )


def test_gateway_only_counts_subnets_of_its_own_ip_version() -> None:
    data = base()
    red_if(data)["addresses"].append("fd00::1/64")
    red(data)["routes"].append({"to": "default", "via": "fd01::1"})
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[1].via: gateway fd01::1 is outside every subnet attached "
        "to namespace red (attached: fd00::/64)"
    )


def test_gateway_behind_an_external_interface_is_not_checked() -> None:
    data = base()
    data["host"]["routes"] = [{"to": "192.168.1.0/24", "via": "172.16.0.1", "dev": "eth0"}]
    topology_from_data(data, SRC)


def test_gateway_and_destination_of_different_ip_versions_are_rejected() -> None:
    data = base()
    red(data)["routes"].append({"to": "fd00::/64", "via": "10.0.0.254"})
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[1].via: gateway 10.0.0.254 and destination fd00::/64 are "
        "of different IP versions"
    )


def test_route_without_via_or_dev_is_rejected() -> None:
    data = base()
    red(data)["routes"].append({"to": "192.168.1.0/24"})
    assert problem(data) == (
        f"{SRC}: namespaces.red.routes[1]: a route needs 'via' (a gateway), 'dev', or both"
    )


def test_gateway_outside_every_attached_subnet_is_reported_by_the_cli(tmp_path: Path) -> None:
    data = base()
    red(data)["routes"][0]["via"] = "10.9.9.9"
    assert_cli_rejects(
        tmp_path,
        yaml.safe_dump(data, sort_keys=False),
        [
            "namespaces.red.routes[0].via: gateway 10.9.9.9 is outside every subnet attached to "
            "namespace red (attached: 10.0.0.0/24)"
        ],
    )


# ---- derived names ------------------------------------------------------------------------------


def test_derived_peer_name_that_gets_too_long_is_rejected() -> None:
    data = base()
    data["namespaces"]["abcdefgh"] = data["namespaces"].pop("blue")  # veth-abcdefgh-br: 16 bytes
    assert problem(data) == (
        f"{SRC}: namespaces.abcdefgh.interfaces[0].peer.name: derived 'veth-abcdefgh-br' is not "
        "a valid interface name: 16 bytes, over the limit of 15; set it explicitly"
    )


def test_derived_names_of_both_ends_that_get_too_long_are_both_rejected() -> None:
    data = base()
    data["namespaces"]["abcdefghijk"] = data["namespaces"].pop("blue")
    assert problems(data) == [
        f"{SRC}: namespaces.abcdefghijk.interfaces[0].name: derived 'veth-abcdefghijk' is not a "
        "valid interface name: 16 bytes, over the limit of 15; set it explicitly",
        f"{SRC}: namespaces.abcdefghijk.interfaces[0].peer.name: derived 'veth-abcdefghijk-br' is "
        "not a valid interface name: 19 bytes, over the limit of 15; set it explicitly",
    ]


def test_long_namespace_name_is_fine_when_the_end_names_are_explicit() -> None:
    data = base()
    data["namespaces"]["abcdefghijk"] = data["namespaces"].pop("blue")
    end = data["namespaces"]["abcdefghijk"]["interfaces"][0]
    end["name"] = "eth0"
    end["peer"]["name"] = "veth-long-br"
    topology_from_data(data, SRC)


def test_derived_host_side_name_of_a_root_veth_that_gets_too_long_is_rejected() -> None:
    data = base()
    data["host"]["interfaces"] = [{"name": "abcdefghijk", "peer": {}}]
    assert problem(data) == (
        f"{SRC}: host.interfaces[0].peer.name: derived 'host-abcdefghijk' is not a valid "
        "interface name: 16 bytes, over the limit of 15; set it explicitly"
    )


def test_derived_peer_name_of_a_named_end_that_gets_too_long_is_rejected() -> None:
    data = base()
    red_if(data)["name"] = "frontend-0"  # its peer on br0 is derived as red-frontend-0 ...
    data["namespaces"]["redblue"] = data["namespaces"].pop("red")  # ... now redblue-frontend-0
    assert problem(data) == (
        f"{SRC}: namespaces.redblue.interfaces[0].peer.name: derived 'redblue-frontend-0' is "
        "not a valid interface name: 18 bytes, over the limit of 15; set it explicitly"
    )


def test_veth_end_in_the_root_namespace_needs_an_explicit_name() -> None:
    data = base()
    data["host"]["interfaces"] = [{"peer": {"netns": "red", "name": "up0"}}]
    assert problem(data) == (
        f"{SRC}: host.interfaces[0].name: a veth end in the root namespace needs an explicit name"
    )


# ---- what only some namespaces may declare ------------------------------------------------------


def test_dns_in_host_is_rejected() -> None:
    data = base()
    data["host"]["dns"] = {"nameservers": ["192.0.2.53"]}
    assert problem(data) == (
        f"{SRC}: host.dns: the root namespace's /etc/resolv.conf and /etc/hosts are the "
        "machine's own; declare dns only in named namespaces"
    )


@pytest.mark.parametrize("value", [True, False])
def test_loopback_in_host_is_rejected(value: bool) -> None:
    data = base()
    data["host"]["loopback"] = value
    assert problem(data) == (
        f"{SRC}: host.loopback: the root namespace's loopback is the machine's own; nsgen never "
        "changes it"
    )


def test_external_in_a_named_namespace_is_rejected() -> None:
    data = base()
    red(data)["external"] = ["eth1"]
    assert problem(data) == (
        f"{SRC}: namespaces.red.external: a namespace nsgen creates starts empty, so it has no "
        "external interfaces; declare them under host"
    )


def test_loopback_false_in_a_named_namespace_is_accepted() -> None:
    data = base()
    red(data)["loopback"] = False
    assert topology_from_data(data, SRC).namespaces["red"].loopback is False


# ---- other field rules: types, required keys, sysctls, dns --------------------------------------


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.__setitem__("name", 5), "name: expected a string, got 5"),
        (
            lambda d: d.__setitem__("description", "bell\x07 and tab\t"),
            "description: the description may hold printable text and line breaks only",
        ),
        (lambda d: d.pop("name"), "name: required key is missing"),
        (
            lambda d: red_if(d).pop("peer"),
            "namespaces.red.interfaces[0].peer: required key is missing",
        ),
        (
            lambda d: red(d)["routes"][0].pop("to"),
            "namespaces.red.routes[0].to: required key is missing",
        ),
        (
            lambda d: d["host"]["masquerade"][0].pop("source"),
            "host.masquerade[0].source: required key is missing",
        ),
        (
            lambda d: red_if(d).__setitem__("addresses", "10.0.0.1/24"),
            "namespaces.red.interfaces[0].addresses: expected a list, got '10.0.0.1/24'",
        ),
        (
            lambda d: red(d).__setitem__("loopback", "yes"),
            "namespaces.red.loopback: expected true or false, got 'yes'",
        ),
        (
            lambda d: d["namespaces"].__setitem__("red", None),
            "namespaces.red: expected a mapping (key: value), got None",
        ),
        (
            lambda d: d["host"]["sysctls"].__setitem__("kernel.panic", 1),
            "host.sysctls.kernel.panic: 'kernel.panic' is not a network sysctl nsgen manages: it "
            "must look like net.ipv4.ip_forward",
        ),
        (
            lambda d: d["host"]["sysctls"].__setitem__("net.ipv4.ip_forward", "on"),
            "host.sysctls.net.ipv4.ip_forward: 'on' is not a valid sysctl value: nsgen writes "
            "integers only",
        ),
        (
            lambda d: d["namespaces"]["blue"]["dns"].__setitem__("search", ["bad name"]),
            "namespaces.blue.dns.search[0]: 'bad name' is not a valid host name",
        ),
        (
            lambda d: d["namespaces"]["blue"]["dns"].__setitem__("hosts", {"db": "10.0.0.999"}),
            "namespaces.blue.dns.hosts.db: '10.0.0.999' is not a valid IPv4 address",
        ),
    ],
)
def test_field_rule_violation_is_reported_at_its_path(mutate: Any, expected: str) -> None:
    data = base()
    mutate(data)
    assert problem(data) == f"{SRC}: {expected}"


@pytest.mark.parametrize("value", [True, 1.5])
def test_sysctl_value_of_the_wrong_type_is_one_problem(value: object) -> None:
    """A bool or float sysctl value is one mistake, reported once, at the key's own path."""
    data = base()
    data["host"]["sysctls"]["net.ipv4.ip_forward"] = value
    (line,) = problems(data)
    assert line.startswith(f"{SRC}: host.sysctls.net.ipv4.ip_forward: ")


# ---- YAML-level problems ------------------------------------------------------------------------


def test_yaml_syntax_error_is_reported_with_line_and_column() -> None:
    with pytest.raises(TopologyError) as info:
        parse_yaml("name: lab\n  bad: : x\n", SRC)
    assert info.value.lines() == [
        f"{SRC}: line 2, column 6: YAML syntax error: mapping values are not allowed here"
    ]


def test_yaml_tab_indentation_is_reported_with_line_and_column() -> None:
    assert yaml_problems("name: lab\nhost:\n\tbridges: {}\n") == [
        f"{SRC}: line 3, column 1: YAML syntax error: found character '\\t' that cannot start "
        "any token"
    ]


def test_yaml_syntax_error_is_reported_by_the_cli_with_exit_1(tmp_path: Path) -> None:
    assert_cli_rejects(
        tmp_path,
        "name: lab\n  bad: : x\n",
        ["line 2, column 6: YAML syntax error: mapping values are not allowed here"],
    )


def test_duplicate_yaml_key_is_reported_with_line_and_column() -> None:
    text = "name: lab\nnamespaces:\n  red: {}\n  blue: {}\n  red: {}\n"
    assert yaml_problems(text) == [
        f"{SRC}: line 5, column 3: key 'red' appears twice in one mapping"
    ]


def test_every_duplicate_yaml_key_is_reported() -> None:
    text = "name: lab\nname: lab2\nhost:\n  bridges: {br0: {}, br0: {}}\n"
    assert yaml_problems(text) == [
        f"{SRC}: line 2, column 1: key 'name' appears twice in one mapping",
        f"{SRC}: line 4, column 22: key 'br0' appears twice in one mapping",
    ]


def test_duplicate_yaml_key_is_reported_by_the_cli_with_exit_1(tmp_path: Path) -> None:
    assert_cli_rejects(
        tmp_path,
        "name: lab\nname: lab\n",
        ["line 2, column 1: key 'name' appears twice in one mapping"],
    )


@pytest.mark.parametrize(
    "text", ["- name: lab\n", "just a string\n", "42\n", "", "# only a comment\n"]
)
def test_file_that_is_not_a_mapping_is_rejected(text: str) -> None:
    assert yaml_problems(text) == [f"{SRC}: the file must hold a mapping (name:, host:, ...)"]


def test_file_that_is_not_a_mapping_is_reported_by_the_cli_with_exit_1(tmp_path: Path) -> None:
    assert_cli_rejects(
        tmp_path, "- red\n- blue\n", ["the file must hold a mapping (name:, host:, ...)"]
    )


def test_python_yaml_tags_are_refused_not_executed() -> None:
    assert yaml_problems("!!python/object/apply:os.system ['touch /tmp/x']\n") == [
        f"{SRC}: line 1, column 1: YAML syntax error: could not determine a constructor for the "
        "tag 'tag:yaml.org,2002:python/object/apply:os.system'"
    ]


def test_load_topology_reports_yaml_problems_with_the_file_path(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nname: b\n", encoding="utf-8")
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert info.value.lines() == [
        f"{path}: line 2, column 1: key 'name' appears twice in one mapping"
    ]


# ---- every problem at once ----------------------------------------------------------------------

FIELD_PROBLEMS_TEXT = """\
name: lab
host:
  bridges:
    br0: {adresses: [10.0.0.254/24]}
  masquerade:
    - {source: 10.0.0.1/24, out: eth0}
namespaces:
  host: {}
  red:
    interfaces:
      - name: "$(touch /tmp/x)"
        peer: {bridge: br0}
        addresses: [10.0.0.300/24]
"""

FIELD_PROBLEMS = [
    "host.bridges.br0.adresses: unknown key 'adresses' (did you mean 'addresses'?)",
    "host.masquerade[0].source: '10.0.0.1/24' has host bits set: the subnet is 10.0.0.0/24",
    "namespaces.host: 'host' is reserved for the root namespace: declare it under 'host:'",
    "namespaces.red.interfaces[0].addresses[0]: '10.0.0.300/24' is not a valid IPv4 interface "
    "address",
    "namespaces.red.interfaces[0].name: '$(touch /tmp/x)' is not a valid interface name: "
    + NAME_CHARS,
]

REFERENCE_PROBLEMS_TEXT = """\
name: lab
host:
  external: [eth0]
  bridges:
    br0: {addresses: [10.0.0.254/24]}
  masquerade:
    - {source: 10.0.0.0/24, out: eth1}
  dns: {nameservers: [192.0.2.53]}
namespaces:
  red:
    interfaces:
      - peer: {bridge: br1}
        addresses: [10.0.0.1/24]
    routes:
      - {to: default, via: 10.9.9.9}
  blue:
    interfaces:
      - peer: {netns: green}
        addresses: [10.0.0.1/24]
    routes:
      - {to: 192.168.1.0/24, dev: eth9}
"""

REFERENCE_PROBLEMS = [
    "host.dns: the root namespace's /etc/resolv.conf and /etc/hosts are the machine's own; "
    "declare dns only in named namespaces",
    "namespaces.red.interfaces[0].peer.bridge: bridge 'br1' is not declared in namespace host "
    "(under host.bridges)",
    "namespaces.blue.interfaces[0].addresses[0]: address 10.0.0.1 is already assigned "
    "(at namespaces.red.interfaces[0].addresses[0])",
    "namespaces.blue.interfaces[0].peer.netns: namespace 'green' is not declared",
    "host.masquerade[0].out: interface 'eth1' is not declared in namespace host",
    "namespaces.red.routes[0].via: gateway 10.9.9.9 is outside every subnet attached to "
    "namespace red (attached: 10.0.0.0/24)",
    "namespaces.blue.routes[0].dev: interface 'eth9' is not declared in namespace blue",
]


def test_several_field_problems_are_all_reported_at_once(tmp_path: Path) -> None:
    assert len(FIELD_PROBLEMS) == 5
    # (order is checked by test_problems_are_listed_in_file_order)
    assert_cli_rejects(tmp_path, FIELD_PROBLEMS_TEXT, FIELD_PROBLEMS, any_order=True)


def test_several_cross_reference_problems_are_all_reported_at_once(tmp_path: Path) -> None:
    assert len(REFERENCE_PROBLEMS) == 7
    assert_cli_rejects(tmp_path, REFERENCE_PROBLEMS_TEXT, REFERENCE_PROBLEMS, any_order=True)


def test_every_reported_problem_is_one_line_starting_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(REFERENCE_PROBLEMS_TEXT, encoding="utf-8")
    result = run_validate(path)
    lines = result.stderr.splitlines()
    assert len(lines) == len(REFERENCE_PROBLEMS) == 7
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert len(set(lines)) == len(lines)


def test_problems_are_listed_in_file_order() -> None:
    """Problems come in the order of the file: routes[2] before routes[10], namespaces as
    declared."""
    data: dict[str, Any] = {
        "name": "lab",
        "namespaces": {
            "zz": {"routes": [{"to": "10.0.0.0/8", "via": f"bad{i}"} for i in range(11)]},
            "aa": {"bogus": 1},
        },
    }
    paths = [line.split(": ")[1] for line in problems(data)]
    assert paths == [f"namespaces.zz.routes[{i}].via" for i in range(11)] + ["namespaces.aa.bogus"]
