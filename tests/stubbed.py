"""Run rendered scripts under recording stand-ins, inside the sandbox, and read what they did.

The stand-ins (`ip`, `iptables`, `iptables-restore`, `iptables-save`, `ip6tables*`, `nft`,
`nsenter`, `bridge`, `sysctl`, `tc`, and for check.sh `timeout`, `ping`, `getent`, `socat`,
`ss`) come first on PATH. Each records its argv and every line it reads on stdin and succeeds
without changing anything; queries answer "absent" while setup.sh runs (so its preflight passes
and every step runs) and "present" while teardown.sh runs (so every undo command runs). A
command that bash cannot find is recorded too (a `command_not_found_handle` in BASH_ENV).

The scripts run in a mount namespace of their own inside the sandbox, where every mount is read-only
but fresh tmpfs copies of /etc/netns and /run/nsgen (nsgen's directories), /proc (the sandbox's
own /proc/sys, where root-namespace sysctls are written for real) and a results directory.
A write anywhere else fails with EROFS, which the stderr of the scripts then shows.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import run

STUBS = (
    "ip",
    "iptables",
    "iptables-restore",
    "iptables-save",
    "ip6tables",
    "ip6tables-restore",
    "ip6tables-save",
    "nft",
    "nsenter",
    "bridge",
    "sysctl",
    "tc",
    "timeout",
    "ping",
    "getent",
    "socat",
    "ss",
)

_STUB = r"""#!/bin/sh
# A stand-in (tests/stubbed.py): records argv and stdin, changes nothing, answers queries.
prog=${0##*/}
# A process ID is unique among the calls of one run (a stand-in exec'ed by `ip netns exec`
# keeps it, and takes the next number).
n=0
until mkdir "$NSGEN_STUB_LOG/call.$$.$n" 2>/dev/null; do
  n=$((n + 1))
  [ "$n" -lt 10 ] || exit 97
done
d="$NSGEN_STUB_LOG/call.$$.$n"
printf '%s\0' "$prog" "$@" >"$d/argv"
[ -t 0 ] || [ /dev/stdin -ef /dev/null ] || cat >"$d/stdin"
present=false
[ "$NSGEN_STUB_PHASE" = teardown ] && present=true
args=" $* "
answer() { if $present; then echo present; else exit 1; fi; }
case $prog in
  ip)
    case $args in
      " netns exec "*)  # a stand-in run inside answers for itself (check.sh's ss, timeout)
        shift 3
        if [ -L "${0%/*}/$1" ]; then exec "${0%/*}/$1" "$@"; fi ;;
      " -o link show ")
        echo "1: lo: <LOOPBACK,UP,LOWER_UP>"
        for link in $NSGEN_STUB_LINKS; do echo "2: $link: <BROADCAST,UP,LOWER_UP>"; done ;;
      *" -o addr show dev "*" scope global ")  # an external interface has its addresses
        dev=${args#* dev }; echo "2: ${dev%% *} inet 203.0.113.2/24 scope global" ;;
      *" link show dev "*|*" addr show "*|*" route show "*|*" neigh show "*) answer ;;
    esac ;;
  iptables|ip6tables)
    case $args in *" -C "*|*" -L "*) answer ;; esac ;;
  iptables-save|ip6tables-save)
    if $present; then cat "$NSGEN_STUB_SAVED"; fi ;;
  ss) echo "LISTEN 0 4096 0.0.0.0:1 0.0.0.0:*" ;;
  tc)  # an interface has the kernel's default qdisc, until teardown finds nsgen's
    case $args in
      *" qdisc show "*)
        if $present; then echo "qdisc tbf 1: root refcnt 2"; else echo "qdisc noqueue 0: root refcnt 2"; fi ;;
    esac ;;
  timeout)  # check.sh's tcp probe: the connection is made (in 1 ms)
    case $args in *"/dev/tcp/"*) echo "connected 1000" ;; esac ;;
