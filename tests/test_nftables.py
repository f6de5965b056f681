"""The nftables backend, without root: how rules are spelled in nft's language, the layouts
Docker 29 and kube-proxy's nftables mode use, dispatches and inline chains as data (and their
problems), the choice of backend, and what the scripts say. tests/test_nftables_live.py builds
the examples with both backends and compares them with real packets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nsgen.backends import nftables as nft
from nsgen.backends.iptables import rule_text
from nsgen.cli import app
from nsgen.errors import NsgenError, TopologyError
from nsgen.kinds.rules import Rule, expanded_rules
from nsgen.load import load_topology, topology_from_data
from nsgen.plan import Plan, build_plan, recorded_firewall, topology_digest
from nsgen.render import Renderer, render_scripts
from tests.harness import EXAMPLES

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


def plan_of(example: str, style: str = "batch", firewall: str = "nftables") -> Plan:
    return build_plan(load_topology(EXAMPLES / f"{example}.yaml"), style, firewall)  # type: ignore[arg-type]


def rule(text: str, table: str = "filter", chain: str = "FORWARD") -> Rule:
    return Rule.model_validate({"table": table, "chain": chain, "rule": text})


def nft_input(plan: Plan) -> dict[str, str]:
    """Each namespace's `nft -f` input in a batched plan."""
    found: dict[str, str] = {}
    for step in Renderer().steps(plan):
        for command in step.entered:
            if command.argv == ("nft", "-f", "-"):
                found[step.netns] = command.stdin
        match = re.search(r"^nft -f - <<'EOF'\n(.*?)^EOF$", step.do, re.S | re.M)
        if match:
            found["host"] = match.group(1)
    return found


# ---- rules spelled for nftables ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "table", "expected"),
    [
        ("-s 10.0.0.0/8 -j ACCEPT", "filter", "ip saddr 10.0.0.0/8 counter accept"),
        ("-i br0 ! -o br0 -j DROP", "filter", 'iifname "br0" oifname != "br0" counter drop'),
        (
            "-s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE",
            "nat",
            "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 counter masquerade",
        ),
        (
            "-m mark ! --mark 0x4000/0x4000 -j RETURN",
            "nat",
            "meta mark & 0x4000 != 0x4000 counter return",
        ),
        ("-j MARK --or-mark 0x4000", "nat", "counter meta mark set meta mark or 0x4000"),
        ("-j MARK --xor-mark 0x4000", "nat", "counter meta mark set meta mark xor 0x4000"),
        (
            "-j MARK --set-mark 0x1/0xff",
            "mangle",
            "counter meta mark set meta mark and 0xffffff00 xor 0x1",
        ),
        (
            "-d 10.96.0.1/32 -p tcp --dport 80 -j KUBE-SVC-WEB",
            "nat",
            "ip daddr 10.96.0.1 tcp dport 80 counter jump nat-KUBE-SVC-WEB",
        ),
        (
            "-p tcp -j DNAT --to-destination 10.244.0.2:8080",
            "nat",
            "meta l4proto tcp counter dnat ip to 10.244.0.2:8080",
        ),
        (
            "-p udp -j SNAT --to-source 192.0.2.1",
            "nat",
            "meta l4proto udp counter snat ip to 192.0.2.1",
        ),
        (
            "-m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT",
            "filter",
            "ct state new,established counter accept",
        ),
        (
            "-m conntrack ! --ctstate INVALID -j ACCEPT",
            "filter",
            "ct state != invalid counter accept",
        ),
        (
            "-m conntrack --ctstate DNAT -j MASQUERADE",
            "nat",
            "ct status dnat counter masquerade",
        ),
        (
            "-p udp --sport 1000:2000 -m addrtype --dst-type LOCAL -j REJECT --reject-with icmp-port-unreachable",
            "filter",
            "udp sport 1000-2000 fib daddr type local counter reject with icmp type port-unreachable",
        ),
        ("-p tcp ! --dport 22 -j DROP", "filter", "tcp dport != 22 counter drop"),
        ("! -p tcp -j DROP", "filter", "meta l4proto != tcp counter drop"),
        ("-p icmp -j ACCEPT", "filter", "meta l4proto icmp counter accept"),
        ("-j REJECT --reject-with tcp-reset", "filter", "counter reject with tcp reset"),
        (
            "-m addrtype ! --src-type LOCAL -j ACCEPT",
            "filter",
            "fib saddr type != local counter accept",
        ),
        (
            "-m statistic --mode random --probability 0.25 -j ACCEPT",
            "filter",
            "numgen random mod 1000000000 < 250000000 counter accept",
        ),
        ("-g OTHER", "filter", "counter goto filter-OTHER"),
    ],
)
def test_a_rule_reads_in_nfts_words_with_a_counter_and_the_topologys_comment(
    words: str, table: str, expected: str
) -> None:
    assert nft.rule_expr(rule(words, table), "nsgen:t") == f'{expected} comment "nsgen:t"'


