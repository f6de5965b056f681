"""`nsgen explain`: why a packet goes where it goes, hop by hop.

The path of one packet (and of its reply) is computed from the core model alone: the links,
addresses and routes of every namespace, the bridges and their ports, VXLAN devices with their
neighbour and FDB entries, and the firewall rules as data (nsgen.kinds.rules), walked the way
the kernel walks them (netfilter's hooks in their order, conntrack's reverse NAT for replies).
Nothing here parses rendered iptables text, and nothing needs root.

- `network`: the model as the kernel would hold it: links, route tables, chains, sysctls, and
  the world beyond the uplinks (nsgen lab's stand-in upstream);
- `firewall`: one netfilter chain traversal for one packet (jumps, returns, marks, random
  choices as branches);
- `path`: the walk, hop by hop, request then reply, one branch per random choice;
- `endpoints`: FROM and TO as checks write them (a namespace, `host`, `upstream`, an address,
  a name in a hosts file such as a Service);
- `output`: text, JSON and a Mermaid sequence diagram;
- `live`: the same path checked against the kernel (`nsgen explain --live`).
"""

from __future__ import annotations

from nsgen.explain.api import check_reason, explain, explain_check, explain_probe
from nsgen.explain.hops import Explanation, Hop, Path, Verdict

__all__ = [
    "Explanation",
    "Hop",
    "Path",
    "Verdict",
    "check_reason",
    "explain",
    "explain_check",
    "explain_probe",
]
