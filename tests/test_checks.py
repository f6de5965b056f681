"""Declared checks run for real in the sandbox: nsgen check, check.sh, lab --check."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgen.checks import run_check_script
from nsgen.errors import NsgenError
from nsgen.load import load_topology
from nsgen.plan import build_plan
from nsgen.render import Renderer
from nsgen.sandbox import DNS_SERVER, INTERNET_HOST, start_dns, upstream
from tests.harness import EXAMPLES, render_example, run, sandboxed

NSGEN = (sys.executable, "-m", "nsgen")
SEED = EXAMPLES / "seed.yaml"


def nsgen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(*NSGEN, *args, timeout=120)


def verdicts(result: subprocess.CompletedProcess[str]) -> dict[int, bool]:
    data = json.loads(result.stdout)
    return {c["number"]: c["passed"] for c in data["checks"]}


def checks_of(result: subprocess.CompletedProcess[str]) -> dict[int, dict[str, Any]]:
    """`nsgen check --json`'s checks by number."""
    data = json.loads(result.stdout)
    return {c["number"]: c for c in data["checks"]}


@sandboxed
def test_seed_checks_pass_and_breaking_a_link_fails_exactly_the_checks_that_use_it(
    tmp_path: Path,
) -> None:
    scripts = render_example("seed", tmp_path)
    with upstream(["eth0"]):
        assert nsgen("up", SEED, "-q").returncode == 0
        good = nsgen("check", SEED, "--json")
        assert good.returncode == 0, good.stdout + good.stderr
        assert verdicts(good) == {1: True, 2: True, 3: True, 4: True}
        table = nsgen("check", SEED)
        assert table.stdout.splitlines()[-1] == "4 passed, 0 failed"

        # red's cable to the bridge is cut: red <-> blue and host -> red fail, blue still
        # reaches the outside world
        assert run("ip", "link", "set", "veth-red-br", "down").returncode == 0
        broken = nsgen("check", SEED, "--json")
        assert broken.returncode == 1
        assert verdicts(broken) == {1: False, 2: False, 3: False, 4: True}
        standalone = run("bash", scripts / "check.sh")
        assert standalone.returncode == 1
        assert "FAIL red -> 192.168.15.1 (blue) ping: expected reach, got no reply" in (
            standalone.stdout
        )
        assert standalone.stdout.splitlines()[-1] == "1 passed, 3 failed"
        assert run("ip", "link", "set", "veth-red-br", "up").returncode == 0
        assert nsgen("down", "seed", "-q").returncode == 0


ISOLATED = {
    "name": "iso",
    "host": {
        "bridges": {"br-iso": {"addresses": ["10.50.0.254/24"]}},
        "iptables": {"rules": [{"chain": "FORWARD", "rule": "-i br-iso -o br-iso -j DROP"}]},
    },
    "namespaces": {
        "a": {"interfaces": [{"peer": {"bridge": "br-iso"}, "addresses": ["10.50.0.1/24"]}]},
        "b": {"interfaces": [{"peer": {"bridge": "br-iso"}, "addresses": ["10.50.0.2/24"]}]},
    },
    "checks": [
        {"from": "a", "to": "b", "expect": "blocked", "timeout": 1},
        {"from": "host", "to": "b"},
    ],
}


@sandboxed
def test_a_blocked_check_fails_when_isolation_is_broken(tmp_path: Path) -> None:
    topology = tmp_path / "iso.yaml"
    topology.write_text(yaml.safe_dump(ISOLATED))
    assert nsgen("up", topology, "-q").returncode == 0
    held = nsgen("check", topology, "--json")
    assert held.returncode == 0, held.stdout
    assert verdicts(held) == {1: True, 2: True}
    # the user "fixes" connectivity by removing the isolation rule
    rule = ["-i", "br-iso", "-o", "br-iso", "-m", "comment", "--comment", "nsgen:iso", "-j", "DROP"]
    assert run("iptables", "-w", "-D", "FORWARD", *rule).returncode == 0
    broken = nsgen("check", topology)
    assert broken.returncode == 1
    assert re.search(
        r"^FAIL  a -> 10\.50\.0\.2 \(b\) ping  expect blocked  \(reply, [0-9.]+ ms\)$",
        broken.stdout,
        re.M,
    ), broken.stdout
    assert nsgen("down", topology, "-q").returncode == 0


