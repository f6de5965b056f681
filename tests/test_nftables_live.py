"""The nftables backend with real packets, in the sandbox: every example built with nftables
passes the same checks and the same reachability matrix as with iptables; teardown restores
the snapshot with the user's own table intact; a fault at any state-changing call rolls back;
a table goes in whole or not at all; status sees drift; preflight looks at the host's
forward hook."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from nsgen.checks import budget, local_addresses, run_check_script
from nsgen.fields import HOST
from nsgen.load import load_topology
from nsgen.model import Topology
from nsgen.plan import Plan, build_plan
from nsgen.render import Renderer, render_scripts, write_scripts
from nsgen.sandbox import INTERNET_HOST, INTERNET_HOST6, UPSTREAM_NETNS, upstream
from nsgen.snapshot import diff_snapshots, take_snapshot
from nsgen.status import topology_status
from tests.faults import calls_made, fail_at, install_stand_ins
from tests.harness import (
    EXAMPLES,
    assert_same_state,
    make_canary,
    make_nft_canary,
    run,
    sandboxed,
)

NSGEN = (sys.executable, "-m", "nsgen")
EXAMPLE_NAMES = [
    "seed",
    "two-tier",
    "docker-bridge",
    "k8s-two-nodes",
    "k8s-vxlan",
    "wan-link",
    "seed-dual",
    "docker-dual",
    "k8s-dual",
]
UPLINK = "203.0.113.2"
UPLINK6 = "2001:db8:203::2"
"""The root namespace's eth0 in the sandbox, in each family (nsgen.sandbox.build_upstream)."""


def plan_of(example: str, firewall: str, style: str = "batch") -> tuple[Topology, Plan]:
    topology = load_topology(EXAMPLES / f"{example}.yaml")
    return topology, build_plan(topology, style, firewall)  # type: ignore[arg-type]


def render(plan: Plan, out: Path) -> Path:
    write_scripts(render_scripts(plan), out)
    return out


def in_netns(netns: str, *argv: str) -> list[str]:
    return list(argv) if netns == HOST else ["ip", "netns", "exec", netns, *argv]


# ---- the reachability matrix -------------------------------------------------------------------


def dual(topology: Topology) -> bool:
    """Whether the topology has IPv6 addresses: its matrix has IPv6 cells too."""
    return any(":" in address for address in local_addresses(topology))


def tcp_targets(topology: Topology) -> list[tuple[str, int]]:
    """Every address and port a published port or a Service is reached at (in a dual-stack
    topology, in both families)."""
    families = (4, 6) if dual(topology) else (4,)
    targets: list[tuple[str, int]] = []
    for forward in topology.forwards:
        if forward.address is not None:
            addresses = [forward.address]
        else:  # every local address of these namespaces: the first one, and the uplink's
            addresses = [
                a for ns in forward.netns for f in families if (a := topology.first_address(ns, f))
            ]
            if HOST in forward.netns:
                addresses += [UPLINK, UPLINK6][: len(families)]
        targets += [(address, forward.port) for address in addresses]
    return list(dict.fromkeys(targets))


