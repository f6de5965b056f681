"""Hostile input, proven per class (issue 10, section 7): a generated hostile string (line
breaks, quotes, $(), backticks, ';', '#', '%', backslashes, NUL, Unicode line separators and a
unique marker) goes into one string field at a time of the examples (and of three topologies
that hold every string field the examples leave out), across the whole schema, the Docker and
Kubernetes vocabularies included.

Rejected: one printable line per problem, within two seconds. Accepted: the rendered
setup.sh, check.sh and teardown.sh run in the sandbox under recording stand-ins
(tests/stubbed.py), and the marker never reaches a command word, a line of a batch of its
own, an /etc/netns line of its own or a systemd directive; no file is written outside
/etc/netns and /run/nsgen, and every file there holds exactly the lines the plan declares;
root-namespace sysctls get exactly the declared values, and teardown puts them back.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import shlex
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from nsgen.checks import parse_results
from nsgen.errors import NsgenError, TopologyError
from nsgen.fields import COMMENT_DIRECTIVES
from nsgen.kinds.files import DnsArgs
from nsgen.kinds.settings import SysctlArgs
from nsgen.load import topology_from_data
from nsgen.model import Topology
from nsgen.names import chain_tag
from nsgen.plan import Plan, Step, build_plan
from nsgen.render import Renderer, render_scripts
from nsgen.sandbox import upstream
from nsgen.schema import topology_schema
from nsgen.snapshot import take_snapshot
from tests.harness import EXAMPLES, assert_same_state, run, sandboxed
from tests.stubbed import (
    Call,
    Run,
    command_words,
    innermost,
    install_stubs,
    run_stubbed,
    shell_redirect_targets,
)

MARK = "qzxmark"
"""The marker every hostile string carries: letters only, so that it is also a valid part of
a name and the topologies holding it are often accepted (and so run)."""

SRC = "hostile.yaml"

# ---- the corpus: the examples, and what they leave out -----------------------------------------

CORE_SINK: dict[str, Any] = {
    "name": "sink",
    "description": "every core field\nsecond line",
    "firewall": "iptables",
    "host": {
        "external": ["eth0"],
        "bridges": {
            "br0": {"addresses": ["10.0.0.254/24", "fd00::fe/64"], "mac": "02:00:00:00:00:fe"}
        },
        "interfaces": [
            {
                "name": "h0",
                "peer": {"netns": "vx", "name": "h0p", "addresses": ["10.5.0.2/30"]},
                "addresses": ["10.5.0.1/30"],
            }
        ],
        "routes": [{"to": "10.9.0.0/16", "via": "10.0.0.1", "dev": "br0"}],
        "masquerade": [{"source": "10.0.0.0/24", "out": "eth0"}],
        "iptables": {
            "chains": [{"table": "filter", "name": "SINK-FWD"}],
            "rules": [
                {
                    "table": "filter",
                    "chain": "FORWARD",
                    "rule": "-i br0 -j SINK-FWD",
                    "insert": True,
                },
                {"chain": "SINK-FWD", "rule": "-s 10.0.0.0/24 -j ACCEPT"},
            ],
        },
        "sysctls": {"net.ipv4.ip_forward": "1"},
    },
    "namespaces": {
        "red": {
            "interfaces": [
                {
                    "peer": {"bridge": "br0", "mac": "02:00:00:00:00:11"},
                    "addresses": ["10.0.0.1/24", "fd00::1/64"],
                },
            ],
            "routes": [
                {"to": "default", "via": "10.0.0.254"},
                {"to": "::/0", "via": "fd00::fe"},
            ],
            "dns": {
                "nameservers": ["192.0.2.53"],
                "search": ["example.test"],
                "hosts": {"db": "10.0.0.2", "web": ["10.0.0.3", "fd00::3"]},
            },
            "sysctls": {"net.ipv4.ip_forward": 1},
        },
        "vx": {
            "interfaces": [
                {
                    "name": "u0",
                    "peer": {"netns": "red", "name": "u0p", "addresses": ["10.6.0.1/30"]},
                    "addresses": ["10.6.0.2/30"],
                }
            ],
            "vxlans": {
                "vx0": {
                    "id": 42,
                    "local": "10.6.0.2",
                    "dev": "u0",
                    "mac": "02:00:00:00:00:01",
                    "addresses": ["10.7.0.1/24"],
                }
            },
            "neighbors": [{"dev": "vx0", "address": "10.7.0.2", "lladdr": "02:00:00:00:00:02"}],
            "fdb": [{"dev": "vx0", "lladdr": "02:00:00:00:00:02", "dst": "10.6.0.1"}],
            "routes": [{"to": "10.8.0.0/24", "via": "10.7.0.2", "dev": "vx0", "onlink": True}],
            "iptables": {
                "chains": [{"table": "nat", "name": "VX"}, {"table": "filter", "name": "VXF"}],
                "rules": [
                    {"table": "nat", "chain": "VX", "rule": "-j RETURN"},
                    # every field of a rule written as data, negations included
                    {
                        "chain": "VXF",
                        "source": "10.6.0.0/30",
                        "destination": "10.7.0.0/24",
                        "in_interface": "u0",
                        "out_interface": "vx0",
                        "protocol": "tcp",
                        "sport": "1024:65535",
                        "dport": "80",
                        "src_type": "UNICAST",
                        "dst_type": "UNICAST",
                        "ctstate": ["NEW"],
                        "mark": "0x1/0x1",
                        "probability": "0.5",
                        "not": {
                            "source": "10.6.0.2",
                            "destination": "10.7.0.9",
                            "in_interface": "lo",
                            "out_interface": "u0",
                            "protocol": "udp",
                            "sport": "53",
                            "dport": "53",
                            "src_type": "LOCAL",
                            "dst_type": "LOCAL",
                            "ctstate": ["INVALID"],
                            "mark": "0x2",
                            "probability": "0.25",
                        },
                        "jump": "REJECT",
                        "reject_with": "icmp-port-unreachable",
                    },
                    {"chain": "FORWARD", "goto": "VXF"},
                    # dispatches: every key field, jump and goto; and a random one
                    {
                        "chain": "FORWARD",
                        "dispatch": {
                            "name": "vx-in",
                            "by": [
                                "source",
                                "destination",
                                "in_interface",
                                "out_interface",
                                "protocol",
                                "sport",
                                "dport",
                            ],
                            "entries": [
                                {
                                    "source": "10.6.0.1",
                                    "destination": "10.7.0.2",
                                    "in_interface": "u0",
                                    "out_interface": "vx0",
                                    "protocol": "tcp",
                                    "sport": "1024",
                                    "dport": "80",
                                    "jump": "VXF",
                                },
                                {
                                    "source": "10.6.0.1",
                                    "destination": "10.7.0.3",
                                    "in_interface": "u0",
                                    "out_interface": "vx0",
                                    "protocol": "udp",
                                    "sport": "1024",
                                    "dport": "53",
                                    "goto": "VXF",
                                },
                            ],
                        },
                    },
                    {
                        "chain": "FORWARD",
                        "dispatch": {"by": "random", "entries": [{"jump": "VXF"}, {"goto": "VXF"}]},
                    },
                    {"table": "nat", "chain": "VX", "jump": "MARK", "set_mark": "0x10"},
                    {"table": "nat", "chain": "VX", "jump": "MARK", "or_mark": "0x20"},
                    {"table": "nat", "chain": "VX", "jump": "MARK", "xor_mark": "0x40"},
                    {"table": "nat", "chain": "VX", "jump": "SNAT", "to_source": "10.6.0.2"},
                    {
                        "table": "nat",
                        "chain": "VX",
                        "protocol": "tcp",
                        "jump": "DNAT",
                        "to_destination": "10.7.0.2:8080",
                    },
                ],
            },
            "shaping": {
                "u0": {"rate": "8mbit", "burst": "16kb", "latency": "40ms"},
                "vx0": {
                    "rate": "1mbit",
                    "limit": "64kb",
                    "delay": "20ms",
                    "jitter": "5ms",
                    "loss": "0.1%",
                    "duplicate": "0.1%",
                    "corrupt": "0.1%",
                },
            },
        },
    },
    "checks": [
        {"from": "red", "to": "vx"},
        {"from": "red", "to": "10.0.0.254"},
        {"from": "red", "to": "vx", "kind": "tcp", "port": 80, "listen": True, "timeout": 1},
        {"from": "red", "kind": "dns", "name": "db", "expect": "reach"},
    ],
    "groups": [{"name": "pair", "kind": "group", "members": ["red", "vx"]}],
}

DOCKER_SINK: dict[str, Any] = {
    "name": "dsink",
    "host": {"external": ["eth0"]},
    "networks": {
        "front": {
            "subnet": "172.18.0.0/24",
            "gateway": "172.18.0.1",
            "bridge": "br-f",
            "ipv6": True,
            "ipv6_subnet": "fd00:18::/64",
            "ipv6_gateway": "fd00:18::1",
            "gateway_mode_ipv6": "routed",
        },
        "back": {"subnet": "172.19.0.0/24", "internal": True},
    },
    "containers": {
        "web": {
            "networks": {"front": {"address": "172.18.0.5"}, "back": None},
            "publish": [
                "8080:80/tcp",
                {"published": 8443, "target": 443, "protocol": "tcp", "host_ip": "203.0.113.2"},
            ],
            "dns": ["192.0.2.53"],
        },
        "db": {"networks": ["back"]},
    },
    "checks": [{"from": "web", "to": "db"}],
}

K8S_SINK: dict[str, Any] = {
    "name": "ksink",
    "host": {"external": ["eth0"]},
    "cluster": {
        "mode": "host-gw",
        "node_network": {"bridge": "k8s-n", "subnet": "10.10.0.0/24"},
        "pod_cidr": "10.244.0.0/16",
        "service_cidr": "10.96.0.0/12",
        "cluster_domain": "cluster.local",
        "nodes": {"n1": {"pods": ["p1"]}},
        "services": {
            "web": {
                "type": "NodePort",
                "cluster_ip": "10.96.0.10",
                "protocol": "TCP",
                "port": 80,
                "node_port": 30080,
                "endpoints": ["p1"],
            }
        },
    },
}


FLEET_SINK: dict[str, Any] = {
    "name": "fsink",
    "hosts": {
        "alpha": {
            "address": "192.0.2.1",
            "dev": "eth0",
            "place": ["a"],
            "ansible": {
                "ansible_host": "192.0.2.1",
                "ansible_port": 22,
                "ansible_user": "root",
                "ansible_connection": "ssh",
                "ansible_ssh_private_key_file": "/root/.ssh/id_ed25519",
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no",
                "ansible_ssh_extra_args": "-o ConnectTimeout=5",
                "ansible_become": True,
                "ansible_become_method": "sudo",
                "ansible_become_user": "root",
                "ansible_python_interpreter": "/usr/bin/python3",
            },
        },
        "beta": {"address": "192.0.2.2", "place": ["b"]},
    },
    "overlay": {"port": 4789, "vni": {"br-f": 4096}},
    "host": {"external": ["eth0"], "bridges": {"br-f": {"addresses": ["10.30.0.254/24"]}}},
    "namespaces": {
        "a": {"interfaces": [{"peer": {"bridge": "br-f"}, "addresses": ["10.30.0.1/24"]}]},
        "b": {"interfaces": [{"peer": {"bridge": "br-f"}, "addresses": ["10.30.0.2/24"]}]},
    },
}


def _corpus() -> dict[str, dict[str, Any]]:
    found = {
        path.stem: yaml.safe_load(path.read_text()) for path in sorted(EXAMPLES.glob("*.yaml"))
    }
    return {
        **found,
        "core-sink": CORE_SINK,
        "docker-sink": DOCKER_SINK,
        "k8s-sink": K8S_SINK,
        "fleet-sink": FLEET_SINK,
    }


CORPUS = _corpus()

# ---- string fields: the schema's, and where the corpus holds them ------------------------------

SCHEMA = topology_schema()


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _options(node: dict[str, Any]) -> list[dict[str, Any]]:
    node = _resolve(node)
    if "anyOf" in node:
        return [o for option in node["anyOf"] for o in _options(option)]
    return [node]


def schema_shapes() -> set[str]:
    """Every string field of the schema, as a shape: `.namespaces.*.routes[].via`; `<key>` is
    a key of a mapping whose keys the user names."""
    shapes: set[str] = set()

    def walk(node: dict[str, Any], shape: str, depth: int) -> None:
        for option in _options(node):
            kind = option.get("type")
            if kind == "string":
                shapes.add(shape)
            if "properties" in option:
                for key, sub in option["properties"].items():
                    walk(sub, f"{shape}.{key}", depth + 1)
            extra = option.get("additionalProperties")
            if isinstance(extra, dict):
                shapes.add(f"{shape}.<key>")
                walk(extra, f"{shape}.*", depth + 1)
            if kind == "array":
                walk(option.get("items", {}), f"{shape}[]", depth + 1)

    walk(SCHEMA, "", 0)
    return {_normal(shape) for shape in shapes}


def _normal(shape: str) -> str:
    """The root namespace has the shape of any namespace."""
    return shape.replace(".host.", ".namespaces.*.", 1)


Slot = tuple[tuple[Any, ...], bool, str]
"""(path in the data, whether it is a mapping key, its schema shape)."""


def slots(data: Any) -> list[Slot]:
    """Every string of a topology's data (values and user-named keys), with its shape."""
    found: list[Slot] = []

    def walk(value: Any, node: dict[str, Any], path: tuple[Any, ...], shape: str) -> None:
        options = _options(node)
        kind = {dict: "object", list: "array", str: "string"}.get(type(value))
        if kind is None:
            return
        option = next(
            (
                o
                for o in options
                if o.get("type") == kind or (kind == "object" and "properties" in o)
            ),
            None,
        )
        if option is None:
            return
        if isinstance(value, str):
            found.append((path, False, _normal(shape)))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, option.get("items", {}), (*path, i), f"{shape}[]")
        elif "properties" in option:
            for key, item in value.items():
                if key in option["properties"]:
                    walk(item, option["properties"][key], (*path, key), f"{shape}.{key}")
        elif isinstance(option.get("additionalProperties"), dict):
            for key, item in value.items():
                found.append(((*path, key), True, _normal(f"{shape}.<key>")))
                walk(item, option["additionalProperties"], (*path, key), f"{shape}.*")

    walk(data, SCHEMA, (), "")
    return found


