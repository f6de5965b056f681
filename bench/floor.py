"""The floor (method f): the benchmark's network built and removed by ONE Python process that
uses only the standard library and talks rtnetlink itself, with messages packed by hand.

Per namespace, setup does what `ip netns add`, `ip link add ... type veth peer ... netns`,
`ip link set ... master br0 up`, `ip addr add` and `ip route add default via` do, without a
single fork:

  1. the namespace, as iproute2 makes it: an empty /run/netns/NAME, unshare(CLONE_NEWNET) in
     this (single) thread, a bind mount of /proc/thread-self/ns/net on the file; a netlink
     socket opened now belongs to the new namespace for good; setns() back to the root one;
  2. one RTM_NEWLINK in the root namespace that creates the veth pair: the host end with
     IFLA_MASTER=br0 and IFF_UP, the peer (VETH_INFO_PEER) put straight into the namespace by
     IFLA_NET_NS_FD, with ifindex 2 (the first free one in a new namespace) and IFF_UP; both
     ends with IFLA_AF_SPEC/IFLA_INET6_ADDR_GEN_MODE = NONE (no IPv6 autoconfiguration);
  3. one send of three messages on the namespace's socket: lo up, RTM_NEWADDR, RTM_NEWROUTE
     (default via the gateway); the three ACKs are collected.

Once per setup: /run/netns made a shared mount (as iproute2 does), bridge br0 (up, IPv6 off)
and its address, net.ipv4.ip_forward=1 (the old value is kept for teardown), and one
`iptables -t nat -A POSTROUTING ... -j MASQUERADE` (the one program run).

Teardown: subscribe to link notifications; for each namespace umount2(MNT_DETACH) and unlink
/run/netns/NAME (what `ip netns delete` does); delete the rule and restore ip_forward; wait until
the kernel's namespace cleanup has removed every host-side veth end (it deletes a dying
namespace's veths in one batch, far cheaper than one RTM_DELLINK each); delete br0.

Run as `python -m bench.floor setup N` / `teardown N`; prints its phase timings as JSON.
`setup --ipv6-autoconf N` leaves IPv6 address generation on, like every other method: the
benchmark's variant (g).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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

NETNS_DIR = "/run/netns"
STATE_DIR = Path("/run/nsgen/bench-floor")
"""Where setup keeps the previous ip_forward value for teardown (inside the sandbox's tmpfs)."""
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
MASQUERADE = [
    "iptables",
    "-w",
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
    f"bench-floor:{NAME}",
    "-j",
    "MASQUERADE",
]

# ---- kernel ABI constants (linux/netlink.h, rtnetlink.h, if_link.h, veth.h, sched.h, mount.h)
NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLM_F_DUMP = 0x300
NLM_F_CAPPED, NLM_F_ACK_TLVS, NLMSGERR_ATTR_MSG = 0x100, 0x200, 1
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 18, 20, 24
RTMGRP_LINK = 0x1
SOL_NETLINK, NETLINK_EXT_ACK = 270, 11
IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_AF_SPEC, IFLA_NET_NS_FD = 3, 10, 18, 26, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE = 8, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_OIF, RTA_GATEWAY = 4, 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
IFF_UP = 0x1
LOOPBACK_INDEX = 1
PEER_INDEX = 2
"""Index given to the veth end in its namespace: a new namespace holds only lo (index 1)."""
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED = 0x1000, 0x4000, 1 << 20
MNT_DETACH = 2
SO_RCVBUFFORCE = 33

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_NLMSGERR = struct.Struct("=i")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


class FloorError(RuntimeError):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise FloorError(f"{what}: {os.strerror(code)}")


# ---- message packing -------------------------------------------------------------------------


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def _str(kind: int, text: str) -> bytes:
    return _attr(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _no_ipv6_autoconf() -> bytes:
    """IFLA_AF_SPEC { AF_INET6 { IFLA_INET6_ADDR_GEN_MODE = NONE } }"""
    mode = _attr(IFLA_INET6_ADDR_GEN_MODE, struct.pack("=B", IN6_ADDR_GEN_MODE_NONE))
    return _attr(IFLA_AF_SPEC, _attr(socket.AF_INET6, mode))


def _ifinfo(index: int = 0, up: bool = False) -> bytes:
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, IFF_UP if up else 0)


def new_bridge(name: str) -> tuple[int, int, bytes]:
    body = (
        _ifinfo() + _str(IFLA_IFNAME, name) + _attr(IFLA_LINKINFO, _str(IFLA_INFO_KIND, "bridge"))
    )
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body


def new_veth(host_end: str, master: int, peer: str, peer_netns_fd: int) -> tuple[int, int, bytes]:
    """The pair in one message: the host end on the bridge, the peer in the namespace with
    ifindex PEER_INDEX; both down (see addrgen_none)."""
    peer_info = _ifinfo(PEER_INDEX) + _str(IFLA_IFNAME, peer) + _u32(IFLA_NET_NS_FD, peer_netns_fd)
    linkinfo = _str(IFLA_INFO_KIND, "veth") + _attr(
        IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info)
    )
    body = (
        _ifinfo()
        + _str(IFLA_IFNAME, host_end)
        + _u32(IFLA_MASTER, master)
        + _attr(IFLA_LINKINFO, linkinfo)
    )
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body