DNS_AND_TCP = {
    "name": "probe",
    "host": {
        "external": ["eth0"],
        "bridges": {"br-p": {"addresses": ["10.60.0.254/24"]}},
        "masquerade": [{"source": "10.60.0.0/24", "out": "eth0"}],
        "sysctls": {"net.ipv4.ip_forward": 1},
    },
    "namespaces": {
        "client": {
            "interfaces": [{"peer": {"bridge": "br-p"}, "addresses": ["10.60.0.1/24"]}],
            "routes": [{"to": "default", "via": "10.60.0.254"}],
            "dns": {"nameservers": [DNS_SERVER], "hosts": {"peer": "10.60.0.2"}},
        },
        "server": {"interfaces": [{"peer": {"bridge": "br-p"}, "addresses": ["10.60.0.2/24"]}]},
    },
    "checks": [
        {"from": "client", "kind": "dns", "name": "www.example.test"},
        {"from": "client", "kind": "dns", "name": "nothing.example.test", "expect": "blocked"},
        {"from": "client", "kind": "dns", "name": "peer"},
        {"from": "client", "to": INTERNET_HOST, "kind": "tcp", "port": 8080},
        {"from": "client", "to": INTERNET_HOST, "kind": "tcp", "port": 8081, "expect": "blocked"},
        {"from": "client", "to": "server", "kind": "tcp", "port": 7000, "listen": True},
        {"from": "client", "to": "server", "kind": "tcp", "port": 7001, "expect": "blocked"},
    ],
}


@sandboxed
def test_tcp_and_dns_checks_against_real_listeners(tmp_path: Path) -> None:
    topology = tmp_path / "probe.yaml"
    topology.write_text(yaml.safe_dump(DNS_AND_TCP, sort_keys=False))
    with upstream(["eth0"]) as up:
        start_dns(up)
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                up.netns,
                sys.executable,
                "-m",
                "http.server",
                "8080",
                "--bind",
                INTERNET_HOST,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ready = run("ip", "netns", "exec", up.netns, "ss", "-Hltn", "sport = :8080")
                if ready.stdout.strip():
                    break
                time.sleep(0.05)
            assert nsgen("up", topology, "-q").returncode == 0
            result = nsgen("check", topology, "--json")
            data = json.loads(result.stdout)
            assert result.returncode == 0, json.dumps(data, indent=1)
            details = {c["number"]: c["reason"] for c in data["checks"]}
            assert details[1] == "resolves to 192.0.2.10"
            assert details[3] == "resolves to 10.60.0.2"
            assert details[5] == "refused"
            assert run("ss", "-Hltn").stdout.count(":7000") == 0, "the listener is gone"
            assert nsgen("down", topology, "-q").returncode == 0
        finally:
            server.terminate()
            server.wait(timeout=10)


UNREACHABLE = {
    "name": "far",
    "host": {"bridges": {"br-far": {"addresses": ["10.70.0.254/24"]}}},
    "namespaces": {
        "lonely": {
            "interfaces": [{"peer": {"bridge": "br-far"}, "addresses": ["10.70.0.1/24"]}],
            "routes": [{"to": "default", "via": "10.70.0.254"}],
        }
    },
    "checks": [
        {"from": "lonely", "to": "10.70.0.99", "timeout": 1},
        {"from": "lonely", "to": "10.70.0.99", "kind": "tcp", "port": 80, "timeout": 1.5},
        {"from": "host", "to": "10.70.0.98", "timeout": 1},
    ],
}


@sandboxed
def test_a_check_run_against_unreachable_targets_ends_within_its_timeouts(tmp_path: Path) -> None:
    topology = tmp_path / "far.yaml"
    topology.write_text(yaml.safe_dump(UNREACHABLE))
    assert nsgen("up", topology, "-q").returncode == 0
    started = time.monotonic()
    result = nsgen("check", topology, "--json")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert verdicts(result) == {1: False, 2: False, 3: False}
    declared = 1 + 1.5 + 1
    assert elapsed < declared + 2.5, f"took {elapsed:.1f} s for {declared} s of timeouts"
    assert nsgen("down", topology, "-q").returncode == 0