ALL_SLOTS = [(name, slot) for name, data in CORPUS.items() for slot in slots(data)]


def test_the_corpus_holds_every_string_field_of_the_schema() -> None:
    """So that a new string field is covered by the property test below, or this test fails."""
    covered = {shape for _, (_, _, shape) in ALL_SLOTS}
    missing = schema_shapes() - covered
    assert not missing, f"no topology of the corpus holds these string fields: {sorted(missing)}"
    for data in CORPUS.values():
        assert MARK not in repr(data)


def test_the_corpus_is_valid() -> None:
    for name, data in CORPUS.items():
        topology_from_data(copy.deepcopy(data), f"{name}.yaml")


# ---- hostile strings -----------------------------------------------------------------------------

PIECES = [
    "\n",
    "\r\n",
    "\t",
    " ",
    "'",
    '"',
    "\\",
    "$(id)",
    "`id`",
    ";",
    "&&",
    "|",
    "#",
    "%",
    "%eth0",
    "\x00",
    "\u2028",
    "\x85",
    "${IFS}",
    "-",
    "--",
    "=",
    ":",
    "/",
    "..",
    "*",
    "é",
    "\x1b[31m",
    "\nEOF\n",
    "# shellcheck disable=all",
    "\\\n",
]


@st.composite
def mutations(draw: Any) -> tuple[str, dict[str, Any], Slot, str]:
    """An example with one string field (and, for a name, what refers to it) made hostile."""
    name, slot = draw(st.sampled_from(ALL_SLOTS))
    path, is_key, _ = slot
    data = copy.deepcopy(CORPUS[name])
    original = path[-1] if is_key else _get(data, path)
    assert isinstance(original, str)
    pieces = draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("".join))
    at = draw(st.integers(0, len(original)))
    # The plain forms are often valid (a name with the marker in it), so they run; the others
    # are rejected by the field's grammar, or run with the hostile text in place.
    value = draw(
        st.sampled_from(
            [
                original + MARK,
                original + MARK,
                original + MARK,
                MARK + original,
                original + pieces + MARK,
                original + pieces + MARK,
                original[:at] + pieces + MARK + original[at:],
                pieces + MARK,
            ]
        )
        | st.text(max_size=8).map(lambda t: original + t + MARK)
    )
    everywhere = is_key or draw(st.sampled_from([True, True, True, False]))
    if everywhere:
        data = _rename(data, original, value)
    else:
        _set(data, path, value)
    return name, data, slot, value


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: tuple[Any, ...], value: str) -> None:
    _get(data, path[:-1])[path[-1]] = value


