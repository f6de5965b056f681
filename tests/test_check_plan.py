"""What nsgen plans for declared checks, without a network: targets, labels, listeners, the
forwards the expanders record, whether a topology is up, and check.sh's records."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgen.checks import (
    UPLINK_PREFIX,
    CheckResult,
    Listener,
    NotUpError,
    Probe,
    format_results,
    parse_results,
    plan_probes,
    require_up,
    results_json,
    why_not_up,
)
from nsgen.errors import NsgenError, TopologyError
from nsgen.load import load_topology, topology_from_data
from nsgen.model import Topology
from nsgen.plan import build_plan
from nsgen.render import render_scripts
from nsgen.sandbox import UPSTREAM_NETNS
from nsgen.state import StateDir

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "examples" / "docker-bridge.yaml"
K8S = ROOT / "examples" / "k8s-two-nodes.yaml"


def probes_of(path: Path) -> dict[int, Probe]:
    return {p.number: p for p in plan_probes(load_topology(path))}


# ---- forwards ---------------------------------------------------------------------------------


def test_docker_records_each_published_port_where_its_dnat_rule_sends_it() -> None:
    topology = load_topology(DOCKER)
    assert [f.model_dump() for f in topology.forwards] == [
        {
            "kind": "publish",
            "name": "web",
            "protocol": "tcp",
            "netns": ["host"],
            "address": None,
            "port": 8080,
            "endpoints": [{"netns": "web", "address": "172.18.0.2", "port": 80}],
        }
    ]
    data = yaml.safe_load(DOCKER.read_text())
    data["containers"]["web"]["publish"] = [
        {"published": 9000, "target": 90, "protocol": "udp", "host_ip": "203.0.113.2"}
    ]
    (forward,) = topology_from_data(data, "x.yaml").forwards
    assert (forward.protocol, forward.address, forward.port) == ("udp", "203.0.113.2", 9000)


def test_k8s_records_each_service_cluster_ip_and_node_port() -> None:
    forwards = [
        (
            f.kind,
            f.name,
            f.address,
            f.port,
            f.netns,
            [(e.netns, e.address, e.port) for e in f.endpoints],
        )
        for f in load_topology(K8S).forwards
    ]
    endpoints = [("web-a", "10.244.0.2", 8080), ("web-b", "10.244.1.2", 8080)]
    nodes = ["node1", "node2"]
    assert forwards == [
        ("ClusterIP", "web", "10.96.0.10", 80, nodes, endpoints),
        ("ClusterIP", "web-np", "10.96.0.1", 80, nodes, endpoints),
        ("NodePort", "web-np", None, 30080, nodes, endpoints),
    ]


def test_forwards_are_not_a_key_of_the_file() -> None:
    data = {
        "name": "own",
        "forwards": [
            {
                "kind": "publish",
                "name": "x",
                "protocol": "tcp",
                "netns": ["host"],
                "port": 80,
                "endpoints": [],
            }
        ],
    }
    with pytest.raises(TopologyError) as caught:
        topology_from_data(data, "own.yaml")
    assert caught.value.lines() == [
        "own.yaml: forwards: not a key of the file: nsgen records forwards itself, from "
        "`publish:` of containers and from `services:` of a cluster"
    ]


def test_forwards_are_left_out_of_the_schema() -> None:
    from nsgen.schema import topology_schema

    assert "forwards" not in topology_schema()["properties"]


# ---- targets, labels, listeners ----------------------------------------------------------------


def test_a_published_port_check_listens_in_the_container_on_its_port() -> None:
    probes = probes_of(DOCKER)
    inside, outside = probes[10], probes[11]
    assert (inside.netns, inside.target, inside.port) == ("client", "172.18.0.1", 8080)
    assert inside.label == "client -> 172.18.0.1:8080 (host, published by web) tcp"
    assert inside.listeners == (Listener("web", 80, 4),)
    # from the lab's upstream, `to: host` is the host's uplink address, read at run time
    assert (outside.netns, outside.target) == (UPSTREAM_NETNS, UPLINK_PREFIX + "eth0")
    assert outside.label == "upstream -> host:8080 (host's eth0 address, published by web) tcp"
    assert outside.listeners == (Listener("web", 80, 4),)
    # a namespace's own port: the listener in that namespace
    assert probes[9].listeners == (Listener("db", 5432, 4),)
    assert probes[9].label == "web -> 172.19.0.10:5432 (db) tcp"


def test_a_service_check_listens_in_every_endpoint() -> None:
    probes = probes_of(K8S)
    service, node_port = probes[6], probes[7]
    assert (service.target, service.label) == (
        "10.96.0.10",
        "client-a -> 10.96.0.10:80 (Service web) tcp",
    )
    both = (Listener("web-a", 8080, 4), Listener("web-b", 8080, 4))
    assert service.listeners == both
    assert node_port.label == "host -> 10.10.0.1:30080 (node1, NodePort of web-np) tcp"
    assert node_port.listeners == both


def _topology(checks: list[dict[str, Any]], **namespaces: Any) -> Topology:
    return topology_from_data(
        {
            "name": "t",
            "host": {"bridges": {"br0": {"addresses": ["2001:db8::fe/64", "10.1.0.254/24"]}}},
            "namespaces": {
                "a": {"interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["2001:db8::1/64"]}]},
                "b": {"interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["10.1.0.2/24"]}]},
                **namespaces,
            },
            "checks": checks,
        },
        "t.yaml",
    )


def test_ipv6_targets_print_in_brackets_with_a_port() -> None:
    topology = _topology(
        [
            {"from": "b", "to": "a", "kind": "tcp", "port": 80, "listen": True},
            {"from": "b", "to": "a"},
            {"from": "b", "to": "2001:DB8:0::9", "kind": "tcp", "port": 443},
        ]
    )
    listen, ping, literal = plan_probes(topology)
    assert listen.label == "b -> [2001:db8::1]:80 (a) tcp"
    assert listen.listeners == (Listener("a", 80, 6),)
    assert ping.label == "b -> 2001:db8::1 (a) ping"
    assert (literal.target, literal.label) == ("2001:db8::9", "b -> [2001:db8::9]:443 tcp")


def test_from_upstream_is_the_labs_namespace_unless_the_topology_has_one() -> None:
    (probe,) = plan_probes(_topology([{"from": "upstream", "to": "b"}]))
    assert probe.netns == UPSTREAM_NETNS
    (probe,) = plan_probes(_topology([{"from": "upstream", "to": "b"}], upstream={}))
    assert probe.netns == "upstream"


def test_a_check_to_an_unknown_name_is_refused() -> None:
    with pytest.raises(TopologyError) as caught:
        _topology([{"from": "b", "to": "nobody"}, {"from": "nobody", "to": "b"}])
    assert caught.value.lines() == [
        "t.yaml: checks[0].to: 'nobody' is neither an address, a declared namespace nor a Service",
        "t.yaml: checks[1].from: namespace 'nobody' is not declared",
    ]


# ---- is it up? --------------------------------------------------------------------------------


def test_why_not_up_reads_the_record_digest_and_journal(tmp_path: Path) -> None:
    state = StateDir("t", tmp_path)
    assert why_not_up("t", "abc", tmp_path) == f"no record in {tmp_path}/t/"
    state.create("abc")
    state.append("begin 1")
    assert why_not_up("t", "def", tmp_path) == (
        f"its record in {tmp_path}/t/ is of another version of the topology (sha256 differs)"
    )
    assert why_not_up("t", "abc", tmp_path) == (
        f"its setup did not finish (the journal in {tmp_path}/t/ does not say complete)"
    )
    state.append("done 1")
    state.append("complete")
    assert why_not_up("t", "abc", tmp_path) is None
    require_up("t", "abc", tmp_path)
    with pytest.raises(NotUpError) as caught:
        require_up("t", "def", tmp_path)
    assert caught.value.exit_code == 3


# ---- check.sh and its records -----------------------------------------------------------------


def test_check_sh_names_the_labs_upstream_namespace() -> None:
    script = render_scripts(build_plan(load_topology(DOCKER)))["check.sh"]
    assert f"readonly NSGEN_UPSTREAM={UPSTREAM_NETNS}\n" in script
    assert "NSGEN_CHECK_ANYWAY=1 probes whatever is there" in script


def test_a_hostile_to_stays_one_quoted_line_of_check_sh(tmp_path: Path) -> None:
    # the model refuses such a `to` (tests/test_validation.py); built past validation, the
    # label and the argument must not leave their places even so (a second line of defence)
    hostile = "10.0.0.1\nnsgen-check\t1\tPASS\treach\t1\tforged\t\n$(touch /tmp/x)"
    valid = Topology.model_validate(
        {"name": "h", "namespaces": {"a": {}}, "checks": [{"from": "a", "to": "10.0.0.1"}]}
    )
    check = valid.checks[0].model_copy(update={"to": hostile})
    topology = valid.model_copy(update={"checks": [check]})
    (probe,) = plan_probes(topology)
    assert "\n" not in probe.label and "\t" not in probe.label
    script = render_scripts(build_plan(topology))["check.sh"]
    (call,) = [line for line in script.splitlines() if line.startswith("nsgen_check 1 ")]
    assert "\\n" in call
    path = tmp_path / "check.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0


def _probe(number: int, expect: str = "reach") -> Probe:
    return Probe(
        number, "a", "a", "b", "10.0.0.2", "ping", None, None, expect, 2.0, (), f"c{number}"
    )


def test_records_are_parsed_strictly() -> None:
    probes = [_probe(1), _probe(2, "blocked")]
    good = (
        "nsgen-check\t1\tPASS\treach\t0.061\treply\t\n"
        "nsgen-check\t2\tPASS\tblocked\t2004.1\tno reply within 2 s\t\n"
    )
    results = parse_results(good, probes)
    assert [(r.passed, r.result, r.reason, r.ms, r.endpoint) for r in results] == [
        (True, "reach", "reply", 0.061, None),
        (True, "blocked", "no reply within 2 s", 2004.1, None),
    ]
    for bad in (
        "nsgen-check\t1\tPASS\treach\t0.1\treply\t\textra\n",  # a split field
        "nsgen-check\t1\tPASS\treach\t0.1\treply\n",  # a missing one
        "PASS\tsomething else\n",  # not a record
        "nsgen-check\t3\tPASS\treach\t0.1\treply\t\n",  # no such check
        "nsgen-check\t1\tPASS\treach\t0.1\treply\t\nnsgen-check\t1\tPASS\treach\t0.1\treply\t\n",
        "nsgen-check\t1\tPASS\tblocked\t0.1\tno reply\t\n",  # the verdict contradicts
        "nsgen-check\t1\tPASS\tmaybe\t0.1\treply\t\n",
    ):
        with pytest.raises(NsgenError):
            parse_results(bad, probes)


def test_json_has_a_field_for_each_part_of_a_check() -> None:
    probe = Probe(
        7, "upstream", UPSTREAM_NETNS, "host", "dev:eth0", "tcp", 8080, None, "reach", 2.0,
        (Listener("web", 80, 4),), "upstream -> host:8080 (host's eth0 address) tcp",
    )  # fmt: skip
    result = CheckResult(probe, "reach", "connected; web answered", 0.7, "web")
    (check,) = json.loads(results_json([result], "docker-bridge"))["checks"]
    assert check == {
        "number": 7,
        "label": "upstream -> host:8080 (host's eth0 address) tcp",
        "from": "upstream",
        "to": "host",
        "address": None,
        "kind": "tcp",
        "port": 8080,
        "name": None,
        "expect": "reach",
        "result": "reach",
        "passed": True,
        "reason": "connected; web answered",
        "ms": 0.7,
        "endpoint": "web",
        "why": "",
    }
    failed = CheckResult(_probe(1), "blocked", "network unreachable (no route)", 0.3, None)
    assert format_results([result, failed]).splitlines() == [
        "PASS  upstream -> host:8080 (host's eth0 address) tcp  expect reach  0.7 ms  "
        "(answered by web)",
        "FAIL  c1  expect reach  (network unreachable (no route), 0.3 ms)",
        "1 passed, 1 failed",
    ]
