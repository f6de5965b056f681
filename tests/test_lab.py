"""Labs as a user drives them, each step from a process of its own: `nsgen lab up`, `lab list`,
`lab exec`, `lab shell`, `lab down`; a keeper killed with SIGKILL; the lab's resolver; and
what `nsgen lab --check` prints where. Every test runs in the test sandbox (whose private
/run/nsgen-labs keeps these labs off the machine's list); the labs make sandboxes of their
own inside it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from nsgen import labs
from nsgen.sandbox import require_sandbox
from nsgen.snapshot import take_snapshot
from tests.harness import EXAMPLES, assert_same_state, sandboxed
from tests.test_cli import complete

NSGEN = (sys.executable, "-m", "nsgen")
SEED = EXAMPLES / "seed.yaml"


def nsgen(
    *args: str | Path, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    require_sandbox()
    return subprocess.run(
        [*NSGEN, *map(str, args)],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def labs_ended() -> Iterator[None]:
    """However the test ends, no keeper it started outlives it."""
    try:
        yield
    finally:
        for name in labs.names():
            record = labs.read(name)
            if record is not None:
                labs.kill_keeper(record.keeper_pid, record.keeper_start)


def mounts() -> list[str]:
    """This process's mount table, without mount IDs (which a remount may renumber)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as table:
        return sorted(" ".join(line.split()[2:]) for line in table)