def start_listeners(topology: Topology) -> list[subprocess.Popen[bytes]]:
    """A TCP listener on every endpoint's port, in the endpoint's namespace, for both
    families (the test stops them, by process, before teardown)."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET6)\n"
        "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('::', int(sys.argv[1]))); s.listen(64)\n"
        "while True:\n    c, _ = s.accept(); c.close()\n"
    )
    started: list[subprocess.Popen[bytes]] = []
    wanted = {(e.netns, e.port) for f in topology.forwards for e in f.endpoints}
    for netns, port in sorted(wanted):
        argv = in_netns(netns, sys.executable, "-c", code, str(port))
        started.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            out = run(*in_netns(netns, "ss", "-Htln", f"sport = :{port}")).stdout
            if out.strip():
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"no listener on port {port} in {netns} after 5 s")
    return started


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=5)


def matrix(topology: Topology) -> dict[str, bool]:
    """From every namespace (the root one and the upstream included) to every address of the
    topology and the simulated internet, a bounded ping; to every published port and Service,
    a bounded TCP connect; in a dual-stack topology in both families (the internet host and
    the uplink too). Cell name: 'SOURCE -> TARGET'."""
    sources = [HOST, *topology.namespaces, UPSTREAM_NETNS]
    addresses = [*local_addresses(topology), INTERNET_HOST, UPLINK]
    if dual(topology):
        addresses += [INTERNET_HOST6, UPLINK6]
    probes: dict[str, list[str]] = {}
    for source in sources:
        for address in addresses:
            probes[f"{source} -> {address}"] = in_netns(
                source, "ping", "-c", "2", "-i", "0.2", "-W", "1", "-q", address
            )
        for address, port in tcp_targets(topology):
            connect = f"exec 3<>/dev/tcp/{address}/{port}"
            probes[f"{source} -> {address}:{port}/tcp"] = in_netns(
                source, "timeout", "2", "bash", "-c", connect
            )

    def probe(argv: list[str]) -> bool:
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(probe, probes.values()))
    return dict(zip(probes, results, strict=True))


def build_and_measure(example: str, firewall: str, out: Path) -> tuple[dict[str, bool], list[Any]]:
    """Set the example up with one backend, run its checks and the matrix, tear it down."""
    topology, plan = plan_of(example, firewall)
    scripts = render(plan, out)
    setup = run(scripts / "setup.sh")
    assert setup.returncode == 0, setup.stderr
    try:
        results = []
        if plan.probes:
            script = Renderer().script("check.sh", plan, [])
            results = run_check_script(script, plan.probes, budget(plan.probes))
        listeners = start_listeners(topology)
        try:
            cells = matrix(topology)
        finally:
            stop(listeners)
    finally:
        teardown = run(scripts / "teardown.sh")
        assert teardown.returncode == 0, teardown.stderr
    return cells, [(r.probe.label, r.result, r.passed) for r in results]


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
@sandboxed
def test_the_nftables_build_passes_the_same_checks_and_matrix_as_the_iptables_one(
    tmp_path: Path, example: str
) -> None:
    topology = load_topology(EXAMPLES / f"{example}.yaml")
    with upstream(list(topology.host.external)):
        before = take_snapshot()
        cells, checks = {}, {}
        for firewall in ("iptables", "nftables"):
            cells[firewall], checks[firewall] = build_and_measure(
                example, firewall, tmp_path / firewall
            )
            assert_same_state(before)
    assert all(passed for _, _, passed in checks["nftables"]), checks["nftables"]
    assert checks["nftables"] == checks["iptables"]
    reached = sum(cells["iptables"].values())
    assert 0 < reached < len(cells["iptables"]) or example in ("seed", "wan-link", "seed-dual")
    differ = [
        f"{cell}: iptables {cells['iptables'][cell]}, nftables {cells['nftables'][cell]}"
        for cell in cells["iptables"]
        if cells["iptables"][cell] != cells["nftables"][cell]
    ]
    assert differ == [], "\n".join(differ)
    if topology.forwards:
        assert any(cell.endswith("/tcp") and ok for cell, ok in cells["nftables"].items())
    if dual(topology):  # IPv6 cells, some reached and (but in the seed) some blocked
        six = {cell: ok for cell, ok in cells["nftables"].items() if ":" in cell.split(" -> ")[1]}
        assert any(six.values()), six
        assert not all(six.values()) or example == "seed-dual", six
        if topology.forwards:
            assert any(cell.endswith("/tcp") and ok for cell, ok in six.items()), six


# ---- nothing else is touched -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "style"),
    [
        ("seed", "tutorial"),
        ("docker-bridge", "batch"),
        ("k8s-two-nodes", "batch"),
        ("docker-dual", "batch"),
        ("k8s-dual", "tutorial"),
    ],
)
@sandboxed
def test_teardown_restores_the_snapshot_and_leaves_the_users_table_as_it_was(
    tmp_path: Path, example: str, style: str
) -> None:
    _, plan = plan_of(example, "nftables", style)
    scripts = render(plan, tmp_path)
    with upstream(["eth0"]):
        make_canary()
        make_nft_canary()
        user = run("nft", "list", "table", "inet", "user_fw").stdout
        others = run("nft", "list", "tables").stdout.splitlines()  # iptables' ones and the user's
        before = take_snapshot()
        assert "table inet user_fw" in "\n".join(before["root"]["nftables"])
        setup = run(scripts / "setup.sh")
        assert setup.returncode == 0, setup.stderr
        tables = run("nft", "list", "tables").stdout.splitlines()
        assert tables == [*others, f"table inet nsgen_{plan.topology}"], tables
        during = take_snapshot()
        assert diff_snapshots(before, during)  # something was built
        assert run("nft", "list", "table", "inet", "user_fw").stdout == user
        teardown = run(scripts / "teardown.sh")
        assert teardown.returncode == 0, teardown.stderr
        assert_same_state(before)
        again = run(scripts / "teardown.sh")
        assert again.returncode == 0 and "nothing to do" in again.stderr
        assert_same_state(before)
        assert run("nft", "list", "tables").stdout.splitlines() == others
        assert run("nft", "list", "table", "inet", "user_fw").stdout == user


@sandboxed
def test_a_leaked_table_is_a_difference_in_the_snapshot() -> None:
    before = take_snapshot()
    assert run("nft", "add", "table", "inet", "nsgen_leak").returncode == 0
    differences = diff_snapshots(before, take_snapshot())
    assert any("/root/nftables" in line and "nsgen_leak" in line for line in differences)


# ---- faults --------------------------------------------------------------------------------------

NFT_CALLS = {
    ("seed", "batch"): 1,
    ("seed", "tutorial"): 3,
    ("seed-dual", "batch"): 1,
    ("seed-dual", "tutorial"): 4,  # the masquerade of each family is a rule of its own
    ("docker-bridge", "batch"): 1,
    ("docker-dual", "batch"): 1,
}
"""How many of a setup's state-changing calls are nft's: the one `nft -f` of the root
namespace's table (batched), or one per table, chain and rule (tutorial)."""


