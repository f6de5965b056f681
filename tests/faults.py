"""Fault injection without product hooks: stand-in `ip`, `bridge`, `tc`, `iptables`,
`iptables-restore`, `ip6tables`, `ip6tables-restore` and `nft` placed early on PATH.

Each stand-in counts the calls that would change state (ip/bridge/tc ... add/del/set/...,
`ip -b` batches, ip(6)tables -A/-D/-I/-N/-X/-F/-P/-R, every ip(6)tables-restore, nft -f and
nft add/create/insert/delete/... ) in a shared counter file and fails the one whose number is
$NSGEN_FAIL_AT, with exit status 2 and a message, as a real failing command would; calls whose
arguments match the regex $NSGEN_FAIL_MATCH fail every time. $NSGEN_SLOW (seconds) delays
every state-changing call. Every other call runs the real program. Read-only calls (show,
list, -C, -L, -S; nft list) are never failed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_STAND_IN = """#!/bin/bash
# stand-in for {real}: fails the state-changing call number $NSGEN_FAIL_AT
args=("$@")
mutating=0
{classify}
if ((mutating)); then
  exec 9>>"$NSGEN_FAULT_COUNTER.lock"   # steps may run side by side: count under a lock
  flock 9
  count=$(( $(cat "$NSGEN_FAULT_COUNTER" 2>/dev/null || echo 0) + 1 ))
  echo "$count" >"$NSGEN_FAULT_COUNTER"
  exec 9>&-
  if [[ $count == "${{NSGEN_FAIL_AT:-0}}" ]]; then
    echo "{name}: injected fault on state-changing call $count: {name} $*" >&2
    exit 2
  fi
  if [[ -n ${{NSGEN_FAIL_MATCH:-}} && "$*" =~ $NSGEN_FAIL_MATCH ]]; then
    echo "{name}: injected persistent fault: {name} $*" >&2
    exit 2
  fi
  if [[ -n ${{NSGEN_SLOW:-}} ]]; then sleep "$NSGEN_SLOW"; fi
fi
exec {real} "$@"
"""

_CLASSIFY_IP = """words=" ${args[*]} "
if [[ $words == *" netns exec "* ]]; then
  mutating=0   # the command it runs is counted by itself
elif [[ $words =~ \\ (add|del|delete|set|change|replace|flush|attach|append)\\  ]]; then
  mutating=1
elif [[ $words == *" -b "* || $words == *" -batch "* || $words == *" -force "* ]]; then
  mutating=1   # a batch read from a file or stdin
fi"""

_CLASSIFY_RESTORE = """mutating=1"""

_CLASSIFY_IPTABLES = """for a in "${args[@]}"; do
  case $a in -A|-D|-I|-N|-X|-F|-P|-R|-Z) mutating=1 ;; esac
done"""

_CLASSIFY_NFT = r"""command=""
for a in "${args[@]}"; do
  case $a in
    -f|--file) mutating=1 ;;   # a whole file (or stdin) of commands: one transaction
    -*) ;;
    *) command+="$a " ;;
  esac
done
case $command in
  add\ *|create\ *|insert\ *|replace\ *|delete\ *|destroy\ *|flush\ *|reset\ *) mutating=1 ;;
esac"""


def install_stand_ins(directory: Path) -> dict[str, str]:
    """Write the stand-ins into `directory`; return the environment that puts them first."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, classify in (
        ("ip", _CLASSIFY_IP),
        ("bridge", _CLASSIFY_IP),
        ("tc", _CLASSIFY_IP),
        ("iptables", _CLASSIFY_IPTABLES),
        ("iptables-restore", _CLASSIFY_RESTORE),
        ("ip6tables", _CLASSIFY_IPTABLES),
        ("ip6tables-restore", _CLASSIFY_RESTORE),
        ("nft", _CLASSIFY_NFT),
    ):
        real = shutil.which(name)
        assert real, f"{name} is not installed"
        path = directory / name
        path.write_text(_STAND_IN.format(real=real, name=name, classify=classify))
        path.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{directory}:{env['PATH']}"
    env["NSGEN_FAULT_COUNTER"] = str(directory / "count")
    return env


def fail_at(env: dict[str, str], k: int) -> dict[str, str]:
    """The environment for a run that fails state-changing call k (0: none), counter reset."""
    Path(env["NSGEN_FAULT_COUNTER"]).unlink(missing_ok=True)
    return {**env, "NSGEN_FAIL_AT": str(k)}


def calls_made(env: dict[str, str]) -> int:
    counter = Path(env["NSGEN_FAULT_COUNTER"])
    return int(counter.read_text()) if counter.exists() else 0
