"""Pictures of a topology: Mermaid flowchart text (GitHub renders it) and Graphviz DOT.

Both come from one `Drawing`, built by `build_drawing`: groups (one per namespace, possibly
nested), nodes (a namespace's own IP stack, bridges, VXLAN devices, external interfaces, the
upstream, Kubernetes Services) and links (veth pairs, a stack's place on a bridge or an uplink,
the way out to the upstream, VXLAN tunnels between nodes, and where published ports and
Services send connections, from `Topology.forwards`). A namespace that routes between bridges
is drawn between them.
The writers only spell a Drawing, so a new kind of grouping (a Docker network, a Kubernetes
node holding its pods) is one more builder step adding `Group`s and `Link`s: neither writer
changes. Everything is built in declaration order, so the same topology gives byte-identical
text, and nothing but the topology goes into it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from nsgen.checks import host_port
from nsgen.errors import NsgenError, ToolMissingError, UsageError
from nsgen.model import HOST, Namespace, Topology
from nsgen.names import near_name, peer_name

NodeKind = Literal["stack", "bridge", "vxlan", "external", "upstream", "service"]
"""stack: a namespace's own addresses and routing table; upstream: whatever is past an uplink;
service: a Kubernetes Service (its cluster IP, its node port)."""

LinkKind = Literal["veth", "attach", "uplink", "tunnel", "forward", "endpoint"]
"""veth: a veth pair; attach: a stack's L3 presence on one of its bridges, VXLAN devices or
uplinks; uplink: an external interface's way out to the upstream; tunnel: two VXLAN devices
that send each other frames (FDB entries); forward: where a published port sends connections
(DNAT); endpoint: a Service's endpoint, where its connections go."""

GroupKind = Literal["namespace", "group"]

IMAGE_FORMATS = ("svg", "png")
"""What `render_image` asks Graphviz for."""

UPSTREAM_ID = "upstream"

DOT_MISSING = (
    "Graphviz 'dot' is not installed; install the graphviz package (apt-get install graphviz) "
    "or use --format mermaid|dot"
)

DOT_TIMEOUT = 60.0
"""Seconds `render_image` waits for dot before giving up."""


@dataclass(frozen=True)
class Node:
    """One box of the picture. `lines` is its label, first line the name."""

    id: str
    kind: NodeKind
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Link:
    """A line between two nodes, drawn from `a` to `b`; `lines` is its label (maybe none)."""

    a: str
    b: str
    kind: LinkKind
    lines: tuple[str, ...] = ()


@dataclass
class Group:
    """A box around nodes (a Mermaid subgraph, a DOT cluster); groups may nest."""

    id: str
    kind: GroupKind
    label: str
    nodes: list[Node] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)


@dataclass
class Drawing:
    """Everything either writer needs; `nodes` are those outside every group."""

    title: str
    groups: list[Group] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)

    def all_nodes(self) -> Iterator[Node]:
        """Every node: the free ones, then each group's, depth first, in order."""
        yield from self.nodes
        stack = list(reversed(self.groups))
        while stack:
            group = stack.pop()
            yield from group.nodes
            stack.extend(reversed(group.groups))


# ---------------------------------------------------------------------------------------------
# Identifiers


def _encode(name: str) -> str:
    """Letters and digits stay; anything else (even '_') becomes '_' and two hex digits."""
    return "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in name)


def ident(kind: str, *names: str) -> str:
    """A node or group id safe in Mermaid and DOT, one-to-one with (kind, *names).

    `kind` is a plain lowercase word; names are joined with '__', which an encoded name never
    holds ('_' inside one is always followed by hex digits), so distinct inputs never collide:
    ident("bridge", "host", "br.0") == "bridge__host__br_2e0".
    """
    return kind + "".join(f"__{_encode(n)}" for n in names)


def stack_id(netns: str) -> str:
    return ident("stack", netns)


def bridge_id(netns: str, bridge: str) -> str:
    return ident("bridge", netns, bridge)


def external_id(netns: str, name: str) -> str:
    return ident("ext", netns, name)


def vxlan_id(netns: str, name: str) -> str:
    return ident("vxlan", netns, name)


def service_id(name: str) -> str:
    return ident("service", name)


def namespace_group_id(netns: str) -> str:
    return ident("netns", netns)


# ---------------------------------------------------------------------------------------------
# Building the drawing


def namespace_label(netns: str) -> str:
    return f"{HOST} (root namespace)" if netns == HOST else f"namespace {netns}"


def _end(name: str, addresses: list[str]) -> str:
    """'veth-red 192.168.15.2/24', or just the name when the end has no address."""
    return " ".join([name, *addresses])