@pytest.mark.parametrize(
    ("words", "table", "expected"),
    [
        ("-s fd00:1::/64 -j ACCEPT", "filter", "ip6 saddr fd00:1::/64 counter accept"),
        ("-6 -i br0 -j DROP", "filter", 'meta nfproto ipv6 iifname "br0" counter drop'),
        ("-4 -i br0 -j DROP", "filter", 'meta nfproto ipv4 iifname "br0" counter drop'),
        (
            "-d fd00:10:96::a/128 -p tcp --dport 80 -j KUBE-SVC-WEB",
            "nat",
            "ip6 daddr fd00:10:96::a tcp dport 80 counter jump nat-KUBE-SVC-WEB",
        ),
        (
            "-p tcp -j DNAT --to-destination [fd00:10:244::2]:8080",
            "nat",
            "meta nfproto ipv6 meta l4proto tcp counter dnat ip6 to [fd00:10:244::2]:8080",
        ),
        (
            "-p tcp -j DNAT --to-destination 10.244.0.2:8080",
            "nat",
            "meta nfproto ipv4 meta l4proto tcp counter dnat ip to 10.244.0.2:8080",
        ),
        (
            "! -d ::1 -m addrtype --dst-type LOCAL -j KUBE-SERVICES",
            "nat",
            "ip6 daddr != ::1 fib daddr type local counter jump nat-KUBE-SERVICES",
        ),
        (
            "-6 -p tcp --dport 81 -j REJECT --reject-with icmp6-port-unreachable",
            "filter",
            "meta nfproto ipv6 tcp dport 81 counter reject with icmpv6 type port-unreachable",
        ),
        (
            "-6 -p icmpv6 -j ACCEPT",
            "filter",
            "meta nfproto ipv6 meta l4proto ipv6-icmp counter accept",
        ),
        (
            "-6 -m mark ! --mark 0x4000/0x4000 -j RETURN",
            "nat",
            "meta nfproto ipv6 meta mark & 0x4000 != 0x4000 counter return",
        ),
    ],
)
def test_in_a_topology_with_ipv6_a_rule_of_one_family_says_which_in_the_inet_table(
    words: str, table: str, expected: str
) -> None:
    assert nft.rule_expr(rule(words, table), "nsgen:t", True) == f'{expected} comment "nsgen:t"'


def test_a_rule_of_both_families_or_in_a_topology_without_ipv6_names_no_family() -> None:
    both = Rule.model_validate(
        {"chain": "FORWARD", "in_interface": "br0", "jump": "DROP", "family": "both"}
    )
    assert nft.rule_expr(both, "t", True) == 'iifname "br0" counter drop comment "t"'
    # without IPv6 anywhere an IPv4 rule reads as it always has
    assert nft.rule_expr(rule("-i br0 -j DROP"), "t") == 'iifname "br0" counter drop comment "t"'
    assert not any("nfproto" in text for text in nft_input(plan_of("docker-bridge")).values())


def test_a_ctstate_of_states_and_nat_statuses_cannot_be_one_nft_rule() -> None:
    with pytest.raises(NsgenError, match="mixes states and NAT statuses"):
        nft.rule_expr(rule("-m conntrack --ctstate NEW,DNAT -j ACCEPT", "nat", "PREROUTING"), "t")


def test_builtin_chains_become_base_chains_on_the_same_hooks_as_iptables_nft() -> None:
    specs = {
        (b.name, b.spec)
        for b in nft.base_chains(
            {("nat", "PREROUTING"), ("nat", "OUTPUT"), ("filter", "FORWARD"), ("raw", "PREROUTING")}
        )
    }
    assert specs == {
        ("raw-PREROUTING", "{ type filter hook prerouting priority raw ; policy accept ; }"),
        ("nat-PREROUTING", "{ type nat hook prerouting priority dstnat ; policy accept ; }"),
        ("nat-OUTPUT", "{ type nat hook output priority -100 ; policy accept ; }"),
        ("filter-FORWARD", "{ type filter hook forward priority filter ; policy accept ; }"),
    }
    assert nft.base_chain("nat", "KUBE-SERVICES") is None