def _rename(data: Any, old: str, new: str) -> Any:
    """`data` with every string (key or value) equal to `old` replaced by `new`: a name and
    everything that refers to it."""
    if isinstance(data, dict):
        return {(new if k == old else k): _rename(v, old, new) for k, v in data.items()}
    if isinstance(data, list):
        return [_rename(v, old, new) for v in data]
    return new if data == old else data


# ---- what must hold of a run ---------------------------------------------------------------------

RESTORE_OPS = {"-A", "-I", "-D", "-X", "-N", "-F", "COMMIT"}
TABLES = {"*filter", "*nat", "*mangle", "*raw"}
UNIT_KEYS = {
    "Description",
    "Documentation",
    "Wants",
    "After",
    "Type",
    "RemainAfterExit",
    "ExecStart",
    "ExecStop",
    "WantedBy",
}


def _steps(plan: Plan) -> Iterator[Step]:
    for step in plan.steps:
        yield step
        yield from step.parts


def declared_files(plan: Plan, topology: Topology) -> tuple[dict[str, bytes], set[str]]:
    """The /etc/netns files the plan writes, with their exact bytes, and the namespaces whose
    /etc/netns directory it creates."""
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    for step in _steps(plan):
        if isinstance(step.args, DnsArgs):
            dirs.add(step.args.netns)
            for name, lines in step.args.files:
                path = f"/etc/netns/{step.args.netns}/{name}"
                files[path] = "".join(f"{line}\n" for line in lines).encode()
    return files, dirs