@sandboxed
def test_lab_check_exits_with_the_checks_result(tmp_path: Path) -> None:
    # lab makes a sandbox of its own inside this one
    ok = run(*NSGEN, "lab", EXAMPLES / "two-tier.yaml", "--check", "-q", timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert (ok.stdout, ok.stderr) == ("", ""), "-q: nothing failed, nothing to say"
    failing = tmp_path / "far.yaml"
    failing.write_text(yaml.safe_dump(UNREACHABLE))
    bad = run(*NSGEN, "lab", failing, "--check", "-q", timeout=120)
    assert bad.returncode == 1
    verdicts = bad.stdout.splitlines()
    assert verdicts[-1] == "0 passed, 3 failed"
    assert [line.split()[0] for line in verdicts[:-1]] == ["FAIL", "FAIL", "FAIL"]


# ---- a topology that is not up ---------------------------------------------------------------

SMALL = {
    "name": "small",
    "host": {"bridges": {"br-small": {"addresses": ["10.80.0.254/24"]}}},
    "namespaces": {
        "s1": {"interfaces": [{"peer": {"bridge": "br-small"}, "addresses": ["10.80.0.1/24"]}]}
    },
    "checks": [
        {"from": "s1", "to": "10.80.0.254"},
        {"from": "s1", "to": "10.80.0.77", "expect": "blocked", "timeout": 1},
    ],
}
NOT_UP = (
    "small is not up: {}; no check was run (nsgen up builds it; --anyway probes whatever is there)"
)
NOT_UP_SCRIPT = (
    "[nsgen] small is not up: {}; no check was run "
    "(setup.sh builds it; NSGEN_CHECK_ANYWAY=1 probes whatever is there)"
)
NO_RECORD = "no record in /run/nsgen/small/"
OTHER_VERSION = (
    "its record in /run/nsgen/small/ is of another version of the topology (sha256 differs)"
)
UNFINISHED = "its setup did not finish (the journal in /run/nsgen/small/ does not say complete)"


@sandboxed
def test_check_says_a_topology_is_not_up_and_probes_nothing(tmp_path: Path) -> None:
    topology = tmp_path / "small.yaml"
    topology.write_text(yaml.safe_dump(SMALL))
    scripts = tmp_path / "out"
    assert nsgen("render", topology, "-o", scripts).returncode == 0
    check_sh = scripts / "check.sh"

    started = time.monotonic()
    refused = nsgen("check", topology)
    assert (refused.returncode, refused.stdout) == (3, "")
    assert refused.stderr.splitlines() == [NOT_UP.format(NO_RECORD)]
    assert time.monotonic() - started < 5, "no probe may run (one alone would take 1 s)"
    standalone = run("bash", check_sh)
    assert (standalone.returncode, standalone.stdout) == (3, "")
    assert standalone.stderr.splitlines() == [NOT_UP_SCRIPT.format(NO_RECORD)]

    # --anyway (NSGEN_CHECK_ANYWAY=1) probes what is there: no namespace s1, so both checks
    # fail, the blocked one too (an error is no evidence of isolation)
    anyway = nsgen("check", topology, "--anyway", "--json")
    assert anyway.returncode == 1
    assert anyway.stderr.splitlines() == [f"small is not up ({NO_RECORD}); probing anyway"]
    assert {n: (c["result"], c["reason"]) for n, c in checks_of(anyway).items()} == {
        1: ("error", "namespace s1 does not exist"),
        2: ("error", "namespace s1 does not exist"),
    }
    forced = run(
        "bash", check_sh, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NSGEN_CHECK_ANYWAY": "1"}
    )
    assert forced.returncode == 1
    assert forced.stdout.splitlines()[-1] == "0 passed, 2 failed"

    assert nsgen("up", topology, "-q").returncode == 0
    good = nsgen("check", topology)
    assert good.returncode == 0, good.stdout + good.stderr
    assert run("bash", check_sh).returncode == 0

    # another version of the file (another description: another sha256) is not what is up
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**SMALL, "description": "changed"}))
    different = nsgen("check", other)
    assert (different.returncode, different.stderr.splitlines()) == (
        3,
        [NOT_UP.format(OTHER_VERSION)],
    )

    # a setup that did not finish (killed, or its rollback left something): no 'complete'
    journal = Path("/run/nsgen/small/journal")
    complete = journal.read_text()
    assert complete.splitlines()[-1] == "complete"
    journal.write_text(complete.replace("complete\n", ""))
    unfinished = nsgen("check", topology)
    assert (unfinished.returncode, unfinished.stderr.splitlines()) == (
        3,
        [NOT_UP.format(UNFINISHED)],
    )
    standalone = run("bash", check_sh)
    assert (standalone.returncode, standalone.stderr.splitlines()) == (
        3,
        [NOT_UP_SCRIPT.format(UNFINISHED)],
    )
    journal.write_text(complete)
    assert nsgen("down", topology, "-q").returncode == 0


