"""Every value has a grammar (issue 10, section 7, first class): free text cannot hide inside a
structured value and escape its place in the scripts, the /etc/netns files, the systemd unit
or the check records; anything outside a field's grammar is one line naming the field. And
address arithmetic never enumerates a subnet."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest

from nsgen.errors import TopologyError
from nsgen.load import topology_from_data
from nsgen.plan import build_plan
from nsgen.render import render_scripts
from tests.harness import shown
from tests.topologies import red_and_blue_bare

SRC = "g.yaml"


def base() -> dict[str, Any]:
    """The shared red-and-blue topology without a way out (tests/topologies.py)."""
    return red_and_blue_bare()


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, SRC)
    lines = info.value.lines()
    assert len(lines) == 1, lines
    assert lines[0].isprintable(), lines[0]
    return lines[0]


# ---- addresses carry no zone id -------------------------------------------------------------

ZONED = "fe80::1%eth0\nnameserver 6.6.6.6"


@pytest.mark.parametrize(
    ("place", "path", "value"),
    [
        ("nameserver", "namespaces.red.dns.nameservers[0]", ZONED),
        ("hosts", "namespaces.red.dns.hosts.db", ZONED),
        ("via", "namespaces.red.routes[0].via", "fe80::1%eth0"),
        ("address", "namespaces.blue.interfaces[0].addresses[0]", "fe80::2%x/64"),
        ("check", "checks[0].to", "fe80::1%x\tPASS"),
        ("route", "namespaces.red.routes[0].to", "fe80::%x/64"),
    ],
)
def test_an_address_with_a_zone_id_is_rejected_wherever_it_appears(
    place: str, path: str, value: str
) -> None:
    data = base()
    red = data["namespaces"]["red"]
    if place == "nameserver":
        red["dns"]["nameservers"] = [value]
    elif place == "hosts":
        red["dns"]["hosts"] = {"db": value}
    elif place == "via":
        red["routes"][0]["via"] = value
    elif place == "address":
        data["namespaces"]["blue"]["interfaces"][0]["addresses"] = [value]
    elif place == "check":
        data["checks"][0]["to"] = value
    else:
        red["routes"][0]["to"] = value
    assert problem(data) == (
        f"{SRC}: {path}: {value!r} has a zone id ('%...'): nsgen takes addresses without one"
    )


# ---- check targets ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["blue\tFAIL", "blue\n1\tPASS", "blue red", "$(id)", "é"])
def test_a_check_target_is_an_address_or_a_namespace_name(value: str) -> None:
    """A tab or newline in `to` would split or forge the records nsgen check reads."""
    data = base()
    data["checks"][0]["to"] = value
    assert problem(data) == (
        f"{SRC}: checks[0].to: {value!r} is neither an address nor a namespace's name (letters, "
        "digits, '_', '-', '.', at most 64 bytes)"
    )


def test_a_check_target_address_is_written_in_its_canonical_form() -> None:
    data = base()
    data["namespaces"]["blue"]["interfaces"][0]["addresses"].append("fd00::2/64")
    data["namespaces"]["red"]["interfaces"][0]["addresses"].append("fd00::1/64")
    data["checks"][0]["to"] = "FD00:0::2"
    topology = topology_from_data(data, SRC)
    assert topology.checks[0].to == "fd00::2"


# ---- descriptions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "one\\\ntwo",
            "line 1 of the description ends with a backslash, which would join the next line "
            "to it in the systemd unit",
        ),
        (
            "ok\nshellcheck disable=all",
            "line 2 of the description would be read by shellcheck as a directive in the "
            "scripts' header: reword it",
        ),
        (
            "  ShellCheck source=/etc/x",
            "line 1 of the description would be read by shellcheck as a directive in the "
            "scripts' header: reword it",
        ),
        (
            "notes vim: set ft=make:",
            "line 1 of the description would be read by vim as a modeline in the scripts' "
            "header: reword it",
        ),
        (
            "vi: noet",
            "line 1 of the description would be read by vim as a modeline in the scripts' "
            "header: reword it",
        ),
        (
            "x vim600: ts=2",
            "line 1 of the description would be read by vim as a modeline in the scripts' "
            "header: reword it",
        ),
        (
            "-*- mode: perl -*-",
            "line 1 of the description would be read by Emacs as file variables ('-*- ... -*-') "
            "in the scripts' header: reword it",
        ),
        (
            "Local Variables:",
            "line 1 of the description would be read by Emacs as a file variables list in the "
            "scripts' header: reword it",
        ),
        (
            "kate: indent-width 2;",
            "line 1 of the description would be read by Kate as a modeline in the scripts' "
            "header: reword it",
        ),
        (
            "a\u2028b",
            "line 1 of the description holds the character '\\u2028': a description is lines "
            "of printable text",
        ),
        (
            "a\x00b",
            "line 1 of the description holds the character '\\x00': a description is lines of "
            "printable text",
        ),
        (
            "a\r\nb",
            "line 1 of the description holds the character '\\r': a description is lines of "
            "printable text",
        ),
        ("x" * 4001, "the description is 4001 characters long, over the limit of 4000"),
    ],
)
def test_a_description_is_printable_lines_no_tool_reads_as_a_directive(
    text: str, reason: str
) -> None:
    data = base()
    data["description"] = text
    assert problem(data) == f"{SRC}: description: {reason}"


def test_an_ordinary_description_reaches_the_header_and_the_unit_line_by_line() -> None:
    data = base()
    text = "Web tier: 'front' & \"back\"; cost $5 (50%)\n\nsee exhibit: A, vim is fine"
    data["description"] = text
    plan = build_plan(topology_from_data(data, SRC))
    setup = render_scripts(plan)["setup.sh"]
    for line in filter(None, text.splitlines()):
        assert f"#   {line}\n" in setup


# ---- names, labels, host names, sysctls --------------------------------------------------------


@pytest.mark.parametrize("value", ["", "a\nb", "x" * 65, "tab\there"])
def test_a_group_label_is_one_printable_line_of_at_most_64_characters(value: str) -> None:
    data = base()
    data["groups"] = [{"name": "tier", "kind": value, "members": ["red"]}]
    assert problem(data) == (
        f"{SRC}: groups[0].kind: {shown(value)} is not a valid label: 1 to 64 printable characters "
        "on one line"
    )


@pytest.mark.parametrize(
    "value", ["-lead.example", "trail-.example", "under_score", "a..b", "x" * 64, "é.test"]
)
def test_host_names_follow_rfc_1123(value: str) -> None:
    data = base()
    data["namespaces"]["red"]["dns"]["search"] = [value]
    assert problem(data) == (
        f"{SRC}: namespaces.red.dns.search[0]: {shown(value)} is not a valid host name (RFC 1123: "
        "labels of letters, digits and '-', joined by '.')"
    )


def test_a_sysctl_value_of_thousands_of_digits_is_one_short_line() -> None:
    data = base()
    data["host"]["sysctls"] = {"net.ipv4.ip_forward": 10**1000}
    assert problem(data) == (
        f"{SRC}: host.sysctls.net.ipv4.ip_forward: this integer is not a valid sysctl value: it "
        "has over 20 digits"
    )


def test_a_message_cuts_a_long_value_to_a_readable_length() -> None:
    data = base()
    data["namespaces"]["red"]["dns"]["nameservers"] = ["x" * 100_000]
    line = problem(data)
    assert len(line) < 200
    assert line.startswith(f"{SRC}: namespaces.red.dns.nameservers[0]: 'xxxx")


# ---- the Docker and Kubernetes vocabularies ---------------------------------------------------


def docker() -> dict[str, Any]:
    return {
        "name": "dock",
        "networks": {"front": {"subnet": "10.10.0.0/24"}},
        "containers": {"web": {"networks": ["front"], "publish": ["8080:80"]}},
    }


@pytest.mark.parametrize("value", ["8080:80\n", " 8080:80", "1" * 5000 + ":80", "8080:80/tcp#x"])
def test_a_published_port_is_exactly_its_grammar(value: str) -> None:
    data = docker()
    data["containers"]["web"]["publish"] = [value]
    line = problem(data)
    assert line.startswith(f"{SRC}: containers.web.publish[0]: ")
    assert "is not a port mapping" in line and len(line) < 400


def test_a_docker_network_of_a_slash_8_assigns_addresses_without_listing_it() -> None:
    data = docker()
    data["networks"]["front"]["subnet"] = "10.0.0.0/8"
    data["containers"]["db"] = {"networks": {"front": {"address": "10.0.0.2"}}}
    data["containers"]["cache"] = {"networks": ["front"]}
    topology = _bounded(lambda: topology_from_data(data, SRC))
    addresses = {ns: spec.interfaces[0].addresses for ns, spec in topology.namespaces.items()}
    assert addresses == {"web": ["10.0.0.3/8"], "db": ["10.0.0.2/8"], "cache": ["10.0.0.4/8"]}


def k8s(node_network: str) -> dict[str, Any]:
    return {
        "name": "k",
        "cluster": {
            "node_network": {"subnet": node_network},
            "nodes": {"node1": {"pods": ["web-a"]}, "node2": {"pods": ["web-b"]}},
            "services": {"web": {"port": 80, "endpoints": ["web-a", "web-b"]}},
        },
    }


@pytest.mark.parametrize("node_network", ["128.0.0.0/1", "172.0.0.0/8"])
def test_a_huge_kubernetes_node_network_is_laid_out_by_arithmetic(node_network: str) -> None:
    """Issue 10: a node network of /1 or /8 exhausted memory listing its hosts."""
    topology = _bounded(lambda: topology_from_data(k8s(node_network), SRC))
    first = node_network.split("/")[0].rsplit(".", 1)[0]
    assert topology.namespaces["node1"].interfaces[0].addresses == [
        f"{first}.1/{node_network.split('/')[1]}"
    ]
    gateway = topology.host.bridges["k8s-nodes"].addresses[0]
    assert (
        gateway
        == {"128.0.0.0/1": "255.255.255.254/1", "172.0.0.0/8": "172.255.255.254/8"}[node_network]
    )


def _bounded(build: Any) -> Any:
    """build(), asserting it takes under a second and 20 MB."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        result = build()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - start < 1.0
    assert peak < 20 * 2**20, peak
    return result