def _stack_lines(netns: str, spec: Namespace) -> tuple[str, ...]:
    lines = [netns]
    if spec.loopback is False:
        lines.append("lo down")
    lines.extend(f"{key}={value}" for key, value in spec.sysctls.items())
    # default routes first: a namespace's gateway is what a reader looks for
    for route in sorted(spec.routes, key=lambda r: r.to != "default"):
        words = [route.to]
        if route.via is not None:
            words += ["via", route.via]
        if route.dev is not None:
            words += ["dev", route.dev]
        lines.append(" ".join(words))
    if spec.dns is not None:
        if spec.dns.nameservers:
            lines.append("nameserver " + " ".join(spec.dns.nameservers))
        if spec.dns.search:
            lines.append("search " + " ".join(spec.dns.search))
    return tuple(lines)


def _host_drawn(topology: Topology) -> bool:
    """The root namespace gets a box when it holds something or a veth end lands in it."""
    host = topology.host
    if host.external or host.bridges or host.interfaces or host.routes or host.masquerade:
        return True
    if host.sysctls:
        return True
    return any(
        iface.peer.netns == HOST
        for spec in topology.namespaces.values()
        for iface in spec.interfaces
    )


def _masquerades(topology: Topology) -> dict[tuple[str, str], list[str]]:
    """(namespace, outgoing interface) -> the subnets rewritten on their way out of it."""
    found: dict[tuple[str, str], list[str]] = {}
    for netns, spec in topology.spaces():
        for masq in spec.masquerade:
            found.setdefault((netns, masq.out), []).append(masq.source)
    return found


def _masquerade_lines(
    masq: dict[tuple[str, str], list[str]], netns: str, name: str, *, named: bool
) -> list[str]:
    """'MASQUERADE <subnet>' for each rule leaving through `name`, plus 'out <name>' where the
    picture alone would not tell which interface it is (a bridge, either end of a veth pair)."""
    suffix = f" out {name}" if named else ""
    return [f"MASQUERADE {source}{suffix}" for source in masq.get((netns, name), [])]


def _namespace_groups(topology: Topology, drawing: Drawing) -> None:
    """One group per namespace: its stack, bridges and external interfaces, and their links."""
    masq = _masquerades(topology)
    for netns, spec in topology.spaces():
        if netns == HOST and not _host_drawn(topology):
            continue
        group = Group(namespace_group_id(netns), "namespace", namespace_label(netns))
        stack = Node(stack_id(netns), "stack", _stack_lines(netns, spec))
        group.nodes.append(stack)
        for name, bridge in spec.bridges.items():
            lines = [name, *bridge.addresses]
            lines += _masquerade_lines(masq, netns, name, named=True)
            node = Node(bridge_id(netns, name), "bridge", tuple(lines))
            group.nodes.append(node)
            if bridge.addresses:
                # drawn bridge -> stack: the picture reads namespaces, bridge, host, uplink
                drawing.links.append(Link(node.id, stack.id, "attach"))
        for name, vxlan in spec.vxlans.items():
            lines = [name, f"VXLAN {vxlan.id} udp/{vxlan.port}", *vxlan.addresses]
            node = Node(vxlan_id(netns, name), "vxlan", tuple(lines))
            group.nodes.append(node)
            drawing.links.append(Link(stack.id, node.id, "attach"))
        for name in spec.external:
            node = Node(external_id(netns, name), "external", (name, "external uplink"))
            group.nodes.append(node)
            drawing.links.append(Link(stack.id, node.id, "attach"))
            rules = tuple(_masquerade_lines(masq, netns, name, named=False))
            drawing.links.append(Link(node.id, UPSTREAM_ID, "uplink", rules))
        drawing.groups.append(group)
    if any(spec.external for _, spec in topology.spaces()):
        drawing.nodes.append(Node(UPSTREAM_ID, "upstream", ("upstream / internet",)))


FORWARDING_SYSCTLS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")


def _routers(topology: Topology) -> set[str]:
    """Named namespaces that forward packets and have veth ends on two bridges or more."""
    found = set()
    for netns, spec in topology.namespaces.items():
        if not any(str(spec.sysctls.get(key)) == "1" for key in FORWARDING_SYSCTLS):
            continue
        bridges = {(i.peer.netns, i.peer.bridge) for i in spec.interfaces if i.peer.bridge}
        if len(bridges) >= 2:
            found.add(netns)
    return found