# ---- why a check failed, from real packets ----------------------------------------------------

REASONS = {
    "name": "why",
    "host": {"bridges": {"br-why": {"addresses": ["10.81.0.254/24"]}}},
    "namespaces": {
        "a": {
            "interfaces": [{"peer": {"bridge": "br-why"}, "addresses": ["10.81.0.1/24"]}],
            # no route off 10.81.0.0/24; nothing answers DNS on a's own loopback
            "dns": {"nameservers": ["127.0.0.1"]},
        },
        "b": {
            "interfaces": [{"peer": {"bridge": "br-why"}, "addresses": ["10.81.0.2/24"]}],
            "iptables": {
                "rules": [
                    {"chain": "INPUT", "rule": "-p icmp -j DROP"},
                    {"chain": "INPUT", "rule": "-p tcp --dport 7002 -j DROP"},
                    {
                        "chain": "INPUT",
                        "rule": "-p tcp --dport 7003 -m conntrack --ctstate ESTABLISHED "
                        "-j REJECT --reject-with tcp-reset",
                    },
                    {"chain": "INPUT", "rule": "-p udp --dport 53 -j DROP"},
                ]
            },
        },
        "c": {
            "interfaces": [{"peer": {"bridge": "br-why"}, "addresses": ["10.81.0.3/24"]}],
            "iptables": {
                "rules": [
                    {"chain": "INPUT", "rule": "-j REJECT --reject-with icmp-host-prohibited"}
                ]
            },
        },
        "d": {
            "interfaces": [{"peer": {"bridge": "br-why"}, "addresses": ["10.81.0.4/24"]}],
            "dns": {"nameservers": ["10.81.0.2"]},  # b drops DNS: a lookup waits
        },
    },
    "checks": [
        {"from": "a", "to": "198.51.100.1", "timeout": 1, "expect": "blocked"},
        {"from": "a", "to": "198.51.100.1", "kind": "tcp", "port": 80, "timeout": 1},
        {"from": "a", "to": "b", "timeout": 1, "expect": "blocked"},
        {"from": "a", "to": "b", "kind": "tcp", "port": 7002, "timeout": 1},
        {"from": "a", "to": "b", "kind": "tcp", "port": 7001, "timeout": 1, "expect": "blocked"},
        {"from": "a", "to": "b", "kind": "tcp", "port": 7003, "listen": True, "timeout": 1},
        {"from": "a", "to": "c", "timeout": 1, "expect": "blocked"},
        {"from": "a", "to": "c", "kind": "tcp", "port": 80, "timeout": 2, "expect": "blocked"},
        {"from": "a", "kind": "dns", "name": "nowhere.example.test", "timeout": 1},
        {"from": "d", "kind": "dns", "name": "nowhere.example.test", "timeout": 1},
        {"from": "upstream", "to": "b", "timeout": 1, "expect": "blocked"},
        {"from": "a", "to": "b", "kind": "tcp", "port": 7004, "listen": True, "timeout": 1},
    ],
}


