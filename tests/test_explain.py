"""nsgen explain, computed from the topology alone (no root): the path hop by hop, the rule
or route that decides, NAT and conntrack, branches of a Service, and the output formats."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nsgen.checks import CheckResult, format_results, plan_probes
from nsgen.cli import app
from nsgen.errors import UsageError
from nsgen.explain import check_reason, explain, explain_check
from nsgen.explain.network import Environment
from nsgen.load import load_topology, topology_from_data
from nsgen.model import EXPANDED, Topology
from tests.harness import EXAMPLES

runner = CliRunner()
BRIDGED = Environment(br_netfilter=True)


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def example(name: str) -> Topology:
    return load_topology(EXAMPLES / f"{name}.yaml")


def topology(data: dict[str, Any]) -> Topology:
    return topology_from_data(data, "test.yaml")


def lines_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.yaml")))
def test_every_declared_check_of_every_example_is_computed_as_declared(name: str) -> None:
    topo = example(name)
    if "hosts:" in (EXAMPLES / f"{name}.yaml").read_text():
        # a fleet's checks are meant for the fleet (its hosts' underlay addresses); on one
        # machine, as explain and nsgen lab see it, they need not hold
        # (tests/test_explain_sandbox.py compares them with the one-machine lab instead)
        return
    for number, check in enumerate(topo.checks, start=1):
        verdict = explain_check(topo, check)
        assert verdict.word == check.expect, (number, verdict)


def test_seed_blue_to_the_internet_host_is_routed_masqueraded_and_answered() -> None:
    result = cli("explain", str(EXAMPLES / "seed.yaml"), "blue", "192.0.2.10")
    assert result.exit_code == 0, result.output
    out = lines_of(result.output)
    assert out[0] == "blue -> 192.0.2.10, icmp echo (ping)"
    assert "1  blue: 192.168.15.1 -> 192.0.2.10" in out
    route = out.index(
        "- route default via 192.168.15.254 dev veth-blue (declared in the topology; "
        "longest prefix for 192.0.2.10)"
    )
    assert out[route + 1] == "setup.sh step 5/8: configure namespace blue"
    assert "- nat POSTROUTING rule 1: -s 192.168.15.0/24 -o eth0 -j MASQUERADE" in out
    assert (
        "- MASQUERADE (the address of eth0): 192.168.15.1 -> 192.0.2.10 becomes "
        "203.0.113.2 -> 192.0.2.10"
    ) in out
    assert "- the host forwards (net.ipv4.ip_forward = 1)" in out
    assert "setup.sh step 7/8: set net.ipv4.ip_forward=1" in out
    assert (
        "- conntrack: a reply of the connection translated at hop 2: destination back to "
        "192.168.15.1 (192.0.2.10 -> 203.0.113.2 becomes 192.0.2.10 -> 192.168.15.1)"
    ) in out
    assert (
        "verdict: reach (hop 3): delivered to upstream, and the reply comes back: blue "
        "reaches 192.0.2.10"
    ) in out


def test_docker_isolation_names_the_chain_and_rule_that_drops() -> None:
    verdict = explain(example("docker-bridge"), "client", "db", env=BRIDGED).verdict
    assert (verdict.outcome, verdict.netns, verdict.hop) == ("dropped", "host", 2)
    # rule 2: the DROPs come network by network, as the dispatch to forward-in__<bridge>
    # is written out (the first one is what enters br-frontend from br-backend)
    assert (
        verdict.object
        == "filter NSGEN-docker-bridge-FWD rule 2 (-i br-frontend -o br-backend -j DROP)"
    )
    assert verdict.reason.startswith(
        "dropped by filter NSGEN-docker-bridge-FWD rule 2: isolation between br-frontend and "
        "br-backend"
    )


def test_a_published_port_from_outside_is_dnatted_to_the_container_and_back() -> None:
    result = cli(
        "explain", str(EXAMPLES / "docker-bridge.yaml"), "upstream", "host", "--port", "8080"
    )
    assert result.exit_code == 0, result.output
    out = lines_of(result.output)
    assert out[0] == "upstream -> 203.0.113.2 (host) port 8080, tcp connection"
    assert (
        "- nat PREROUTING rule 1 -> NSGEN-docker-bridge-DNAT rule 1: -p tcp --dport 8080 "
        "-j DNAT --to-destination 172.18.0.2:80"
    ) in out
    assert (
        "- DNAT: 203.0.113.1:40000 -> 203.0.113.2:8080 becomes 203.0.113.1:40000 -> 172.18.0.2:80"
        in out
    )
    assert (
        "- conntrack: a reply of the connection translated at hop 2: source back to "
        "203.0.113.2 (172.18.0.2:80 -> 203.0.113.1:40000 becomes 203.0.113.2:8080 -> "
        "203.0.113.1:40000)"
    ) in out
    assert out[-3].startswith("verdict: reach (hop 3): delivered to web")


def test_a_service_splits_into_one_branch_per_endpoint_with_its_probability() -> None:
    explanation = explain(example("k8s-two-nodes"), "client-a", "web", "tcp", 80, env=BRIDGED)
    assert [round(p.probability, 3) for p in explanation.paths] == [0.5, 0.5]
    assert [p.request.netns for p in explanation.paths] == ["web-a", "web-b"]
    assert explanation.verdict.reach
    text = cli("explain", str(EXAMPLES / "k8s-two-nodes.yaml"), "client-a", "web", "--port", "80")
    out = lines_of(text.output)
    assert "branch 1 of 2 (50%): node1 sends it to 10.244.0.2:8080 (web-a)" in out
    assert "branch 2 of 2 (50%): node1 sends it to 10.244.1.2:8080 (web-b)" in out
    assert (
        "- nat PREROUTING rule 1 -> KUBE-SERVICES rule 1 -> KUBE-SVC-WEB rule 2 -> "
        "KUBE-SEP-WEB-1 rule 2: -p tcp -j DNAT --to-destination 10.244.0.2:8080"
    ) in out


def test_three_endpoints_share_connections_equally() -> None:
    data = yaml.safe_load((EXAMPLES / "k8s-two-nodes.yaml").read_text())
    data["cluster"]["services"]["web"]["endpoints"] = ["web-a", "web-b", "client-b"]
    explanation = explain(topology(data), "client-a", "web", "tcp", 80, env=BRIDGED)
    assert [round(p.probability, 3) for p in explanation.paths] == [0.333, 0.333, 0.333]


def test_vxlan_carries_the_frame_inside_udp_between_the_nodes() -> None:
    explanation = explain(example("k8s-vxlan"), "client-a", "web-b", env=BRIDGED)
    (path,) = explanation.paths
    texts = [e.text for h in path.hops for e in h.events]
    assert (
        "10.244.1.0 is at 0a:58:0a:f4:01:00 (permanent neighbour entry), which lives behind "
        "10.10.0.2 (FDB entry): the frame goes inside a VXLAN packet (VNI 1), udp to "
        "10.10.0.2 port 8472"
    ) in texts
    assert "flannel.1 (VNI 1) takes the VXLAN packet out of its udp wrapping" in texts
    assert [h.netns for h in path.hops] == ["client-a", "node1", "host", "node2", "node2", "web-b"]
    assert path.verdict.reach


ROUTER = {
    "name": "rt",
    "host": {"bridges": {"br-a": {"addresses": ["10.70.0.254/24"]}}},
    "namespaces": {
        "a": {
            "interfaces": [{"peer": {"bridge": "br-a"}, "addresses": ["10.70.0.1/24"]}],
            "routes": [{"to": "default", "via": "10.70.0.254"}],
        },
        "b": {
            "interfaces": [
                {
                    "peer": {"netns": "host", "addresses": ["10.71.0.254/24"]},
                    "addresses": ["10.71.0.1/24"],
                }
            ],
            "routes": [{"to": "default", "via": "10.71.0.254"}],
        },
    },
}


def test_a_host_that_does_not_forward_drops_and_says_which_sysctl() -> None:
    verdict = explain(topology(ROUTER), "a", "b", env=BRIDGED).verdict
    assert verdict.outcome == "dropped"
    assert verdict.object == "sysctl net.ipv4.ip_forward"
    assert verdict.reason == (
        "10.71.0.1 is not an address of the host, and the host does not forward "
        "(net.ipv4.ip_forward is 0): the packet is dropped"
    )
    forwarding = {**ROUTER, "host": {**ROUTER["host"], "sysctls": {"net.ipv4.ip_forward": 1}}}
    assert explain(topology(forwarding), "a", "b", env=BRIDGED).verdict.reach


def test_no_route_back_loses_the_reply_and_says_so() -> None:
    data = json.loads(json.dumps(ROUTER))
    data["host"]["sysctls"] = {"net.ipv4.ip_forward": 1}
    del data["namespaces"]["b"]["routes"]
    verdict = explain(topology(data), "a", "b", env=BRIDGED).verdict
    assert not verdict.reach and verdict.reply
    assert verdict.reason == (
        "the request is delivered to b, but the reply is lost: no route to 10.70.0.1 in b: "
        "none of its routes covers it, so the sender gets 'Network is unreachable'"
    )


def test_a_reject_rule_in_a_jumped_chain_decides_after_a_return_and_a_mark() -> None:
    data = json.loads(json.dumps(ROUTER))
    data["host"]["sysctls"] = {"net.ipv4.ip_forward": 1}
    data["host"]["iptables"] = {
        "chains": [{"name": "CHECK"}, {"name": "SKIP"}],
        "rules": [
            {"chain": "FORWARD", "rule": "-j SKIP"},
            {"chain": "FORWARD", "rule": "-i br-a -j CHECK"},
            {"chain": "SKIP", "rule": "-j RETURN"},
            {"chain": "SKIP", "rule": "-j DROP"},
            {"chain": "CHECK", "rule": "-p udp -j DROP"},
            {
                "chain": "CHECK",
                "rule": "-d 10.71.0.0/24 -j REJECT --reject-with icmp-admin-prohibited",
            },
        ],
    }
    verdict = explain(topology(data), "a", "b", env=BRIDGED).verdict
    assert verdict.outcome == "rejected"
    assert (
        verdict.object
        == "filter CHECK rule 2 (-d 10.71.0.0/24 -j REJECT --reject-with icmp-admin-prohibited)"
    )
    assert verdict.reason.endswith("the sender gets icmp-admin-prohibited at once")
    hops = explain(topology(data), "a", "b", env=BRIDGED).paths[0].hops
    # the trail: into SKIP, back by its RETURN, then into CHECK, whose rule 1 does not match
    assert (
        "filter FORWARD rule 1 -> SKIP rule 1 -> FORWARD rule 2 -> CHECK rule 2: "
        "-d 10.71.0.0/24 -j REJECT --reject-with icmp-admin-prohibited"
    ) in [e.text for e in hops[1].events]


def test_bridged_traffic_passes_forward_only_with_br_netfilter() -> None:
    data = {
        "name": "icc",
        "host": {
            "bridges": {"br-i": {"addresses": ["10.72.0.254/24"]}},
            "iptables": {"rules": [{"chain": "FORWARD", "rule": "-i br-i -o br-i -j DROP"}]},
        },
        "namespaces": {
            n: {"interfaces": [{"peer": {"bridge": "br-i"}, "addresses": [f"10.72.0.{i}/24"]}]}
            for i, n in ((1, "a"), (2, "b"))
        },
    }
    on = explain(topology(data), "a", "b", env=Environment(br_netfilter=True)).verdict
    assert (
        on.outcome == "dropped" and on.object == "filter FORWARD rule 1 (-i br-i -o br-i -j DROP)"
    )
    off = explain(topology(data), "a", "b", env=Environment(br_netfilter=False)).verdict
    assert off.reach


def test_a_pod_reaches_itself_through_its_service_only_in_hairpin_mode() -> None:
    data = yaml.safe_load((EXAMPLES / "k8s-two-nodes.yaml").read_text())
    data["cluster"]["services"]["web"]["endpoints"] = ["web-a"]
    topo = topology(data)
    verdict = explain(topo, "web-a", "web", "tcp", 80, env=BRIDGED).verdict
    assert verdict.reach, verdict
    hops = explain(topo, "web-a", "web", "tcp", 80, env=BRIDGED).paths[0].hops
    assert any("(hairpin mode)" in e.text for e in hops[1].events)
    # the same without hairpin mode on the pod's port
    core = topo.model_dump(mode="json", by_alias=True)
    core["namespaces"]["web-a"]["interfaces"][0]["peer"]["hairpin"] = False
    blocked = explain(
        Topology.model_validate(core, context=EXPANDED), "web-a", "web", "tcp", 80, env=BRIDGED
    ).verdict
    assert blocked.outcome == "dropped"
    assert blocked.reason.startswith(
        "bridge cni0 never sends a frame back out of the port it came in on"
    )


def test_json_gives_the_hops_as_data_with_steps_and_facts() -> None:
    result = cli("explain", str(EXAMPLES / "seed.yaml"), "red", "blue", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["verdict"]["result"] == "reach"
    (path,) = data["paths"]
    assert [h["namespace"] for h in path["request"]] == ["red", "host", "blue"]
    route = path["request"][0]["events"][0]
    assert route["kind"] == "route"
    assert route["step"] == {"number": 4, "total": 8, "title": "configure namespace red"}
    assert route["fact"]["type"] == "RouteFact"
    assert route["fact"]["route"]["route"] == "192.168.15.0/24 dev veth-red proto kernel scope link"


def test_mermaid_draws_a_sequence_diagram_with_a_branch_per_endpoint() -> None:
    result = cli(
        "explain",
        str(EXAMPLES / "k8s-two-nodes.yaml"),
        "client-a",
        "web",
        "--port",
        "80",
        "--format",
        "mermaid",
    )
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert out[0] == "sequenceDiagram"
    assert "    participant n0 as client-a" in out
    assert any(line.startswith("    alt branch 1 (50%)") for line in out)
    assert any(line.startswith("    else branch 2 (50%)") for line in out)
    assert out[-1] == "    end"
    assert "        n0->>n1: 10.244.0.3:40000 -#gt; 10.96.0.10:80" in out
    assert all(";" not in line.replace("#59;", "").replace("#gt;", "") for line in out)


def test_usage_errors_name_the_argument() -> None:
    seed = str(EXAMPLES / "seed.yaml")
    bad = cli("explain", seed, "green", "blue")
    assert bad.exit_code == 2
    assert bad.output.strip() == (
        "FROM 'green' is not a namespace of the topology, 'host', upstream, or an address one holds"
    )
    port = cli("explain", seed, "red", "blue", "--proto", "icmp", "--port", "80")
    assert port.exit_code == 2
    assert "an icmp echo (ping) has no port" in port.output
    with pytest.raises(UsageError, match="TO 'nowhere' is not an address"):
        explain(example("seed"), "red", "nowhere")


def test_a_service_name_resolves_through_the_hosts_files() -> None:
    explanation = explain(example("k8s-two-nodes"), "client-b", "web-np", "tcp", 80, env=BRIDGED)
    assert str(explanation.query.dst) == "10.96.0.1"
    assert explanation.verdict.reach


def test_a_failed_check_prints_the_computed_verdict_as_its_reason() -> None:
    topo = example("docker-bridge")
    # check 5 expects client -> db blocked; had it been declared 'reach', this is why it fails
    core = topo.model_dump(mode="json", by_alias=True)
    core["checks"][4]["expect"] = "reach"
    why = check_reason(Topology.model_validate(core, context=EXPANDED), 5)
    assert why.startswith("dropped by filter NSGEN-docker-bridge-FWD rule 2: isolation between")
    probe = plan_probes(topo)[4]
    result = CheckResult(replace(probe, expect="reach"), "blocked", "no reply", None, None, why)
    shown = format_results([result]).splitlines()
    assert shown[0] == f"FAIL  {probe.label}  expect reach  (no reply)"
    assert shown[1] == f"      why: {why}"
    # a check that holds on the computed path but failed live points at --live
    assert check_reason(topo, 1).endswith(
        "nsgen explain --live shows where the live network differs"
    )


def test_explain_needs_no_root_and_reads_no_live_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"explain ran a command: {args}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert explain(
        example("k8s-vxlan"), "client-b", "web-a", "tcp", 8080, env=BRIDGED
    ).verdict.reach


def _readme_sessions() -> list[tuple[list[str], list[str]]]:
    """Every `$ nsgen explain ...` console block of the README: its arguments and the lines
    it shows (a '...' stands for lines left out)."""
    text = (EXAMPLES.parent / "README.md").read_text()
    sessions = []
    for block in text.split("```console\n")[1:]:
        body = block.split("```")[0].splitlines()
        if not body or not body[0].startswith("$ nsgen explain "):
            continue
        sessions.append((body[0].removeprefix("$ nsgen ").split(), body[1:]))
    return sessions


def test_the_readme_walk_through_shows_what_nsgen_explain_prints() -> None:
    sessions = _readme_sessions()
    assert len(sessions) == 4
    for args, shown in sessions:
        result = cli(*[str(EXAMPLES.parent / a) if a.startswith("examples/") else a for a in args])
        assert result.exit_code == 0, result.output
        printed = result.output.splitlines()
        at = 0
        for line in shown:
            if line.strip() == "...":
                continue
            assert line in printed[at:], f"{' '.join(args)}: {line!r} is not printed (in order)"
            at = printed.index(line, at) + 1


def test_without_the_masquerade_the_reply_has_no_way_back() -> None:
    data = yaml.safe_load((EXAMPLES / "seed.yaml").read_text())
    del data["host"]["masquerade"]
    verdict = explain(topology(data), "blue", "192.0.2.10", env=BRIDGED).verdict
    assert verdict.reply and verdict.outcome == "no-route"
    assert verdict.reason == (
        "the request is delivered to upstream, but the reply is lost: the lab's upstream has "
        "no route to 192.168.15.1: like the internet, it routes nothing to a private address "
        "it was not given (a MASQUERADE on the way out is what lets replies come back)"
    )


def test_ipv6_packets_pass_no_iptables_rule_and_need_ipv6_forwarding() -> None:
    data = {
        "name": "six",
        "host": {
            "bridges": {"br6": {"addresses": ["10.77.0.254/24", "2001:db8:77::fe/64"]}},
            "sysctls": {"net.ipv4.ip_forward": 1},
            "iptables": {"rules": [{"chain": "FORWARD", "rule": "-i br6 -o br6 -j DROP"}]},
        },
        "namespaces": {
            "a": {
                "interfaces": [
                    {"peer": {"bridge": "br6"}, "addresses": ["10.77.0.1/24", "2001:db8:77::1/64"]}
                ]
            },
            "b": {
                "interfaces": [
                    {"peer": {"bridge": "br6"}, "addresses": ["10.77.0.2/24", "2001:db8:77::2/64"]}
                ],
                "routes": [{"to": "2001:db8:99::/64", "via": "2001:db8:77::fe"}],
            },
        },
    }
    topo = topology(data)
    assert explain(topo, "a", "2001:db8:77::2", env=BRIDGED).verdict.reach
    assert explain(topo, "a", "10.77.0.2", env=BRIDGED).verdict.object == (
        "filter FORWARD rule 1 (-i br6 -o br6 -j DROP)"
    )
    far = explain(topo, "b", "2001:db8:99::5", env=BRIDGED).verdict
    assert far.object == "sysctl net.ipv6.conf.all.forwarding"