def namespace_of(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def holders(kind: str, inode: int) -> list[str]:
    """Processes (PID and name) in the namespace `inode` of `kind` (net, mnt, pid)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and namespace_of(entry, kind) == inode:
            try:
                name = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            found.append(f"{entry} {name}")
    return found


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {seconds} s")
        time.sleep(0.05)


@sandboxed
def test_a_lab_stays_up_and_other_processes_enter_it() -> None:
    before, mounted = take_snapshot(), mounts()
    with labs_ended():
        up = nsgen("lab", "up", SEED, "--dns")
        assert up.returncode == 0, up.stderr
        assert up.stdout == "seed\n"
        assert "seed is up (8 steps)" in up.stderr.splitlines()
        # the lab lives in its own sandbox: nothing of it shows here, not even a mount
        assert_same_state(before)
        assert mounts() == mounted

        listing = nsgen("lab", "list")
        assert listing.returncode == 0
        header, row = listing.stdout.splitlines()
        assert header.split() == ["NAME", "FILE", "SINCE", "STATE"]
        assert row.split()[:2] == ["seed", str(SEED)]
        assert row.split()[-1] == "up"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", " ".join(row.split()[2:4]))

        ping = nsgen(
            "lab", "exec", "seed", "red", "--", "ping", "-c", "1", "-W", "1", "192.168.15.1"
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "1 packets transmitted, 1 received" in ping.stdout
        out = nsgen("lab", "exec", "seed", "blue", "--", "ping", "-c", "1", "-W", "1", "192.0.2.10")
        assert out.returncode == 0, "blue reaches the simulated internet through the NAT"
        assert nsgen("lab", "exec", "seed", "host", "--", "sh", "-c", "exit 7").returncode == 7
        upstream = nsgen("lab", "exec", "seed", "upstream", "--", "ip", "-o", "-4", "addr")
        assert "192.0.2.10/32" in upstream.stdout

        shell = nsgen(
            "lab",
            "shell",
            "seed",
            "blue",
            stdin="ip -o -4 addr show dev veth-blue | awk '{print $4}'\n"
            "nsgen --version\n"
            'echo "$NSGEN_LAB $NSGEN_LAB_NODE"\n'
            "getent hosts www.example.test\n"
            "exit 3\n",
        )
        assert shell.returncode == 3, shell.stderr
        assert shell.stdout.split("\n") == [
            "192.168.15.1/24",
            "nsgen 0.1.0",
            "seed blue",
            "192.0.2.10      www.example.test",
            "",
        ]

        assert complete("nsgen lab exec ") == ["seed"]
        assert complete("nsgen lab shell seed r") == ["red"]

        unknown = nsgen("lab", "exec", "seed", "green", "--", "true")
        assert unknown.returncode == 2
        assert unknown.stderr.splitlines() == [
            "lab seed has no node 'green' (its nodes: host, red, blue, upstream, nsgen-upstream)"
        ]
        missing = nsgen("lab", "exec", "nolab", "red", "--", "true")
        assert missing.returncode == 1
        assert missing.stderr.splitlines() == ["no lab named nolab (nsgen lab list shows the labs)"]

        record = labs.read("seed")
        assert record is not None
        down = nsgen("lab", "down", "seed")
        assert down.returncode == 0, down.stderr
        assert down.stdout == ""
        assert down.stderr.splitlines()[-2:] == [
            "seed is down",
            "lab: teardown restored the state before up exactly",
        ]
        assert labs.start_time(record.keeper_pid) is None, "the keeper has ended"
        assert labs.names() == []
        empty = nsgen("lab", "list")
        assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "no labs\n")
    assert_same_state(before)
    assert mounts() == mounted


@sandboxed
def test_lab_down_reports_what_teardown_left_and_labs_of_one_topology_coexist() -> None:
    before = take_snapshot()
    with labs_ended():
        assert nsgen("lab", "up", SEED, "-q").stdout == "seed\n"
        again = nsgen("lab", "up", SEED, "-q")
        assert again.returncode == 1
        keeper = labs.read("seed")
        assert keeper is not None
        assert again.stderr.splitlines() == [
            f"lab seed is already up (keeper PID {keeper.keeper_pid}); nsgen lab down seed "
            "first, or give another --name"
        ]
        second = nsgen("lab", "up", SEED, "--name", "seed2", "-q")
        assert (second.returncode, second.stdout, second.stderr) == (0, "seed2\n", "")
        # the same namespace names, in two sandboxes
        stray = nsgen(
            "lab", "exec", "seed2", "host", "--", "ip", "link", "add", "stray", "type", "bridge"
        )
        assert stray.returncode == 0, stray.stderr
        assert (
            nsgen(
                "lab", "exec", "seed", "red", "--", "ping", "-c", "1", "-W", "1", "192.168.15.1"
            ).returncode
            == 0
        )

        quiet = nsgen("lab", "down", "seed", "-q")
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
        left = nsgen("lab", "down", "seed2")
        assert left.returncode == 1
        lines = left.stderr.splitlines()
        report = lines.index("lab: teardown did not restore the state before up:")
        differences = lines[report + 1 :]
        assert "  /root/addr/stray: added []" in differences
        assert [d for d in differences if d.startswith("  /root/link/stray: added {")]
        assert labs.names() == [], "the lab is gone all the same: its keeper has ended"
    assert_same_state(before)


@sandboxed
def test_a_lab_up_with_firewall_nftables_holds_its_table_and_its_checks_pass() -> None:
    """`lab up --firewall nftables`: the lab's root namespace holds nsgen's inet table and
    no iptables rule of nsgen's; `nsgen check` inside it finds the nftables build (the file
    says nothing of nftables); lab down leaves the state as it was."""
    before = take_snapshot()
    with labs_ended():
        up = nsgen("lab", "up", SEED, "--firewall", "nftables", "-q")
        assert (up.returncode, up.stdout) == (0, "seed\n"), up.stderr
        table = nsgen(
            "lab", "exec", "seed", "host", "--", "nft", "list", "table", "inet", "nsgen_seed"
        )
        assert table.returncode == 0, table.stderr
        assert 'oifname "eth0" ip saddr 192.168.15.0/24 counter packets' in table.stdout
        assert 'masquerade comment "nsgen:seed"' in table.stdout
        rules = nsgen("lab", "exec", "seed", "host", "--", "iptables-save")
        assert "nsgen:seed" not in rules.stdout
        checked = nsgen("lab", "exec", "seed", "host", "--", "nsgen", "check", str(SEED))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.splitlines()[-1] == "4 passed, 0 failed"
        down = nsgen("lab", "down", "seed", "-q")
        assert (down.returncode, down.stderr) == (0, "")
    assert_same_state(before)


@sandboxed
def test_a_killed_keeper_leaves_nothing_and_the_lab_shows_as_gone() -> None:
    before, mounted = take_snapshot(), mounts()
    with labs_ended():
        assert nsgen("lab", "up", SEED, "--dns", "-q").stdout == "seed\n"
        record = labs.read("seed")
        assert record is not None
        keeper = record.keeper_pid
        net, mnt, pid = (namespace_of(keeper, kind) for kind in ("net", "mnt", "pid"))
        assert net is not None and mnt is not None and pid is not None
        assert net != namespace_of("self", "net")
        # a command running in the lab, started from another process
        sleeper = subprocess.Popen(
            [*NSGEN, "lab", "exec", "seed", "red", "--", "sleep", "60"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda: any(h.endswith(" sleep") for h in holders("pid", pid)),
                10,
                "the sleep did not start in the lab",
            )
            assert any(h.endswith(" dnsmasq") for h in holders("pid", pid))
            os.kill(keeper, signal.SIGKILL)
            assert sleeper.wait(timeout=10) == 128 + signal.SIGKILL, "it died with the lab"
        finally:
            if sleeper.poll() is None:
                sleeper.kill()
                sleeper.wait()
        wait_for(lambda: not holders("net", net), 10, "processes kept the lab's network")
        wait_for(lambda: not holders("mnt", mnt), 10, "processes kept the lab's mounts")
        wait_for(
            lambda: all(" python" in h for h in holders("pid", pid)),  # the keeper's zombie
            10,
            "the lab's processes did not end",
        )
        assert labs.start_time(keeper) is None

        gone = nsgen("lab", "list")
        assert gone.returncode == 0
        assert [row.split()[0::4] for row in gone.stdout.splitlines()[1:]] == [["seed", "gone"]]
        assert labs.names() == [], "a gone lab is listed once, then forgotten"
        assert nsgen("lab", "list").stderr == "no labs\n"
        down_gone = nsgen("lab", "down", "seed")
        assert down_gone.returncode == 1
        assert down_gone.stderr.splitlines() == [
            "no lab named seed (nsgen lab list shows the labs)"
        ]
    assert_same_state(before)
    assert mounts() == mounted
    assert not [m for m in mounts() if " nsfs " in m], "no namespace of the lab is bind-mounted"


@sandboxed
def test_a_gone_lab_is_reported_by_exec_and_down_says_so(tmp_path: Path) -> None:
    with labs_ended():
        assert nsgen("lab", "up", SEED, "-q").returncode == 0
        record = labs.read("seed")
        assert record is not None
        os.kill(record.keeper_pid, signal.SIGKILL)
        wait_for(lambda: labs.start_time(record.keeper_pid) is None, 10, "the keeper lived on")
        entered = nsgen("lab", "exec", "seed", "red", "--", "true")
        assert entered.returncode == 1
        assert entered.stderr.splitlines() == [
            f"lab seed is gone: its keeper (PID {record.keeper_pid}) has ended, and its "
            "sandbox with it; record removed"
        ]
        assert nsgen("lab", "up", SEED, "-q").returncode == 0
        again = labs.read("seed")
        assert again is not None
        os.kill(again.keeper_pid, signal.SIGKILL)
        wait_for(lambda: labs.start_time(again.keeper_pid) is None, 10, "the keeper lived on")
        down = nsgen("lab", "down", "seed")
        assert down.returncode == 0
        assert down.stderr.splitlines() == [
            f"lab seed was gone already: its keeper (PID {again.keeper_pid}) had ended, and "
            "its sandbox with it; record removed"
        ]


# ---- the lab's resolver --------------------------------------------------------------------

LONELY: dict[str, Any] = {
    "name": "lonely",
    "host": {
        "external": ["eth0"],
        "bridges": {"br0": {"addresses": ["10.61.0.254/24"]}},
        "masquerade": [{"source": "10.61.0.0/24", "out": "eth0"}],
        "sysctls": {"net.ipv4.ip_forward": 1},
    },
    "namespaces": {
        "routed": {
            "interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["10.61.0.1/24"]}],
            "routes": [{"to": "default", "via": "10.61.0.254"}],
        },
        "island": {},
    },
}
TIMED_LOOKUP = (
    "start=$(date +%s%N); {}getent hosts nosuch.example; status=$?; "
    'echo "status=$status ms=$(( ($(date +%s%N) - start) / 1000000 ))"'
)


def timed_lookups(result: subprocess.CompletedProcess[str]) -> list[tuple[int, int]]:
    return [
        (int(m.group(1)), int(m.group(2)))
        for m in re.finditer(r"status=(\d+) ms=(\d+)", result.stdout)
    ]


@sandboxed
def test_no_lookup_in_a_lab_waits_on_the_machines_resolver(tmp_path: Path) -> None:
    topology = tmp_path / "lonely.yaml"
    topology.write_text(yaml.safe_dump(LONELY))
    # one-shot: the lab's root namespace, a namespace routed to the upstream, one with no route
    script = "; ".join(
        TIMED_LOOKUP.format(prefix)
        for prefix in ("", "ip netns exec routed ", "ip netns exec island ")
    )
    once = nsgen("lab", topology, "-q", "--", "bash", "-c", script)
    assert once.returncode == 0, once.stderr
    lookups = timed_lookups(once)
    assert [status for status, _ in lookups] == [2, 2, 2], once.stdout  # 2: not found
    assert all(ms < 1500 for _, ms in lookups), once.stdout
    with labs_ended():
        # detached, without --dns: nothing answers, at once
        assert nsgen("lab", "up", topology, "-q").returncode == 0
        inside = nsgen(
            "lab", "exec", "lonely", "routed", "--", "bash", "-c", TIMED_LOOKUP.format("")
        )
        [(status, ms)] = timed_lookups(inside)
        assert status == 2 and ms < 1500, inside.stdout
        conf = nsgen("lab", "exec", "lonely", "island", "--", "cat", "/etc/resolv.conf")
        assert "nameserver 198.51.100.53" in conf.stdout.splitlines()
        assert nsgen("lab", "down", "lonely", "-q").returncode == 0
        # with --dns, a namespace without dns: of its own resolves through the upstream's dnsmasq
        assert nsgen("lab", "up", topology, "--dns", "-q").returncode == 0
        named = nsgen(
            "lab", "exec", "lonely", "routed", "--", "getent", "hosts", "www.example.test"
        )
        assert named.stdout.split() == ["192.0.2.10", "www.example.test"]
        assert nsgen("lab", "down", "lonely", "-q").returncode == 0


@sandboxed
def test_lab_check_prints_verdicts_on_stdout_and_progress_on_stderr() -> None:
    result = nsgen("lab", EXAMPLES / "two-tier.yaml", "--check")
    assert result.returncode == 0, result.stderr
    verdicts = result.stdout.splitlines()
    assert verdicts[-1] == "8 passed, 0 failed"
    assert all(line.startswith("PASS  ") for line in verdicts[:-1]) and len(verdicts) == 9
    assert not [line for line in result.stderr.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert "lab: teardown restored the state before up exactly" in result.stderr.splitlines()


@sandboxed
def test_lab_exec_enters_pods_and_nodes_of_a_cluster() -> None:
    with labs_ended():
        assert nsgen("lab", "up", EXAMPLES / "k8s-two-nodes.yaml", "-q").stdout == "k8s\n"
        # a pod on node2 reaches a pod on node1 across the nodes (host-gw routes)
        pod = nsgen(
            "lab", "exec", "k8s", "client-b", "--", "ping", "-c", "1", "-W", "1", "10.244.0.2"
        )
        assert pod.returncode == 0, pod.stdout + pod.stderr
        node = nsgen(
            "lab", "exec", "k8s", "node1", "--", "ip", "-o", "-4", "addr", "show", "dev", "cni0"
        )
        assert "10.244.0.1/24" in node.stdout
        assert complete("nsgen lab shell k8s web-") == ["web-a", "web-b"]
        assert nsgen("lab", "down", "k8s", "-q").returncode == 0


@sandboxed
def test_a_reused_keeper_pid_is_never_joined_or_signalled() -> None:
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        start = labs.start_time(stranger.pid)
        assert start is not None
        for name in ("old", "older"):
            (labs.labs_root() / name).mkdir(parents=True)
            # a keeper that had this PID once, and started at another time
            labs.LabRecord(
                name=name,
                file=str(SEED),
                topology="seed",
                since="2026-01-01T00:00:00+00:00",
                keeper_pid=stranger.pid,
                keeper_start=start - 1,
                state="up",
                nodes=labs.lab_nodes(["red"]),
            ).save()
        entered = nsgen("lab", "exec", "old", "host", "--", "true")
        assert entered.returncode == 1
        assert entered.stderr.startswith("lab old is gone: its keeper")
        down = nsgen("lab", "down", "older")
        assert down.returncode == 0
        assert down.stderr.startswith("lab older was gone already")
        assert labs.names() == []
        assert stranger.poll() is None, "the process that has the PID now was left alone"
    finally:
        stranger.kill()
        stranger.wait()