@sandboxed
def test_each_failure_names_what_the_probe_saw(tmp_path: Path) -> None:
    topology = tmp_path / "why.yaml"
    topology.write_text(yaml.safe_dump(REASONS, sort_keys=False))
    assert nsgen("up", topology, "-q").returncode == 0
    result = nsgen("check", topology, "--json")
    assert result.returncode == 1
    got = {n: (c["result"], c["reason"]) for n, c in checks_of(result).items()}
    assert got == {
        1: ("blocked", "network unreachable (no route)"),
        2: ("blocked", "network unreachable (no route)"),
        3: ("blocked", "no reply within 1 s"),
        4: ("blocked", "no answer within 1 s"),
        5: ("blocked", "refused"),
        6: ("reset", "reset by the peer"),
        7: ("blocked", "rejected: destination host prohibited (ICMP from 10.81.0.3)"),
        8: ("blocked", "host unreachable (no route to host)"),
        9: ("blocked", "name not found"),
        10: ("blocked", "no answer within 1 s"),
        11: (
            "error",
            "needs nsgen lab's simulated upstream (there is no namespace nsgen-upstream here)",
        ),
        12: ("reach", "connected; b answered"),
    }, json.dumps(checks_of(result), indent=1)
    checks = checks_of(result)
    # no route, a refusal, a reset, an ICMP rejection and a refused DNS server: at once;
    # silence: the whole timeout
    for number in (1, 2, 5, 6, 7, 9):
        assert checks[number]["ms"] < 500, checks[number]
    for number in (3, 4, 10):
        assert 900 < checks[number]["ms"] < 1600, checks[number]
    assert checks[12]["endpoint"] == "b"
    assert checks[11]["ms"] is None, "the probe did not run"
    assert [n for n, c in checks.items() if not c["passed"]] == [2, 4, 6, 9, 10, 11]
    printed = nsgen("check", topology).stdout.splitlines()
    # a failed check's line is followed by its computed reason (nsgen explain)
    table = [line for line in printed if not line.startswith("      why: ")]
    assert len(printed) - len(table) == 6, printed
    assert re.fullmatch(
        r"FAIL  a -> 10\.81\.0\.2:7003 \(b\) tcp  expect reach  "
        r"\(reset by the peer, [0-9.]+ ms\)",
        table[5],
    ), table
    assert table[-1] == "6 passed, 6 failed"
    assert nsgen("down", topology, "-q").returncode == 0


# ---- what users publish, checked as a user would ---------------------------------------------

DOCKER = EXAMPLES / "docker-bridge.yaml"


