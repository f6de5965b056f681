"""A snapshot of all network state nsgen could touch, for before/after comparisons: for every
namespace (the root one and each named one) what each kind of object reads for it
(nsgen.kinds, `snapshot`: links, addresses, routes of every table, permanent neighbours,
tunnel FDB entries, queueing disciplines, firewall rules, sysctls), `ip netns list`, and the
machine-wide files (under /etc/netns and /run/nsgen)."""

from __future__ import annotations

import json
from typing import Any

from nsgen.fields import HOST
from nsgen.kinds.registry import KINDS
from nsgen.live import LiveState


def namespace_state(netns: str | None, live: LiveState | None = None) -> dict[str, Any]:
    """What every kind reads in one namespace (None: the root one), keys in a fixed order."""
    live = live or LiveState()
    space = netns or HOST
    state: dict[str, Any] = {}
    for kind in KINDS:
        for key, value in kind.snapshot(live, space).items():
            state.setdefault(key, value)
    return state


def take_snapshot(live: LiveState | None = None) -> dict[str, Any]:
    """Everything above, for the root namespace and every named one."""
    live = live or LiveState()
    snapshot: dict[str, Any] = {
        "netns_list": live.netns_list(),
        "root": namespace_state(None, live),
        "namespaces": {name: namespace_state(name, live) for name in live.named_namespaces()},
    }
    for kind in KINDS:
        for key, value in kind.snapshot_host(live).items():
            snapshot.setdefault(key, value)
    snapshot["run_nsgen"] = live.files_under(str(live.state_root))
    return snapshot


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