def _heredocs(script: str) -> set[str]:
    """The bodies of the script's here-documents."""
    return set(re.findall(r"<<'EOF'\n(.*?)^EOF$", script, re.S | re.M))


HELPER_LINES = re.compile(r"(netns|link) delete [^ ]+")
"""The lines the scripts' helpers build at run time, one name each (nsgen_delete_netns,
nsgen_delete_links)."""


class Placement:
    """Where the hostile value may appear: wherever the marker is, the whole value is too,
    within one argument (one word of a command or of a batch line, one line of a file). A
    value that is itself several words (a rule's text) keeps each of its words whole."""

    def __init__(self, value: str | None, shape: str) -> None:
        self.units: list[str] = []
        if value is not None and shape != ".description":
            words = shlex.split(value) if shape.endswith(".rule") else [value]
            if shape.endswith(".sysctls.<key>"):  # also as its /proc/sys path
                words.append(value.replace(".", "/"))
            self.units = [word for word in words if MARK in word]

    def check(self, where: str, words: list[str], problems: list[str]) -> None:
        for word in words:
            if MARK in word and not any(unit in word for unit in self.units):
                problems.append(f"{where}: the marker is in {word!r} without its whole value")

    def check_line(self, where: str, line: str, problems: list[str]) -> list[str]:
        """The line's words (shlex), checked; an unsplittable line is a problem."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            problems.append(f"{where}: {line!r} does not split into words: {exc}")
            return []
        self.check(where, words, problems)
        return words


def check_batch(call: Call, scripts: dict[str, str], place: Placement, problems: list[str]) -> None:
    """A batch (ip -b, bridge -b, iptables-restore) is a here-document of a script, or what
    the scripts' helpers build at run time one name at a time; the marker is never the
    first word of one of its lines, and never without the whole value."""
    inner = innermost(call.argv)
    program = inner[0].rsplit("/", 1)[-1]
    batch = program in ("ip", "bridge") and "-b" in inner
    restore = program in ("iptables-restore", "ip6tables-restore")
    if not (batch or restore) or not call.stdin:
        return
    lines = [line for line in call.stdin.splitlines() if line]
    declared = any(call.stdin in _heredocs(text) for text in scripts.values())
    if batch:
        built = all(HELPER_LINES.fullmatch(line) for line in lines)
    else:
        built = all(
            line in TABLES or line == "COMMIT" or line[:3] in ("-D ", "-X ") for line in lines
        )
    if not (declared or built):
        problems.append(
            f"batch of {inner} is neither declared nor built by a helper: {call.stdin!r}"
        )
    for line in lines:
        words = place.check_line(f"batch of {inner[0]}", line, problems)
        first = words[0] if words else ""
        if restore:
            if not (first in RESTORE_OPS or first in TABLES or first.startswith(":")):
                problems.append(f"iptables-restore line {line!r} is not a declared kind")
        elif MARK in first:
            problems.append(f"the marker is the command of batch line {line!r}")


def check_run(
    run: Run,
    scripts: dict[str, str],
    plan: Plan,
    topology: Topology,
    before: dict[str, str],
    place: Placement,
) -> list[str]:
    problems: list[str] = []
    for call in run.calls:
        if not call.found:
            problems.append(f"a command that does not exist was run: {call.argv}")
        for word in command_words(call.argv):
            if MARK in word:
                problems.append(f"the marker is a command word: {word!r} in {call.argv}")
        place.check(f"argv {call.argv}", list(call.argv), problems)
        inner = innermost(call.argv)
        if inner[0] == "bash" and "-c" in inner:
            code = inner[inner.index("-c") + 1]
            place.check_line(f"bash -c of {call.argv}", code, problems)
            for target in shell_redirect_targets(code):
                if not target.strip("'\"").startswith(("/proc/sys/net/", "/dev/tcp/")):
                    problems.append(f"bash -c writes outside /proc/sys/net: {code!r}")
        check_batch(call, scripts, place, problems)
    for phase, text in run.stderr.items():
        for needle in ("Read-only file system", "command not found", "Permission denied"):
            if needle in text:
                problems.append(f"{phase}.sh stderr says {needle!r}: {text[-2000:]}")
    if run.leftovers:
        problems.append(f"files written outside nsgen's directories: {run.leftovers}")
    if run.codes["setup"] not in (0, 3) or run.codes["teardown"] != 0:
        problems.append(f"exit codes {run.codes}; setup stderr: {run.stderr['setup'][-2000:]}")
    if run.codes["setup"] == 0:
        try:
            records = parse_results(run.stdout["check"], plan.probes)
        except NsgenError as exc:
            problems.append(f"check.sh's records do not parse: {exc}")
            records = []
        expected = [(p.number, p.label) for p in plan.probes]
        if [(r.probe.number, r.probe.label) for r in records] != expected:
            problems.append(f"check.sh records {records} are not the declared checks {expected}")
        # Every stand-in answers, so what must be reached is, and what must be blocked is not.
        wrong = [r for r in records if r.passed != (r.probe.expect == "reach")]
        if wrong:
            problems.append(f"check.sh verdicts {wrong} are not what the stand-ins answered")

    files, dirs = declared_files(plan, topology)
    for path, data in files.items():
        lines = data.decode().split("\n")[:-1]
        if len(lines) != declared_line_count(topology, path):
            problems.append(f"{path} has {len(lines)} lines, the topology declares others")
        for line in lines:
            place.check(path, line.split(" "), problems)
            first = line.split(" ", 1)[0]
            if path.endswith("resolv.conf") and first not in ("nameserver", "search"):
                problems.append(f"{path} line {line!r} is no resolv.conf directive")
            if path.endswith("/hosts"):
                try:
                    ipaddress.ip_address(first)
                except ValueError:
                    problems.append(f"{path} line {line!r} does not start with an address")
    state = f"/run/nsgen/{plan.topology}/"
    host_sysctls = topology.host.sysctls
    if run.codes["setup"] == 0:
        allowed = {state + "digest", state + "journal"}
        allowed |= {f"{state}netns-dir.{ns}" for ns in dirs}
        # the keys set, and those the kernel changes with them (saved and restored too)
        companions = {
            key
            for step in _steps(plan)
            if isinstance(step.args, SysctlArgs)
            for key in step.args.companions
        }
        for key in [*host_sysctls, *companions]:
            allowed |= {
                f"/run/nsgen/.sysctl/{key}/original",
                f"/run/nsgen/.sysctl/{key}/{plan.topology}",
            }
        written = run.files["setup"]
        for path, data in written.items():
            if path in files:
                if data != files[path]:
                    problems.append(f"{path} holds {data!r}, declared {files[path]!r}")
            elif path not in allowed:
                problems.append(f"setup wrote {path}, which nsgen does not declare")
        for path in files:
            if path not in written:
                problems.append(f"setup did not write {path}")
        if written.get(state + "digest") != f"{plan.digest}\n".encode():
            problems.append(f"the digest record is {written.get(state + 'digest')!r}")
        journal = written.get(state + "journal", b"").decode()
        if not re.fullmatch(r"((begin|done) [0-9]+\n)*complete\n", journal):
            problems.append(f"the journal is {journal!r}")
        for key, value in host_sysctls.items():
            if run.sysctls["setup"].get(key) != value:
                problems.append(
                    f"{key} is {run.sysctls['setup'].get(key)!r} after setup, not {value}"
                )
    elif run.files["setup"]:
        problems.append(f"a failed setup left {sorted(run.files['setup'])}")
    if run.files["teardown"]:
        problems.append(f"teardown left {sorted(run.files['teardown'])}")
    if run.sysctls["teardown"] != before:
        problems.append(f"sysctls after teardown {run.sysctls['teardown']}, before {before}")
    problems += check_texts(scripts, plan, place)
    return problems


def declared_line_count(topology: Topology, path: str) -> int:
    """How many lines the topology's dns entries make of an /etc/netns file."""
    netns, name = path.split("/")[3:5]
    dns = topology.namespaces[netns].dns
    assert dns is not None
    if name == "hosts":
        # localhost twice (IPv4 and IPv6), then one line per address of each name
        return 2 + sum(1 if isinstance(a, str) else len(a) for a in dns.hosts.values())
    return len(dns.nameservers) + (1 if dns.search else 0)