# ---- the layouts ---------------------------------------------------------------------------------


def test_docker_networks_are_laid_out_as_docker_29_does_behind_verdict_maps_by_bridge() -> None:
    text = nft_input(plan_of("docker-bridge"))["host"]
    table = "inet nsgen_docker-bridge"
    for line in [
        f'create table {table} {{ comment "nsgen:docker-bridge" ; }}',
        f"add chain {table} filter-FORWARD {{ type filter hook forward priority filter ; policy accept ; }}",
        f"add map {table} filter-forward-in-jumps {{ type ifname : verdict ; }}",
        f'add element {table} filter-forward-in-jumps {{ "br-backend" : jump filter-forward-in__br-backend }}',
        f'add element {table} filter-forward-out-jumps {{ "br-frontend" : jump filter-forward-out__br-frontend }}',
        f'add rule {table} filter-NSGEN-docker-bridge-FWD counter oifname vmap @filter-forward-in-jumps comment "nsgen:docker-bridge"',
        f'add rule {table} filter-NSGEN-docker-bridge-FWD counter iifname vmap @filter-forward-out-jumps comment "nsgen:docker-bridge"',
        # isolation, and the internal network's ingress and egress, in per-network chains
        f'add rule {table} filter-forward-in__br-backend iifname "br-frontend" counter drop comment "nsgen:docker-bridge"',
        f'add rule {table} filter-forward-in__br-backend iifname != "br-backend" counter drop comment "nsgen:docker-bridge"',
        f'add rule {table} filter-forward-out__br-backend oifname != "br-backend" counter drop comment "nsgen:docker-bridge"',
        f'add rule {table} nat-POSTROUTING oifname != "br-frontend" ip saddr 172.18.0.0/24 counter masquerade comment "nsgen:docker-bridge"',
        f'add rule {table} nat-PREROUTING fib daddr type local counter jump nat-NSGEN-docker-bridge-DNAT comment "nsgen:docker-bridge"',
        f'add rule {table} nat-NSGEN-docker-bridge-DNAT tcp dport 8080 counter dnat ip to 172.18.0.2:80 comment "nsgen:docker-bridge"',
    ]:
        assert line in text.splitlines(), line
    # the iptables backend installs the same DROPs, written out in the FWD chain
    iptables = [
        rule_text(r)
        for r in expanded_rules(load_topology(EXAMPLES / "docker-bridge.yaml").host.iptables)
    ]
    assert "-i br-frontend -o br-backend -j DROP" in iptables
    assert "! -i br-backend -o br-backend -j DROP" in iptables


def test_each_node_holds_kube_proxys_nftables_layout() -> None:
    inputs = nft_input(plan_of("k8s-two-nodes"))
    assert set(inputs) == {"host", "node1", "node2"}  # pods have no rules: no table
    text = inputs["node1"]
    table = "inet nsgen_k8s"
    for line in [
        f"add map {table} nat-service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
        f"add element {table} nat-service-ips {{ 10.96.0.10 . tcp . 80 : jump nat-KUBE-SVC-WEB }}",
        f'add rule {table} nat-KUBE-SERVICES counter ip daddr . meta l4proto . th dport vmap @nat-service-ips comment "nsgen:k8s"',
        f"add map {table} nat-service-nodeports {{ type inet_proto . inet_service : verdict ; }}",
        f"add element {table} nat-service-nodeports {{ tcp . 30080 : jump nat-KUBE-EXT-WEB-NP }}",
        f'add rule {table} nat-KUBE-EXT-WEB-NP counter jump nat-KUBE-MARK-MASQ comment "nsgen:k8s"',
        f'add rule {table} nat-KUBE-SVC-WEB counter numgen random mod 2 vmap {{ 0 : jump nat-KUBE-SEP-WEB-1, 1 : jump nat-KUBE-SEP-WEB-2 }} comment "nsgen:k8s"',
        f'add rule {table} nat-KUBE-SEP-WEB-1 meta l4proto tcp counter dnat ip to 10.244.0.2:8080 comment "nsgen:k8s"',
        f'add rule {table} nat-KUBE-POSTROUTING meta mark & 0x4000 != 0x4000 counter return comment "nsgen:k8s"',
        f'add rule {table} nat-KUBE-POSTROUTING counter meta mark set meta mark xor 0x4000 comment "nsgen:k8s"',
    ]:
        assert line in text.splitlines(), line