def _veth_links(topology: Topology, drawing: Drawing) -> None:
    """Each veth pair: from its declaring namespace's stack to the far stack or bridge. A
    router's first bridge link is drawn the other way round (bridge to router), so the router
    sits below its first bridge and above the others: between the networks it joins."""
    masq = _masquerades(topology)
    routers = _routers(topology)
    for netns, spec in topology.spaces():
        first_bridge = netns in routers
        for iface in spec.interfaces:
            far_ns = iface.peer.netns
            near, far = near_name(netns, iface), peer_name(netns, iface)
            target = stack_id(far_ns)
            if iface.peer.bridge is not None:
                target = bridge_id(far_ns, iface.peer.bridge)
            lines = [_end(near, iface.addresses), _end(far, iface.peer.addresses)]
            for where, name in ((netns, near), (far_ns, far)):
                lines += _masquerade_lines(masq, where, name, named=True)
            # an end on a bridge of its own namespace starts from that bridge
            source = bridge_id(netns, iface.bridge) if iface.bridge else stack_id(netns)
            if first_bridge and iface.peer.bridge is not None:
                drawing.links.append(Link(target, source, "veth", tuple(lines)))
                first_bridge = False
            else:
                drawing.links.append(Link(source, target, "veth", tuple(lines)))


def _tunnel_links(topology: Topology, drawing: Drawing) -> None:
    """A line between two VXLAN devices of one VNI where one's FDB sends frames to the other's
    local address (flannel's entries for every other node), once per pair."""
    devices: dict[tuple[int, str], tuple[str, str]] = {}
    for netns, spec in topology.spaces():
        for name, vxlan in spec.vxlans.items():
            if vxlan.local is not None:
                devices[(vxlan.id, vxlan.local)] = (netns, name)
    drawn: set[frozenset[str]] = set()
    for netns, spec in topology.spaces():
        for entry in spec.fdb:
            device = spec.vxlans.get(entry.dev)
            far = devices.get((device.id, entry.dst)) if device is not None else None
            if device is None or far is None:
                continue
            a, b = vxlan_id(netns, entry.dev), vxlan_id(*far)
            if a == b or frozenset((a, b)) in drawn:
                continue
            drawn.add(frozenset((a, b)))
            lines = (f"VXLAN {device.id} over udp/{device.port}", f"{device.local} <-> {entry.dst}")
            drawing.links.append(Link(a, b, "tunnel", lines))


def _forward_links(topology: Topology, drawing: Drawing) -> None:
    """Published ports: a line from the host to the container, '8080/tcp -> 172.18.0.2:80'.
    Services: a node each (cluster IP, node port), with a line to every endpoint."""
    services: dict[str, list[str]] = {}
    endpoints: dict[str, list[tuple[str, str]]] = {}
    for forward in topology.forwards:
        on = f" on {forward.address}" if forward.address else ""
        if forward.kind == "publish":
            for e in forward.endpoints:
                label = (
                    f"publish {forward.port}/{forward.protocol}{on}",
                    f"-> {host_port(e.address, e.port)}",
                )
                drawing.links.append(Link(stack_id(HOST), stack_id(e.netns), "forward", label))
            continue
        lines = services.setdefault(forward.name, [f"Service {forward.name}"])
        if forward.kind == "ClusterIP":
            address = host_port(str(forward.address), forward.port)
            lines.append(f"ClusterIP {address}/{forward.protocol}")
        else:
            lines.append(f"NodePort {forward.port}/{forward.protocol}{on} on every node")
        for e in forward.endpoints:
            pair = (e.netns, f":{e.port}")
            if pair not in endpoints.setdefault(forward.name, []):
                endpoints[forward.name].append(pair)
    for name, lines in services.items():
        drawing.nodes.append(Node(service_id(name), "service", tuple(lines)))
        for netns, port in endpoints.get(name, []):
            drawing.links.append(Link(service_id(name), stack_id(netns), "endpoint", (port,)))


def _topology_groups(topology: Topology, drawing: Drawing) -> None:
    """The topology's `groups` (a Docker network, a Kubernetes node) as boxes around their
    members' namespace boxes. A namespace in several groups (a container on two networks)
    stays outside them all: a box can hold a namespace only once."""
    counts: dict[str, int] = {}
    for entry in topology.groups:
        for member in dict.fromkeys(entry.members):
            counts[member] = counts.get(member, 0) + 1
    by_id = {group.id: group for group in drawing.groups}
    placed: set[str] = set()
    outer: list[Group] = []
    for index, entry in enumerate(topology.groups):
        box = Group(ident("group", str(index), entry.name), "group", f"{entry.kind} {entry.name}")
        for member in dict.fromkeys(entry.members):
            inner = by_id.get(namespace_group_id(member))
            if inner is not None and counts[member] == 1:
                box.groups.append(inner)
                placed.add(inner.id)
        if box.groups:
            outer.append(box)
    drawing.groups = [g for g in drawing.groups if g.id not in placed] + outer


