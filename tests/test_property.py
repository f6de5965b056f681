"""Property tests: whatever topology nsgen accepts renders to clean, safely quoted bash.

(a) random accepted topologies render to scripts that pass `bash -n` and shellcheck;
(b) random strings in name fields are rejected, or reach the scripts only in safe form;
(c) rendering is deterministic.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from nsgen.errors import TopologyError
from nsgen.fields import NAME_MAX, _description
from nsgen.load import parse_yaml, topology_from_data
from nsgen.model import HOST
from nsgen.names import fitted
from nsgen.plan import build_plan
from nsgen.render import render_scripts

SRC = "gen.yaml"

# ---- strategies for valid topologies ----------------------------------------------------------

NAME_FIRST = string.ascii_letters + string.digits + "_"
NAME_REST = NAME_FIRST + ".-"
TOPOLOGY_REST = NAME_FIRST + "-"


@st.composite
def names(draw: Any, first: str = NAME_FIRST, rest: str = NAME_REST, max_size: int = 15) -> str:
    """Names from the allowlist: a first character that is not '-' or '.', then up to
    max_size - 1 more (all ASCII, so characters are bytes)."""
    head: str = draw(st.sampled_from(first))
    tail: str = draw(st.text(alphabet=rest, max_size=max_size - 1))
    return head + tail


IFNAMES = names()
NSNAMES = names(max_size=NAME_MAX).filter(lambda n: n != HOST)
TOPOLOGY_NAMES = names(rest=TOPOLOGY_REST, max_size=NAME_MAX)


def _description_accepted(text: str) -> bool:
    try:
        _description(text)
    except ValueError:
        return False
    return True


# Free text, with what the scripts' header must survive: quotes, $(...), backticks, line breaks.
DESCRIPTIONS = st.text(
    alphabet=st.characters(codec="utf-8").filter(lambda c: c.isprintable() or c == "\n"),
    max_size=80,
).filter(_description_accepted) | st.sampled_from(
    ["$(touch /tmp/x)\n`id`; echo 'x' \"y\" \\ z", "\n\n#!/bin/sh\nrm -rf /"]
)
HOSTNAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z]{2,6}){0,2}", fullmatch=True)


@st.composite
def topologies(draw: Any) -> dict[str, Any]:
    """Plain data (as parsed from YAML) for a topology nsgen must accept: 1-4 namespaces, each
    with a veth to a host bridge, distinct addresses in one subnet, optional routes via the
    bridge's address, optional masquerade out of an external eth0, optional dns, optional IPv6,
    an optional veth between two namespaces."""
    external = draw(st.booleans())
    bridge = draw(IFNAMES.filter(lambda n: n != "eth0"))
    host_names = {bridge} | ({"eth0"} if external else set())

    prefix = draw(st.integers(16, 28))
    raw = draw(st.integers(0, 2 ** (prefix - 8) - 1))
    net = ipaddress.IPv4Network((0x0A000000 | (raw << (32 - prefix)), prefix))
    count = draw(st.integers(1, 4))
    offsets = draw(
        st.lists(
            st.integers(1, net.num_addresses - 2),
            min_size=count + 1,
            max_size=count + 1,
            unique=True,
        )
    )
    gateway = net.network_address + offsets[0]
    v6 = draw(st.booleans())
    net6 = ipaddress.IPv6Network(f"fd00:{draw(st.integers(0, 0xFFFF)):x}::/64")
    gateway6 = net6.network_address + 1

    bridge_addresses = [f"{gateway}/{prefix}"] + ([f"{gateway6}/64"] if v6 else [])
    host: dict[str, Any] = {"bridges": {bridge: {"addresses": bridge_addresses}}}
    if external:
        host["external"] = ["eth0"]
        if draw(st.booleans()):
            host["masquerade"] = [{"source": str(net), "out": "eth0"}]
            host["sysctls"] = {"net.ipv4.ip_forward": 1}
        if draw(st.booleans()):
            host["routes"] = [{"to": "172.16.0.0/12", "via": "203.0.113.1", "dev": "eth0"}]
    if v6 and draw(st.booleans()):
        host.setdefault("sysctls", {})["net.ipv6.conf.all.forwarding"] = 1

    ns_names = draw(st.lists(NSNAMES, min_size=count, max_size=count, unique=True))
    namespaces: dict[str, Any] = {}
    near_names: dict[str, str] = {}
    for i, ns in enumerate(ns_names):
        addresses = [f"{net.network_address + offsets[i + 1]}/{prefix}"]
        if v6:
            addresses.append(f"{net6.network_address + i + 2}/64")
        iface: dict[str, Any] = {"peer": {"bridge": bridge}, "addresses": addresses}
        # Derived names are veth-<ns> and veth-<ns>-br, or their short forms when over 15 bytes.
        if draw(st.booleans()):
            near = draw(IFNAMES)
            iface["name"] = near
            peer = draw(IFNAMES.filter(lambda n: n not in host_names))
            iface["peer"]["name"] = peer
        else:
            near = fitted(f"veth-{ns}")
            peer = fitted(f"veth-{ns}-br")
            if peer in host_names:
                peer = draw(IFNAMES.filter(lambda n: n not in host_names))
                iface["peer"]["name"] = peer
        host_names.add(peer)
        near_names[ns] = near
        spec: dict[str, Any] = {"interfaces": [iface]}

        routes: list[dict[str, Any]] = []
        if draw(st.booleans()):
            route: dict[str, Any] = {"to": "default", "via": str(gateway)}
            if draw(st.booleans()):
                route["dev"] = near
            routes.append(route)
        if draw(st.booleans()):
            routes.append({"to": f"192.168.{draw(st.integers(0, 255))}.0/24", "via": str(gateway)})
        if v6 and draw(st.booleans()):
            routes.append({"to": "default", "via": str(gateway6)})
        if routes:
            spec["routes"] = routes

        loopback = draw(st.sampled_from([None, True, False]))
        if loopback is not None:
            spec["loopback"] = loopback
        if draw(st.booleans()):
            spec["sysctls"] = {"net.ipv4.ip_forward": draw(st.integers(0, 1))}
        if draw(st.booleans()):
            dns: dict[str, Any] = {
                "nameservers": [
                    str(a) for a in draw(st.lists(st.ip_addresses(), min_size=1, max_size=3))
                ]
            }
            if draw(st.booleans()):
                dns["search"] = draw(st.lists(HOSTNAMES, min_size=1, max_size=3))
            if draw(st.booleans()):
                dns["hosts"] = {
                    k: str(v)
                    for k, v in draw(
                        st.dictionaries(HOSTNAMES, st.ip_addresses(), min_size=1, max_size=3)
                    ).items()
                }
            spec["dns"] = dns
        namespaces[ns] = spec

    if count >= 2 and draw(st.booleans()):
        a, b = ns_names[0], ns_names[1]
        here = draw(IFNAMES.filter(lambda n: n != near_names[a]))
        there = draw(IFNAMES.filter(lambda n: n != near_names[b]))
        namespaces[a]["interfaces"].append(
            {
                "name": here,
                "peer": {"netns": b, "name": there, "addresses": ["172.31.0.2/30"]},
                "addresses": ["172.31.0.1/30"],
            }
        )

    data: dict[str, Any] = {"name": draw(TOPOLOGY_NAMES)}
    if draw(st.booleans()):
        data["description"] = draw(DESCRIPTIONS)
    data["host"] = host
    data["namespaces"] = namespaces
    return data


# Topology examples take 0.1-0.6 s each (rendering, shellcheck): shrinking one failure took over
# five minutes, so these tests report the first failing example as found, unshrunk.
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


def accept(data: dict[str, Any]) -> Any:
    """Validate data the strategy promises is valid; a rejection is a failure of the test."""
    try:
        return topology_from_data(data, SRC)
    except TopologyError as exc:  # pragma: no cover - reported as a failure
        pytest.fail("generated topology rejected:\n" + "\n".join(exc.lines()))


def shellcheck_binary() -> str | None:
    candidates = [Path(sys.executable).parent / "shellcheck"]
    found = shutil.which("shellcheck")
    if found:
        candidates.append(Path(found))
    candidates.append(Path("/usr/bin/shellcheck"))
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return None


SHELLCHECK = shellcheck_binary()


# ---- (a) accepted topologies render to clean bash ----------------------------------------------


MINIMAL = {
    "name": "min",
    "host": {"bridges": {"br0": {"addresses": ["10.0.0.254/24"]}}},
    "namespaces": {
        "a": {"interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["10.0.0.1/24"]}]}
    },
}
WITH_NAT = {
    "name": "nat",
    "host": {
        "external": ["eth0"],
        "bridges": {"br0": {"addresses": ["10.0.0.254/24"]}},
        "masquerade": [{"source": "10.0.0.0/24", "out": "eth0"}],
        "sysctls": {"net.ipv4.ip_forward": 1},
    },
    "namespaces": {
        "a": {
            "interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["10.0.0.1/24"]}],
            "routes": [{"to": "default", "via": "10.0.0.254"}],
            "dns": {"nameservers": ["192.0.2.53"], "hosts": {"db": "10.0.0.2"}},
        }
    },
}


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")
@settings(
    max_examples=25,
    deadline=None,
    phases=NO_SHRINK,
    suppress_health_check=[HealthCheck.too_slow],
)
@example(data=MINIMAL)
@example(data=WITH_NAT)
@given(data=topologies())
def test_accepted_topologies_render_scripts_that_pass_bash_n_and_shellcheck(
    data: dict[str, Any],
) -> None:
    assert SHELLCHECK is not None
    scripts = render_scripts(build_plan(accept(data)))
    assert {"setup.sh", "teardown.sh"} <= scripts.keys()
    with tempfile.TemporaryDirectory(prefix="nsgen-prop-") as tmp:
        paths = []
        for name, text in scripts.items():
            assert text.startswith("#!/usr/bin/env bash\n")
            path = Path(tmp) / name
            path.write_text(text, encoding="utf-8")
            paths.append(str(path))
            syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
            assert syntax.returncode == 0, f"bash -n {name}:\n{syntax.stderr}"
        lint = subprocess.run([SHELLCHECK, *paths], capture_output=True, text=True, cwd=tmp)
        assert lint.returncode == 0 and lint.stdout == "", lint.stdout + lint.stderr


@settings(max_examples=25, deadline=None, phases=NO_SHRINK)
@given(data=topologies())
def test_generated_topologies_survive_a_yaml_round_trip(data: dict[str, Any]) -> None:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    assert accept(parse_yaml(text, SRC)) == accept(data)


# ---- (b) any string in a name field: rejected, or safe in the scripts ---------------------------


def _name_base() -> dict[str, Any]:
    return {
        "name": "lab",
        "host": {
            "external": ["eth0"],
            "bridges": {"br0": {"addresses": ["10.0.0.254/24"]}},
            "masquerade": [{"source": "10.0.0.0/24", "out": "eth0"}],
        },
        "namespaces": {
            "red": {
                "interfaces": [
                    {
                        "name": "v0",
                        "peer": {"bridge": "br0", "name": "p0"},
                        "addresses": ["10.0.0.1/24"],
                    }
                ],
                "routes": [{"to": "default", "via": "10.0.0.254"}],
                "dns": {"nameservers": ["192.0.2.53"]},
            }
        },
    }


def _put(data: dict[str, Any], field: str, value: str) -> None:
    """Put `value` in one name field of the base topology, and in what refers to it."""
    red = data["namespaces"]["red"]
    iface = red["interfaces"][0]
    if field == "topology":
        data["name"] = value
    elif field == "namespace":
        data["namespaces"] = {value: red}
    elif field == "bridge":
        data["host"]["bridges"] = {value: data["host"]["bridges"]["br0"]}
        iface["peer"]["bridge"] = value
    elif field == "interface":
        iface["name"] = value
        red["routes"][0]["dev"] = value
    elif field == "peer":
        iface["peer"]["name"] = value
    elif field == "external":
        data["host"]["external"] = [value]
        data["host"]["masquerade"][0]["out"] = value
    else:  # pragma: no cover
        raise AssertionError(field)


FIELDS = ["topology", "namespace", "bridge", "interface", "peer", "external"]
SHELL_META = "$`'\"\\;|&<>(){}[]*?!#~ \t\n\r%^=,:@/+"
NASTY = [
    "$(touch /tmp/x)",
    "`touch /tmp/x`",
    "a;b",
    "a b",
    "a\nb",
    "'",
    '"',
    "a'b",
    "${IFS}",
    "-rf",
    "--",
    ".",
    "..",
    "*",
    "~root",
    "host",
    "lo",
    "é",
    "x\u2028y",
    "a\x00b",
]
VALUES = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=NAME_REST + SHELL_META + "é\u2028\x00", max_size=20),
    IFNAMES,
    TOPOLOGY_NAMES,
    st.sampled_from(NASTY),
)
BARE = re.compile(r"[A-Za-z0-9_.-]+")


def check_rejected_or_safely_quoted(field: str, value: str) -> bool:
    """Rejected with a TopologyError (False), or accepted and safe in every script (True)."""
    data = _name_base()
    _put(data, field, value)
    try:
        topology = topology_from_data(data, SRC)
    except TopologyError as exc:
        assert exc.lines()
        return False
    scripts = render_scripts(build_plan(topology))
    assert value and not value.startswith("-"), "an accepted name could be read as an option"
    assert value in scripts["setup.sh"], f"{value!r} ({field}) does not reach setup.sh"
    for name, text in scripts.items():
        if BARE.fullmatch(value):
            assert shlex.quote(value) == value
            continue
        # Otherwise every occurrence must be the quoted form.
        leftover = text.replace(shlex.quote(value), "")
        assert value not in leftover, f"{value!r} ({field}) appears unquoted in {name}"
    return True


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(FIELDS), value=VALUES)
def test_any_string_in_a_name_field_is_rejected_or_safely_quoted(field: str, value: str) -> None:
    accepted = check_rejected_or_safely_quoted(field, value)
    event(f"{field}: {'accepted' if accepted else 'rejected'}")


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", NASTY)
def test_known_nasty_names_are_rejected_or_safely_quoted(field: str, value: str) -> None:
    check_rejected_or_safely_quoted(field, value)


# ---- (c) rendering is deterministic --------------------------------------------------------------


@settings(max_examples=25, deadline=None, phases=NO_SHRINK)
@given(data=topologies())
def test_rendering_the_same_topology_twice_gives_identical_scripts(data: dict[str, Any]) -> None:
    first = render_scripts(build_plan(accept(data)))
    second = render_scripts(build_plan(accept(copy.deepcopy(data))))
    assert first.keys() == second.keys()
    for name in first:
        assert first[name].encode() == second[name].encode(), name


_RENDER_IN_CHILD = """
import json, sys
from nsgen.load import topology_from_data
from nsgen.plan import build_plan
from nsgen.render import render_scripts
print(json.dumps(render_scripts(build_plan(topology_from_data(json.load(sys.stdin), "gen.yaml")))))
"""


@pytest.mark.parametrize("hash_seed", ["1", "2"])
def test_rendering_does_not_depend_on_the_hash_seed(hash_seed: str) -> None:
    """Set and dict iteration must not leak into the scripts: another interpreter with another
    PYTHONHASHSEED renders byte-identical text."""
    here = render_scripts(build_plan(accept(copy.deepcopy(WITH_NAT))))
    child = subprocess.run(
        [sys.executable, "-c", _RENDER_IN_CHILD],
        input=json.dumps(WITH_NAT),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        check=True,
    )
    assert json.loads(child.stdout) == here
