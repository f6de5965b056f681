"""A snapshot of all network state nsgen could touch, for before/after comparisons: every
namespace's links, addresses and routes (`ip -j`), `ip netns list`, `iptables-save`, the
forwarding sysctls, and the files under /etc/netns and /run/nsgen."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/ipv4/conf/all/rp_filter",
)
_COUNTERS = re.compile(r"\[\d+:\d+\]")


def _run(args: list[str]) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def _in(netns: str | None, args: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *args] if netns else args


def _ip_json(netns: str | None, *args: str) -> Any:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    return json.loads(_run([*prefix, "-j", *args]) or "[]")


_BUILTIN_CHAIN = re.compile(r":(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT \[0:0\]")


def _iptables(netns: str | None) -> list[str]:
    """iptables-save without comments and counters. A table that holds only its built-in chains
    with ACCEPT policies and no rules is left out: that is how every table starts, and the
    nf_tables backend creates one on first use whether or not the caller removes its rules."""
    try:
        text = _run(_in(netns, ["iptables-save"]))
    except (FileNotFoundError, subprocess.CalledProcessError):
        return ["<iptables-save unavailable>"]
    lines = [_COUNTERS.sub("[0:0]", line) for line in text.splitlines() if not line.startswith("#")]
    kept: list[str] = []
    table: list[str] = []
    for line in lines:
        table.append(line)
        if line == "COMMIT":
            if not all(_BUILTIN_CHAIN.fullmatch(entry) for entry in table[1:-1]):
                kept.extend(table)
            table = []
    return kept + table


def _sysctls(netns: str | None) -> dict[str, str]:
    script = "; ".join(f"cat /proc/sys/{key}" for key in SYSCTLS)
    values = _run(_in(netns, ["sh", "-c", script])).split()
    return dict(zip(SYSCTLS, values, strict=True))


def _files(root: str) -> dict[str, str]:
    found: dict[str, str] = {}
    base = Path(root)
    if not base.exists():
        return found
    for dirpath, dirnames, filenames in os.walk(base):
        for name in sorted(dirnames):
            found[str(Path(dirpath, name).relative_to(base)) + "/"] = ""
        for name in sorted(filenames):
            path = Path(dirpath, name)
            try:
                found[str(path.relative_to(base))] = path.read_text(errors="replace")
            except OSError as exc:
                found[str(path.relative_to(base))] = f"<unreadable: {exc}>"
    return found


def namespace_state(netns: str | None) -> dict[str, Any]:
    """Links, addresses, routes (all tables, both families), rules and sysctls of one namespace."""
    return {
        "link": {link["ifname"]: link for link in _ip_json(netns, "link", "show")},
        "addr": {
            link["ifname"]: link.get("addr_info", []) for link in _ip_json(netns, "addr", "show")
        },
        "route4": _ip_json(netns, "-4", "route", "show", "table", "all"),
        "route6": _ip_json(netns, "-6", "route", "show", "table", "all"),
        "iptables": _iptables(netns),
        "sysctl": _sysctls(netns),
    }


def take_snapshot() -> dict[str, Any]:
    """Everything above, for the root namespace and every named one."""
    names = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    return {
        "netns_list": _run(["ip", "netns", "list"]).splitlines(),
        "root": namespace_state(None),
        "namespaces": {name: namespace_state(name) for name in names},
        "etc_netns": _files("/etc/netns"),
        "run_nsgen": _files("/run/nsgen"),
    }


def diff_snapshots(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Human-readable differences between two snapshots (empty when they are equal)."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                if key not in a:
                    out.append(f"{path}/{key}: added {json.dumps(b[key])[:300]}")
                elif key not in b:
                    out.append(f"{path}/{key}: removed {json.dumps(a[key])[:300]}")
                else:
                    walk(a[key], b[key], f"{path}/{key}")
        elif a != b:
            out.append(f"{path}: {json.dumps(a)[:300]} -> {json.dumps(b)[:300]}")

    walk(before, after, "")
    return out