def check_texts(scripts: dict[str, str], plan: Plan, place: Placement) -> list[str]:
    """The marker never makes a comment line a directive, nor a unit line a directive of
    its own."""
    problems: list[str] = []
    for name, text in scripts.items():
        for line in text.splitlines():
            if MARK in line and line.lstrip().startswith("#"):
                comment = line.lstrip().lstrip("#")
                if any(pattern.search(comment) for pattern, _ in COMMENT_DIRECTIVES):
                    problems.append(f"{name}: comment {line!r} reads as a directive")
    unit = Renderer().unit(plan, f"/usr/libexec/nsgen/{plan.topology}")
    for line in unit.splitlines():
        if not line or line.startswith("#") or re.fullmatch(r"\[[A-Za-z]+\]", line):
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in UNIT_KEYS or line.endswith("\\"):
            problems.append(f"unit line {line!r} is not a declared directive")
        if key != "Description":
            place.check(f"unit line {line!r}", [value], problems)
    return problems


def _saved_rules(topology: Topology) -> str:
    """What iptables-save shows to teardown.sh: one rule carrying the topology's tag per
    table, so that the teardown helper builds its -D lines from them."""
    tag = chain_tag(topology.name)
    return (
        "*nat\n:POSTROUTING ACCEPT [0:0]\n"
        f"-A POSTROUTING -s 10.0.0.0/24 -m comment --comment {tag} -j MASQUERADE\nCOMMIT\n"
        "*filter\n:FORWARD ACCEPT [0:0]\n"
        f'-A FORWARD -m comment --comment "{tag}" -j ACCEPT\nCOMMIT\n'
    )