def build_drawing(topology: Topology) -> Drawing:
    """The picture of a validated topology (references are trusted, not checked)."""
    drawing = Drawing(title=topology.name)
    _namespace_groups(topology, drawing)
    _topology_groups(topology, drawing)
    _veth_links(topology, drawing)
    _tunnel_links(topology, drawing)
    _forward_links(topology, drawing)
    return drawing


# ---------------------------------------------------------------------------------------------
# Mermaid

_MERMAID_ESCAPES = {
    "#": "#35;",
    '"': "#quot;",
    "&": "#amp;",
    "<": "#lt;",
    ">": "#gt;",
    "|": "#124;",
    "`": "#96;",
    "%": "#37;",
    "\\": "#92;",
}

_MERMAID_SHAPES: dict[NodeKind, tuple[str, str]] = {
    "stack": ("(", ")"),
    "bridge": ("{{", "}}"),
    "vxlan": ("[[", "]]"),
    "external": ("[/", "/]"),
    "upstream": ("((", "))"),
    "service": (">", "]"),
}

_MERMAID_ARROWS: dict[LinkKind, str] = {
    "veth": "---",
    "attach": "-.-",
    "uplink": "==>",
    "tunnel": "<-->",
    "forward": "-.->",
    "endpoint": "-.->",
}

_MERMAID_CLASSES: dict[NodeKind, str] = {
    "stack": "fill:#fff8e1,stroke:#f9a825",
    "bridge": "fill:#e3f2fd,stroke:#1565c0",
    "vxlan": "fill:#e8f5e9,stroke:#2e7d32",
    "external": "fill:#fce4ec,stroke:#ad1457,stroke-dasharray:5 5",
    "upstream": "fill:#eeeeee,stroke:#616161",
    "service": "fill:#f3e5f5,stroke:#6a1b9a",
}


def mermaid_escape(text: str) -> str:
    """One line of label text, safe inside a Mermaid "quoted" label: Mermaid's #entity; codes
    for what would end the string or be read as markup, control characters as spaces."""
    return "".join(
        _MERMAID_ESCAPES.get(c, " " if c.isspace() or not c.isprintable() else c) for c in text
    )


def _mermaid_label(lines: tuple[str, ...]) -> str:
    return '"' + "<br>".join(mermaid_escape(line) for line in lines) + '"'


def _mermaid_group(group: Group, depth: int, out: list[str]) -> None:
    pad = "    " * depth
    out.append(f'{pad}subgraph {group.id}["{mermaid_escape(group.label)}"]')
    out.append(f"{pad}    direction TB")
    for node in group.nodes:
        out.append(pad + "    " + _mermaid_node(node))
    for child in group.groups:
        _mermaid_group(child, depth + 1, out)
    out.append(f"{pad}end")


def _mermaid_node(node: Node) -> str:
    opening, closing = _MERMAID_SHAPES[node.kind]
    return f"{node.id}{opening}{_mermaid_label(node.lines)}{closing}"


def mermaid_drawing(drawing: Drawing) -> str:
    """Spell a Drawing as a Mermaid flowchart, ending with a newline."""
    # the title is YAML front matter, not a label: a JSON string is a YAML double-quoted one
    out = ["---", f"title: {json.dumps(drawing.title)}", "---", "flowchart TB"]
    for node in drawing.nodes:
        out.append("    " + _mermaid_node(node))
    for group in drawing.groups:
        _mermaid_group(group, 1, out)
    for link in drawing.links:
        arrow = _MERMAID_ARROWS[link.kind]
        text = f"|{_mermaid_label(link.lines)}|" if link.lines else ""
        out.append(f"    {link.a} {arrow}{text} {link.b}")
    by_kind: dict[NodeKind, list[str]] = {}
    for node in drawing.all_nodes():
        by_kind.setdefault(node.kind, []).append(node.id)
    for kind, style in _MERMAID_CLASSES.items():
        if kind in by_kind:
            out.append(f"    classDef kind_{kind} {style}")
            out.append(f"    class {','.join(by_kind[kind])} kind_{kind}")
    return "\n".join(out) + "\n"


def mermaid(topology: Topology) -> str:
    """Mermaid flowchart of a validated topology (paste into a ```mermaid block on GitHub)."""
    return mermaid_drawing(build_drawing(topology))


# ---------------------------------------------------------------------------------------------
# Graphviz DOT

