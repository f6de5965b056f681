"""A private sandbox for everything that changes network state: a fresh network namespace and
mount namespace, with private tmpfs copies of /run/netns, /etc/netns and /run/nsgen.

Used by `nsgen lab`, `make demo` and the integration tests. Code that changes network state
calls `require_sandbox()` first: it checks (it does not assume) that it runs inside one.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nsgen import kernel
from nsgen.errors import NotInSandboxError, NsgenError

MARKER = "nsgen-sandbox"
"""Source name of the sandbox's tmpfs mounts: visible in /proc/self/mountinfo."""

PRIVATE_DIRS = ("/run/netns", "/etc/netns", "/run/nsgen")

LABS_DIR = "/run/nsgen-labs"
"""Where the records of detached labs live (nsgen.labs), outside their sandboxes. A sandbox
made with `private_labs` (the tests') gets a tmpfs of its own here, so the labs its tests
start never reach the machine's list."""


def _check(result: int, what: str) -> None:
    try:
        kernel.check(result, what)
    except OSError as error:
        raise NsgenError(f"sandbox: {error.strerror}") from None


def _sandbox_mounts() -> set[str]:
    """Mount points whose source is the sandbox marker, read from /proc/self/mountinfo."""
    points = set()
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            before, _, after = line.partition(" - ")
            fields, tail = before.split(), after.split()
            if len(fields) >= 5 and len(tail) >= 2 and tail[1] == MARKER:
                points.add(fields[4])
    return points


NETNS_MARKER = "/run/nsgen/.sandbox-netns"
"""Written when a sandbox is made: the inode of its network namespace. /run/nsgen is the
sandbox's own tmpfs, so the file cannot be found outside one."""


def _netns_inode(path: str = "/proc/self/ns/net") -> int:
    return os.stat(path).st_ino


def _own_netns_is_the_sandbox() -> bool:
    try:
        with open(NETNS_MARKER, encoding="ascii") as marker:
            recorded = int(marker.read().strip())
    except (OSError, ValueError):
        return False
    if recorded != _netns_inode():
        return False
    try:  # where PID 1's namespace can be seen, it must be another one
        return _netns_inode("/proc/1/ns/net") != recorded
    except OSError:
        return True


def inside_sandbox() -> bool:
    """True only if every private directory is a sandbox tmpfs and this process's network
    namespace is the one that sandbox was made with."""
    return set(PRIVATE_DIRS) <= _sandbox_mounts() and _own_netns_is_the_sandbox()


def require_sandbox() -> None:
    """Fail closed: raise unless this process is inside an nsgen sandbox."""
    if not inside_sandbox():
        raise NotInSandboxError(
            "refusing to change network state: not inside an nsgen sandbox (expected private "
            f"{', '.join(PRIVATE_DIRS)} mounts named {MARKER!r} and a network namespace of its own)"
        )