@pytest.mark.parametrize(
    ("example", "style"),
    [
        ("seed", "batch"),
        ("seed", "tutorial"),
        ("docker-bridge", "batch"),
        ("seed-dual", "batch"),
        ("docker-dual", "batch"),
    ],
)
@sandboxed
def test_setup_rolls_back_a_fault_at_every_state_changing_call_nft_included(
    tmp_path: Path, example: str, style: str
) -> None:
    _, plan = plan_of(example, "nftables", style)
    scripts = render(plan, tmp_path / "out")
    env = install_stand_ins(tmp_path / "bin")
    with upstream(["eth0"]):
        make_canary()
        make_nft_canary()
        before = take_snapshot()
        clean = run(scripts / "setup.sh", env=fail_at(env, 0))
        assert clean.returncode == 0, clean.stderr
        total = calls_made(env)
        assert run(scripts / "teardown.sh").returncode == 0
        assert_same_state(before)
        nft_calls = 0
        for k in range(1, total + 1):
            result = run(scripts / "setup.sh", env={**fail_at(env, k), "NSGEN_LANES": "1"})
            assert result.returncode == 3, f"fault {k}: exit {result.returncode}\n{result.stderr}"
            assert f"injected fault on state-changing call {k}" in result.stderr
            nft_calls += "nft: injected fault" in result.stderr
            assert "rolled back: everything this run created is gone" in result.stderr
            differences = diff_snapshots(before, take_snapshot())
            assert differences == [], f"fault {k} left:\n" + "\n".join(differences)
        # batch: the table in one nft -f; tutorial: create table, add chain, add rule(s)
        assert nft_calls == NFT_CALLS[(example, style)], nft_calls


@pytest.mark.parametrize(
    ("example", "style"),
    [("docker-bridge", "batch"), ("seed", "tutorial"), ("seed-dual", "tutorial")],
)
@sandboxed
def test_up_rolls_back_a_fault_at_every_state_changing_call_nft_included(
    tmp_path: Path, example: str, style: str
) -> None:
    topology = EXAMPLES / f"{example}.yaml"
    env = install_stand_ins(tmp_path / "bin")
    args = ("--firewall", "nftables", "--style", style)
    with upstream(["eth0"]):
        make_canary()
        make_nft_canary()
        before = take_snapshot()
        clean = run(*NSGEN, "up", topology, "--quiet", *args, env=fail_at(env, 0))
        assert clean.returncode == 0, clean.stderr
        total = calls_made(env)
        assert run(*NSGEN, "down", topology, "--quiet").returncode == 0
        assert_same_state(before)
        nft_calls = 0
        for k in range(1, total + 1):
            result = run(*NSGEN, "up", topology, "--quiet", *args, env=fail_at(env, k))
            assert result.returncode == 3, f"fault {k}: exit {result.returncode}\n{result.stderr}"
            nft_calls += "nft: injected fault" in result.stderr
            differences = diff_snapshots(before, take_snapshot())
            assert differences == [], f"fault {k} left:\n" + "\n".join(differences)
        assert nft_calls == NFT_CALLS[(example, style)], nft_calls