esac
exit 0
"""

_BASH_ENV = r"""# Sourced by every non-interactive bash the scripts start (BASH_ENV): record a command
# that does not exist instead of only failing on it.
command_not_found_handle() {
  local d
  d=$(mktemp -d "$NSGEN_STUB_LOG/notfound.XXXXXXXX") && printf '%s\0' "$@" >"$d/argv"
  printf 'bash: %s: command not found\n' "$1" >&2
  return 127
}
"""

_INNER = r"""#!/usr/bin/env bash
# Runs setup.sh, check.sh and teardown.sh of $1 with the stand-ins of $2, in this mount
# namespace (made by `unshare --mount --propagation private`), with everything read-only
# but nsgen's directories, /proc and the results directory $1.
grep -q ' /run/netns .* nsgen-sandbox ' /proc/self/mountinfo || exit 99
set -u
R=$1 S=$2
mount --bind "$R" "$R" || exit 98
mount -t tmpfs -o mode=0755 nsgen-stubbed /etc/netns || exit 98
mount -t tmpfs -o mode=0755 nsgen-stubbed /run/nsgen || exit 98
mount -t tmpfs -o mode=0755 nsgen-stubbed /run/netns || exit 98
writable() {
  case $1 in "$R" | /etc/netns | /run/nsgen | /run/netns | /proc | /proc/* | /dev | /dev/pts) return 0 ;; esac
  return 1
}
# Per-mount read-only flags ("bind" in the options: the filesystem itself is left alone).
while read -r _ _ _ _ point _; do
  writable "$point" || mount -o remount,bind,ro "$point" 2>/dev/null
done </proc/self/mountinfo
# Only the topmost mount of a point matters (one stacked over another hides it).
declare -A top=()
while read -r _ _ _ _ point options _; do top[$point]=$options; done </proc/self/mountinfo
for point in "${!top[@]}"; do
  if ! writable "$point" && [[ ${top[$point]} != ro* ]]; then
    echo "$point is still writable" >"$R/not-read-only"
    exit 98
  fi
done
mkdir -p "$R/tmp" "$R/cwd" "$R/calls"
export PATH="$S:$PATH" NSGEN_STUB_LOG="$R/calls" NSGEN_STUB_SAVED="$R/iptables-save.txt"
export BASH_ENV="$S/.bash_env" TMPDIR="$R/tmp" HOME="$R/cwd"
cd "$R/cwd" || exit 98
for phase in setup check teardown; do
  # the stand-in `ip` creates no namespace: check.sh, which asks whether the namespaces it
  # probes from exist, finds placeholders for them (a stand-in answers in each)
  if [[ $phase == check ]]; then
    for netns in ${NSGEN_STUB_NAMESPACES:-}; do : >"/run/netns/$netns"; done
  fi
  # check.sh prints the records `nsgen check` reads
  NSGEN_CHECK_FORMAT=tsv NSGEN_STUB_PHASE=$phase \
    bash "$R/$phase.sh" </dev/null >"$R/$phase.out" 2>"$R/$phase.err"
  echo $? >"$R/$phase.rc"
  if [[ $phase == check ]]; then
    for netns in ${NSGEN_STUB_NAMESPACES:-}; do rm -f "/run/netns/$netns"; done
  fi
  mkdir -p "$R/after-$phase"
  cp -a /etc/netns "$R/after-$phase/etc-netns"
  cp -a /run/nsgen "$R/after-$phase/run-nsgen"
  while read -r key; do
    [[ -n $key ]] && printf '%s %s\n' "$key" "$(cat "/proc/sys/${key//.//}" 2>&1)"
  done <"$R/sysctl-keys" >"$R/after-$phase/sysctls"
done
exit 0
"""


def install_stubs(directory: Path) -> Path:
    """Write the stand-ins, BASH_ENV and the runner into `directory`; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    stub = directory / ".stub"
    stub.write_text(_STUB)
    stub.chmod(0o755)
    for name in STUBS:
        (directory / name).symlink_to(".stub")
    (directory / ".bash_env").write_text(_BASH_ENV)
    (directory / ".inner").write_text(_INNER)
    return directory


@dataclass(frozen=True)
class Call:
    """One recorded run of a stand-in (or of a command bash could not find)."""

    argv: tuple[str, ...]
    stdin: str
    found: bool = True


@dataclass
class Run:
    """What the three scripts did: exit codes, output, the stand-ins' calls, the files in
    /etc/netns and /run/nsgen and the root-namespace sysctls after each phase."""

    codes: dict[str, int]
    stdout: dict[str, str]
    stderr: dict[str, str]
    calls: list[Call]
    files: dict[str, dict[str, bytes]]
    sysctls: dict[str, dict[str, str]]
    leftovers: list[str] = field(default_factory=list)
    """Anything found in the scratch directories (TMPDIR, the working directory)."""


def _files(root: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            found[str(path.relative_to(root))] = path.read_bytes()
        for name in dirnames:
            path = Path(dirpath, name)
            if not any(path.iterdir()):
                found[str(path.relative_to(root)) + "/"] = b""
    return found


def run_stubbed(
    scripts: dict[str, str],
    stubs: Path,
    links: list[str],
    sysctl_keys: list[str],
    saved: str,
    namespaces: list[str] | None = None,
) -> Run:
    """Run setup.sh, check.sh and teardown.sh under the stand-ins in `stubs`; `links` are the
    root namespace's links they list (the external interfaces), `sysctl_keys` the root
    sysctls to read after each phase, `saved` what iptables-save prints during teardown."""
    results = Path(tempfile.mkdtemp(prefix="nsgen-stubbed-"))
    try:
        for name in ("setup.sh", "check.sh", "teardown.sh"):
            (results / name).write_text(scripts[name])
        (results / "sysctl-keys").write_text("".join(f"{k}\n" for k in sysctl_keys))
        (results / "iptables-save.txt").write_text(saved)
        env = {
            **os.environ,
            "NSGEN_STUB_LINKS": " ".join(links),
            "NSGEN_STUB_NAMESPACES": " ".join(namespaces or []),
        }
        done = run(
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "bash",
            str(stubs / ".inner"),
            str(results),
            str(stubs),
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, (
            f"the stubbed run did not complete (exit {done.returncode}): {done.stderr}"
            + _read(results / "not-read-only")
        )
        phases = ("setup", "check", "teardown")
        calls = []
        for record in sorted((results / "calls").iterdir()):
            argv = tuple(_read(record / "argv").split("\0")[:-1])
            stdin = _read(record / "stdin")
            calls.append(Call(argv, stdin, found=not record.name.startswith("notfound.")))
        sysctls = {}
        for phase in phases:
            lines = _read(results / f"after-{phase}" / "sysctls").splitlines()
            sysctls[phase] = dict(line.split(" ", 1) for line in lines)
        return Run(
            codes={p: int(_read(results / f"{p}.rc")) for p in phases},
            stdout={p: _read(results / f"{p}.out") for p in phases},
            stderr={p: _read(results / f"{p}.err") for p in phases},
            calls=calls,
            files={
                p: {
                    **_prefixed("/etc/netns/", _files(results / f"after-{p}" / "etc-netns")),
                    **_prefixed("/run/nsgen/", _files(results / f"after-{p}" / "run-nsgen")),
                }
                for p in phases
            },
            sysctls=sysctls,
            leftovers=[str(p) for d in ("tmp", "cwd") for p in (results / d).rglob("*")],
        )
    finally:
        shutil.rmtree(results)


def _prefixed(prefix: str, files: dict[str, bytes]) -> dict[str, bytes]:
    return {prefix + name: data for name, data in files.items()}


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return ""


# ---- where a value may appear ---------------------------------------------------------------

SHELL_OPERATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "|&"}


def command_words(argv: tuple[str, ...]) -> list[str]:
    """Every word of a recorded call that a program would run as a command: the program
    itself, and the commands it starts in turn (`ip netns exec NS CMD`, `nsenter ... CMD`,
    `timeout S CMD`, and the commands of `bash -c CODE`)."""
    if not argv:
        return []
    words = [argv[0]]
    program, args = os.path.basename(argv[0]), list(argv[1:])
    if program == "ip":
        if args[:2] == ["netns", "exec"] and len(args) > 3:
            words += command_words(tuple(args[3:]))
    elif program == "nsenter":
        rest = [a for a in args if not a.startswith("-")]
        if rest:
            at = args.index(rest[0])
            words += command_words(tuple(args[at:]))
    elif program == "timeout":
        rest = [a for a in args if not a.startswith("-")]
        if len(rest) > 1:
            at = args.index(rest[0]) + 1
            words += command_words(tuple(args[at:]))
    elif program in ("bash", "sh") and "-c" in args:
        at = args.index("-c")
        if at + 1 < len(args):
            words += shell_command_words(args[at + 1])
    return words


def shell_command_words(code: str) -> list[str]:
    """The command words of a line of shell code (the first word of each simple command)."""
    lexer = shlex.shlex(code, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    start = True
    for token in lexer:
        if token in SHELL_OPERATORS:
            start = True
        elif start:
            words.append(token)
            start = False
    return words


def shell_redirect_targets(code: str) -> list[str]:
    """The files a line of shell code redirects to or from."""
    lexer = shlex.shlex(code, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    targets = [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if set(t) <= set("<>&") and t]
    # not files: a descriptor (`<&3`, `2>&1`, `>&-`) and the `<=` of an arithmetic test
    return [target for target in targets if not (target.isdigit() or target in ("-", "="))]


def innermost(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The command a wrapper call finally runs (ip netns exec / nsenter / timeout unwrapped)."""
    program, args = os.path.basename(argv[0]), list(argv[1:])
    if program == "ip" and args[:2] == ["netns", "exec"] and len(args) > 3:
        return innermost(tuple(args[3:]))
    if program in ("nsenter", "timeout"):
        rest = [a for a in args if not a.startswith("-")]
        skip = 0 if program == "nsenter" else 1
        if len(rest) > skip:
            return innermost(tuple(args[args.index(rest[skip]) :]))
    return argv