def _read_sysctls(keys: list[str]) -> dict[str, str]:
    values = {}
    for key in keys:
        path = Path("/proc/sys") / key.replace(".", "/")
        try:
            values[key] = path.read_text().strip()
        except OSError as exc:
            values[key] = f"cat: {path}: {exc.strerror}"
    return values


def accepted_or_rejected(data: dict[str, Any]) -> Topology | None:
    """The topology nsgen makes of `data`, or None when it rejects it: within two seconds,
    as printable one-line problems, never another exception."""
    start = time.monotonic()
    try:
        topology = topology_from_data(data, SRC)
    except TopologyError as exc:
        lines = exc.lines()
        assert lines and all(line.isprintable() for line in lines), lines
        topology = None
    assert time.monotonic() - start < 2.0
    return topology


def exercise(
    data: dict[str, Any], stubs: Path, style: str, value: str | None = None, shape: str = ""
) -> bool:
    """Validate; if accepted, render and run under the stand-ins, and check everything
    (`value`, in the field of `shape`, is the hostile string, if any)."""
    topology = accepted_or_rejected(data)
    if topology is None:
        return False
    plan = build_plan(topology, style)
    scripts = render_scripts(plan)
    keys = list(topology.host.sysctls)
    before = _read_sysctls(keys)
    spaces = [*topology.namespaces, "nsgen-upstream"]
    run = run_stubbed(
        scripts, stubs, list(topology.host.external), keys, _saved_rules(topology), spaces
    )
    problems = check_run(run, scripts, plan, topology, before, Placement(value, shape))
    assert not problems, "\n".join(problems)
    if "hosts" in data:
        check_fleet_bundle(data, style, value)
    return True