# ---- all or nothing ------------------------------------------------------------------------------

_CORRUPT = r"""#!/bin/bash
# stand-in for nft: `nft -f -` gets one bad line in the middle of its input
args=("$@")
if [[ " ${args[*]} " == *" -f - "* ]]; then
  mapfile -t lines
  half=$(( ${#lines[@]} / 2 ))
  printf '%s\n' "${lines[@]:0:half}" "$NSGEN_BAD_LINE" "${lines[@]:half}" | {real} "$@"
  exit "$?"
fi
exec {real} "$@"
"""


@pytest.mark.parametrize("error", ["syntax", "kernel"])
@sandboxed
def test_an_error_in_the_middle_of_a_tables_input_installs_nothing_of_it(
    tmp_path: Path, error: str
) -> None:
    """A line nft cannot parse, or one the kernel refuses (a jump to a base chain), halfway
    through the table's `nft -f -`: the transaction is refused whole, setup.sh rolls back."""
    _, plan = plan_of("docker-bridge", "nftables")
    scripts = render(plan, tmp_path / "out")
    table = "inet nsgen_docker-bridge"
    bad = {
        "syntax": f"add rule {table} filter-FORWARD no such words",
        "kernel": f"add rule {table} filter-NSGEN-docker-bridge-FWD jump filter-FORWARD",
    }[error]
    real = run("sh", "-c", "command -v nft").stdout.strip()
    stand_in = tmp_path / "bin" / "nft"
    stand_in.parent.mkdir()
    stand_in.write_text(_CORRUPT.replace("{real}", real))
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{stand_in.parent}:/usr/sbin:/usr/bin:/sbin:/bin"}
    env["NSGEN_BAD_LINE"] = bad
    with upstream(["eth0"]):
        make_nft_canary()
        before = take_snapshot()
        result = run(scripts / "setup.sh", env=env)
        assert result.returncode == 3, result.stderr
        message = "syntax error" if error == "syntax" else "Operation not supported"
        assert re.search(message, result.stderr), result.stderr
        assert "install nftables table inet nsgen_docker-bridge" in result.stderr
        assert_same_state(before)
        # and directly: half a table is never there, not even for a moment after the error
        text = next(s.do for s in Renderer().steps(plan) if "nft -f -" in s.do)
        body = text.split("<<'EOF'\n", 1)[1].rsplit("\nEOF", 1)[0]
        result = subprocess.run(
            [str(stand_in), "-f", "-"], input=body + "\n", capture_output=True, text=True, env=env
        )
        assert result.returncode == 1
        assert run("nft", "list", "table", *table.split()).returncode != 0
        assert_same_state(before)


# ---- status ----------------------------------------------------------------------------------------


def rows(topology: Topology) -> dict[tuple[str, str, str], tuple[str, str]]:
    return {(r.kind, r.netns, r.name): (r.state, r.detail) for r in topology_status(topology)}


@sandboxed
def test_status_reports_the_table_its_chains_and_their_rule_counts(tmp_path: Path) -> None:
    topology = load_topology(EXAMPLES / "docker-bridge.yaml")
    with upstream(["eth0"]):
        up = run(*NSGEN, "up", EXAMPLES / "docker-bridge.yaml", "--firewall", "nftables", "-q")
        assert up.returncode == 0, up.stderr
        found = rows(topology)  # the record's digest says nftables: the file says nothing
        assert {state for state, _ in found.values()} == {"present"}, found
        table = "inet nsgen_docker-bridge"
        assert found[("table", HOST, table)] == ("present", "")
        assert ("chain", HOST, f"{table} filter-forward-in__br-backend") in found
        assert not any(kind == "rule" and "-A " in name for kind, _, name in found)

        handle = run("nft", "-a", "list", "chain", *table.split(), "filter-forward-in__br-backend")
        line = next(x for x in handle.stdout.splitlines() if 'iifname "br-frontend"' in x)
        number = line.rsplit("# handle ", 1)[1]
        assert (
            run(
                "nft",
                "delete",
                "rule",
                *table.split(),
                "filter-forward-in__br-backend",
                "handle",
                number,
            ).returncode
            == 0
        )
        assert (
            run(
                "nft", "add", "rule", *table.split(), "nat-POSTROUTING", "counter", "accept"
            ).returncode
            == 0
        )
        found = rows(topology)
        assert found[("chain", HOST, f"{table} filter-forward-in__br-backend")] == (
            "different",
            "1 rules, expected 2",
        )
        assert found[("chain", HOST, f"{table} nat-POSTROUTING")] == (
            "different",
            "4 rules, expected 3 (a rule was added)",
        )
        missing = [name for (kind, _, name), (state, _) in found.items() if state == "missing"]
        assert missing == ['filter-forward-in__br-backend iifname "br-frontend" drop']

        assert run("nft", "delete", "table", *table.split()).returncode == 0
        found = rows(topology)
        assert found[("table", HOST, table)] == ("missing", "")
        assert run(*NSGEN, "down", EXAMPLES / "docker-bridge.yaml", "-q").returncode == 0