def enter_sandbox(private_labs: bool = False) -> None:
    """Move the calling process (which must be single-threaded) into a new sandbox; with
    `private_labs`, with a private LABS_DIR too."""
    if os.geteuid() != 0:
        raise NsgenError("sandbox: needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    private = PRIVATE_DIRS + ((LABS_DIR,) if private_labs else ())
    for path in private:
        os.makedirs(path, exist_ok=True)  # the mount points; empty directories on the host
    outside = _netns_inode()
    libc = kernel.libc()
    _check(libc.unshare(kernel.CLONE_NEWNET | kernel.CLONE_NEWNS), "unshare(network, mount)")
    _check(
        libc.mount(None, b"/", None, kernel.MS_REC | kernel.MS_PRIVATE, None), "making / private"
    )
    for path in private:
        _check(
            libc.mount(MARKER.encode(), path.encode(), b"tmpfs", 0, b"mode=0755"),
            f"mounting a tmpfs on {path}",
        )
    inside = _netns_inode()
    if inside == outside:
        raise NsgenError("sandbox: unshare left the network namespace unchanged")
    with open(NETNS_MARKER, "w", encoding="ascii") as marker:
        marker.write(f"{inside}\n")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    require_sandbox()


def run_in_sandbox(function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run function(*args, **kwargs) in a forked child inside a fresh sandbox (with a private
    LABS_DIR); the sandbox and everything in it vanish when the child exits. An exception in
    the child is re-raised here as an AssertionError carrying the child's traceback."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        status = 0
        try:
            enter_sandbox(private_labs=True)
            function(*args, **kwargs)
        except BaseException:
            os.write(write_fd, traceback.format_exc().encode())
            status = 1
        finally:
            os.close(write_fd)
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        report = pipe.read().decode(errors="replace")
    _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if code != 0:
        raise AssertionError(f"in the sandbox (exit {code}):\n{report}")


# ---- the simulated upstream --------------------------------------------------------------

UPSTREAM_NETNS = "nsgen-upstream"
INTERNET_HOST = "192.0.2.10"
"""An address on the simulated upstream that stands in for "a host on the internet"."""
INTERNET_HOST6 = "2001:db8:192::10"
"""The same host's IPv6 address (documentation prefix 2001:db8::/32)."""
DNS_SERVER = "198.51.100.53"
"""Where the simulated upstream answers DNS when asked to (dnsmasq)."""
DNS_SERVER6 = "2001:db8:198::53"
"""The same DNS server's IPv6 address."""
UPLINKS6 = "2001:db8:203::/48"
"""The stand-in uplinks' IPv6 prefixes: the Nth gets the Nth /64 (the upstream ::1, the
uplink ::2), as the Nth gets the Nth /28 of 203.0.113.0/24."""
TEST_ZONE = "example.test"

LAB_RESOLV_CONF = f"""\
# nsgen lab: every namespace without a resolv.conf of its own asks the simulated upstream.
# With --dns, dnsmasq answers there; without it nothing listens, and a lookup fails at once.
nameserver {DNS_SERVER}
options timeout:1 attempts:1
"""
LAB_RESOLV_SOURCE = "/run/nsgen/.lab-resolv.conf"


def use_lab_resolver() -> None:
    """Give the sandbox's mount namespace LAB_RESOLV_CONF as /etc/resolv.conf, so no name
    lookup in the lab waits on the machine's own resolver (which the lab cannot reach).
    Namespaces with DNS of their own keep it: `ip netns exec` mounts /etc/netns/NS/resolv.conf
    over this one. The file is bind-mounted from LAB_RESOLV_SOURCE, in the sandbox's own
    /run/nsgen (it must stay linked: the kernel mounts nothing over an unlinked file), and
    vanishes with the sandbox. A missing /etc/resolv.conf (or a symlink to nowhere) is left as
    it is: glibc then asks 127.0.0.1, which answers at once."""
    require_sandbox()
    target = os.path.realpath("/etc/resolv.conf")
    if not os.path.isfile(target):
        return
    with open(LAB_RESOLV_SOURCE, "w", encoding="ascii") as conf:
        conf.write(LAB_RESOLV_CONF)
    _check(
        kernel.libc().mount(
            LAB_RESOLV_SOURCE.encode(), target.encode(), None, kernel.MS_BIND, None
        ),
        f"bind-mounting the lab's resolv.conf over {target}",
    )


@dataclass
class Upstream:
    """Stand-ins for a topology's external interfaces, cabled to one upstream namespace."""

    netns: str = UPSTREAM_NETNS
    uplinks: dict[str, tuple[str, str]] = field(default_factory=dict)
    """external interface -> (its address, the upstream's address on that link)"""
    uplinks6: dict[str, tuple[str, str]] = field(default_factory=dict)
    """The same, IPv6."""
    dns_pid: int | None = None


def _ip(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    subprocess.run([*prefix, *args], check=True, capture_output=True, text=True)


def _wait_for_carrier(dev: str, netns: str | None = None, seconds: float = 5.0) -> None:
    """Wait (bounded) until a new link reports operstate UP, so snapshots see settled state."""
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = subprocess.run(
            [*prefix, "-o", "link", "show", "dev", dev], capture_output=True, text=True, check=True
        ).stdout
        if "state UP" in out:
            return
        time.sleep(0.01)
    raise NsgenError(f"sandbox: link {dev} did not come up within {seconds} s")


def build_upstream(external: list[str], routes_back: list[str] | None = None) -> Upstream:
    """Create the upstream namespace and, for each external interface name, a veth whose near
    end carries that name in the root namespace. Addresses come from 203.0.113.0/24 (one /28
    per uplink) and 2001:db8:203::/48 (one /64 per uplink); the upstream also owns 192.0.2.10,
    198.51.100.53, 2001:db8:192::10 and 2001:db8:198::53 on its loopback. The root namespace
    gets a default route of each family via the first uplink. `routes_back` are subnets (of
    either family) the upstream routes to the first uplink (by default none: private subnets
    need NAT, as on the internet).
    """
    require_sandbox()
    up = Upstream()
    _ip("netns", "add", up.netns)
    _ip("link", "set", "lo", "up", netns=up.netns)
    for address in (f"{INTERNET_HOST}/32", f"{DNS_SERVER}/32"):
        _ip("addr", "add", address, "dev", "lo", netns=up.netns)
    for address in (f"{INTERNET_HOST6}/128", f"{DNS_SERVER6}/128"):
        _ip("addr", "add", address, "dev", "lo", netns=up.netns)
    blocks = ipaddress.IPv4Network("203.0.113.0/24").subnets(new_prefix=28)
    blocks6 = ipaddress.IPv6Network(UPLINKS6).subnets(new_prefix=64)
    for index, name in enumerate(external):
        block, block6 = next(blocks), next(blocks6)
        near, far = str(block[2]), str(block[1])
        near6, far6 = str(block6[2]), str(block6[1])
        peer = f"up{index}"
        _ip("link", "add", name, "type", "veth", "peer", "name", peer, "netns", up.netns)
        # no IPv6 autoconfiguration: the stand-ins stay quiet and their state stays still;
        # their IPv6 addresses skip duplicate address detection, so they work at once
        _ip("link", "set", name, "addrgenmode", "none")
        _ip("link", "set", peer, "addrgenmode", "none", netns=up.netns)
        _ip("addr", "add", f"{near}/{block.prefixlen}", "dev", name)
        _ip("addr", "add", f"{near6}/64", "dev", name, "nodad")
        _ip("link", "set", name, "up")
        _ip("addr", "add", f"{far}/{block.prefixlen}", "dev", peer, netns=up.netns)
        _ip("addr", "add", f"{far6}/64", "dev", peer, "nodad", netns=up.netns)
        _ip("link", "set", peer, "up", netns=up.netns)
        up.uplinks[name] = (near, far)
        up.uplinks6[name] = (near6, far6)
        _wait_for_carrier(name)
        _wait_for_carrier(peer, netns=up.netns)
    if external:
        first_near, first_far = up.uplinks[external[0]]
        first_near6, first_far6 = up.uplinks6[external[0]]
        _ip("route", "add", "default", "via", first_far)
        _ip("-6", "route", "add", "default", "via", first_far6)
        for subnet in routes_back or []:
            via = first_near6 if ":" in subnet else first_near
            _ip("route", "add", subnet, "via", via, netns=up.netns)
    return up


def start_dns(up: Upstream, records: dict[str, str] | None = None, orphan: bool = False) -> None:
    """Start dnsmasq in the upstream namespace, answering only the test zone (never
    forwarding), on both DNS addresses. A record's value is ADDRESS or IPV4,IPV6.

    With `orphan`, dnsmasq is started through `setsid --fork`, so it is no child of this
    process: started in a detached lab's PID namespace, its parent is then the lab's keeper
    (PID 1 there), which reaps it, and it ends with the lab. stop_dns does not stop it."""
    # IPv4 only by default: `getent hosts` asks for IPv6 first, and callers expect 192.0.2.10
    records = records or {f"www.{TEST_ZONE}": INTERNET_HOST}
    args = [
        "ip",
        "netns",
        "exec",
        up.netns,
        *(["setsid", "--fork"] if orphan else []),
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        f"--listen-address={DNS_SERVER},{DNS_SERVER6}",
        "--user=root",
        "--pid-file=",
        f"--local=/{TEST_ZONE}/",
    ]
    args += [f"--host-record={name},{address}" for name, address in sorted(records.items())]
    if orphan:
        subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=10)
        return
    # a session of its own: a lab shell's ^C or a closed terminal must not reach it
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    up.dns_pid = process.pid
    _dns_processes[process.pid] = process


_dns_processes: dict[int, subprocess.Popen[bytes]] = {}


def stop_dns(up: Upstream) -> None:
    """Stop the dnsmasq this module started (by its PID), and wait for it."""
    if up.dns_pid is None:
        return
    process = _dns_processes.pop(up.dns_pid)
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    up.dns_pid = None


@contextmanager
def upstream(external: list[str], **kwargs: Any) -> Iterator[Upstream]:
    """build_upstream() for the duration of a with-block; its DNS server is stopped after."""
    up = build_upstream(external, **kwargs)
    try:
        yield up
    finally:
        stop_dns(up)