def test_a_pod_name_that_goes_into_etc_hosts_must_be_a_host_name() -> None:
    data = k8s("10.10.0.0/24")
    data["cluster"]["nodes"]["node1"]["pods"] = ["web_a"]
    data["cluster"]["services"]["web"]["endpoints"] = ["web_a"]
    assert problem(data) == (
        f"{SRC}: cluster.nodes.node1.pods[0]: 'web_a' cannot be a pod name while pod_hosts is "
        "on: it goes into the pod's /etc/hosts, so use letters, digits and '-' (no '_'; '.' only "
        "between labels)"
    )
    data["cluster"]["pod_hosts"] = False
    topology_from_data(data, SRC)


def test_an_ipv6_cluster_ip_in_an_ipv4_only_cluster_says_what_it_needs() -> None:
    data = k8s("10.10.0.0/24")
    data["cluster"]["services"]["web"]["cluster_ip"] = "fd00::10"
    assert problem(data) == (
        f"{SRC}: cluster.services.web.cluster_ip: IPv6, but the cluster has no IPv6 (ipv6: true)"
    )


def test_a_cluster_domain_too_long_for_service_host_names_is_refused() -> None:
    data = k8s("10.10.0.0/24")
    domain = ".".join(["d" * 60] * 4)  # 243 characters: a valid host name on its own
    data["cluster"]["cluster_domain"] = domain
    line = problem(data)
    assert line.startswith(f"{SRC}: cluster.cluster_domain: the service name web.default.svc.")
    assert line.endswith(
        "is 259 characters, over the 253 of a host name: shorten the cluster domain"
    )


@pytest.mark.parametrize(
    ("place", "value", "reason"),
    [
        ("address", "fd00::5", "fd00::5 is not an IPv4 address (an IPv6 one goes in ipv6_address)"),
        (
            "gateway",
            "fd00::1",
            "fd00::1 is IPv6: gateway is the network's IPv4 gateway; an IPv6 one goes in "
            "ipv6_gateway (with ipv6: true)",
        ),
    ],
)
def test_ipv6_in_an_ipv4_key_of_a_docker_network_says_where_it_goes(
    place: str, value: str, reason: str
) -> None:
    data = docker()
    if place == "address":
        data["containers"]["web"]["networks"] = {"front": {"address": value}}
        path = "containers.web.networks.front.address"
    else:
        data["networks"]["front"]["gateway"] = value
        path = "networks.front.gateway"
    assert problem(data) == f"{SRC}: {path}: {reason}"