@sandboxed
def test_check_runs_against_a_topology_up_with_firewall_nftables_from_the_flag() -> None:
    """`up --firewall nftables` and then `check FILE` (whose file says nothing of nftables):
    check finds the record of the nftables build and runs every check, as status and down
    do; it does not call the topology "another version" and refuse."""
    with upstream(["eth0"]):
        up = run(*NSGEN, "up", EXAMPLES / "seed.yaml", "--firewall", "nftables", "-q")
        assert up.returncode == 0, up.stderr
        try:
            checked = run(*NSGEN, "check", EXAMPLES / "seed.yaml")
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert checked.stdout.splitlines()[-1] == "4 passed, 0 failed"
        finally:
            down = run(*NSGEN, "down", EXAMPLES / "seed.yaml", "-q")
        assert down.returncode == 0, down.stderr


# ---- the host's firewall ---------------------------------------------------------------------------


@pytest.mark.parametrize(("example", "netns"), [("docker-dual", HOST), ("k8s-dual", "node1")])
@sandboxed
def test_status_sees_both_families_in_the_table_and_a_missing_ipv6_rule(
    example: str, netns: str
) -> None:
    topology = load_topology(EXAMPLES / f"{example}.yaml")
    table = f"inet nsgen_{topology.name}"
    with upstream(["eth0"]):
        up = run(*NSGEN, "up", EXAMPLES / f"{example}.yaml", "--firewall", "nftables", "-q")
        assert up.returncode == 0, up.stderr
        try:
            statuses = topology_status(topology)
            keys = [(r.kind, r.netns, r.name) for r in statuses]
            assert len(keys) == len(set(keys))  # the twins of two families are rows apart
            found = rows(topology)
            assert {state for state, _ in found.values()} == {"present"}, found
            assert any("ipv6" in name for kind, _, name in found if kind == "rule")
            where = None if netns == HOST else netns
            listed = run("nft", "-a", "list", "table", *table.split(), netns=where).stdout
            chain = ""
            for line in listed.splitlines():
                if line.strip().startswith("chain "):
                    chain = line.split()[1]
                if "dnat ip6 to" in line:
                    break
            else:
                raise AssertionError(f"no IPv6 DNAT in {table}:\n{listed}")
            handle = line.rsplit("# handle ", 1)[1]
            deleted = run(
                "nft", "delete", "rule", *table.split(), chain, "handle", handle, netns=where
            )
            assert deleted.returncode == 0, deleted.stderr
            drift = {key: value for key, value in rows(topology).items() if value[0] != "present"}
            assert drift[("chain", netns, f"{table} {chain}")][0] == "different", drift
            gone = [name for (kind, _, name) in drift if kind == "rule"]
            assert len(gone) == 1 and gone[0].startswith(f"{chain} "), drift
            assert "meta nfproto ipv6" in gone[0] and "dnat ip6 to" in gone[0], gone
        finally:
            down = run(*NSGEN, "down", EXAMPLES / f"{example}.yaml", "-q")
        assert down.returncode == 0, down.stderr