def test_docker_ipv6_networks_get_nat66_published_ports_and_isolation_in_the_inet_table() -> None:
    text = nft_input(plan_of("docker-dual"))["host"]
    table, tag = "inet nsgen_docker-dual", 'comment "nsgen:docker-dual"'
    for line in [
        # isolation and internal: both networks have IPv6, so the DROPs see both families
        f'add rule {table} filter-forward-in__br-backend iifname "br-frontend" counter drop {tag}',
        f'add rule {table} filter-forward-out__br-backend oifname != "br-backend" counter drop {tag}',
        # NAT66 beside NAT44
        f'add rule {table} nat-POSTROUTING oifname != "br-frontend" ip saddr 172.18.0.0/24 counter masquerade {tag}',
        f'add rule {table} nat-POSTROUTING oifname != "br-frontend" ip6 saddr fd65:c96d:ce98::/64 counter masquerade {tag}',
        # the published port in each family; the host's own IPv6 connections but to ::1
        f"add rule {table} nat-NSGEN-docker-dual-DNAT meta nfproto ipv4 tcp dport 8080 counter dnat ip to 172.18.0.2:80 {tag}",
        f"add rule {table} nat-NSGEN-docker-dual-DNAT meta nfproto ipv6 tcp dport 8080 counter dnat ip6 to [fd65:c96d:ce98::2]:80 {tag}",
        f"add rule {table} nat-OUTPUT meta nfproto ipv4 fib daddr type local counter jump nat-NSGEN-docker-dual-DNAT {tag}",
        f"add rule {table} nat-OUTPUT ip6 daddr != ::1 fib daddr type local counter jump nat-NSGEN-docker-dual-DNAT {tag}",
        # hairpin in each family
        f"add rule {table} nat-POSTROUTING ip6 saddr fd65:c96d:ce98::/64 ip6 daddr fd65:c96d:ce98::2 tcp dport 80 ct status dnat counter masquerade {tag}",
    ]:
        assert line in text.splitlines(), line


def test_dockers_routed_ipv6_mode_is_an_ipv6_filter_in_the_networks_own_chain() -> None:
    # the example is in NAT mode; routed mode from a small file of its own
    text = nft_input(
        build_plan(topology_from_data(routed_data(), "routed.yaml"), "batch", "nftables")
    )["host"]
    table, tag = "inet nsgen_routed", 'comment "nsgen:routed"'
    chain = "filter-forward-in__br-edge"
    for line in [
        f"add rule {table} {chain} meta nfproto ipv6 ct state related,established counter accept {tag}",
        f'add rule {table} {chain} iifname != "br-edge" ip6 daddr fd00:61::2 tcp dport 80 counter accept {tag}',
        f"add rule {table} {chain} meta nfproto ipv6 meta l4proto ipv6-icmp counter accept {tag}",
        f'add rule {table} {chain} meta nfproto ipv6 iifname != "br-edge" counter drop {tag}',
    ]:
        assert line in text.splitlines(), line
    assert "ip6 saddr fd00:61::/64" not in text  # no NAT66 in routed mode


def routed_data() -> dict[str, Any]:
    return {
        "name": "routed",
        "networks": {
            "edge": {
                "subnet": "10.61.0.0/24",
                "ipv6": True,
                "ipv6_subnet": "fd00:61::/64",
                "gateway_mode_ipv6": "routed",
            }
        },
        "containers": {"web": {"networks": ["edge"], "publish": ["8080:80"]}},
    }