def _by(index: int, name: str | None) -> bytes:
    return _str(IFLA_IFNAME, name) if name is not None else b""


def addrgen_none(index: int = 0, name: str | None = None) -> tuple[int, int, bytes]:
    """IPv6 address generation off (`ip link set DEV addrgenmode none`). The kernel refuses
    IFLA_AF_SPEC in the message that creates a link (EAFNOSUPPORT), and applies it after the
    flags in a message that has both, so it is a message of its own, sent before the link is
    brought up. A link is named by index or, with index 0, by name."""
    return RTM_NEWLINK, 0, _ifinfo(index) + _by(index, name) + _no_ipv6_autoconf()


def link_up(index: int = 0, name: str | None = None) -> tuple[int, int, bytes]:
    return RTM_NEWLINK, 0, _ifinfo(index, up=True) + _by(index, name)


def del_link(index: int) -> tuple[int, int, bytes]:
    return RTM_DELLINK, 0, _ifinfo(index)


def new_addr(index: int, address: str, prefix: int) -> tuple[int, int, bytes]:
    packed = socket.inet_aton(address)
    body = (
        _IFADDRMSG.pack(socket.AF_INET, prefix, 0, RT_SCOPE_UNIVERSE, index)
        + _attr(IFA_LOCAL, packed)
        + _attr(IFA_ADDRESS, packed)
    )
    return RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body


def new_default_route(gateway: str, oif: int) -> tuple[int, int, bytes]:
    body = (
        _RTMSG.pack(
            socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
        )
        + _attr(RTA_GATEWAY, socket.inet_aton(gateway))
        + _u32(RTA_OIF, oif)
    )
    return RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body


