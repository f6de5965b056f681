"""Traffic shaping: a declared rate holds for a real transfer, the uplink gets its own queueing
discipline back, preflight refuses what it cannot shape (a user's qdisc on the uplink, a
queueing discipline the kernel lacks), status sees a removed qdisc, and every injected fault
is rolled back."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nsgen.errors import TopologyError
from nsgen.load import load_topology, topology_from_data
from nsgen.plan import build_plan
from nsgen.render import render_scripts, write_scripts
from nsgen.sandbox import upstream
from nsgen.snapshot import diff_snapshots, take_snapshot
from nsgen.status import topology_status
from tests.faults import calls_made, fail_at, install_stand_ins
from tests.harness import EXAMPLES, assert_same_state, make_canary, run, sandboxed

WAN = EXAMPLES / "wan-link.yaml"
MEGABYTES = 3
RATE_BYTES = 8_000_000 / 8  # wan0 is shaped to 8mbit


def _nsgen(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("nsgen")
    return run(str(script), *args, timeout=120)


_SERVER = """
import socket, sys
server = socket.create_server(("0.0.0.0", 5001))
server.settimeout(20)
print("listening", flush=True)
conn, _ = server.accept()
conn.settimeout(20)
received = 0
while chunk := conn.recv(65536):
    received += len(chunk)
conn.sendall(str(received).encode())
conn.close()
"""

_CLIENT = """
import socket, sys, time
payload = b"x" * (int(sys.argv[2]) * 1_000_000)
sock = socket.create_connection((sys.argv[1], 5001), timeout=20)
start = time.monotonic()
sock.sendall(payload)
sock.shutdown(socket.SHUT_WR)
answer = sock.recv(64)
print(time.monotonic() - start, answer.decode())
"""


def transfer_seconds(source: str, target_ns: str, target: str) -> float:
    """Seconds to send MEGABYTES over TCP from `source` to a receiver in `target_ns` (bounded:
    the receiver and the sender give up after 20 s; the receiver is stopped by its PID)."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", target_ns, sys.executable, "-c", _SERVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        sent = run(sys.executable, "-c", _CLIENT, target, str(MEGABYTES), netns=source, timeout=30)
        assert sent.returncode == 0, sent.stderr
        seconds, received = sent.stdout.split()
        assert int(received) == MEGABYTES * 1_000_000
        return float(seconds)
    finally:
        server.kill()
        server.wait(timeout=5)


@sandboxed
def test_a_shaped_link_carries_its_declared_rate_and_the_uplink_gets_its_qdisc_back() -> None:
    with upstream(["eth0"]):
        make_canary()
        before = take_snapshot()
        up = _nsgen("up", "--quiet", str(WAN))
        assert up.returncode == 0, up.stderr
        assert run("tc", "qdisc", "show", "dev", "eth0", "root").stdout.startswith(
            "qdisc tbf 1: root"
        )
        shaped = transfer_seconds("office", "branch", "10.30.0.2")
        expected = MEGABYTES * 1_000_000 / RATE_BYTES
        assert 0.75 * expected <= shaped <= 1.25 * expected, (shaped, expected)
        for netns in ("office", "branch"):  # the link as it would be without shaping
            assert run("tc", "qdisc", "del", "dev", "wan0", "root", netns=netns).returncode == 0
        unshaped = transfer_seconds("office", "branch", "10.30.0.2")
        assert unshaped * 5 <= shaped, (unshaped, shaped)
        down = _nsgen("down", "--quiet", "wan-link")
        assert down.returncode == 0, down.stderr
        assert_same_state(before)
    print(f"3 MB at 8mbit: {shaped:.2f} s (expected {expected:.2f} s); unshaped {unshaped:.3f} s")


@sandboxed
def test_status_reports_a_queueing_discipline_removed_by_hand() -> None:
    with upstream(["eth0"]):
        assert _nsgen("up", "--quiet", str(WAN)).returncode == 0
        try:
            topology = load_topology(WAN)
            rows = {(r.kind, r.netns, r.name): r for r in topology_status(topology)}
            shaping = {k: r.state for k, r in rows.items() if k[0] == "shaping"}
            assert shaping == {
                ("shaping", "host", "eth0 tbf"): "present",
                ("shaping", "office", "wan0 tbf"): "present",
                ("shaping", "branch", "wan0 tbf"): "present",
            }
            run("tc", "qdisc", "del", "dev", "wan0", "root", netns="office")
            run("tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "tbf",
                "rate", "1mbit", "burst", "10kb", "latency", "50ms")  # fmt: skip
            rows = {(r.kind, r.netns, r.name): r for r in topology_status(topology)}
            office = rows[("shaping", "office", "wan0 tbf")]
            assert (office.state, office.detail) == (
                "missing",
                "wan0 has the kernel's default noqueue",
            )
            uplink = rows[("shaping", "host", "eth0 tbf")]
            assert (uplink.state, uplink.detail) == (
                "different",
                "tbf rate is 125000 bytes/s, expected 2500000",
            )
        finally:
            assert _nsgen("down", "--quiet", "wan-link").returncode == 0


@sandboxed
def test_preflight_refuses_an_uplink_that_has_a_queueing_discipline_of_the_users() -> None:
    with upstream(["eth0"]):
        user_qdisc = ["tc", "qdisc", "add", "dev", "eth0", "root", "handle", "5:", "tbf"]
        user_qdisc += ["rate", "100mbit", "burst", "64kb", "latency", "10ms"]
        assert run(*user_qdisc).returncode == 0
        before = take_snapshot()
        up = _nsgen("up", str(WAN))
        assert up.returncode == 1
        assert (
            "eth0 already has a queueing discipline of its own (tc qdisc show dev eth0); nsgen "
            "shapes only an interface with the kernel's default"
        ) in up.stderr
        assert_same_state(before)