@sandboxed
def test_preflight_warns_about_a_forward_hook_that_drops_and_refuses_when_strict(
    tmp_path: Path,
) -> None:
    """A Docker host: iptables' FORWARD policy DROP (an nf_tables base chain of table ip
    filter). An accept in nsgen's own table would not help: a drop in any base chain on the
    hook is final, so preflight says what to add where it drops."""
    _, plan = plan_of("seed", "nftables")
    scripts = render(plan, tmp_path)
    with upstream(["eth0"]):
        assert run("iptables", "-w", "-P", "FORWARD", "DROP").returncode == 0
        before = take_snapshot()
        strict = run(scripts / "setup.sh", env={**os.environ, "NSGEN_STRICT": "1"})
        assert strict.returncode == 1, strict.stderr
        assert "preflight refused, nothing was changed" in strict.stderr
        assert (
            "table ip filter, chain FORWARD (hook forward) has policy drop: what this topology "
            "routes (br0, eth0) is dropped there unless that chain accepts it" in strict.stderr
        )
        assert_same_state(before)
        refused = run(*NSGEN, "up", EXAMPLES / "seed.yaml", "--strict", "--firewall", "nftables")
        assert refused.returncode == 1 and "policy drop" in refused.stderr
        assert_same_state(before)

        warned = run(scripts / "setup.sh")
        assert warned.returncode == 0, warned.stderr
        assert (
            "[nsgen] warning: table ip filter, chain FORWARD (hook forward) has policy drop"
            in warned.stderr
        )
        # the warning was right: blue's way out is dropped in iptables' chain ...
        assert (
            run("ip", "netns", "exec", "blue", "ping", "-c1", "-W1", INTERNET_HOST).returncode != 0
        )
        # ... until that chain accepts it, as the warning says
        for way in ("-i", "-o"):
            assert (
                run("iptables", "-w", "-I", "FORWARD", way, "br0", "-j", "ACCEPT").returncode == 0
            )
        assert (
            run("ip", "netns", "exec", "blue", "ping", "-c1", "-W1", INTERNET_HOST).returncode == 0
        )
        assert run(scripts / "teardown.sh").returncode == 0


@sandboxed
def test_preflight_sees_iptables_legacys_forward_policy_too(tmp_path: Path) -> None:
    """iptables-legacy's tables are not nf_tables: nft does not list them, so preflight asks
    iptables-legacy where its module holds a table. Whatever the backend."""
    _, plan = plan_of("seed", "iptables")
    scripts = render(plan, tmp_path)
    with upstream(["eth0"]):
        assert run("iptables-legacy", "-w", "-P", "FORWARD", "DROP").returncode == 0
        before = take_snapshot()
        strict = run(scripts / "setup.sh", env={**os.environ, "NSGEN_STRICT": "1"})
        assert strict.returncode == 1, strict.stderr
        assert (
            "iptables-legacy's FORWARD chain has policy DROP: what this topology routes"
            in strict.stderr
        )
        assert_same_state(before)
        assert run("iptables-legacy", "-w", "-P", "FORWARD", "ACCEPT").returncode == 0
        quiet = run(scripts / "setup.sh")
        assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr
        assert run(scripts / "teardown.sh").returncode == 0


@sandboxed
def test_an_accept_elsewhere_does_not_lift_a_drop_in_nsgens_table(tmp_path: Path) -> None:
    """Both backends are nf_tables: the user's accept-everything in iptables' FORWARD ends
    only that chain, and the isolation nsgen's table drops stays."""
    _, plan = plan_of("docker-bridge", "nftables")
    scripts = render(plan, tmp_path)
    with upstream(["eth0"]):
        assert run("iptables", "-w", "-I", "FORWARD", "-j", "ACCEPT").returncode == 0
        assert run(scripts / "setup.sh").returncode == 0
        client = ["ip", "netns", "exec", "client", "ping", "-c1", "-W1"]
        assert run(*client, "172.19.0.10").returncode != 0  # db, on the internal network
        assert run(*client, INTERNET_HOST).returncode == 0
        assert run(scripts / "teardown.sh").returncode == 0


@sandboxed
def test_without_nft_a_topology_that_asks_for_nftables_is_refused_before_any_change(
    tmp_path: Path,
) -> None:
    _, plan = plan_of("seed", "nftables")
    scripts = render(plan, tmp_path / "out")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "iptables", "bash", "cat", "mkdir", "grep", "nproc", "rm", "sleep"):
        found = run("sh", "-c", f"command -v {tool}").stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    with upstream(["eth0"]):
        before = take_snapshot()
        result = run(scripts / "setup.sh", env=env)
        assert result.returncode == 1, result.stderr
        assert (
            "nft is not installed (the firewall backend is nftables: install the nftables "
            "package, or render with --firewall iptables)" in result.stderr
        )
        assert_same_state(before)
