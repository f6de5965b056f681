"""(h) The least bash, iproute2 and nsenter can do: the benchmark's network built by a plain
script with the same batching as nsgen's default scripts (one `ip -b` for the bridge, one for
all namespaces, one for all veth pairs, one `nsenter --net=... ip -b -` per namespace in one
lane per core, one iptables call) and nothing else: no preflight, no journal, no step log, no
rollback. It is not something to use; it measures what any script made of these programs must
pay, so that the distance between nsgen's scripts and the floor splits into what nsgen adds
(a against h) and what starting programs costs (h against f).

    python -m bench.handmade N DIR     # writes DIR/setup.sh and DIR/teardown.sh
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.topology import (
    BRIDGE,
    GATEWAY,
    PREFIX,
    SUBNET,
    UPLINK,
    check_size,
    host_veth,
    inner_veth,
    ns_address,
    ns_name,
)

STATE = "/run/nsgen/bench-handmade"
TAG = "bench-handmade"


def setup_script(n: int) -> str:
    check_size(n)
    names = [ns_name(i) for i in range(1, n + 1)]
    lines = [
        "#!/usr/bin/env bash",
        "# (h) bench/handmade.py: the benchmark network with nothing but the batched commands.",
        "set -euo pipefail",
        f"mkdir -p {STATE}",
        f"cat /proc/sys/net/ipv4/ip_forward >{STATE}/ip_forward",
        "ip -b - <<'EOF'",
        f"link add {BRIDGE} type bridge",
        f"link set {BRIDGE} addrgenmode none",
        f"link set {BRIDGE} up",
        f"addr add {GATEWAY}/{PREFIX} dev {BRIDGE}",
        "EOF",
        "ip -b - <<'EOF'",
        *(f"netns add {name}" for name in names),
        "EOF",
        "ip -b - <<'EOF'",
    ]
    for i in range(1, n + 1):
        lines.append(
            f"link add {inner_veth(i)} netns {ns_name(i)} type veth peer name {host_veth(i)}"
        )
    for i in range(1, n + 1):
        lines += [
            f"link set {host_veth(i)} addrgenmode none",
            f"link set {host_veth(i)} master {BRIDGE}",
            f"link set {host_veth(i)} up",
        ]
    lines += [
        "EOF",
        "names=(" + " ".join(names) + ")",
        "inner=(" + " ".join(inner_veth(i) for i in range(1, n + 1)) + ")",
        "addresses=(" + " ".join(f"{ns_address(i)}/{PREFIX}" for i in range(1, n + 1)) + ")",
        "lanes=$(nproc)",
        "lane() {",
        "  local i",
        "  for ((i = $1; i < ${#names[@]}; i += lanes)); do",
        '    nsenter --net="/run/netns/${names[i]}" ip -b - <<EOF',
        "link set lo up",
        "link set ${inner[i]} addrgenmode none",
        "addr add ${addresses[i]} dev ${inner[i]}",
        "link set ${inner[i]} up",
        f"route add default via {GATEWAY}",
        "EOF",
        "  done",
        "}",
        "pids=()",
        'for ((l = 0; l < lanes; l++)); do lane "$l" & pids+=($!); done',
        'for pid in "${pids[@]}"; do wait "$pid"; done',
        f"iptables -w -t nat -A POSTROUTING -s {SUBNET} -o {UPLINK} "
        f"-m comment --comment {TAG} -j MASQUERADE",
        "echo 1 >/proc/sys/net/ipv4/ip_forward",
        "",
    ]
    return "\n".join(lines)


def teardown_script(n: int) -> str:
    check_size(n)
    ends = " ".join(host_veth(i) for i in range(1, n + 1))
    return "\n".join(
        [
            "#!/usr/bin/env bash",
            "# (h) teardown: delete the namespaces in one batch, wait for the kernel to remove",
            "# their veth pairs, then the bridge, the rule and ip_forward's old value.",
            "set -euo pipefail",
            "ip -b - <<'EOF'",
            *(f"netns delete {ns_name(i)}" for i in range(1, n + 1)),
            "EOF",
            f"ends=' {ends} '",
            "for ((tries = 0; tries < 600; tries++)); do",
            "  left=0",
            "  while read -r _ name _; do",
            "    name=${name%:}; name=${name%@*}",
            '    if [[ $ends == *" $name "* ]]; then left=1; break; fi',
            "  done < <(ip -o link show type veth)",
            "  ((left)) || break",
            "  sleep 0.05",
            "done",
            f"ip link delete {BRIDGE}",
            f"iptables -w -t nat -D POSTROUTING -s {SUBNET} -o {UPLINK} "
            f"-m comment --comment {TAG} -j MASQUERADE",
            f"cat {STATE}/ip_forward >/proc/sys/net/ipv4/ip_forward",
            f"rm -rf -- {STATE}",
            "",
        ]
    )


def write(n: int, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in (("setup.sh", setup_script(n)), ("teardown.sh", teardown_script(n))):
        (directory / name).write_text(text, encoding="utf-8")
        (directory / name).chmod(0o755)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m bench.handmade N DIR")
    write(int(sys.argv[1]), Path(sys.argv[2]))