def test_each_dual_stack_node_holds_a_service_map_per_family() -> None:
    text = nft_input(plan_of("k8s-dual"))["node1"]
    table, tag = "inet nsgen_k8s-dual", 'comment "nsgen:k8s-dual"'
    for line in [
        f"add map {table} nat-service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
        f"add map {table} nat-service-ips-v6 {{ type ipv6_addr . inet_proto . inet_service : verdict ; }}",
        f"add element {table} nat-service-ips-v6 {{ fd00:10:96::a . tcp . 80 : jump nat-KUBE-SVC-WEB }}",
        f"add rule {table} nat-KUBE-SERVICES counter ip6 daddr . meta l4proto . th dport vmap @nat-service-ips-v6 {tag}",
        f"add element {table} nat-service-nodeports-v6 {{ tcp . 30080 : jump nat-KUBE-EXT-WEB-NP }}",
        f"add rule {table} nat-KUBE-NODEPORTS meta nfproto ipv6 counter meta l4proto . th dport vmap @nat-service-nodeports-v6 {tag}",
        f"add rule {table} nat-KUBE-SVC-WEB meta nfproto ipv6 counter numgen random mod 2 vmap {{ 0 : jump nat-KUBE-SEP-WEB-1, 1 : jump nat-KUBE-SEP-WEB-2 }} {tag}",
        f"add rule {table} nat-KUBE-SEP-WEB-1 meta nfproto ipv6 meta l4proto tcp counter dnat ip6 to [fd00:10:244::2]:8080 {tag}",
        f"add rule {table} nat-KUBE-POSTROUTING meta nfproto ipv6 counter masquerade {tag}",
        f"add rule {table} nat-KUBE-POSTROUTING meta nfproto ipv4 counter masquerade {tag}",
    ]:
        assert line in text.splitlines(), line


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_every_rule_has_a_counter_and_the_comment_and_each_table_comes_first(example: str) -> None:
    plan = plan_of(example)
    for netns, text in nft_input(plan).items():
        lines = text.splitlines()
        assert (
            lines[0]
            == f'create table inet nsgen_{plan.topology} {{ comment "nsgen:{plan.topology}" ; }}'
        )
        assert sum(line.startswith("create table") for line in lines) == 1, netns
        rules = [line for line in lines if re.match(r"(add|insert) rule ", line)]
        assert rules, netns
        for line in rules:
            assert " counter " in line and line.endswith(f'comment "nsgen:{plan.topology}"'), line


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_the_tutorial_style_types_one_nft_command_per_line(example: str) -> None:
    plan = plan_of(example, "tutorial")
    for step in Renderer().steps(plan):
        lines = [line for line in step.do.splitlines() if "nft " in line]
        for line in lines:
            assert re.fullmatch(r"(ip netns exec \S+ )?nft '(create|add|insert) [^']+'", line), line
    assert "iptables" not in "\n".join(s.do for s in Renderer().steps(plan))


def test_the_header_of_every_script_says_which_backend() -> None:
    for firewall, line in (
        ("iptables", "# Firewall backend: iptables (every rule carries the comment nsgen:seed)."),
        (
            "nftables",
            "# Firewall backend: nftables (its own table inet nsgen_seed in each namespace with rules).",
        ),
    ):
        scripts = render_scripts(plan_of("seed", firewall=firewall))
        for name, text in scripts.items():
            assert line in text.splitlines()[:12], (firewall, name)
    setup = render_scripts(plan_of("seed"))["setup.sh"]
    assert "# Needs only bash, iproute2 and nftables (nft), and root." in setup
    assert (
        "command -v nft >/dev/null || nsgen_problem 'nft is not installed (the firewall backend is nftables"
        in setup
    )


# ---- the choice of backend ---------------------------------------------------------------------


def seed_data(**extra: Any) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load((EXAMPLES / "seed.yaml").read_text())
    return {**data, **extra}


def test_the_files_firewall_key_chooses_the_backend_and_the_flag_overrides_it(
    tmp_path: Path,
) -> None:
    topology = topology_from_data(seed_data(firewall="nftables"), "s.yaml")
    assert build_plan(topology).firewall == "nftables"
    assert build_plan(topology, firewall="iptables").firewall == "iptables"
    assert build_plan(load_topology(EXAMPLES / "seed.yaml")).firewall == "iptables"  # default
    runner = CliRunner()
    result = runner.invoke(
        app, ["render", str(EXAMPLES / "seed.yaml"), "-o", str(tmp_path), "--firewall", "nftables"]
    )
    assert result.exit_code == 0, result.output
    assert "nft -f - <<'EOF'" in (tmp_path / "setup.sh").read_text()
    result = runner.invoke(
        app, ["render", str(EXAMPLES / "seed.yaml"), "-o", str(tmp_path), "--firewall", "pf"]
    )
    assert result.exit_code == 2
    assert "--firewall pf: expected iptables or nftables" in result.output