def _scalars(node: Any) -> list[str]:
    """Every string of a parsed YAML document, keys included."""
    if isinstance(node, dict):
        return [s for key, item in node.items() for s in (*_scalars(key), *_scalars(item))]
    if isinstance(node, list):
        return [s for item in node for s in _scalars(item)]
    return [node] if isinstance(node, str) else []


def check_fleet_bundle(data: dict[str, Any], style: str, value: str | None) -> None:
    """A topology with hosts: its bundle (per-host scripts, Ansible inventory and playbooks)
    is written, the inventory and playbooks parse as YAML, and a hostile value is, whole,
    one scalar of them wherever it appears."""
    from nsgen.fleet import load
    from nsgen.fleet.bundle import write_fleet

    with tempfile.TemporaryDirectory(prefix="nsgen-fleet-") as tmp:
        source = Path(tmp) / "fleet.yaml"
        source.write_text(yaml.safe_dump(data))
        _, fleet = load(source)
        assert fleet is not None
        write_fleet(fleet, Path(tmp) / "out", style)
        for path in sorted((Path(tmp) / "out" / "ansible").glob("*.yml")):
            scalars = _scalars(yaml.safe_load(path.read_text()))
            if value is not None:
                for scalar in scalars:
                    if MARK in scalar:
                        assert value in scalar, f"{path.name}: {scalar!r} splits {value!r}"