def _netem_here() -> bool:
    probe = ["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


EMULATED = {
    "name": "lossy",
    "namespaces": {
        "a": {
            "interfaces": [
                {"name": "la", "peer": {"netns": "b", "name": "lb", "addresses": ["192.0.2.2/30"]},
                 "addresses": ["192.0.2.1/30"]}
            ],
            "shaping": {"la": {"delay": "40ms", "loss": "0.1%", "rate": "10mbit"}},
        },
        "b": {},
    },
}  # fmt: skip


def test_netem_and_tbf_render_as_netem_root_with_tbf_child(tmp_path: Path) -> None:
    scripts = render_scripts(build_plan(topology_from_data(EMULATED, "lossy.yaml")))
    assert (
        "nsgen_enter a tc -b - <<'EOF'\n"
        "qdisc add dev la root handle 1: netem delay 40ms loss 0.1%\n"
        "qdisc add dev la parent 1:1 handle 10: tbf rate 10mbit burst 12kb latency 50ms\n"
        "EOF"
    ) in scripts["setup.sh"]
    tutorial = render_scripts(build_plan(topology_from_data(EMULATED, "lossy.yaml"), "tutorial"))
    assert (
        "ip netns exec a tc qdisc add dev la root handle 1: netem delay 40ms loss 0.1%"
        in tutorial["setup.sh"]
    )


@sandboxed
def test_netem_is_applied_where_the_kernel_has_it_and_refused_by_preflight_where_not(
    tmp_path: Path,
) -> None:
    """This machine's kernel has tc tbf but no sch_netem (../KERNEL.md): here the test proves
    the refusal; on a kernel with netem, the same test proves the 40 ms delay."""
    topology = topology_from_data(EMULATED, "lossy.yaml")
    scripts = write_scripts(render_scripts(build_plan(topology)), tmp_path / "out")
    before = take_snapshot()
    setup = run(scripts[0])
    if not _netem_here():
        assert setup.returncode == 1, setup.stderr
        assert (
            "this kernel has no netem queueing discipline (module sch_netem), which the "
            "topology shapes with"
        ) in setup.stderr
        assert "preflight refused, nothing was changed" in setup.stderr
        assert_same_state(before)
        print("netem: rendered, and refused by preflight on this kernel (no sch_netem)")
        return
    assert setup.returncode == 0, setup.stderr
    ping = run("ping", "-c", "3", "-W", "2", "-q", "192.0.2.2", netns="a")
    rtt = float(re.search(r"= [\d.]+/([\d.]+)/", ping.stdout)[1])  # type: ignore[index]
    assert rtt >= 40, ping.stdout
    assert run(scripts[1]).returncode == 0
    assert_same_state(before)


@pytest.mark.parametrize(
    ("shaping", "message"),
    [
        ({"wan0": {}}, "give a rate, or a delay, loss, duplicate or corrupt"),
        ({"wan0": {"rate": "fast"}}, "'fast' is not a rate: a number and one of bit, kbit, mbit, gbit (e.g. 10mbit)"),
        ({"wan0": {"delay": "10ms", "jitter": "5"}}, "'5' is not a time: a number and one of us, ms, s (e.g. 50ms)"),
        ({"wan0": {"jitter": "5ms"}}, "jitter varies a delay: give the delay too"),
        ({"wan0": {"burst": "32kb"}}, "burst, latency and limit shape a rate: give the rate too"),
        ({"wan0": {"loss": "120%"}}, "'120%' is not a share of packets: above 0% and at most 100%"),
        ({"eth9": {"rate": "1mbit"}}, "interface 'eth9' is not declared in namespace branch"),
    ],
)  # fmt: skip
def test_shaping_is_validated_at_its_path(shaping: dict[str, Any], message: str) -> None:
    import yaml

    data = yaml.safe_load(WAN.read_text())
    data["namespaces"]["branch"]["shaping"] = shaping
    with pytest.raises(TopologyError) as caught:
        topology_from_data(data, "wan.yaml")
    lines = caught.value.lines()
    assert any(
        line.startswith("wan.yaml: namespaces.branch.shaping.") and line.endswith(message)
        for line in lines
    ), lines


@pytest.mark.parametrize("style", ["batch", "tutorial"])
@sandboxed
def test_every_injected_fault_in_a_shaped_topology_is_rolled_back(
    tmp_path: Path, style: str
) -> None:
    plan = build_plan(load_topology(WAN), style)
    scripts = tmp_path / "out"
    write_scripts(render_scripts(plan), scripts)
    env = install_stand_ins(tmp_path / "bin")
    with upstream(["eth0"]):
        make_canary()
        before = take_snapshot()
        clean = run(scripts / "setup.sh", env=fail_at(env, 0))
        assert clean.returncode == 0, clean.stderr
        total = calls_made(env)
        assert run(scripts / "teardown.sh").returncode == 0
        failed_tc = 0
        for k in range(1, total + 1):
            result = run(scripts / "setup.sh", env={**fail_at(env, k), "NSGEN_LANES": "1"})
            if k == 1:  # the preflight's probe of tbf, in a throwaway namespace: a refusal
                assert result.returncode == 1, result.stderr
                assert "this kernel has no tbf queueing discipline" in result.stderr
            else:
                assert result.returncode == 3, (
                    f"fault {k}: exit {result.returncode}\n{result.stderr}"
                )
                failed_tc += "tc: injected fault" in result.stderr
            differences = diff_snapshots(before, take_snapshot())
            assert differences == [], f"fault {k} left:\n" + "\n".join(differences)
        assert failed_tc >= 1 if style == "tutorial" else failed_tc >= 2
