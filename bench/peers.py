"""The peers nsgen is compared with, each building the benchmark's network (see bench.topology):

(d) `cni`: the CNI reference plugins driven the way a container runtime drives them. Per
    namespace: `ip netns add`, the `loopback` plugin (ADD, ifname lo: runtimes bring lo up with
    it), then the `bridge` plugin with `host-local` IPAM (ADD, ifname eth0), each a fork+exec
    with CNI_* variables and the network config on stdin. The bridge plugin creates br0 on the
    first ADD, gives it the gateway address (isGateway), turns on ip_forward, and masquerades
    each container's address (ipMasq: an iptables chain per container). Teardown: DEL of both
    plugins with the ADD result as prevResult, `ip netns delete`; then `ip link delete br0`
    (no plugin removes the bridge) and host-local's data directory.
(e) `pyroute2`: the library, used as its documentation shows, in one Python process:
    IPRoute(netns=NAME, flags=O_CREAT) makes each namespace and a socket inside it (pyroute2
    forks a helper for that), IPRoute in the root namespace makes the bridge and the veth pairs
    (peer moved by net_ns_fd), one request per operation (groups=0: no event subscription, which
    would only queue notifications); one iptables call for the NAT rule.
    Teardown as the floor does it: namespaces removed (netns.remove), veths awaited, br0 deleted.

Run as `python -m bench.peers cni|pyroute2 setup|teardown N`; prints timings as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.topology import (
    BRIDGE,
    GATEWAY,
    NAME,
    PREFIX,
    SUBNET,
    UPLINK,
    check_size,
    host_veth,
    inner_veth,
    ns_address,
    ns_name,
)
from nsgen.sandbox import require_sandbox

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
INSTALL_HINT = "run bench/install.sh (as root) to install it"


class PeerError(RuntimeError):
    pass


# ---- (d) CNI ---------------------------------------------------------------------------------

CNI_PATH = "/usr/lib/cni"
CNI_VERSION = "1.0.0"
CNI_DATA = Path("/run/nsgen/bench-cni")
"""host-local's dataDir and the results cache (the sandbox's own /run/nsgen tmpfs)."""
CNI_IFNAME = "eth0"


def cni_missing() -> list[str]:
    """The plugin binaries that are not installed."""
    return [
        p for p in ("bridge", "host-local", "loopback") if not os.access(f"{CNI_PATH}/{p}", os.X_OK)
    ]


def bridge_config() -> dict[str, Any]:
    return {
        "cniVersion": CNI_VERSION,
        "name": NAME,
        "type": "bridge",
        "bridge": BRIDGE,
        "isGateway": True,
        "ipMasq": True,
        "ipam": {
            "type": "host-local",
            "ranges": [
                [{"subnet": str(SUBNET), "rangeStart": str(ns_address(1)), "gateway": str(GATEWAY)}]
            ],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(CNI_DATA / "ipam"),
        },
    }


def loopback_config() -> dict[str, Any]:
    return {"cniVersion": CNI_VERSION, "name": "lo", "type": "loopback"}


def _cni(command: str, plugin_config: dict[str, Any], netns: str, ifname: str) -> dict[str, Any]:
    plugin = plugin_config["type"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": f"{NAME}-{netns}",
        "CNI_NETNS": f"/run/netns/{netns}",
        "CNI_IFNAME": ifname,
        "CNI_PATH": CNI_PATH,
    }
    result = subprocess.run(
        [f"{CNI_PATH}/{plugin}"],
        input=json.dumps(plugin_config).encode(),
        env=env,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise PeerError(
            f"CNI {plugin} {command} for {netns}: exit {result.returncode}: "
            f"{(result.stdout + result.stderr).decode(errors='replace').strip()}"
        )
    if command != "ADD":
        return {}
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PeerError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def cni_setup(n: int) -> dict[str, float]:
    require_sandbox()
    check_size(n)
    if cni_missing():
        raise PeerError(
            f"CNI plugins missing in {CNI_PATH}: {', '.join(cni_missing())}; " + INSTALL_HINT
        )
    bridge, loopback = bridge_config(), loopback_config()
    CNI_DATA.mkdir(parents=True, exist_ok=True)
    # The bridge plugin turns ip_forward on and never back off; the driver keeps the old value
    # so that teardown leaves the host as it found it (as every other method does).
    (CNI_DATA / "ip_forward").write_text(Path(IP_FORWARD).read_text())
    results: dict[str, Any] = {}
    for i in range(1, n + 1):
        name = ns_name(i)
        _ip("netns", "add", name)
        results[name] = {"lo": _cni("ADD", loopback, name, "lo")}
        added = _cni("ADD", bridge, name, CNI_IFNAME)
        results[name]["eth0"] = added
        address = added["ips"][0]["address"]
        if address != f"{ns_address(i)}/{PREFIX}":
            raise PeerError(f"host-local gave {name} {address}, expected {ns_address(i)}/{PREFIX}")
    # what a runtime keeps for DEL (containerd: /var/lib/cni/results)
    (CNI_DATA / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return {}


def cni_teardown(n: int) -> dict[str, float]:
    require_sandbox()
    check_size(n)
    saved = CNI_DATA / "results.json"
    results: dict[str, Any] = json.loads(saved.read_text()) if saved.exists() else {}
    for i in range(1, n + 1):
        name = ns_name(i)
        previous = results.get(name, {})
        _cni("DEL", {**bridge_config(), "prevResult": previous.get("eth0")}, name, CNI_IFNAME)
        _cni("DEL", {**loopback_config(), "prevResult": previous.get("lo")}, name, "lo")
        _ip("netns", "delete", name)
    _ip("link", "delete", BRIDGE)
    if (CNI_DATA / "ip_forward").exists():
        Path(IP_FORWARD).write_text((CNI_DATA / "ip_forward").read_text())
    shutil.rmtree(CNI_DATA)
    return {}


# ---- (e) pyroute2 ----------------------------------------------------------------------------

PYROUTE2_STATE = Path("/run/nsgen/bench-pyroute2")
MASQUERADE = [
    "-t",
    "nat",
    "{op}",
    "POSTROUTING",
    "-s",
    str(SUBNET),
    "-o",
    UPLINK,
    "-m",
    "comment",
    "--comment",
    f"bench-pyroute2:{NAME}",
    "-j",
    "MASQUERADE",
]


def pyroute2_missing() -> str | None:
    try:
        import pyroute2  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
    except ImportError as exc:
        return f"pyroute2 is not installed ({exc}); {INSTALL_HINT}"
    return None


def _iptables(op: str) -> None:
    argv = ["iptables", "-w", *(op if part == "{op}" else part for part in MASQUERADE)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PeerError(f"{' '.join(argv)}: {result.stderr.strip()}")


def pyroute2_setup(n: int) -> dict[str, float]:
    require_sandbox()
    check_size(n)
    from pyroute2 import IPRoute  # type: ignore[import-untyped, unused-ignore]

    with IPRoute(groups=0) as ipr:
        ipr.link("add", ifname=BRIDGE, kind="bridge")
        (bridge,) = ipr.link_lookup(ifname=BRIDGE)
        ipr.addr("add", index=bridge, address=str(GATEWAY), prefixlen=PREFIX)
        ipr.link("set", index=bridge, state="up")
        PYROUTE2_STATE.mkdir(parents=True, exist_ok=True)
        (PYROUTE2_STATE / "ip_forward").write_text(Path(IP_FORWARD).read_text())
        Path(IP_FORWARD).write_text("1\n")
        for i in range(1, n + 1):
            name = ns_name(i)
            with IPRoute(netns=name, flags=os.O_CREAT | os.O_EXCL, groups=0) as ns:
                ipr.link(
                    "add",
                    ifname=host_veth(i),
                    kind="veth",
                    peer={"ifname": inner_veth(i), "net_ns_fd": name},
                )
                (host,) = ipr.link_lookup(ifname=host_veth(i))
                ipr.link("set", index=host, master=bridge, state="up")
                (lo,) = ns.link_lookup(ifname="lo")
                ns.link("set", index=lo, state="up")
                (inner,) = ns.link_lookup(ifname=inner_veth(i))
                ns.addr("add", index=inner, address=str(ns_address(i)), prefixlen=PREFIX)
                ns.link("set", index=inner, state="up")
                ns.route("add", dst="default", gateway=str(GATEWAY))
    _iptables("-A")
    return {}


def pyroute2_teardown(n: int, timeout: float = 120.0) -> dict[str, float]:
    require_sandbox()
    check_size(n)
    from pyroute2 import IPRoute, netns  # type: ignore[import-untyped, unused-ignore]

    names = set(netns.listnetns())
    with IPRoute(groups=0) as ipr:
        for i in range(1, n + 1):
            if ns_name(i) in names:
                netns.remove(ns_name(i))
        _iptables("-D")
        saved = PYROUTE2_STATE / "ip_forward"
        if saved.exists():
            Path(IP_FORWARD).write_text(saved.read_text())
            saved.unlink()
        PYROUTE2_STATE.rmdir()
        # the kernel removes a deleted namespace's veths (and so their host ends) in a batch
        wanted = {host_veth(i) for i in range(1, n + 1)}
        deadline = time.monotonic() + timeout
        while True:
            left = {link.get("ifname") for link in ipr.get_links()} & wanted
            if not left:
                break
            if time.monotonic() > deadline:
                raise PeerError(f"{len(left)} veth(s) still present after {timeout} s")
            time.sleep(0.02)
        bridges = ipr.link_lookup(ifname=BRIDGE)
        if bridges:
            ipr.link("del", index=bridges[0])
    return {}


METHODS = {
    "cni": (cni_setup, cni_teardown),
    "pyroute2": (pyroute2_setup, pyroute2_teardown),
}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in METHODS or argv[1] not in ("setup", "teardown"):
        sys.stderr.write("usage: python -m bench.peers cni|pyroute2 setup|teardown N\n")
        return 2
    if argv[0] == "pyroute2" and (problem := pyroute2_missing()):
        sys.stderr.write(problem + "\n")
        return 1
    start = time.perf_counter()
    setup, teardown = METHODS[argv[0]]
    phases = (setup if argv[1] == "setup" else teardown)(int(argv[2]))
    phases["total (in process)"] = time.perf_counter() - start
    sys.stdout.write(json.dumps(phases) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