_DOT_NODES: dict[NodeKind, str] = {
    "stack": 'shape=box, style="rounded,filled", fillcolor="#fff8e1", color="#f9a825"',
    "bridge": 'shape=hexagon, style=filled, fillcolor="#e3f2fd", color="#1565c0"',
    "vxlan": 'shape=component, style=filled, fillcolor="#e8f5e9", color="#2e7d32"',
    "external": 'shape=parallelogram, style="dashed,filled", fillcolor="#fce4ec", color="#ad1457"',
    "upstream": 'shape=ellipse, style=filled, fillcolor="#eeeeee", color="#616161"',
    "service": 'shape=cds, style=filled, fillcolor="#f3e5f5", color="#6a1b9a"',
}

_DOT_LINKS: dict[LinkKind, str] = {
    "veth": "penwidth=1.5",
    "attach": "style=dotted",
    "uplink": "style=bold, dir=forward",
    # drawn over the layout of the cables, not shaping it
    "tunnel": 'style=bold, color="#2e7d32", dir=both, constraint=false',
    "forward": 'style=dashed, color="#6a1b9a", fontcolor="#6a1b9a", dir=forward, constraint=false',
    "endpoint": 'style=dashed, color="#6a1b9a", fontcolor="#6a1b9a", dir=forward',
}


def dot_escape(text: str) -> str:
    """One line of label text, safe inside a DOT "quoted" string and shown as written: no
    escString sequences (\\N, \\n), no entity references (Graphviz decodes &amp; in labels)."""
    text = "".join(" " if c.isspace() or not c.isprintable() else c for c in text)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")


def _dot_quote(text: str) -> str:
    return f'"{dot_escape(text)}"'


def _dot_label(lines: tuple[str, ...]) -> str:
    return '"' + "\\n".join(dot_escape(line) for line in lines) + '"'


def _dot_node(node: Node) -> str:
    return f"{_dot_quote(node.id)} [label={_dot_label(node.lines)}, {_DOT_NODES[node.kind]}];"


def _dot_group(group: Group, depth: int, out: list[str]) -> None:
    pad = "    " * depth
    out.append(f"{pad}subgraph {_dot_quote('cluster_' + group.id)} {{")
    out.append(f"{pad}    label={_dot_quote(group.label)};")
    out.append(f'{pad}    style=rounded; color="#9e9e9e";')
    for node in group.nodes:
        out.append(pad + "    " + _dot_node(node))
    for child in group.groups:
        _dot_group(child, depth + 1, out)
    out.append(f"{pad}}}")


def dot_drawing(drawing: Drawing) -> str:
    """Spell a Drawing as an undirected Graphviz graph, ending with a newline."""
    out = [
        f"graph {_dot_quote(drawing.title)} {{",
        f"    graph [label={_dot_quote(drawing.title)}, labelloc=t, rankdir=TB, newrank=true];",
        "    node [fontsize=11];",
        "    edge [fontsize=9];",
    ]
    for node in drawing.nodes:
        out.append("    " + _dot_node(node))
    for group in drawing.groups:
        _dot_group(group, 1, out)
    for link in drawing.links:
        attrs = _DOT_LINKS[link.kind]
        if link.lines:
            attrs = f"label={_dot_label(link.lines)}, {attrs}"
        out.append(f"    {_dot_quote(link.a)} -- {_dot_quote(link.b)} [{attrs}];")
    out.append("}")
    return "\n".join(out) + "\n"


def dot(topology: Topology) -> str:
    """Graphviz DOT of a validated topology: one cluster per namespace."""
    return dot_drawing(build_drawing(topology))


def render_image(dot_text: str, fmt: str, out: Path) -> None:
    """Have Graphviz draw `dot_text` into `out` as svg or png.

    Raises ToolMissingError when dot is not installed, NsgenError (with dot's stderr) when it
    fails, UsageError for a format other than svg or png.
    """
    if fmt not in IMAGE_FORMATS:
        raise UsageError(f"unknown image format {fmt!r}: use one of {', '.join(IMAGE_FORMATS)}")
    program = shutil.which("dot")
    if program is None:
        raise ToolMissingError(DOT_MISSING)
    try:
        result = subprocess.run(
            [program, f"-T{fmt}", "-o", str(out)],
            input=dot_text.encode("utf-8"),
            capture_output=True,
            check=False,
            timeout=DOT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise NsgenError(f"Graphviz 'dot' did not finish within {DOT_TIMEOUT:g} s") from None
    except OSError as exc:
        raise NsgenError(f"cannot run Graphviz 'dot' ({program}): {exc}") from None
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip() or "(no message)"
        raise NsgenError(f"Graphviz 'dot' failed (exit {result.returncode}): {stderr}")
