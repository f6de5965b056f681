"""nsgen explain against the real thing, in the sandbox: the computed verdict of every check
of every example equals what check.sh finds; for generated small topologies, the computed
reach/blocked of every ordered pair equals a real ping; and --live names the hop and the
object a deliberate breakage changed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from nsgen.console import Console
from nsgen.executor import Executor, Options, down_from_record
from nsgen.explain import explain, explain_check
from nsgen.explain.network import lab_world, this_machine
from nsgen.load import load_topology, topology_from_data
from nsgen.plan import FIREWALLS, Firewall, build_plan
from nsgen.sandbox import upstream
from tests.harness import EXAMPLES, run, sandboxed

NSGEN = (sys.executable, "-m", "nsgen")
EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


def nsgen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(*NSGEN, *args, timeout=180)


# ---- every check of every example ----------------------------------------------------------


@pytest.mark.parametrize("firewall", FIREWALLS)
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
@sandboxed
def test_the_computed_verdict_of_every_check_is_what_the_sandbox_finds(
    name: str, firewall: Firewall
) -> None:
    """With either backend: explain computes from the rules as data, which both install."""
    path = EXAMPLES / f"{name}.yaml"
    topology = load_topology(path)
    with upstream(list(topology.host.external)) as up:
        assert up.uplinks == {
            u.name: (str(u.address.ip), str(u.gateway)) for u in lab_world(topology).uplinks
        }
        # built on this one machine, as nsgen lab does (a fleet's nodes as namespaces)
        executor = Executor(build_plan(topology, firewall=firewall))
        options = Options(Console(quiet=True))
        executor.up(options)
        checked = nsgen("check", path, "--json")
        assert checked.stdout, checked.stderr
        results = json.loads(checked.stdout)["checks"]
        down_from_record(topology.name, executor, options)
    real = {
        r["number"]: r["expect"]
        if r["passed"]
        else {"reach": "blocked", "blocked": "reach"}[r["expect"]]
        for r in results
    }
    computed = {
        number: explain_check(topology, check, idle=True).word
        for number, check in enumerate(topology.checks, start=1)
    }
    assert computed == real


# ---- generated small topologies: every ordered pair, computed vs a real ping ----------------


@st.composite
def small_topologies(draw: Any) -> dict[str, Any]:
    """One or two host bridges (with or without the host's gateway address), two to four
    namespaces on them, maybe a router namespace between the bridges, default routes via the
    host or the router, forwarding on or off, an isolation rule between the bridges, a
    masquerade (in the host or the router), a REJECT or DROP in a namespace's INPUT, a direct
    veth between two namespaces."""
    bridges = draw(st.integers(1, 2))
    gateway = [draw(st.booleans()) for _ in range(bridges)]
    host: dict[str, Any] = {"bridges": {}, "iptables": {"rules": []}}
    for b in range(bridges):
        host["bridges"][f"xb{b}"] = {"addresses": [f"10.90.{b}.254/24"] if gateway[b] else []}
    if draw(st.booleans()):
        host["sysctls"] = {"net.ipv4.ip_forward": 1}
    if bridges == 2 and draw(st.booleans()):
        a, b = draw(st.permutations(["xb0", "xb1"]))
        host["iptables"]["rules"].append({"chain": "FORWARD", "rule": f"-i {a} -o {b} -j DROP"})
    if bridges == 2 and gateway[1] and draw(st.booleans()):
        host["masquerade"] = [{"source": "10.90.0.0/24", "out": "xb1"}]
    count = draw(st.integers(2, 4))
    namespaces: dict[str, Any] = {}
    router = bridges == 2 and draw(st.booleans())
    if router:
        # a router namespace with a leg on each bridge (.253), forwarding or not, maybe
        # masquerading what it forwards onto xb1
        legs = [
            {
                "name": f"leg{b}",
                "peer": {"bridge": f"xb{b}", "name": f"xr-leg{b}"},
                "addresses": [f"10.90.{b}.253/24"],
            }
            for b in range(2)
        ]
        spec: dict[str, Any] = {"interfaces": legs}
        if draw(st.booleans()):
            spec["sysctls"] = {"net.ipv4.ip_forward": 1}
        if draw(st.booleans()):
            spec["masquerade"] = [{"source": "10.90.0.0/24", "out": "leg1"}]
        namespaces["xr"] = spec
    for n in range(count):
        b = draw(st.integers(0, bridges - 1))
        spec: dict[str, Any] = {
            "interfaces": [{"peer": {"bridge": f"xb{b}"}, "addresses": [f"10.90.{b}.{n + 1}/24"]}]
        }
        gateways = [f"10.90.{b}.254"] if gateway[b] else []
        gateways += [f"10.90.{b}.253"] if router else []
        if gateways and draw(st.booleans()):
            spec["routes"] = [{"to": "default", "via": draw(st.sampled_from(gateways))}]
        guard = draw(st.sampled_from([None, "DROP", "REJECT"]))
        if guard is not None:
            victim = draw(st.integers(0, count - 1))
            spec["iptables"] = {
                "rules": [{"chain": "INPUT", "rule": f"-s 10.90.0.{victim + 1} -p icmp -j {guard}"}]
            }
        namespaces[f"xn{n}"] = spec
    if draw(st.booleans()):
        namespaces["xn0"]["interfaces"].append(
            {
                "name": "direct",
                "peer": {"netns": "xn1", "name": "direct", "addresses": ["10.91.0.2/30"]},
                "addresses": ["10.91.0.1/30"],
            }
        )
    if not host["iptables"]["rules"]:
        del host["iptables"]
    return {"name": "gen", "host": host, "namespaces": namespaces}


def _targets(data: dict[str, Any]) -> dict[str, str]:
    """Every namespace's first address (and the host's, if it has one)."""
    topology = topology_from_data(data, "gen.yaml")
    found = {}
    for name in ["host", *topology.namespaces]:
        first = topology.first_address(name)
        if first is not None:
            found[name] = first
    return found


def _ping_all(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """One ping per pair, all at once (1 packet, 1 s each, every process waited for)."""
    processes = {}
    for source, address in pairs:
        prefix = [] if source == "host" else ["ip", "netns", "exec", source]
        processes[(source, address)] = subprocess.Popen(
            [*prefix, "ping", "-c", "1", "-W", "1", "-q", address],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return {pair: process.wait(timeout=10) == 0 for pair, process in processes.items()}


@sandboxed
def test_generated_topologies_every_pair_computed_equals_a_real_ping(tmp_path: Path) -> None:
    started = time.monotonic()
    seen: list[int] = []

    @settings(
        max_examples=8,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(small_topologies())
    def check(data: dict[str, Any]) -> None:
        assert time.monotonic() - started < 240, "the property test ran out of its time"
        path = tmp_path / "gen.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        topology = load_topology(path)
        targets = _targets(data)
        pairs = [
            (source, address)
            for source in ["host", *topology.namespaces]
            for target, address in targets.items()
            if target != source
        ]
        built = nsgen("up", path, "-q")
        assert built.returncode == 0, built.stderr
        try:
            real = _ping_all(pairs)
        finally:
            assert nsgen("down", path, "-q").returncode == 0
        env = this_machine()
        computed = {
            (source, address): explain(topology, source, address, env=env).verdict.reach
            for source, address in pairs
        }
        differ = {
            pair: (computed[pair], real[pair]) for pair in pairs if computed[pair] != real[pair]
        }
        assert not differ, f"computed vs real differ for {differ} in\n{path.read_text()}"
        seen.append(len(pairs))

    check()
    assert len(seen) == 8 and sum(seen) >= 8 * 2


# ---- --live on a deliberately broken lab ----------------------------------------------------


@sandboxed
def test_live_on_a_topology_up_with_nftables_says_it_reads_only_iptables() -> None:
    """--live pairs nsgen's rules with the kernel's through iptables; on a topology that is up
    with nftables (the file says iptables, --firewall overrode it) it would find every rule
    missing, so it says plainly what it cannot do, and changes nothing."""
    with upstream(["eth0"]):
        up = nsgen("up", EXAMPLES / "seed.yaml", "-q", "--firewall", "nftables")
        assert up.returncode == 0, up.stderr
        try:
            result = nsgen("explain", "--live", str(EXAMPLES / "seed.yaml"), "blue", "192.0.2.10")
            assert result.returncode == 2, result.stdout + result.stderr
            assert result.stdout == ""
            assert result.stderr == (
                "seed is up with firewall: nftables, and --live reads only iptables' "
                "rule counters so far; without --live, explain computes the same path (both "
                "backends install the same rules)\n"
            )
            assert "Traceback" not in result.stderr
        finally:
            down = nsgen("down", "seed", "-q")
        assert down.returncode == 0, down.stderr


def live(*args: str) -> tuple[int, list[str]]:
    result = nsgen("explain", "--live", str(EXAMPLES / "seed.yaml"), *args)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, result.stdout.splitlines()


def leaves_at(lines: list[str]) -> str:
    (line,) = [x for x in lines if x.startswith("the live path")]
    return line


@sandboxed
def test_live_names_the_hop_and_object_a_breakage_changed() -> None:
    with upstream(["eth0"]):
        assert nsgen("up", EXAMPLES / "seed.yaml", "-q").returncode == 0
        code, lines = live("blue", "192.0.2.10")
        assert code == 0, lines
        assert lines[-1] == "the live path is the computed one"
        assert "probe: one ping: answered" in lines
        as_json = nsgen("explain", "--live", str(EXAMPLES / "seed.yaml"), "red", "blue", "--json")
        report = json.loads(as_json.stdout)
        assert (report["same"], report["probe_reached"], report["computed"]) == (
            True,
            True,
            "reach",
        )
        assert [h["namespace"] for h in report["hops"]] == [
            "red",
            "host",
            "blue",
            "blue",
            "host",
            "red",
        ]

        # a route deleted by hand
        assert run("ip", "-n", "blue", "route", "del", "default").returncode == 0
        code, lines = live("blue", "192.0.2.10")
        assert code == 1
        assert leaves_at(lines) == (
            "the live path leaves the computed one at request hop 1 (blue): ip route get "
            "192.0.2.10: the kernel says 'Network is unreachable', the model default via "
            "192.168.15.254 dev veth-blue"
        )
        assert (
            run("ip", "-n", "blue", "route", "add", "default", "via", "192.168.15.254").returncode
            == 0
        )

        # nsgen's masquerade rule removed
        masquerade = [
            "-s",
            "192.168.15.0/24",
            "-o",
            "eth0",
            "-m",
            "comment",
            "--comment",
            "nsgen:seed",
            "-j",
            "MASQUERADE",
        ]
        assert run("iptables", "-w", "-t", "nat", "-D", "POSTROUTING", *masquerade).returncode == 0
        code, lines = live("blue", "192.0.2.10")
        assert code == 1
        assert leaves_at(lines) == (
            "the live path leaves the computed one at request hop 2 (host): nat POSTROUTING "
            "rule 1 (-s 192.168.15.0/24 -o eth0 -j MASQUERADE, setup.sh step 6/8: install 1 "
            "iptables change(s) in the root namespace) is missing from the kernel: removed by "
            "hand, or never installed"
        )
        assert "probe: one ping: no answer within 2 s" in lines
        assert run("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", *masquerade).returncode == 0

        # a veth down
        assert run("ip", "link", "set", "veth-red-br", "down").returncode == 0
        code, lines = live("red", "blue")
        assert code == 1
        assert leaves_at(lines) == (
            "the live path leaves the computed one at request hop 1 (red): link veth-red in red "
            "has no carrier: its other end, veth-red-br in the host, is down"
        )
        assert (
            "       - link veth-red-br in the host is down (ip link set veth-red-br down?)" in lines
        )
        assert run("ip", "link", "set", "veth-red-br", "up").returncode == 0

        # a foreign DROP rule inserted at the top of FORWARD
        foreign = ["FORWARD", "-s", "192.168.15.1", "-j", "DROP"]
        assert run("iptables", "-w", "-I", *foreign).returncode == 0
        code, lines = live("blue", "192.0.2.10")
        assert code == 1
        assert leaves_at(lines) == (
            "the live path leaves the computed one at request hop 2 (host): filter FORWARD rule "
            "1 in the host is not nsgen's and counted the probe: -A FORWARD -s 192.168.15.1/32 "
            "-j DROP"
        )
        assert run("iptables", "-w", "-D", *foreign).returncode == 0
        code, lines = live("blue", "192.0.2.10")
        assert code == 0, lines
        assert nsgen("down", "seed", "-q").returncode == 0


@sandboxed
def test_live_on_a_published_port_from_outside_and_the_why_of_a_failed_check(
    tmp_path: Path,
) -> None:
    path = EXAMPLES / "docker-bridge.yaml"
    with upstream(["eth0"]):
        assert nsgen("up", path, "-q").returncode == 0
        listener = subprocess.Popen(
            ["ip", "netns", "exec", "web", sys.executable, "-m", "http.server", "80"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while (
                time.monotonic() < deadline
                and not run(
                    "ip", "netns", "exec", "web", "ss", "-Hltn", "sport = :80"
                ).stdout.strip()
            ):
                time.sleep(0.05)
            result = nsgen("explain", "--live", str(path), "upstream", "host", "--port", "8080")
            assert result.returncode == 0, result.stdout + result.stderr
            assert "probe: one tcp connection: accepted" in result.stdout
            isolated = nsgen("explain", "--live", str(path), "client", "db")
            assert isolated.returncode == 0, isolated.stdout
            assert "probe: one ping: no answer within 2 s" in isolated.stdout
        finally:
            listener.terminate()
            listener.wait(timeout=10)
        assert nsgen("down", path, "-q").returncode == 0

        # the reason a failing check prints (the check is made to expect the opposite)
        data = yaml.safe_load(path.read_text())
        data["checks"] = [{"from": "client", "to": "db"}]
        flipped = tmp_path / "flipped.yaml"
        flipped.write_text(yaml.safe_dump(data, sort_keys=False))
        assert nsgen("up", flipped, "-q").returncode == 0
        failed = nsgen("check", flipped)
        assert failed.returncode == 1
        assert failed.stdout.splitlines()[1].startswith(
            "      why: dropped by filter NSGEN-docker-bridge-FWD rule 2: isolation between "
            "br-frontend and br-backend"
        )
        assert nsgen("down", flipped, "-q").returncode == 0
