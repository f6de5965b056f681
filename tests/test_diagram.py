"""Diagrams: snapshots of every example (Mermaid and DOT), content, escaping, rendering.

Set NSGEN_UPDATE_SNAPSHOTS=1 to rewrite tests/snapshots/diagram/ from what the code draws now
(then review the diff)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from nsgen import diagram
from nsgen.diagram import Drawing, Group, Link, Node
from nsgen.errors import NsgenError, ToolMissingError, UsageError
from nsgen.load import load_topology, topology_from_data
from nsgen.model import EXPANDED, Topology
from nsgen.names import near_name, peer_name

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SNAPSHOTS = ROOT / "tests" / "snapshots" / "diagram"
UPDATE = os.environ.get("NSGEN_UPDATE_SNAPSHOTS") == "1"
SEED = ROOT / "examples" / "seed.yaml"

WRITERS = {"mmd": diagram.mermaid, "dot": diagram.dot}

# A Mermaid node definition line: 4+ spaces, an id, then a shape opening and a quote.
_MERMAID_NODE = re.compile(r"^\s+([^\s\[({/>]+)(?:\(\(|\{\{|\[\[|\[/|\(|\[|>)\"", re.MULTILINE)
_SAFE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _need_dot() -> None:
    assert shutil.which("dot"), "Graphviz 'dot' is needed for this test: run make system-deps"


def test_there_are_examples() -> None:
    assert SEED in EXAMPLES


@pytest.mark.parametrize("suffix", sorted(WRITERS))
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_diagram_matches_snapshot(example: Path, suffix: str) -> None:
    text = WRITERS[suffix](load_topology(example))
    snapshot = SNAPSHOTS / f"{example.stem}.{suffix}"
    if UPDATE:
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(text, encoding="utf-8")
    assert snapshot.exists(), f"{snapshot} is missing: rerun with NSGEN_UPDATE_SNAPSHOTS=1"
    assert snapshot.read_text(encoding="utf-8") == text, (
        f"{snapshot} is stale: rerun with NSGEN_UPDATE_SNAPSHOTS=1 and review the diff"
    )


@pytest.mark.parametrize("suffix", sorted(WRITERS))
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_diagram_is_deterministic(example: Path, suffix: str) -> None:
    write = WRITERS[suffix]
    first = write(load_topology(example))
    assert write(load_topology(example)) == first
    # a topology rebuilt from its own dump (a different object, same content) draws the same
    again = Topology.model_validate(
        load_topology(example).model_dump(by_alias=True), context=EXPANDED
    )
    assert write(again) == first
    assert first.endswith("\n")


def _seed_words(topology: Topology) -> list[str]:
    """Every interface name and address the seed declares or nsgen derives for it."""
    words: list[str] = []
    for netns, spec in topology.spaces():
        words += spec.external
        for name, bridge in spec.bridges.items():
            words += [name, *bridge.addresses]
        for iface in spec.interfaces:
            words += [near_name(netns, iface), *iface.addresses]
            words += [peer_name(netns, iface), *iface.peer.addresses]
    return words


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_seed_diagram_shows_every_interface_and_address(suffix: str) -> None:
    topology = load_topology(SEED)
    text = WRITERS[suffix](topology)
    expected = [
        "eth0",
        "br0",
        "192.168.15.254/24",
        "veth-red",
        "veth-red-br",
        "192.168.15.2/24",
        "veth-blue",
        "veth-blue-br",
        "192.168.15.1/24",
    ]
    assert set(expected) <= set(_seed_words(topology))
    for word in _seed_words(topology):
        assert word in text, word
    for word in [
        "host (root namespace)",
        "namespace red",
        "namespace blue",
        "MASQUERADE 192.168.15.0/24",
        "upstream / internet",
        "default via 192.168.15.254",
        "net.ipv4.ip_forward=1",
    ]:
        assert word in text, word


def test_seed_mermaid_edges() -> None:
    text = diagram.mermaid(load_topology(SEED))
    lines = {line.strip() for line in text.splitlines()}
    assert text.startswith('---\ntitle: "seed"\n---\nflowchart TB\n')
    assert 'subgraph netns__host["host (root namespace)"]' in lines
    assert 'ext__host__eth0 ==>|"MASQUERADE 192.168.15.0/24"| upstream' in lines
    assert 'stack__red ---|"veth-red 192.168.15.2/24<br>veth-red-br"| bridge__host__br0' in lines
    assert 'stack__blue ---|"veth-blue 192.168.15.1/24<br>veth-blue-br"| bridge__host__br0' in lines
    assert text.count("\nend\n") + text.count("    end\n") == 3  # one subgraph per namespace


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_ids_are_safe_identifiers(example: Path) -> None:
    drawing = diagram.build_drawing(load_topology(example))
    ids = [node.id for node in drawing.all_nodes()]
    assert len(ids) == len(set(ids))
    for node_id in ids:
        assert _SAFE_ID.fullmatch(node_id), node_id
    for found in _MERMAID_NODE.findall(diagram.mermaid(load_topology(example))):
        assert _SAFE_ID.fullmatch(found), found
    node_ids = set(ids)
    for link in drawing.links:
        assert {link.a, link.b} <= node_ids, link


def _tricky() -> Topology:
    """Names that differ only in '.', '-', '_' and in what an encoding could turn them into."""
    data: dict[str, Any] = {
        "name": "tricky_1-x",
        "host": {
            "bridges": {
                "br.0": {"addresses": ["10.9.0.254/24"]},
                "br-0": {},
                "br_0": {},
                "br_2e0": {},
            },
        },
        "namespaces": {
            name: {"interfaces": [{"peer": {"bridge": bridge}, "addresses": [f"10.9.0.{i}/24"]}]}
            for i, (name, bridge) in enumerate(
                [("a.b", "br.0"), ("a-b", "br-0"), ("a_b", "br_0"), ("a_2eb", "br_2e0")], 1
            )
        },
    }
    return topology_from_data(data, "tricky")


def test_ids_of_lookalike_names_differ_and_stay_safe() -> None:
    drawing = diagram.build_drawing(_tricky())
    ids = [node.id for node in drawing.all_nodes()]
    assert len(ids) == len(set(ids)) == 1 + 4 + 4  # host stack, 4 bridges, 4 namespace stacks
    assert all(_SAFE_ID.fullmatch(i) for i in ids)
    groups = [g.id for g in drawing.groups]
    assert len(groups) == len(set(groups)) == 5
    assert diagram.ident("bridge", "host", "br.0") == "bridge__host__br_2e0"
    assert diagram.ident("bridge", "host", "br_2e0") == "bridge__host__br_5f2e0"
    assert diagram.ident("x", "a_", "b") != diagram.ident("x", "a", "_b")


def test_tricky_names_render_with_dot(tmp_path: Path) -> None:
    _need_dot()
    out = tmp_path / "tricky.svg"
    diagram.render_image(diagram.dot(_tricky()), "svg", out)
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", out.read_text(encoding="utf-8"))
    words = {word for t in texts for word in html.unescape(t).split()}
    for name in ["br.0", "br-0", "br_0", "br_2e0", "veth-a.b", "veth-a_2eb-br", "veth-a-b"]:
        assert name in words, name


def test_mermaid_escape() -> None:
    escaped = diagram.mermaid_escape('say "hi" <b>#1 & |x| `y` 50%\\n\tz')
    for bad in ['"', "<", ">", "|", "`", "\t", "\\"]:
        assert bad not in escaped, bad
    assert escaped.startswith("say #quot;hi#quot; #lt;b#gt;#35;1 #amp; #124;x#124;")
    assert diagram.mermaid_escape("veth-red 192.168.15.2/24") == "veth-red 192.168.15.2/24"


def test_dot_escape() -> None:
    assert diagram.dot_escape('a"b\\c') == 'a\\"b\\\\c'
    assert diagram.dot_escape("two\nlines") == "two lines"
    assert diagram.dot_escape(r"\N\G") == r"\\N\\G"  # no escString expansion
    assert diagram.dot_escape("a&amp;b") == "a&amp;amp;b"  # no entity decoding either


EVIL = 'q"uote \\N <b>&amp; |pipe| `tick` #35; %%{init}%% \u00e9'


def _evil_drawing() -> Drawing:
    evil = EVIL
    inner = Group("grp__inner", "namespace", evil, nodes=[Node("n__b", "bridge", ("b", evil))])
    outer = Group(
        "grp__outer",
        "namespace",
        "outer",
        nodes=[Node("n__a", "stack", ("a", evil))],
        groups=[inner],
    )
    return Drawing(
        title=evil,
        groups=[outer],
        nodes=[Node(diagram.UPSTREAM_ID, "upstream", ("up",))],
        links=[Link("n__a", "n__b", "veth", (evil,)), Link("n__b", diagram.UPSTREAM_ID, "uplink")],
    )


def test_labels_are_escaped_in_both_writers(tmp_path: Path) -> None:
    drawing = _evil_drawing()
    text = diagram.mermaid_drawing(drawing)
    assert text.splitlines()[1] == "title: " + json.dumps(EVIL)  # YAML front matter
    for line in text.splitlines()[4:]:
        # every quote on a line opens or closes a label: labels hold none of their own
        assert line.count('"') % 2 == 0, line
        assert "`" not in line and "%%" not in line, line
    assert "subgraph grp__inner" in text  # nested groups nest
    _need_dot()
    out = tmp_path / "evil.svg"
    diagram.render_image(diagram.dot_drawing(drawing), "svg", out)
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", out.read_text(encoding="utf-8"))
    # shown exactly as written: title, inner cluster, two node lines, one edge label
    assert [html.unescape(t) for t in texts].count(EVIL) == 5
    assert "cluster_grp__inner" in diagram.dot_drawing(drawing)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_svg_renders(example: Path, tmp_path: Path) -> None:
    _need_dot()
    out = tmp_path / f"{example.stem}.svg"
    diagram.render_image(diagram.dot(load_topology(example)), "svg", out)
    svg = out.read_text(encoding="utf-8")
    assert svg.startswith("<?xml") or "<svg" in svg
    assert 'class="edge"' in svg  # the links are drawn (not every example names one veth-*)


def test_png_renders(tmp_path: Path) -> None:
    _need_dot()
    out = tmp_path / "seed.png"
    diagram.render_image(diagram.dot(load_topology(SEED)), "png", out)
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_missing_dot_is_tool_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    out = tmp_path / "seed.svg"
    with pytest.raises(ToolMissingError) as caught:
        diagram.render_image(diagram.dot(load_topology(SEED)), "svg", out)
    assert str(caught.value) == (
        "Graphviz 'dot' is not installed; install the graphviz package (apt-get install "
        "graphviz) or use --format mermaid|dot"
    )
    assert caught.value.exit_code == 2
    assert not out.exists()


def test_failing_dot_reports_its_stderr(tmp_path: Path) -> None:
    _need_dot()
    with pytest.raises(NsgenError) as caught:
        diagram.render_image("graph { this is not dot", "svg", tmp_path / "bad.svg")
    assert not isinstance(caught.value, ToolMissingError)
    assert "Graphviz 'dot' failed" in str(caught.value)
    assert "syntax error" in str(caught.value)


def test_unknown_image_format(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="svg, png"):
        diagram.render_image(diagram.dot(load_topology(SEED)), "gif", tmp_path / "x.gif")


def test_empty_host_is_not_drawn() -> None:
    topology = topology_from_data(
        {
            "name": "pair",
            "namespaces": {
                "left": {
                    "interfaces": [{"peer": {"netns": "right"}, "addresses": ["10.8.0.1/30"]}]
                },
                "right": {},
            },
        },
        "pair",
    )
    drawing = diagram.build_drawing(topology)
    assert [g.label for g in drawing.groups] == ["namespace left", "namespace right"]
    assert drawing.links == [
        Link("stack__left", "stack__right", "veth", ("veth-left 10.8.0.1/30", "veth-right"))
    ]
    assert "upstream" not in diagram.mermaid(topology)


def test_masquerade_out_a_bridge_or_a_veth_end() -> None:
    topology = topology_from_data(
        {
            "name": "nat",
            "host": {
                "bridges": {"br0": {"addresses": ["10.7.0.254/24"]}},
                "interfaces": [
                    {"name": "to-gw", "peer": {"netns": "gw"}, "addresses": ["10.6.0.1/30"]}
                ],
                "masquerade": [{"source": "10.7.0.0/24", "out": "br0"}],
            },
            "namespaces": {
                "gw": {"masquerade": [{"source": "10.7.0.0/24", "out": "veth-gw"}]},
            },
        },
        "nat",
    )
    assert peer_name("host", topology.host.interfaces[0]) == "veth-gw"
    drawing = diagram.build_drawing(topology)
    bridge = next(n for n in drawing.all_nodes() if n.kind == "bridge")
    assert bridge.lines == ("br0", "10.7.0.254/24", "MASQUERADE 10.7.0.0/24 out br0")
    (veth,) = [link for link in drawing.links if link.kind == "veth"]
    assert veth == Link(
        "stack__host",
        "stack__gw",
        "veth",
        ("to-gw 10.6.0.1/30", "veth-gw", "MASQUERADE 10.7.0.0/24 out veth-gw"),
    )
    assert "upstream" not in diagram.dot(topology)


# ---- what a learner came for ------------------------------------------------------------------

DOCKER = ROOT / "examples" / "docker-bridge.yaml"
K8S = ROOT / "examples" / "k8s-two-nodes.yaml"
VXLAN = ROOT / "examples" / "k8s-vxlan.yaml"
TWO_TIER = ROOT / "examples" / "two-tier.yaml"


def _svg_texts(topology: Topology, tmp_path: Path) -> list[str]:
    _need_dot()
    out = tmp_path / "picture.svg"
    diagram.render_image(diagram.dot(topology), "svg", out)
    found = re.findall(r"<text[^>]*>([^<]*)</text>", out.read_text(encoding="utf-8"))
    return [html.unescape(t) for t in found]


def test_a_published_port_is_drawn_from_the_host_to_its_container(tmp_path: Path) -> None:
    topology = load_topology(DOCKER)
    drawing = diagram.build_drawing(topology)
    (forward,) = [link for link in drawing.links if link.kind == "forward"]
    assert forward == Link(
        "stack__host", "stack__web", "forward", ("publish 8080/tcp", "-> 172.18.0.2:80")
    )
    assert 'stack__host -.->|"publish 8080/tcp<br>-#gt; 172.18.0.2:80"| stack__web' in (
        diagram.mermaid(topology)
    )
    texts = _svg_texts(topology, tmp_path)
    assert "publish 8080/tcp" in texts and "-> 172.18.0.2:80" in texts
    # an internal network says so
    assert "internal docker network backend" in texts
    assert "docker network frontend" in texts


def test_services_are_drawn_with_their_cluster_ip_node_port_and_endpoints(
    tmp_path: Path,
) -> None:
    topology = load_topology(K8S)
    drawing = diagram.build_drawing(topology)
    services = {n.id: n.lines for n in drawing.all_nodes() if n.kind == "service"}
    assert services == {
        "service__web": ("Service web", "ClusterIP 10.96.0.10:80/tcp"),
        "service__web_2dnp": (
            "Service web-np",
            "ClusterIP 10.96.0.1:80/tcp",
            "NodePort 30080/tcp on every node",
        ),
    }
    endpoints = sorted((link.a, link.b) for link in drawing.links if link.kind == "endpoint")
    assert endpoints == [
        ("service__web", "stack__web_2da"),
        ("service__web", "stack__web_2db"),
        ("service__web_2dnp", "stack__web_2da"),
        ("service__web_2dnp", "stack__web_2db"),
    ]
    text = diagram.mermaid(topology)
    assert 'service__web>"Service web<br>ClusterIP 10.96.0.10:80/tcp"]' in text
    assert 'service__web -.->|":8080"| stack__web_2da' in text
    assert "ClusterIP 10.96.0.10:80/tcp" in diagram.dot(topology)
    texts = _svg_texts(topology, tmp_path)
    for line in ("ClusterIP 10.96.0.10:80/tcp", "NodePort 30080/tcp on every node"):
        assert line in texts, line


def test_the_vxlan_tunnel_between_nodes_is_one_line(tmp_path: Path) -> None:
    topology = load_topology(VXLAN)
    drawing = diagram.build_drawing(topology)
    devices = {n.id: n.lines for n in drawing.all_nodes() if n.kind == "vxlan"}
    assert devices == {
        "vxlan__node1__flannel_2e1": ("flannel.1", "VXLAN 1 udp/8472", "10.244.0.0/32"),
        "vxlan__node2__flannel_2e1": ("flannel.1", "VXLAN 1 udp/8472", "10.244.1.0/32"),
    }
    tunnels = [link for link in drawing.links if link.kind == "tunnel"]
    assert tunnels == [
        Link(
            "vxlan__node1__flannel_2e1",
            "vxlan__node2__flannel_2e1",
            "tunnel",
            ("VXLAN 1 over udp/8472", "10.10.0.1 <-> 10.10.0.2"),
        )
    ]
    assert "vxlan__node1__flannel_2e1 <-->|" in diagram.mermaid(topology)
    assert "10.10.0.1 <-> 10.10.0.2" in _svg_texts(topology, tmp_path)
    # host-gw has no tunnel
    assert not [
        link for link in diagram.build_drawing(load_topology(K8S)).links if link.kind == "tunnel"
    ]


def _svg_y(svg: str, node_id: str) -> float:
    """The y of a node's first label line in Graphviz's SVG (larger is lower)."""
    match = re.search(
        rf"<title>{re.escape(node_id)}</title>.*?<text[^>]* y=\"([-0-9.]+)\"", svg, re.S
    )
    assert match, node_id
    return float(match[1])


def test_a_router_is_drawn_between_the_bridges_it_joins(tmp_path: Path) -> None:
    topology = load_topology(TWO_TIER)
    links = [(link.a, link.b) for link in diagram.build_drawing(topology).links]
    assert ("bridge__host__br_2dfront", "stack__router") in links
    assert ("stack__router", "bridge__host__br_2dback") in links
    _need_dot()
    out = tmp_path / "two-tier.svg"
    diagram.render_image(diagram.dot(topology), "svg", out)
    svg = out.read_text(encoding="utf-8")
    front, router, back = (
        _svg_y(svg, node)
        for node in ("bridge__host__br_2dfront", "stack__router", "bridge__host__br_2dback")
    )
    assert front < router < back, (front, router, back)
    # a namespace on two bridges that does not forward (web, on two Docker networks) is not
    # a router: both its cables go down to the bridges
    docker = [(link.a, link.b) for link in diagram.build_drawing(load_topology(DOCKER)).links]
    assert ("stack__web", "bridge__host__br_2dbackend") in docker
    assert ("stack__web", "bridge__host__br_2dfrontend") in docker