# ---- the tests ------------------------------------------------------------------------------------


@sandboxed
def test_every_example_runs_clean_under_the_stand_ins() -> None:
    """The checks of the property test hold for the unmodified corpus (so a failure below is
    the hostile string's doing); the three topologies that hold every field in both
    rendering styles."""
    with tempfile.TemporaryDirectory(prefix="nsgen-stubs-") as tmp:
        stubs = install_stubs(Path(tmp) / "bin")
        for name, data in CORPUS.items():
            styles = ("batch", "tutorial") if name.endswith("sink") else ("batch",)
            for style in styles:
                assert exercise(copy.deepcopy(data), stubs, style), (name, style)


@sandboxed
@settings(
    max_examples=100,
    deadline=timedelta(seconds=20),  # an example takes a fraction of a second; a hang fails
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutation=mutations(), style=st.sampled_from(["batch", "tutorial"]))
def test_a_hostile_string_in_any_field_is_rejected_or_stays_in_its_place(
    mutation: tuple[str, dict[str, Any], Slot, str], style: str
) -> None:
    _, data, (_, _, shape), value = mutation
    with tempfile.TemporaryDirectory(prefix="nsgen-stubs-") as tmp:
        stubs = install_stubs(Path(tmp) / "bin")
        accepted = exercise(data, stubs, style, value, shape)
    event("accepted" if accepted else "rejected")
    event(f"field {shape}")


@pytest.mark.parametrize(
    ("shape", "value"),
    [
        (".description", "x $(touch /tmp/qzxmark) `id` 'q' \"d\" ; # % qzxmark"),
        (".checks[].to", "blue\t1\tPASS" + MARK),
        (".namespaces.*.dns.nameservers[]", "fe80::1%eth0\nnameserver 6.6.6.6" + MARK),
    ],
)
def test_known_escapes_of_issue_10_are_closed(shape: str, value: str) -> None:
    """The reproduced escapes: text in a description reaches only comments; a check target
    cannot forge result records; a zone id cannot add a resolv.conf line."""
    data = copy.deepcopy(CORPUS["seed"])
    if shape == ".description":
        data["description"] = value
        topology = accepted_or_rejected(data)
        assert topology is not None
        plan = build_plan(topology)
        assert check_texts(render_scripts(plan), plan, Placement(value, shape)) == []
    elif shape == ".checks[].to":
        data["checks"][0]["to"] = value
        assert accepted_or_rejected(data) is None
    else:
        data["namespaces"]["blue"]["dns"]["nameservers"] = [value]
        assert accepted_or_rejected(data) is None


def test_a_name_field_value_of_hostile_text_is_rejected_in_every_field() -> None:
    """Without the sandbox: every slot of the corpus given a line break and the marker is
    refused (a line break belongs to no field's grammar but the description's)."""
    for name, (path, is_key, shape) in ALL_SLOTS:
        if shape == ".description":
            continue
        data = copy.deepcopy(CORPUS[name])
        original = path[-1] if is_key else _get(data, path)
        hostile = original + "\n" + MARK
        data = _rename(data, original, hostile) if is_key else data
        if not is_key:
            _set(data, path, hostile)
        assert accepted_or_rejected(data) is None, (name, shape)


@sandboxed
def test_a_root_sysctl_the_kernel_lacks_leaves_no_record_after_rollback(tmp_path: Path) -> None:
    """Found by the property test: `net.ipv4.ip_forwardqzxmark` is a well-formed key that the
    kernel lacks. Setup fails at its step and rolls back; the empty record it had begun
    under /run/nsgen/.sysctl/ used to stay behind (and would have been taken as the saved
    value by the next topology setting that key)."""
    data = copy.deepcopy(CORPUS["seed"])
    data["host"]["sysctls"] = {"net.ipv4.no_such_sysctl": 1}
    scripts = render_scripts(build_plan(topology_from_data(data, SRC)))
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
    with upstream(["eth0"]):
        before = take_snapshot()
        setup = run("bash", tmp_path / "setup.sh")
        assert setup.returncode == 3, setup.stderr
        assert "no_such_sysctl" in setup.stderr
        left = sorted(str(p) for p in Path("/run/nsgen").rglob("*") if p.name != ".sandbox-netns")
        assert left == []
        assert_same_state(before)
