"""Declared checks run for real in the sandbox: nsgen check, check.sh, lab --check."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from nsgen.sandbox import DNS_SERVER, INTERNET_HOST, start_dns, upstream
from tests.harness import EXAMPLES, render_example, run, sandboxed

NSGEN = (sys.executable, "-m", "nsgen")
SEED = EXAMPLES / "seed.yaml"


def nsgen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(*NSGEN, *args, timeout=120)


def verdicts(result: subprocess.CompletedProcess[str]) -> dict[int, bool]:
    data = json.loads(result.stdout)
    return {c["number"]: c["passed"] for c in data["checks"]}


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
    assert "FAIL  a -> 10.50.0.2 (b) ping  expect blocked  (reply)" in broken.stdout
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
            details = {c["number"]: c["detail"] for c in data["checks"]}
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
