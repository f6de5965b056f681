"""IPv6 in the core, beside IPv4: addresses usable when setup returns, routes of both families,
IPv6 forwarding recorded and restored, per-namespace IPv6 off, NAT66 and ip6tables rules
tagged and removed like the IPv4 ones, family mismatches as one-line errors, checks over IPv6,
and a failed step's summary quoting the command's own error. The dual-stack seed
(examples/seed-dual.yaml) is built for real in the sandbox; its fault injection lives with
the seed's (tests/test_scripts_faults.py, tests/test_executor.py)."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nsgen.backends.iptables import rule_text
from nsgen.errors import TopologyError
from nsgen.executor import failure_reason
from nsgen.kinds.firewall import MasqueradeArgs, RuleArgs
from nsgen.live import LiveState
from nsgen.load import load_topology, topology_from_data
from nsgen.plan import build_plan
from nsgen.render import render_scripts
from nsgen.sandbox import INTERNET_HOST6, UPSTREAM_NETNS, upstream
from nsgen.snapshot import take_snapshot
from nsgen.status import PRESENT, topology_status
from tests.harness import (
    EXAMPLES,
    assert_same_state,
    make_canary,
    ping,
    render_example,
    run,
    sandboxed,
)

SRC = "six.yaml"
NSGEN = (sys.executable, "-m", "nsgen")

_BASE: dict[str, Any] = {
    "name": "six",
    "host": {
        "external": ["eth0"],
        "bridges": {"br0": {"addresses": ["10.0.0.254/24", "fd00:1::fe/64"]}},
        "masquerade": [
            {"source": "10.0.0.0/24", "out": "eth0"},
            {"source": "fd00:1::/64", "out": "eth0"},
        ],
        "sysctls": {"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1},
    },
    "namespaces": {
        "red": {
            "interfaces": [
                {"peer": {"bridge": "br0"}, "addresses": ["10.0.0.1/24", "fd00:1::1/64"]}
            ],
            "routes": [
                {"to": "default", "via": "10.0.0.254"},
                {"to": "default", "via": "fd00:1::fe"},
            ],
        },
    },
}


def base() -> dict[str, Any]:
    return copy.deepcopy(_BASE)


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        topology_from_data(data, SRC)
    return caught.value.lines()


def setup_text(data: dict[str, Any], style: str = "batch") -> str:
    return render_scripts(build_plan(topology_from_data(data, SRC), style))["setup.sh"]


# ---- rules and masquerade of both families ------------------------------------------------


def test_an_ipv6_masquerade_is_an_ip6tables_rule_beside_the_iptables_one() -> None:
    text = setup_text(base())
    assert (
        "iptables-restore --noflush -w <<'EOF'\n*nat\n"
        "-A POSTROUTING -s 10.0.0.0/24 -o eth0 -m comment --comment nsgen:six -j MASQUERADE\n"
        "COMMIT\nEOF\n"
        "ip6tables-restore --noflush -w <<'EOF'\n*nat\n"
        "-A POSTROUTING -s fd00:1::/64 -o eth0 -m comment --comment nsgen:six -j MASQUERADE\n"
        "COMMIT\nEOF"
    ) in text
    # teardown removes exactly the tagged rules, in each family
    teardown = render_scripts(build_plan(topology_from_data(base(), SRC)))["teardown.sh"]
    assert "  nsgen_remove_iptables nsgen:six\n  nsgen_remove_iptables -6 nsgen:six\n" in teardown


def test_ip6tables_is_a_needed_tool_only_when_an_ipv6_rule_is_installed() -> None:
    assert "command -v ip6tables" in setup_text(base())
    data = base()
    data["host"]["masquerade"].pop()
    assert "command -v ip6tables" not in setup_text(data)
    assert "command -v iptables" in setup_text(data)


def test_the_tutorial_style_spells_each_family_with_its_own_program() -> None:
    text = setup_text(base(), "tutorial")
    assert (
        "ip6tables -w -t nat -A POSTROUTING -s fd00:1::/64 -o eth0 -m comment --comment "
        "nsgen:six -j MASQUERADE"
    ) in text
    assert (
        "if ip6tables -w -t nat -C POSTROUTING -s fd00:1::/64 -o eth0 -m comment --comment "
        "nsgen:six -j MASQUERADE 2>/dev/null; then\n"
        "    ip6tables -w -t nat -D POSTROUTING"
    ) in text


def test_nat66_out_of_an_external_interface_needs_an_ipv6_address_there_at_preflight() -> None:
    assert (
        "if [[ -z $(ip -6 -o addr show dev eth0 scope global 2>/dev/null) ]]; then "
        "nsgen_problem 'eth0 has no global IPv6 address: masquerading fd00:1::/64 out of it "
        "needs one'; fi"
    ) in setup_text(base())


def test_nat66_out_of_an_interface_nsgen_creates_without_an_ipv6_address_is_refused() -> None:
    data = base()
    data["host"]["bridges"]["br1"] = {"addresses": ["10.1.0.254/24"]}
    data["host"]["masquerade"].append({"source": "fd00:1::/64", "out": "br1"})
    assert problems(data) == [
        f"{SRC}: host.masquerade[2].out: br1 has no IPv6 address: masquerading fd00:1::/64 "
        "(NAT66) gives leaving packets an IPv6 address of br1"
    ]


def rules_of(data: dict[str, Any]) -> list[tuple[str, int]]:
    plan = build_plan(topology_from_data(data, SRC), "tutorial")
    return [
        (rule_text(s.args.rule), s.args.family) for s in plan.steps if isinstance(s.args, RuleArgs)
    ]


def test_a_rule_goes_into_the_family_of_its_addresses_or_the_one_it_names() -> None:
    data = base()
    data["host"]["iptables"] = {
        "chains": [{"name": "OWN"}],
        "rules": [
            {"chain": "FORWARD", "rule": "-s fd00:1::/64 -j ACCEPT"},
            {"chain": "FORWARD", "rule": "-6 -i br0 -j ACCEPT"},
            {"chain": "FORWARD", "family": "both", "in_interface": "br0", "jump": "OWN"},
            {"chain": "OWN", "rule": "-i br0 -o br0 -j DROP"},
            {"chain": "FORWARD", "rule": "-d 10.0.0.1 -j ACCEPT"},
        ],
    }
    assert rules_of(data) == [
        ("-s fd00:1::/64 -j ACCEPT", 6),
        ("-i br0 -j ACCEPT", 6),
        ("-i br0 -j OWN", 4),
        ("-i br0 -j OWN", 6),
        ("-i br0 -o br0 -j DROP", 4),
        ("-d 10.0.0.1 -j ACCEPT", 4),
    ]
    # the own chain is used by rules of both families: it is created in both
    text = setup_text(data, "tutorial")
    assert "\niptables -w -t filter -N OWN\n" in text
    assert "\nip6tables -w -t filter -N OWN\n" in text


def test_a_dnat_to_an_ipv6_address_and_port_is_written_in_brackets() -> None:
    data = base()
    data["host"]["iptables"] = {
        "rules": [
            {
                "table": "nat",
                "chain": "PREROUTING",
                "rule": "-p tcp --dport 80 -j DNAT --to-destination [fd00:1::1]:8080",
            }
        ]
    }
    assert rules_of(data) == [("-p tcp --dport 80 -j DNAT --to-destination [fd00:1::1]:8080", 6)]


@pytest.mark.parametrize(
    ("rule", "line"),
    [
        (
            {"chain": "FORWARD", "rule": "-s 10.0.0.0/24 -d fd00:1::/64 -j ACCEPT"},
            "host.iptables.rules[0].destination: fd00:1::/64 is IPv6, but source 10.0.0.0/24 "
            "is IPv4: a rule's addresses are of one family",
        ),
        (
            {"chain": "FORWARD", "family": 4, "source": "fd00:1::/64", "jump": "ACCEPT"},
            "host.iptables.rules[0].family: is 4, but source fd00:1::/64 is IPv6: a rule with "
            "an address belongs to that address's family",
        ),
        (
            {"chain": "FORWARD", "family": "both", "source": "10.0.0.0/24", "jump": "ACCEPT"},
            "host.iptables.rules[0].family: is both, but source 10.0.0.0/24 is IPv4: a rule "
            "with an address belongs to that address's family",
        ),
        (
            {"chain": "FORWARD", "rule": "-6 -p icmp -j ACCEPT"},
            "host.iptables.rules[0].protocol: icmp is IPv4's, but the rule is IPv6 (IPv6 uses "
            "icmpv6)",
        ),
        (
            {
                "chain": "FORWARD",
                "rule": "-s fd00:1::/64 -j REJECT --reject-with icmp-port-unreachable",
            },
            "host.iptables.rules[0].reject_with: icmp-port-unreachable is an IPv4 error, but "
            "the rule is IPv6 (IPv6's are icmp6-*, IPv4's icmp-*; tcp-reset is both's)",
        ),
        (
            {
                "table": "nat",
                "chain": "PREROUTING",
                "rule": "-d 10.0.0.254 -j DNAT --to-destination [fd00:1::1]:80",
            },
            "host.iptables.rules[0].to_destination: [fd00:1::1]:80 is IPv6, but destination "
            "10.0.0.254 is IPv4: a rule's addresses are of one family",
        ),
    ],
)
def test_a_rule_mixing_families_is_one_line_at_the_field_that_disagrees(
    rule: dict[str, Any], line: str
) -> None:
    data = base()
    data["host"]["iptables"] = {"rules": [rule]}
    assert problems(data) == [f"{SRC}: {line}"]


def test_a_rule_of_a_family_its_chain_is_not_declared_for_is_refused() -> None:
    data = base()
    data["host"]["iptables"] = {
        "chains": [{"name": "OWN", "family": 4}],
        "rules": [{"chain": "OWN", "rule": "-s fd00:1::/64 -j ACCEPT"}],
    }
    assert problems(data) == [
        f"{SRC}: host.iptables.rules[0].chain: chain OWN is declared for IPv4 only, but the "
        "rule is IPv6 (set the chain's family, or the rule's)"
    ]


# ---- routes, sysctls, per-namespace IPv6 -----------------------------------------------------


def test_an_ipv6_gateway_for_an_ipv4_route_is_refused_at_the_gateway() -> None:
    data = base()
    data["namespaces"]["red"]["routes"].append({"to": "192.168.1.0/24", "via": "fd00:1::fe"})
    assert problems(data) == [
        f"{SRC}: namespaces.red.routes[2].via: gateway fd00:1::fe and destination "
        "192.168.1.0/24 are of different IP versions"
    ]


def test_a_root_ipv6_route_is_looked_up_in_ipv6_by_its_undo() -> None:
    data = base()
    data["host"]["routes"] = [
        {"to": "fd00:9::/64", "via": "fd00:1::1"},
        {"to": "default", "via": "fd00:1::1", "dev": "br0"},
    ]
    text = setup_text(data, "tutorial")
    assert (
        "if nsgen_has_route 6 fd00:9::/64 via fd00:1::1; then "
        "ip -6 route del fd00:9::/64 via fd00:1::1; fi" in text
    )
    assert (
        "if nsgen_has_route 6 default via fd00:1::1 dev br0; then "
        "ip -6 route del default via fd00:1::1 dev br0; fi" in text
    )


def test_ipv6_forwarding_saves_and_restores_its_default_twin_too() -> None:
    text = setup_text(base())
    assert (
        "nsgen_save_sysctl net.ipv6.conf.all.forwarding\n"
        "nsgen_save_sysctl net.ipv6.conf.default.forwarding\n"
        "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding\n"
    ) in text
    assert (
        "  nsgen_restore_sysctl net.ipv6.conf.all.forwarding\n"
        "  nsgen_restore_sysctl net.ipv6.conf.default.forwarding\n"
    ) in text


def test_every_ipv6_address_nsgen_assigns_skips_duplicate_address_detection() -> None:
    for style in ("batch", "tutorial"):
        text = setup_text(base(), style)
        assert "addr add fd00:1::fe/64 dev br0 nodad" in text
        assert "addr add fd00:1::1/64 dev veth-red nodad" in text
        assert "addr add 10.0.0.1/24 dev veth-red\n" in text  # IPv4 has no DAD


def test_ipv6_false_disables_ipv6_in_a_namespace_and_its_links_get_no_link_local() -> None:
    data = base()
    data["namespaces"]["blue"] = {
        "ipv6": False,
        "interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["10.0.0.2/24"]}],
    }
    text = setup_text(data)
    blue = text[text.index("configure namespace blue") :]
    assert "link set veth-blue addrgenmode none\n" in blue
    assert "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6" in blue
    assert "fe80::" not in blue
    # red holds an IPv6 address: a fixed link-local address, usable at once, instead of the
    # kernel's (which stays tentative for a while)
    red = text[text.index("configure namespace red") : text.index("configure namespace blue")]
    assert "link set veth-red addrgenmode none\n" in red
    assert re.search(r"^addr add fe80::[0-9a-f:]+/64 dev veth-red nodad$", red, re.M)


def test_ipv6_true_keeps_link_local_addresses_in_an_ipv4_only_topology() -> None:
    data = base()
    data["host"]["bridges"]["br0"]["addresses"] = ["10.0.0.254/24"]
    data["host"]["masquerade"].pop()
    del data["host"]["sysctls"]["net.ipv6.conf.all.forwarding"]
    red = data["namespaces"]["red"]
    red["interfaces"][0]["addresses"] = ["10.0.0.1/24"]
    red["routes"].pop()
    assert "link set veth-red addrgenmode none" in setup_text(data)
    red["ipv6"] = True
    assert "link set veth-red addrgenmode none" not in setup_text(data)


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            lambda d: d["host"].update(ipv6=False),
            "host.ipv6: the root namespace's IPv6 is the machine's own; nsgen never disables "
            "it (ipv6: false is for named namespaces)",
        ),
        (
            lambda d: d["namespaces"]["red"].update(ipv6=False),
            "namespaces.red.interfaces[0].addresses[1]: fd00:1::1/64 is IPv6, but namespace "
            "red has ipv6: false",
        ),
        (
            lambda d: d["namespaces"]["red"].update(
                ipv6=False, sysctls={"net.ipv6.conf.all.disable_ipv6": 0}
            ),
            "namespaces.red.sysctls.net.ipv6.conf.all.disable_ipv6: is 0, but ipv6: false sets "
            "it to 1: remove one of the two",
        ),
    ],
)
def test_ipv6_false_conflicts_are_one_line_each(change: Any, line: str) -> None:
    data = base()
    change(data)
    assert f"{SRC}: {line}" in problems(data)


# ---- checks over IPv6 ------------------------------------------------------------------------


def test_checks_pick_the_address_of_their_family_and_print_ipv6_ports_in_brackets() -> None:
    data = base()
    data["checks"] = [
        {"from": "host", "to": "red"},
        {"from": "host", "to": "red", "family": 6},
        {"from": "host", "to": "red", "family": 6, "kind": "tcp", "port": 80, "listen": True},
        {"from": "red", "kind": "dns", "name": "www.example.test", "family": 6},
    ]
    plan = build_plan(topology_from_data(data, SRC))
    assert [(p.label, p.target, p.family) for p in plan.probes] == [
        ("host -> 10.0.0.1 (red) ping", "10.0.0.1", 4),
        ("host -> fd00:1::1 (red) ping", "fd00:1::1", 6),
        ("host -> [fd00:1::1]:80 (red) tcp", "fd00:1::1", 6),
        ("red resolves www.example.test (AAAA)", "", 6),
    ]
    check = render_scripts(plan)["check.sh"]
    assert "nsgen_probe_dns red www.example.test 2 6\n" in check


@pytest.mark.parametrize(
    ("check", "line"),
    [
        (
            {"from": "host", "to": "10.0.0.1", "family": 6},
            "checks[0].family: is 6, but 10.0.0.1 is an IPv4 address",
        ),
        (
            {"from": "red", "to": "host", "family": 6},
            "checks[0].to: namespace host has no IPv6 address to check against",
        ),
    ],
)
def test_a_check_of_the_wrong_family_is_refused(check: dict[str, Any], line: str) -> None:
    data = base()
    data["host"]["bridges"]["br0"]["addresses"] = ["10.0.0.254/24"]
    data["host"]["masquerade"].pop()
    data["namespaces"]["red"]["routes"].pop()
    data["namespaces"]["red"]["interfaces"][0]["addresses"].pop()
    data["checks"] = [check]
    assert problems(data) == [f"{SRC}: {line}"]


# ---- the summary line of a failed step -------------------------------------------------------

IPTABLES_RESTORE_ERROR = (
    "iptables-restore v1.8.9 (nf_tables): invalid mask `64' specified\n"
    "Error occurred at line: 3\n"
    "Try `iptables-restore -h' or 'iptables-restore --help' for more information.\n"
)


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        (
            IPTABLES_RESTORE_ERROR,
            "iptables-restore v1.8.9 (nf_tables): invalid mask `64' specified (input line 3)",
        ),
        (
            "RTNETLINK answers: File exists\nCommand failed -:4\n",
            "RTNETLINK answers: File exists (input line 4)",
        ),
        (
            "Warning: something harmless\nip6tables v1.8.9 (nf_tables): Chain 'X' does not "
            "exist\nTry `ip6tables -h' or 'ip6tables --help' for more information.\n",
            "ip6tables v1.8.9 (nf_tables): Chain 'X' does not exist",
        ),
        ("", "(no error output)"),
    ],
)
def test_a_failed_steps_reason_is_its_meaningful_line_not_the_help_hint(
    stderr: str, reason: str
) -> None:
    assert failure_reason(stderr) == reason


def _failing_restore(directory: Path) -> dict[str, str]:
    """PATH with an iptables-restore that fails the way a real one does on bad input."""
    directory.mkdir()
    stub = directory / "iptables-restore"
    stub.write_text(
        f"#!/bin/bash\ncat >/dev/null\ncat >&2 <<'STUB_END'\n{IPTABLES_RESTORE_ERROR}STUB_END\nexit 2\n"
    )
    stub.chmod(0o755)
    return {**os.environ, "PATH": f"{directory}:{os.environ['PATH']}"}


@sandboxed
def test_setup_sh_and_up_quote_the_meaningful_error_of_a_failed_step(tmp_path: Path) -> None:
    scripts = render_example("seed-dual", tmp_path / "out")
    env = _failing_restore(tmp_path / "bin")
    reason = "iptables-restore v1.8.9 (nf_tables): invalid mask `64' specified (input line 3)"
    with upstream(["eth0"]):
        before = take_snapshot()
        setup = run(scripts / "setup.sh", env=env)
        assert setup.returncode == 3, setup.stderr
        assert (
            "[nsgen] step 6/9 (install 1 iptables and 1 ip6tables change(s) in the root "
            f"namespace) failed with exit status 2: {reason}\n[nsgen] rolling back\n"
        ) in setup.stderr
        assert "Try `iptables-restore -h'" in setup.stderr  # the command's output is shown whole
        assert_same_state(before)
        up = run(*NSGEN, "up", EXAMPLES / "seed-dual.yaml", env=env)
        assert up.returncode == 3, up.stderr
        assert f"failed with exit status 2: {reason}\n" in up.stderr
        assert_same_state(before)


# ---- the dual-stack seed, for real ----------------------------------------------------------


def _tentative() -> list[str]:
    """IPv6 addresses (link-local ones included) still under duplicate address detection,
    in every namespace."""
    found = []
    for netns in [None, "red", "blue"]:
        out = run("ip", "-6", "-o", "addr", "show", "tentative", netns=netns)
        found += [line.split()[3] for line in out.stdout.splitlines()]
    return found


@pytest.mark.parametrize("style", ["batch", "tutorial"])
@sandboxed
def test_ipv6_addresses_answer_the_moment_setup_returns(tmp_path: Path, style: str) -> None:
    """Issue 10 §3: IPv6 pings right after setup failed while addresses were "tentative"."""
    scripts = render_example("seed-dual", tmp_path / "out", style)
    with upstream(["eth0"]):
        setup = run(scripts / "setup.sh")
        assert setup.returncode == 0, setup.stderr
        # no wait of any kind between setup and the first packet
        assert ping("fd00:15::1", netns="red"), "red -> blue over IPv6, at once"
        assert ping("fd00:15::fe", netns="blue"), "blue -> its IPv6 gateway, at once"
        assert ping("fd00:15::2"), "host -> red over IPv6, at once"
        assert _tentative() == []
        assert run(scripts / "teardown.sh").returncode == 0

        # the same scripts without `nodad` leave the addresses tentative: what failed before
        for name in ("setup.sh", "teardown.sh"):
            text = (scripts / name).read_text().replace(" nodad", "")
            (scripts / name).write_text(text)
        setup = run(scripts / "setup.sh")
        assert setup.returncode == 0, setup.stderr
        assert "fd00:15::1/64" in _tentative()
        assert run(scripts / "teardown.sh").returncode == 0


class _PeerRecorder:
    """A TCP server in the upstream namespace on the internet host's IPv6 address that
    records the source address of each connection it accepts (bounded: one accept)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.peers: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> _PeerRecorder:
        code = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_INET6)\n"
            "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            f"s.bind(('{INTERNET_HOST6}',{self.port}))\n"
            "s.listen(1)\nprint('ready',flush=True)\n"
            "s.settimeout(10)\nc,a=s.accept()\nprint(a[0],flush=True)\n"
        )
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", UPSTREAM_NETNS, sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"
        return self

    def peer(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        self.process.wait(timeout=10)
        return line

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


@pytest.mark.parametrize("style", ["batch", "tutorial"])
@sandboxed
def test_dual_stack_seed_passes_every_check_nat66_shows_the_uplink_and_teardown_restores(
    tmp_path: Path, style: str
) -> None:
    scripts = render_example("seed-dual", tmp_path / "out", style)
    with upstream(["eth0"]) as up:
        make_canary()
        before = take_snapshot()
        setup = run(scripts / "setup.sh")
        assert setup.returncode == 0, setup.stderr

        checks = run(scripts / "check.sh")
        assert checks.returncode == 0, checks.stdout + checks.stderr
        assert checks.stdout.endswith("8 passed, 0 failed\n"), checks.stdout

        # NAT66: the upstream sees the uplink's IPv6 address, not blue's
        uplink6 = up.uplinks6["eth0"][0]
        with _PeerRecorder(7006) as recorder:
            connect = run(
                "bash", "-c", f"exec 3<>/dev/tcp/{INTERNET_HOST6}/7006", netns="blue", timeout=10
            )
            assert connect.returncode == 0, connect.stderr
            assert recorder.peer() == uplink6

        assert Path("/proc/sys/net/ipv6/conf/all/forwarding").read_text().strip() == "1"
        assert Path("/proc/sys/net/ipv6/conf/eth0/forwarding").read_text().strip() == "1"
        saved = run("ip6tables-save", "-t", "nat").stdout
        assert (
            '-A POSTROUTING -s fd00:15::/64 -o eth0 -m comment --comment "nsgen:seed-dual"' in saved
        )

        teardown = run(scripts / "teardown.sh")
        assert teardown.returncode == 0, teardown.stderr
        # ip6tables (the canary's rules kept), IPv6 sysctls of every link, routes: as before
        assert_same_state(before)
        assert "-A POSTROUTING -s fd99::/64 -o eth0 -j MASQUERADE" in run("ip6tables-save").stdout


@sandboxed
def test_ipv6_forwarding_and_its_default_twin_get_their_previous_values_back(
    tmp_path: Path,
) -> None:
    scripts = render_example("seed-dual", tmp_path / "out")
    all_, default = (Path(f"/proc/sys/net/ipv6/conf/{k}/forwarding") for k in ("all", "default"))
    with upstream(["eth0"]):
        default.write_text("1\n")  # unusual, but a value nsgen must not lose
        assert all_.read_text().strip() == "0"
        assert run(scripts / "setup.sh").returncode == 0
        assert (all_.read_text().strip(), default.read_text().strip()) == ("1", "1")
        assert run(scripts / "teardown.sh").returncode == 0
        assert (all_.read_text().strip(), default.read_text().strip()) == ("0", "1")


@sandboxed
def test_a_namespace_with_ipv6_false_has_no_ipv6_at_all(tmp_path: Path) -> None:
    data = base()
    data["namespaces"]["blue"] = {
        "ipv6": False,
        "interfaces": [{"peer": {"bridge": "br0"}, "addresses": ["10.0.0.2/24"]}],
    }
    topology = topology_from_data(data, SRC)
    out = tmp_path / "out"
    out.mkdir()
    for name, text in render_scripts(build_plan(topology)).items():
        (out / name).write_text(text)
        (out / name).chmod(0o755)
    with upstream(["eth0"]):
        before = take_snapshot()
        setup = run(out / "setup.sh")
        assert setup.returncode == 0, setup.stderr
        assert run("ip", "-6", "addr", "show", netns="blue").stdout == ""
        assert (
            run("cat", "/proc/sys/net/ipv6/conf/default/disable_ipv6", netns="blue").stdout == "1\n"
        )
        assert ping("10.0.0.1", netns="blue")
        assert not ping("fd00:1::1", netns="blue")
        assert ping("fd00:1::1"), "red keeps its IPv6"
        assert run(out / "teardown.sh").returncode == 0
        assert_same_state(before)


def test_the_dual_stack_seed_example_is_valid_and_names_both_families() -> None:
    topology = load_topology(EXAMPLES / "seed-dual.yaml")
    assert topology.name == "seed-dual"
    families = {p.family for p in build_plan(topology).probes}
    assert families == {4, 6}


# ---- nsgen status sees both families ---------------------------------------------------------


def _first_ipv6_firewall_step(topology: Any) -> tuple[str, str, list[str], str]:
    """(netns, table, words after `-A CHAIN`, chain) of the first IPv6 rule or masquerade."""
    for step in build_plan(topology, "tutorial").steps:
        args = step.args
        if isinstance(args, RuleArgs) and args.family == 6:
            return args.netns, args.table, args.words, args.chain
        if isinstance(args, MasqueradeArgs) and args.family == 6:
            words = ["-s", args.source, "-o", args.out, "-m", "comment", "--comment", args.tag]
            return args.netns, "nat", [*words, "-j", "MASQUERADE"], "POSTROUTING"
    raise AssertionError("no IPv6 firewall step")


@pytest.mark.parametrize("example", ["seed-dual", "docker-dual", "k8s-dual"])
@sandboxed
def test_status_compares_both_families_and_sees_a_missing_ipv6_rule(example: str) -> None:
    topology = load_topology(EXAMPLES / f"{example}.yaml")
    with upstream(["eth0"]):
        up = run(*NSGEN, "up", "--quiet", EXAMPLES / f"{example}.yaml", timeout=120)
        assert up.returncode == 0, up.stderr
        try:
            rows = topology_status(topology, LiveState())
            assert [(r.kind, r.netns, r.name, r.detail) for r in rows if r.state != PRESENT] == []
            keys = [(r.kind, r.netns, r.name) for r in rows]
            assert len(keys) == len(set(keys))
            assert any("(IPv6)" in r.name or ":" in r.name for r in rows if r.kind != "state")

            netns, table, words, chain = _first_ipv6_firewall_step(topology)
            where = None if netns == "host" else netns
            deleted = run("ip6tables", "-w", "-t", table, "-D", chain, *words, netns=where)
            assert deleted.returncode == 0, deleted.stderr
            missing = [
                (r.kind, r.netns, r.state)
                for r in topology_status(topology, LiveState())
                if r.state != PRESENT
            ]
            assert len(missing) == 1 and missing[0][1] == netns, missing
            assert missing[0][0] in ("rule", "masquerade") and missing[0][2] == "missing"
        finally:
            down = run(*NSGEN, "down", "--quiet", topology.name, timeout=120)
        assert down.returncode == 0, down.stderr