def _attrs(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            return
        yield kind & 0x3FFF, data[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3


def _ext_ack(message: bytes, flags: int) -> str:
    """The kernel's extended-ACK text of an error message, as ': TEXT', or ''."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    offset = _NLMSGHDR.size + _NLMSGERR.size
    if not flags & NLM_F_CAPPED:  # the request's payload follows, then the TLVs
        (inner,) = struct.unpack_from("=I", message, offset)
        offset += (inner + 3) & ~3
    else:
        offset += _NLMSGHDR.size
    for attr, value in _attrs(message, offset):
        if attr == NLMSGERR_ATTR_MSG:
            return ": " + value.rstrip(b"\0").decode(errors="replace")
    return ""


# ---- a netlink socket ------------------------------------------------------------------------


class Netlink:
    """A NETLINK_ROUTE socket in the network namespace that was current when it was made."""

    def __init__(self, groups: int = 0, rcvbuf: int = 0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        self.sock.bind((0, groups))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, *messages: tuple[int, int, bytes], what: str) -> None:
        """Send the messages in one sendmsg, each asking for an ACK; collect every ACK and
        raise on the first error."""
        first = self.seq + 1
        chunks = []
        for kind, flags, body in messages:
            self.seq += 1
            chunks.append(
                _NLMSGHDR.pack(
                    _NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST | NLM_F_ACK, self.seq, 0
                )
                + body
            )
        self.sock.sendall(b"".join(chunks))
        pending = set(range(first, self.seq + 1))
        errors: list[str] = []
        while pending:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, flags, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if kind == NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    (code,) = _NLMSGERR.unpack_from(data, offset + _NLMSGHDR.size)
                    if code:
                        detail = _ext_ack(data[offset : offset + length], flags)
                        errors.append(
                            f"{what} (message {seq - first + 1}/{len(messages)}): "
                            f"{os.strerror(-code)}{detail}"
                        )
                offset += (length + 3) & ~3
        if errors:
            raise FloorError("; ".join(errors))

    def link_names(self) -> dict[str, int]:
        """Every link of the socket's namespace: name -> index (one RTM_GETLINK dump)."""
        self.seq += 1
        self.sock.sendall(
            _NLMSGHDR.pack(
                _NLMSGHDR.size + _IFINFOMSG.size,
                RTM_GETLINK,
                NLM_F_REQUEST | NLM_F_DUMP,
                self.seq,
                0,
            )
            + _ifinfo()
        )
        names: dict[str, int] = {}
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if seq == self.seq:
                    if kind == NLMSG_DONE:
                        return names
                    if kind == NLMSG_ERROR:
                        (code,) = _NLMSGERR.unpack_from(data, offset + _NLMSGHDR.size)
                        raise FloorError(f"dumping links: {os.strerror(-code)}")
                    if kind == RTM_NEWLINK:
                        body = data[offset + _NLMSGHDR.size : offset + length]
                        _, _, index, _, _ = _IFINFOMSG.unpack_from(body)
                        for attr, value in _attrs(body, _IFINFOMSG.size):
                            if attr == IFLA_IFNAME:
                                names[value.rstrip(b"\0").decode()] = index
                offset += (length + 3) & ~3

    def wait_deleted(self, names: set[str], timeout: float) -> None:
        """Wait (the socket being subscribed to RTMGRP_LINK) until RTM_DELLINK has been seen
        for every name; on a lost notification (ENOBUFS), recount with a dump."""
        deadline = time.monotonic() + timeout
        while names:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FloorError(
                    f"{len(names)} link(s) still present after {timeout} s, e.g. {sorted(names)[0]}"
                )
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                names &= set(self.link_names())
                continue
            finally:
                self.sock.settimeout(None)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
                if kind == RTM_DELLINK:
                    body = data[offset + _NLMSGHDR.size : offset + length]
                    for attr, value in _attrs(body, _IFINFOMSG.size):
                        if attr == IFLA_IFNAME:
                            names.discard(value.rstrip(b"\0").decode())
                offset += (length + 3) & ~3


# ---- namespaces ------------------------------------------------------------------------------


def make_netns_dir_shared() -> None:
    """What iproute2 does before its first `ip netns add`: /run/netns a shared mount (bound
    onto itself first if it is not a mount point), so that namespaces mounted in it show in
    other mount namespaces too."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    if _libc.mount(b"", NETNS_DIR.encode(), b"none", MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        _check(-1, f"making {NETNS_DIR} shared")
    _check(
        _libc.mount(NETNS_DIR.encode(), NETNS_DIR.encode(), b"none", MS_BIND | MS_REC, None),
        f"binding {NETNS_DIR} onto itself",
    )
    _check(
        _libc.mount(b"", NETNS_DIR.encode(), b"none", MS_SHARED | MS_REC, None),
        f"making {NETNS_DIR} shared",
    )


def new_netns(name: str, root_fd: int) -> tuple[int, Netlink]:
    """Create the named namespace (visible to `ip netns`), and return an fd of it and a netlink
    socket inside it; this thread is back in the root namespace (root_fd) on return."""
    path = f"{NETNS_DIR}/{name}"
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    try:
        _check(_libc.unshare(CLONE_NEWNET), f"unshare(CLONE_NEWNET) for {name}")
        try:
            _check(
                _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
                f"bind-mounting {path}",
            )
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            sock = Netlink()
        finally:
            _check(_libc.setns(root_fd, CLONE_NEWNET), "setns() back to the root namespace")
    except BaseException:
        _libc.umount2(path.encode(), MNT_DETACH)
        os.unlink(path)
        raise
    return fd, sock


def delete_netns(name: str) -> bool:
    """What `ip netns delete` does. False if it was not there."""
    path = f"{NETNS_DIR}/{name}"
    _libc.umount2(path.encode(), MNT_DETACH)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# ---- setup and teardown ----------------------------------------------------------------------


class Phases:
    """Seconds spent in each named phase (summed over namespaces)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def _iptables(op: str) -> None:
    argv = [op if part == "{op}" else part for part in MASQUERADE]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FloorError(f"{' '.join(argv)}: {result.stderr.strip()}")


def setup(n: int, ipv6_autoconf: bool = False) -> dict[str, float]:
    """Build the benchmark network for n namespaces. Returns phase timings (seconds).
    ipv6_autoconf=True leaves IPv6 address generation on, as every other method does (no
    addrgenmode messages): the variant (g), which shows what turning it off is worth."""
    require_sandbox()
    check_size(n)
    phases = Phases()

    def no_autoconf(index: int = 0, name: str | None = None) -> list[tuple[int, int, bytes]]:
        return [] if ipv6_autoconf else [addrgen_none(index, name)]

    root_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    root = Netlink()
    try:
        with phases("bridge, address, sysctl"):
            make_netns_dir_shared()
            root.request(
                new_bridge(BRIDGE),
                *no_autoconf(name=BRIDGE),
                link_up(name=BRIDGE),
                what=f"creating {BRIDGE}",
            )
            bridge = root.link_names()[BRIDGE]
            root.request(new_addr(bridge, str(GATEWAY), PREFIX), what=f"{GATEWAY} on {BRIDGE}")
            STATE_DIR.mkdir(parents=True, exist_ok=True)
            with open(IP_FORWARD, encoding="ascii") as current:
                (STATE_DIR / "ip_forward").write_text(current.read(), encoding="ascii")
            with open(IP_FORWARD, "w", encoding="ascii") as forward:
                forward.write("1\n")
        for i in range(1, n + 1):
            with phases("netns (unshare, bind mount, setns back)"):
                ns_fd, ns_sock = new_netns(ns_name(i), root_fd)
            try:
                with phases("veth pair, host end up (root side, one send)"):
                    root.request(
                        new_veth(host_veth(i), bridge, inner_veth(i), ns_fd),
                        *no_autoconf(name=host_veth(i)),
                        link_up(name=host_veth(i)),
                        what=f"creating veth {host_veth(i)} <-> {inner_veth(i)}",
                    )
                with phases("lo and veth up, address, route (namespace side, one send)"):
                    ns_sock.request(
                        link_up(LOOPBACK_INDEX),
                        *no_autoconf(PEER_INDEX),
                        link_up(PEER_INDEX),
                        new_addr(PEER_INDEX, str(ns_address(i)), PREFIX),
                        new_default_route(str(GATEWAY), PEER_INDEX),
                        what=f"configuring {ns_name(i)}",
                    )
            finally:
                os.close(ns_fd)
                ns_sock.close()
        with phases("iptables MASQUERADE (1 exec)"):
            _iptables("-A")
    finally:
        root.close()
        os.close(root_fd)
    return phases.seconds


def teardown(n: int, timeout: float = 120.0) -> dict[str, float]:
    """Remove what setup(n) built: namespaces (their veths go with them), rule, sysctl, br0."""
    require_sandbox()
    check_size(n)
    phases = Phases()
    events = Netlink(groups=RTMGRP_LINK, rcvbuf=8 << 20)
    root = Netlink()
    try:
        with phases("link dump"):
            present = root.link_names()
        expected = {host_veth(i) for i in range(1, n + 1)} & set(present)
        with phases("netns (umount, unlink)"):
            for i in range(1, n + 1):
                delete_netns(ns_name(i))
        with phases("iptables -D, ip_forward restored"):
            _iptables("-D")
            saved = STATE_DIR / "ip_forward"
            if saved.exists():
                with open(IP_FORWARD, "w", encoding="ascii") as forward:
                    forward.write(saved.read_text(encoding="ascii"))
                saved.unlink()
            STATE_DIR.rmdir()
        with phases("waiting for the kernel to remove the veths"):
            events.wait_deleted(expected, timeout)
        with phases("bridge"):
            if BRIDGE in present:
                root.request(del_link(present[BRIDGE]), what=f"deleting {BRIDGE}")
    finally:
        events.close()
        root.close()
    return phases.seconds


def main(argv: list[str]) -> int:
    keep_ipv6 = "--ipv6-autoconf" in argv
    argv = [a for a in argv if a != "--ipv6-autoconf"]
    if len(argv) != 2 or argv[0] not in ("setup", "teardown"):
        sys.stderr.write("usage: python -m bench.floor setup [--ipv6-autoconf] N | teardown N\n")
        return 2
    start = time.perf_counter()
    if argv[0] == "setup":
        phases = setup(int(argv[1]), ipv6_autoconf=keep_ipv6)
    else:
        phases = teardown(int(argv[1]))
    phases["total (in process)"] = time.perf_counter() - start
    sys.stdout.write(json.dumps(phases) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