def test_up_and_lab_take_the_flag_too() -> None:
    runner = CliRunner()
    dry = runner.invoke(
        app, ["up", str(EXAMPLES / "seed.yaml"), "--dry-run", "--firewall", "nftables"]
    )
    assert dry.exit_code == 0, dry.output
    assert "install nftables table inet nsgen_seed in the root namespace" in dry.output
    assert "iptables-restore" not in dry.output
    for command in ("up", "lab"):
        help_text = runner.invoke(app, [command, "--help"]).output
        assert "--firewall" in help_text, command
    assert "--strict" in runner.invoke(app, ["up", "--help"]).output


def test_a_firewall_key_other_than_the_two_backends_is_an_error_with_its_path() -> None:
    with pytest.raises(TopologyError) as caught:
        topology_from_data(seed_data(firewall="pf"), "s.yaml")
    assert [p.path for p in caught.value.problems] == ["firewall"]


def test_the_digest_names_the_backend_only_when_it_is_not_the_default() -> None:
    topology = load_topology(EXAMPLES / "seed.yaml")
    iptables, nftables = topology_digest(topology), topology_digest(topology, "nftables")
    assert iptables != nftables
    assert build_plan(topology, firewall="nftables").digest == nftables
    # what a record holds says which backend built it (status and down read it so)
    assert recorded_firewall(topology, nftables) == "nftables"
    assert recorded_firewall(topology, iptables) == "iptables"
    assert recorded_firewall(topology, None) == "iptables"


# ---- dispatches and inline chains as data ------------------------------------------------------


def with_rules(chains: list[dict[str, Any]], rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "d", "host": {"iptables": {"chains": chains, "rules": rules}}}


def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(TopologyError) as caught:
        topology_from_data(data, "d.yaml")
    return [(p.path, p.message) for p in caught.value.problems]


BY_BRIDGE = {
    "name": "in",
    "by": ["out_interface"],
    "entries": [
        {"out_interface": "br0", "jump": "in-br0"},
        {"out_interface": "br1", "jump": "OWN"},
    ],
}


def test_a_dispatch_is_one_rule_per_entry_with_an_inline_chains_rules_written_in_place() -> None:
    data = with_rules(
        [{"name": "OWN"}, {"name": "in-br0", "inline": True}],
        [
            {"chain": "FORWARD", "protocol": "tcp", "dispatch": BY_BRIDGE},
            {"chain": "in-br0", "in_interface": "br1", "jump": "DROP"},
            {"chain": "in-br0", "not": {"source": "10.0.0.0/8"}, "jump": "ACCEPT"},
            {"chain": "FORWARD", "jump": "ACCEPT"},
        ],
    )
    firewall = topology_from_data(data, "d.yaml").host.iptables
    assert [(r.chain, rule_text(r)) for r in expanded_rules(firewall)] == [
        ("FORWARD", "-i br1 -o br0 -p tcp -j DROP"),
        ("FORWARD", "! -s 10.0.0.0/8 -o br0 -p tcp -j ACCEPT"),
        ("FORWARD", "-o br1 -p tcp -j OWN"),
        ("FORWARD", "-j ACCEPT"),
    ]
    expr = nft.rule_expr(firewall.rules[0], "nsgen:d")
    assert expr == 'meta l4proto tcp counter oifname vmap @filter-in comment "nsgen:d"'


def test_a_random_dispatch_gives_each_entry_an_equal_share() -> None:
    picks = {"by": "random", "entries": [{"jump": f"SEP{i}"} for i in range(3)]}
    data = with_rules(
        [{"table": "nat", "name": f"SEP{i}"} for i in range(3)],
        [{"table": "nat", "chain": "PREROUTING", "dispatch": picks}],
    )
    firewall = topology_from_data(data, "d.yaml").host.iptables
    assert [rule_text(r) for r in expanded_rules(firewall)] == [
        "-m statistic --mode random --probability 0.33333333333 -j SEP0",
        "-m statistic --mode random --probability 0.50000000000 -j SEP1",
        "-j SEP2",
    ]
    assert nft.rule_expr(firewall.rules[0], "t") == (
        'counter numgen random mod 3 vmap { 0 : jump nat-SEP0, 1 : jump nat-SEP1, 2 : jump nat-SEP2 } comment "t"'
    )


