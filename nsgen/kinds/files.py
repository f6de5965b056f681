"""Files: a named namespace's resolv.conf and hosts, written under /etc/netns/<namespace>/,
which `ip netns exec` shows to the namespace's programs as /etc/resolv.conf and /etc/hosts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsgen.kinds.base import Args, Kind, PlanContext, Planned, Precondition, Step

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.status import Observer

TEMPLATE = "kinds/files.j2"


@dataclass(frozen=True)
class DnsArgs(Args):
    files: tuple[tuple[str, tuple[str, ...]], ...]
    """(file name, its lines) for each file written."""

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f"/etc/netns/{self.netns}/{name}" for name, _ in self.files)


@dataclass(frozen=True)
class FileAbsent(Args):
    path: str


class DnsKind(Kind):
    name = "dns"
    template = TEMPLATE
    lane = "file"
    group = "own"
    enters = False
    summary = "DNS files"
    rows = ("dns",)
    preflight = ("file_absent",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.namespaces.items():
            if spec.dns is None:
                continue
            files: list[tuple[str, tuple[str, ...]]] = []
            resolv = [f"nameserver {ns}" for ns in spec.dns.nameservers]
            if spec.dns.search:
                resolv.append("search " + " ".join(spec.dns.search))
            if resolv:
                files.append(("resolv.conf", tuple(resolv)))
            if spec.dns.hosts:
                hosts = ["127.0.0.1 localhost", "::1 localhost"]
                for name, addresses in spec.dns.hosts.items():
                    listed = addresses if isinstance(addresses, list) else [addresses]
                    hosts += [f"{address} {name}" for address in listed]
                files.append(("hosts", tuple(hosts)))
            if not files:
                continue
            args = DnsArgs(netns, tuple(files))
            yield Step(
                "dns",
                f"write {', '.join(args.paths)}",
                f"'ip netns exec {netns}' shows files in /etc/netns/{netns}/ in place of the "
                "host's /etc files, so programs in the namespace resolve names with these.",
                args,
            )
            for path in args.paths:
                yield Precondition("file_absent", TEMPLATE, FileAbsent(netns, path))

    def observe(self, step: Step, status: Observer) -> None:
        # The files live on the host's file system: they are checked whether or not the
        # namespace exists.
        a = step.args
        assert isinstance(a, DnsArgs)
        for (_, lines), path in zip(a.files, a.paths, strict=True):
            status.file_row("dns", a.netns, path, "".join(f"{line}\n" for line in lines))

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return {}  # the files: machine-wide, see snapshot_host

    def snapshot_host(self, live: LiveState) -> dict[str, Any]:
        return {"etc_netns": live.files_under("/etc/netns")}