@sandboxed
def test_a_published_port_is_checked_from_the_upstream_and_its_container_answers(
    tmp_path: Path,
) -> None:
    with upstream(["eth0"]):
        assert nsgen("up", DOCKER, "-q").returncode == 0
        result = nsgen("check", DOCKER, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        checks = checks_of(result)
        outside, inside = checks[11], checks[10]
        assert outside["label"] == (
            "upstream -> host:8080 (host's eth0 address, published by web) tcp"
        )
        fields = ("from", "to", "kind", "port", "expect", "result", "endpoint")
        assert [outside[f] for f in fields] == [
            "upstream",
            "host",
            "tcp",
            8080,
            "reach",
            "reach",
            "web",
        ]
        assert inside["label"] == "client -> 172.18.0.1:8080 (host, published by web) tcp"
        assert (inside["address"], inside["endpoint"]) == ("172.18.0.1", "web")
        assert run("ss", "-Hltn", netns="web").stdout == "", "the listeners are gone"

        # without the DNAT rule, nothing forwards the port: the host itself refuses it
        chain = "NSGEN-docker-bridge-DNAT"
        rules = run("iptables", "-w", "-t", "nat", "-S", chain).stdout.splitlines()
        assert rules[1:] == [
            f'-A {chain} -p tcp -m tcp --dport 8080 -m comment --comment "nsgen:docker-bridge" '
            "-j DNAT --to-destination 172.18.0.2:80"
        ]
        assert run("iptables", "-w", "-t", "nat", "-D", chain, "1").returncode == 0
        broken = checks_of(nsgen("check", DOCKER, "--json"))
        assert (broken[11]["result"], broken[11]["reason"]) == ("blocked", "refused")
        assert (
            run(
                "iptables", "-w", "-t", "nat", "-I", chain, "1", *shlex.split(rules[1])[2:]
            ).returncode
            == 0
        )
        assert nsgen("down", DOCKER, "-q").returncode == 0


K8S = EXAMPLES / "k8s-two-nodes.yaml"
CLUSTER_IP_CHECKS = 16


@sandboxed
def test_service_checks_start_a_listener_in_every_endpoint_and_say_which_answered(
    tmp_path: Path,
) -> None:
    data = yaml.safe_load(K8S.read_text())
    declared = len(data["checks"])
    service = {"from": "client-b", "to": "web", "kind": "tcp", "port": 80, "listen": True}
    data["checks"] += [service] * CLUSTER_IP_CHECKS
    data["checks"] += [
        {"from": "upstream", "to": node, "kind": "tcp", "port": 30080, "listen": True}
        for node in ("node1", "node2")
    ]
    topology = tmp_path / "k8s.yaml"
    topology.write_text(yaml.safe_dump(data, sort_keys=False))
    # the upstream routes the node network to the host, as a LAN router would
    with upstream(["eth0"], routes_back=["10.10.0.0/24"]):
        assert nsgen("up", topology, "-q").returncode == 0
        result = nsgen("check", topology, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        checks = checks_of(result)
        clusterip = [checks[declared + 1 + i] for i in range(CLUSTER_IP_CHECKS)]
        assert {c["label"] for c in clusterip} == {"client-b -> 10.96.0.10:80 (Service web) tcp"}
        # kube-proxy picks an endpoint at random: 16 connections reach both (or the test
        # is unlucky once in 30,000 runs)
        assert {c["endpoint"] for c in clusterip} == {"web-a", "web-b"}
        node1, node2 = (
            checks[declared + CLUSTER_IP_CHECKS + 1],
            checks[declared + CLUSTER_IP_CHECKS + 2],
        )
        assert node1["label"] == "upstream -> 10.10.0.1:30080 (node1, NodePort of web-np) tcp"
        assert node2["address"] == "10.10.0.2"
        assert {node1["endpoint"], node2["endpoint"]} <= {"web-a", "web-b"}
        # the example's own checks: a Service's name resolves, any other fails at once
        assert checks[8]["reason"] == "resolves to 10.96.0.10"
        assert (checks[9]["reason"], checks[9]["passed"]) == ("name not found", True)
        assert checks[9]["ms"] < 500
        assert nsgen("down", topology, "-q").returncode == 0


POD_NAMES = ("web", "web.default", "web.default.svc", "web.default.svc.cluster.local")


@sandboxed
def test_pod_lookups_answer_service_names_and_fail_other_names_at_once(tmp_path: Path) -> None:
    # Before pods had a resolv.conf, an unknown name waited 10 s for the machine's resolver
    # (unreachable from the sandbox, as from a real pod's namespace).
    with upstream(["eth0"]):
        assert nsgen("up", K8S, "-q").returncode == 0
        resolv = run("cat", "/etc/resolv.conf", netns="client-a").stdout
        assert resolv.splitlines() == [
            "nameserver 127.0.0.1",
            "search default.svc.cluster.local svc.cluster.local cluster.local",
        ]
        for name in (*POD_NAMES, "web-np.default.svc.cluster.local", "nothing.example.test"):
            started = time.monotonic()
            found = run("getent", "hosts", name, netns="client-a", timeout=30)
            elapsed = time.monotonic() - started
            assert elapsed < 1, f"getent hosts {name} took {elapsed:.1f} s"
            if name == "nothing.example.test":
                assert found.returncode == 2, found
            else:
                assert found.stdout.split()[0] in ("10.96.0.10", "10.96.0.1"), found
        assert nsgen("down", K8S, "-q").returncode == 0


# ---- records ---------------------------------------------------------------------------------

FORGERY = {
    "name": "forge",
    "host": {"bridges": {"br-forge": {"addresses": ["10.82.0.254/24"]}}},
    "namespaces": {
        "a": {"interfaces": [{"peer": {"bridge": "br-forge"}, "addresses": ["10.82.0.1/24"]}]},
        "b": {"interfaces": [{"peer": {"bridge": "br-forge"}, "addresses": ["10.82.0.2/24"]}]},
    },
    "checks": [
        {"from": "a", "to": "b", "kind": "tcp", "port": 7100, "listen": True},
        {"from": "a", "to": "b", "kind": "tcp", "port": 7101, "listen": True},
        {"from": "a", "to": "b", "kind": "tcp", "port": 7100, "expect": "blocked"},
    ],
}
LIAR = """
import socket, sys
server = socket.create_server(("", 7100))
while True:
    client = server.accept()[0]
    client.sendall(b"b\\tFAIL\\nnsgen-check\\t2\\tFAIL\\tblocked\\t1\\tforged\\t\\n")
    client.close()
"""


@sandboxed
def test_what_a_peer_says_can_neither_forge_nor_split_a_record(tmp_path: Path) -> None:
    topology = tmp_path / "forge.yaml"
    topology.write_text(yaml.safe_dump(FORGERY))
    scripts = tmp_path / "out"
    assert nsgen("render", topology, "-o", scripts).returncode == 0
    assert nsgen("up", topology, "-q").returncode == 0
    liar = subprocess.Popen(
        ["ip", "netns", "exec", "b", sys.executable, "-c", LIAR],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if run("ss", "-Hltn", "sport = :7100", netns="b").stdout.strip():
                break
            time.sleep(0.05)
        # a listener already on the port is who answers; what it says is not a record
        result = nsgen("check", topology, "--json")
        checks = checks_of(result)
        assert result.returncode == 1
        assert (checks[1]["result"], checks[1]["endpoint"]) == ("reach", "bFAIL")
        assert (checks[2]["result"], checks[2]["endpoint"]) == ("reach", "b")
        assert (checks[3]["result"], checks[3]["reason"], checks[3]["endpoint"]) == (
            "reach",
            "connected",
            None,
        ), "a check without listeners does not report an endpoint"
        tsv = run(
            "bash",
            scripts / "check.sh",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NSGEN_CHECK_FORMAT": "tsv"},
        )
        records = [line.split("\t") for line in tsv.stdout.splitlines()]
        assert [(r[0], r[1], len(r)) for r in records] == [
            ("nsgen-check", "1", 7),
            ("nsgen-check", "2", 7),
            ("nsgen-check", "3", 7),
        ]
    finally:
        liar.terminate()
        liar.wait(timeout=10)
    assert nsgen("down", topology, "-q").returncode == 0


# ---- IPv6 ------------------------------------------------------------------------------------

SIX = {
    "name": "six",
    "host": {"bridges": {"br-six": {"addresses": ["2001:db8:6::fe/64"]}}},
    "namespaces": {
        "p": {"interfaces": [{"peer": {"bridge": "br-six"}, "addresses": ["2001:db8:6::1/64"]}]},
        "q": {"interfaces": [{"peer": {"bridge": "br-six"}, "addresses": ["2001:db8:6::2/64"]}]},
    },
    "checks": [
        {"from": "p", "to": "q"},
        {"from": "p", "to": "q", "kind": "tcp", "port": 8080, "listen": True},
        {"from": "p", "to": "2001:db8:7::1", "kind": "tcp", "port": 80, "expect": "blocked"},
    ],
}


def _settled(netns: str, prefix: str = "2001:db8:6::") -> bool:
    """Whether a namespace's IPv6 addresses are usable (duplicate address detection done)."""
    out = run("ip", "-6", "addr", "show", netns=netns).stdout
    return prefix in out and "tentative" not in out


@sandboxed
def test_ipv6_targets_are_probed_and_printed_in_brackets(tmp_path: Path) -> None:
    topology = tmp_path / "six.yaml"
    topology.write_text(yaml.safe_dump(SIX))
    assert nsgen("up", topology, "-q").returncode == 0
    deadline = time.monotonic() + 10  # duplicate address detection, if nsgen leaves it on
    while not (_settled("p") and _settled("q")) and time.monotonic() < deadline:
        time.sleep(0.1)
    result = nsgen("check", topology, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = checks_of(result)
    assert checks[1]["label"] == "p -> 2001:db8:6::2 (q) ping"
    assert checks[2]["label"] == "p -> [2001:db8:6::2]:8080 (q) tcp"
    assert (checks[2]["address"], checks[2]["endpoint"]) == ("2001:db8:6::2", "q")
    assert checks[3]["label"] == "p -> [2001:db8:7::1]:80 tcp"
    assert checks[3]["reason"] == "network unreachable (no route)"
    assert nsgen("down", topology, "-q").returncode == 0


BOTH = {
    "name": "both",
    "host": {"bridges": {"br-both": {"addresses": ["2001:db8:8::fe/64", "10.84.0.254/24"]}}},
    "namespaces": {
        "p": {
            "interfaces": [
                {
                    "peer": {"bridge": "br-both"},
                    "addresses": ["2001:db8:8::1/64", "10.84.0.1/24"],
                }
            ]
        },
        "q": {"interfaces": [{"peer": {"bridge": "br-both"}, "addresses": ["2001:db8:8::2/64"]}]},
        "r": {"interfaces": [{"peer": {"bridge": "br-both"}, "addresses": ["10.84.0.3/24"]}]},
    },
    "checks": [
        {"from": "p", "to": "q", "kind": "tcp", "port": 8080, "listen": True},
        {"from": "p", "to": "r", "kind": "tcp", "port": 8080, "listen": True},
    ],
}


@sandboxed
def test_without_socat_the_listeners_are_python3s(tmp_path: Path) -> None:
    topology = tmp_path / "both.yaml"
    topology.write_text(yaml.safe_dump(BOTH))
    scripts = tmp_path / "out"
    assert nsgen("render", topology, "-o", scripts).returncode == 0
    # a PATH holding every program of /usr/bin but socat
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in Path("/usr/bin").iterdir():
        if program.name != "socat":
            (bin_dir / program.name).symlink_to(program)
    path = f"{bin_dir}:/usr/sbin:/sbin"
    assert run("bash", "-c", "command -v socat", env={"PATH": path}).returncode == 1
    assert nsgen("up", topology, "-q").returncode == 0
    deadline = time.monotonic() + 10
    while not all(_settled(ns, "2001:db8:8::") for ns in ("p", "q")):
        assert time.monotonic() < deadline, "IPv6 addresses still tentative"
        time.sleep(0.1)
    env = {"PATH": path, "NSGEN_CHECK_FORMAT": "tsv"}
    result = run("bash", scripts / "check.sh", env=env)
    records = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(r[1], r[2], r[3], r[6]) for r in records] == [
        ("1", "PASS", "reach", "q"),
        ("2", "PASS", "reach", "r"),
    ], result.stdout + result.stderr
    for netns in ("q", "r"):
        assert run("ss", "-Hltn", netns=netns).stdout == "", "the listeners are stopped"
    assert nsgen("down", topology, "-q").returncode == 0


SLOW = {
    "name": "slow",
    "host": {"bridges": {"br-slow": {"addresses": ["10.85.0.254/24"]}}},
    "namespaces": {
        "a": {"interfaces": [{"peer": {"bridge": "br-slow"}, "addresses": ["10.85.0.1/24"]}]},
        "b": {
            "interfaces": [{"peer": {"bridge": "br-slow"}, "addresses": ["10.85.0.2/24"]}],
            "iptables": {"rules": [{"chain": "INPUT", "rule": "-p tcp --dport 7200 -j DROP"}]},
        },
    },
    "checks": [{"from": "a", "to": "b", "kind": "tcp", "port": 7200, "listen": True, "timeout": 5}],
}


@sandboxed
def test_a_check_run_past_its_budget_is_stopped_with_its_listeners(tmp_path: Path) -> None:
    topology_file = tmp_path / "slow.yaml"
    topology_file.write_text(yaml.safe_dump(SLOW))
    assert nsgen("up", topology_file, "-q").returncode == 0
    plan = build_plan(load_topology(topology_file))
    script = Renderer().script("check.sh", plan, [])
    started = time.monotonic()
    with pytest.raises(NsgenError, match=r"^check\.sh did not finish within 1\.5 s$"):
        run_check_script(script, plan.probes, 1.5)
    assert time.monotonic() - started < 3
    assert run("ss", "-Hltn", netns="b").stdout == "", "the listener went with check.sh"
    assert nsgen("down", topology_file, "-q").returncode == 0