@pytest.mark.parametrize(
    ("dispatch", "path", "message"),
    [
        (
            {**BY_BRIDGE, "entries": [{"in_interface": "br0", "jump": "OWN"}]},
            "host.iptables.rules[0].dispatch",
            "entries[0] gives in_interface: expected out_interface",
        ),
        (
            {**BY_BRIDGE, "entries": [{"out_interface": "br0", "jump": "OWN"}] * 2},
            "host.iptables.rules[0].dispatch",
            "entries[1] repeats the key of entries[0]",
        ),
        (
            {
                "name": "p",
                "by": ["protocol", "dport"],
                "entries": [{"protocol": "tcp", "dport": "80:90", "jump": "OWN"}],
            },
            "host.iptables.rules[0].dispatch",
            "entries[0].dport: a dispatch key is one port, not a range",
        ),
        (
            {
                "name": "a",
                "by": ["destination"],
                "entries": [{"destination": "10.0.0.0/8", "jump": "OWN"}],
            },
            "host.iptables.rules[0].dispatch",
            "entries[0].destination: a dispatch key is one address, not 10.0.0.0/8",
        ),
        (
            {"by": ["out_interface"], "entries": [{"out_interface": "br0", "jump": "OWN"}]},
            "host.iptables.rules[0].dispatch",
            "a dispatch by fields needs a name (its verdict map's)",
        ),
    ],
)
def test_a_dispatch_whose_entries_do_not_fit_its_key_is_an_error(
    dispatch: dict[str, Any], path: str, message: str
) -> None:
    data = with_rules([{"name": "OWN"}], [{"chain": "FORWARD", "dispatch": dispatch}])
    found = problems(data)
    assert len(found) == 1 and found[0][0] == path and message in found[0][1], found


def test_inline_chain_problems_are_reported_at_their_rules() -> None:
    data = with_rules(
        [{"name": "OWN"}, {"name": "in-br0", "inline": True}],
        [
            {"chain": "FORWARD", "dispatch": BY_BRIDGE},
            {"chain": "FORWARD", "jump": "in-br0"},
            {"chain": "in-br0", "jump": "RETURN"},
            {"chain": "in-br0", "out_interface": "br9", "jump": "DROP"},
            {
                "chain": "FORWARD",
                "dispatch": {**BY_BRIDGE, "entries": [{"out_interface": "br2", "goto": "OWN"}]},
            },
        ],
    )
    assert sorted(problems(data)) == sorted(
        [
            (
                "host.iptables.rules[1].jump",
                "in-br0 is an inline chain: only dispatch entries lead to it",
            ),
            (
                "host.iptables.rules[4].dispatch.name",
                "a dispatch named in is already in table filter (at host.iptables.rules[0])",
            ),
            (
                "host.iptables.rules[2]",
                "a rule of the inline chain in-br0 cannot use RETURN: its rules are also written in "
                "place of the entries that lead to it",
            ),
            (
                "host.iptables.rules[3].out_interface",
                "the dispatch that leads to in-br0 already matches out_interface",
            ),
        ]
    )


def test_a_dispatch_rule_has_no_target_of_its_own() -> None:
    data = with_rules(
        [{"name": "OWN"}], [{"chain": "FORWARD", "jump": "ACCEPT", "dispatch": BY_BRIDGE}]
    )
    found = problems(data)
    assert [p for p, _ in found] == ["host.iptables.rules[0]"]
    assert "a dispatch rule has no jump or goto of its own" in found[0][1]


@pytest.mark.parametrize("doc", ["docs/docker.md", "docs/kubernetes.md", "README.md"])
def test_the_docs_nftables_excerpts_are_lines_of_the_rendered_setup_sh(doc: str) -> None:
    text = (EXAMPLES.parent / doc).read_text()
    blocks = re.findall(
        r"^```sh\n# setup\.sh of (examples/[\w-]+\.yaml) --firewall nftables\n(.*?)^```$",
        text,
        re.M | re.S,
    )
    assert blocks, f"{doc} quotes no nftables setup.sh"
    for example, body in blocks:
        setup = render_scripts(
            build_plan(load_topology(EXAMPLES.parent / example), firewall="nftables")
        )
        lines = set(setup["setup.sh"].splitlines())
        missing = [line for line in body.splitlines() if line not in lines]
        assert missing == [], f"{doc} quotes lines {example} does not render: {missing}"
