"""Hostile input never hurts: whatever bytes a topology file holds, `nsgen validate` (the real
command, in its own process, under a memory limit and a timeout) answers within a second or
two of CPU with exit 1 (2 for a file it cannot read) and a few lines on stderr, each
`FILE[:LINE:COLUMN]: [path: ]reason`, one printable line of readable length; never a
traceback, a hang or a memory blow-up.

The classes come from issue 10 §7: typed scalars and tags, deep nesting, control characters,
alias bombs, values of any length, files of any size or kind. A hypothesis test then throws
random YAML structure and tags at the loader."""

from __future__ import annotations

import copy
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nsgen.cli import app
from nsgen.document import MAX_BYTES, MAX_DEPTH, MAX_ENTRIES, MAX_VALUES, _node_bound
from nsgen.errors import TopologyError, UsageError
from nsgen.load import _cannot, load_topology
from nsgen.model import Namespace

MEMORY_LIMIT = 768 * 2**20
"""Address space the command may use: a few times what a valid 5,000-namespace file needs."""
CPU_LIMIT = 5.0
"""CPU seconds the command may use on hostile input: a second or two and the start-up on an
idle machine (many-cross-problems, nearest the limits, takes about 2 s), with room for
a machine busy with other work, where CPU time stretches too."""
WALL_LIMIT = 30
"""A hang guard only: the machine running the tests may be busy."""

LINE = re.compile(r"^(?P<file>[^:]+)(?::(?P<line>\d+):(?P<column>\d+))?: (?P<rest>.+)$")


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    cpu: float


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def validate(arg: str | Path, stdin: bytes | None = None) -> Outcome:
    """`nsgen validate ARG` in a process of its own, with its CPU time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [sys.executable, "-m", "nsgen", "validate", str(arg)],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=WALL_LIMIT,
        preexec_fn=_limits,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Outcome(
        result.returncode,
        result.stdout.decode("utf-8", "replace"),
        result.stderr.decode("utf-8", "replace"),
        cpu,
    )


def validate_here(arg: str | Path, stdin: bytes | None = None) -> Outcome:
    """`nsgen validate ARG` in this process, with its CPU time."""
    started = time.process_time()
    result = CliRunner().invoke(app, ["validate", str(arg)], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr, time.process_time() - started)


def assert_refused(outcome: Outcome, name: str, code: int = 1, most_lines: int = 101) -> list[str]:
    """Refused as promised: `code`, nothing on stdout, a few clean lines naming `name`."""
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    assert outcome.code == code, (outcome.code, outcome.stderr[-2000:])
    assert outcome.stdout == ""
    assert outcome.cpu < CPU_LIMIT, f"{outcome.cpu:.1f} s of CPU"
    lines = outcome.stderr.splitlines()
    assert 1 <= len(lines) <= most_lines, len(lines)
    for line in lines:
        match = LINE.match(line)
        assert match is not None and match["file"] == name, line[:300]
        assert line.isprintable() and len(line) < 600, line[:300]
    return lines


# ---- the classes of hostile YAML, each as a file -------------------------------------------

TAGGED = {
    "timestamp": "description: !!timestamp 2001-12-14t21:59:43.10-05:00\n",
    "bad-timestamp": "description: !!timestamp yesterday\n",
    "long-int-tag": "description: !!int " + "7" * 5000 + "\n",
    "long-int-plain": "checks: [{to: 10.0.0.1, kind: tcp, port: " + "7" * 5000 + "}]\n",
    "bad-int": "checks: [{to: 10.0.0.1, kind: tcp, port: !!int eighty}]\n",
    "float": "checks: [{to: 10.0.0.1, timeout: !!float soon}]\n",
    "float-inf": "checks: [{to: 10.0.0.1, timeout: .inf}]\n",
    "bool": "namespaces: {red: {loopback: !!bool perhaps}}\n",
    "binary": "description: !!binary aGVsbG8=\n",
    "bad-binary": "description: !!binary '!!!'\n",
    "set": "host: {external: !!set {eth0, eth1}}\n",
    "omap": "namespaces: !!omap [{red: {}}]\n",
    "pairs": "namespaces: !!pairs [{red: {}}]\n",
    "custom": "host: !mine {}\n",
    "python": "description: !!python/name:os.system ''\n",
    "python-object": "host: !!python/object/apply:os.system ['true']\n",
    "str-on-map": "host: !!str {a: 1}\n",
    "null-text": "host: !!null text\n",
    "merge-bad": "host: {<<: 5}\n",
    "verbatim": "description: !<tag:example.com,2000:x> y\n",
}


def _deep_block(depth: int) -> str:
    return "namespaces:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(depth))


def _bomb(where: str) -> str:
    layers = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i, name in enumerate("bcdefgh"):
        previous = "abcdefgh"[i]
        layers.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(layers) + "\n" + where.replace("BOMB", "*h") + "\n"


STRUCTURE = {
    "deep-flow-10000": "description: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "deep-flow-map-10000": "host: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
    "deep-block-seq-10000": "description:\n" + "- " * 10_000 + "x\n",
    "deep-block-map-2000": _deep_block(2000),
    "deep-just-over": _deep_block(MAX_DEPTH + 1),
    "bomb-description": _bomb("description: BOMB"),
    "bomb-namespaces": _bomb("namespaces: {red: {routes: BOMB}}"),
    "bomb-checks": _bomb("checks: BOMB"),
    "bomb-sysctls": _bomb("host: {sysctls: {net.ipv4.ip_forward: BOMB}}"),
    "bomb-keys": _bomb("namespaces: {red: {dns: {hosts: {x: BOMB}}}}"),
    "bomb-cluster": _bomb("cluster: {nodes: BOMB}"),
    "bomb-containers": _bomb("containers: {web: {publish: BOMB}}"),
    "alias-loop": "namespaces: &n {red: *n}\n",
    "alias-loop-list": "checks: &c [*c]\n",
    "alias-undefined": "host: *nowhere\n",
    "alias-text-bomb": "a: &a '"
    + "x" * 1_000_000
    + "'\n"
    + "namespaces:\n"
    + "".join(f"  n{i}: {{interfaces: [{{name: *a, peer: {{}}}}]}}\n" for i in range(20)),
    "long-values-aliased": "a: &a '"
    + "x" * 100_000
    + "'\nhost: {external: ["
    + ", ".join(["*a"] * 79)
    + "]}\n",
    "many-entries": "host:\n  external:\n" + "".join(f"  - e{i}\n" for i in range(MAX_ENTRIES + 1)),
    "many-values": "description: [" + ",".join(["a"] * (MAX_VALUES + 1)) + "]\n",
    "many-problems": "checks:\n" + "".join("- {x: 1}\n" for _ in range(MAX_ENTRIES - 1)),
    "many-cross-problems": "checks:\n"
    + "".join("- {from: host, to: 10.0.0.1, kind: tcp}\n" for _ in range(MAX_VALUES // 8)),
    "long-value": "namespaces: {red: {interfaces: [{name: " + "x" * 700_000 + ", peer: {}}]}}\n",
    "long-key": "namespaces:\n  " + "y" * 700_000 + ": {}\n",
    "long-number": "checks: [{to: 10.0.0.1, kind: tcp, port: " + "9" * 30 + "}]\n",
    "long-description-list": "description: [" + ", ".join(["word"] * 50_000) + "]\n",
    "complex-key": "namespaces: {? [a, b]: {}}\n",
    "two-documents": "host: {}\n---\nhost: {}\n",
    "tab": "host:\n\tbridges: {}\n",
    "tab-in-block-scalar": "description: |\n  x\n\ty\n",
}

CONTROL = {
    f"control-{code:02x}": f"description: a{chr(code)}b\n"
    for code in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]
}
CONTROL["bidi-override"] = "description: abc\u202edcba\n"
CONTROL["escaped-nul"] = 'description: "a\\0b"\nnamespaces: {"x\\0": {}}\n'
CONTROL["escaped-newline-in-key"] = 'namespaces: {"red\\nblue": {}}\n'
CONTROL["escape-sequence-in-name"] = 'name: "lab\\e[31m"\n'

HOSTILE = {**TAGGED, **STRUCTURE, **CONTROL}

IN_ITS_OWN_PROCESS = {
    *("deep-flow-10000", "deep-block-map-2000", "alias-loop", "alias-text-bomb"),
    *("bomb-description", "bomb-namespaces", "bomb-checks"),
    *("many-values", "many-entries", "many-problems", "many-cross-problems", "long-value"),
    *("long-int-tag", "set", "control-00"),
}
"""The cases run as a real command under the memory limit: one of each kind, and every one
whose size is the point. The rest run the same command in the test's process (a process
each would double the time of the quick suite)."""


@pytest.mark.parametrize("case", sorted(HOSTILE), ids=str)
def test_hostile_yaml_is_one_clear_refusal_within_limits(case: str, tmp_path: Path) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text("name: lab\n" + HOSTILE[case], encoding="utf-8")
    run = validate if case in IN_ITS_OWN_PROCESS else validate_here
    lines = assert_refused(run(path), str(path))
    if case.startswith(("deep", "bomb", "many-values", "many-entries", "alias")):
        assert len(lines) == 1, lines


@pytest.mark.parametrize("value", ["=", "2024-01-01", "2001-12-14 21:59:43.10 -5", "!", "&"])
def test_values_yaml_cannot_build_or_would_make_a_date_are_read_as_text(
    value: str, tmp_path: Path
) -> None:
    """PyYAML's SafeLoader fails on a bare '=' and turns an unquoted date into a date
    object; the topology format reads both as the text written."""
    path = tmp_path / "text.yaml"
    path.write_text(f"name: lab\ndescription: {value if value not in '!&' else repr(value)}\n")
    assert load_topology(path).description == value


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"name: caf\xe9\n", "not UTF-8 text: byte 0xe9"),
        ("name: lab\n".encode("utf-16"), "not UTF-8 text: byte 0xff"),
        (b"\x00" * 100, "control character '\\x00'"),
        (os.urandom(4096).replace(b"\n", b" "), ""),
    ],
    ids=["latin-1", "utf-16", "nul-bytes", "random-bytes"],
)
def test_bytes_that_are_not_yaml_text_are_refused_in_one_line(
    data: bytes, reason: str, tmp_path: Path
) -> None:
    path = tmp_path / "bytes.yaml"
    path.write_bytes(data)
    run = validate if not reason else validate_here  # random bytes: in a process of its own
    (line,) = assert_refused(run(path), str(path), most_lines=1)
    assert reason in line


def test_a_file_over_the_size_limit_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("name: lab\ndescription: " + "x" * MAX_BYTES + "\n")
    (line,) = assert_refused(validate(path), str(path))
    assert line == f"{path}: the file is larger than {MAX_BYTES // 2**20} MiB, the limit"


def test_an_endless_device_is_read_only_up_to_the_size_limit() -> None:
    (line,) = assert_refused(validate("/dev/zero"), "/dev/zero")
    assert line == f"/dev/zero: the file is larger than {MAX_BYTES // 2**20} MiB, the limit"


# ---- what is not a file to read --------------------------------------------------------------


def test_a_directory_is_one_plain_line_exit_2(tmp_path: Path) -> None:
    (line,) = assert_refused(validate_here(tmp_path), str(tmp_path), code=2)
    assert line == f"{tmp_path}: is a directory, not a topology file"


def test_a_fifo_with_no_writer_is_refused_at_once_not_waited_for(tmp_path: Path) -> None:
    fifo = tmp_path / "topo.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    (line,) = assert_refused(validate(fifo), str(fifo), code=2)
    assert line == f"{fifo}: is a FIFO with no writer: nothing to read"
    assert time.monotonic() - started < WALL_LIMIT


def test_a_fifo_with_a_writer_is_read_like_a_file(tmp_path: Path) -> None:
    fifo = tmp_path / "topo.yaml"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as out:  # blocks until nsgen opens the FIFO
            out.write("name: piped\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    outcome = validate(fifo)
    writer.join(timeout=WALL_LIMIT)
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.startswith(f"{fifo}: topology 'piped' is valid: ")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: socket.socket(socket.AF_UNIX).bind(str(p)), "no such device or address"),
        (lambda p: p.symlink_to(p), "too many levels of symbolic links"),
        (lambda p: None, "no such file"),
    ],
    ids=["socket", "symlink-loop", "missing"],
)
def test_a_path_that_cannot_be_opened_is_one_plain_line_exit_2(
    make: Callable[[Path], None], reason: str, tmp_path: Path
) -> None:
    path = tmp_path / "topo.yaml"
    make(path)
    (line,) = assert_refused(validate_here(path), str(path), code=2)
    assert line in (f"{path}: cannot read: {reason}", f"{path}: {reason}")


def test_an_unreadable_file_is_one_plain_line() -> None:
    """Tests run as root, who may read any file: the message is checked on the error itself."""
    error = PermissionError(13, "Permission denied", "topo.yaml")
    assert _cannot("topo.yaml", error) == "topo.yaml: cannot read: permission denied"


# ---- standard input --------------------------------------------------------------------------


def test_dash_reads_the_topology_from_stdin() -> None:
    outcome = validate("-", stdin=b"name: piped\nnamespaces: {red: {}}\n")
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.startswith("<stdin>: topology 'piped' is valid: 1 namespace(s)")


def test_problems_read_from_stdin_name_stdin_with_their_lines() -> None:
    outcome = validate_here("-", stdin=b"name: piped\nnamespaces:\n  red: {bogus: 1}\n")
    (line,) = assert_refused(outcome, "<stdin>")
    assert line == (
        "<stdin>:3:9: namespaces.red.bogus: unknown key 'bogus' (known keys: "
        + ", ".join(sorted(Namespace.model_fields))
        + ")"
    )


def test_hostile_stdin_is_refused_like_a_hostile_file() -> None:
    outcome = validate_here("-", stdin=("name: lab\n" + STRUCTURE["bomb-namespaces"]).encode())
    (line,) = assert_refused(outcome, "<stdin>")
    assert "the aliases here stand for more than" in line


# ---- real use stays inside the limits --------------------------------------------------------


def test_a_5000_namespace_topology_is_well_inside_the_limits(tmp_path: Path) -> None:
    namespaces = {
        f"ns{i}": {
            "interfaces": [
                {
                    "peer": {"bridge": "br0", "name": f"v{i}"},
                    "addresses": [f"10.1.{i // 250}.{i % 250 + 2}/16"],
                }
            ],
            "routes": [{"to": "default", "via": "10.1.0.1"}],
        }
        for i in range(5000)
    }
    data = {
        "name": "big",
        "host": {
            "external": ["eth0"],
            "bridges": {"br0": {"addresses": ["10.1.0.1/16"]}},
            "masquerade": [{"source": "10.1.0.0/16", "out": "eth0"}],
        },
        "namespaces": namespaces,
    }
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert path.stat().st_size < MAX_BYTES / 4
    outcome = validate(path)
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert "5000 namespace(s)" in outcome.stdout


# ---- random structure and tags, in process ---------------------------------------------------

TAGS = [
    "",
    "!!str ",
    "!!int ",
    "!!float ",
    "!!bool ",
    "!!null ",
    "!!binary ",
    "!!timestamp ",
    "!!set ",
    "!!omap ",
    "!!map ",
    "!!seq ",
    "!x ",
    "!<tag:x> ",
    "! ",
    "!!python/none ",
]
KEYS = [
    "name",
    "description",
    "host",
    "namespaces",
    "red",
    "interfaces",
    "peer",
    "bridge",
    "addresses",
    "routes",
    "to",
    "via",
    "checks",
    "from",
    "networks",
    "containers",
    "cluster",
    "nodes",
    "sysctls",
    "<<",
    "? x",
    "1",
    "null",
    "true",
    "-",
    "a b",
]
SCALARS = [
    "lab",
    "10.0.0.1/24",
    "default",
    "2024-01-01",
    "0x1F",
    "1:30",
    "yes",
    "~",
    ".inf",
    "'q'",
    '"\\x00"',
    '"\\t"',
    "=",
    "@",
    "`",
    "%",
    "&a x",
    "*a",
    "[",
    "{",
    "]",
    "}",
    "a: b",
    "- x",
    "#c",
    "|",
    ">",
    "9" * 50,
    "\t",
    "é",
    "\u202e",
]


def _yaml_texts() -> st.SearchStrategy[str]:
    scalar = st.tuples(st.sampled_from(TAGS), st.sampled_from(SCALARS)).map("".join)

    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        flow_list = st.lists(children, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
        key = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), children)  # [a]: x too
        flow_map = st.lists(st.tuples(key, children), max_size=4).map(
            lambda kvs: "{" + ", ".join(f"{k}: {v}" for k, v in kvs) + "}"
        )
        anchored = st.tuples(st.sampled_from(["&a ", "&b ", ""]), children).map("".join)
        tagged = st.tuples(st.sampled_from(TAGS), st.one_of(flow_list, flow_map)).map("".join)
        return st.one_of(flow_list, flow_map, anchored, tagged, st.just("*a"), st.just("*b"))

    value = st.recursive(scalar, extend, max_leaves=25)
    block = st.lists(
        st.tuples(
            st.integers(0, 6),
            st.sampled_from([*KEYS, "-"]),
            value,
            st.sampled_from(["", "\t", " "]),
        ),
        max_size=8,
    ).map(lambda rows: "".join(f"{' ' * ind}{pad}{k}: {v}\n" for ind, k, v, pad in rows))
    noise = st.text(
        st.sampled_from(list(":-[]{},&*!|>'\"#%@`?\t\n \x00\x1b\u0085ab1")), max_size=60
    )
    return st.one_of(block, noise, st.tuples(block, noise).map("".join))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=_yaml_texts())
def test_random_yaml_is_a_topology_or_clean_problems_never_a_crash(
    text: str, tmp_path: Path
) -> None:
    path = tmp_path / "random.yaml"
    path.write_text("name: lab\n" + text, encoding="utf-8")
    try:
        load_topology(path)
    except TopologyError as error:
        lines = error.lines()
        assert lines
        for line in lines:
            assert line.startswith(f"{path}"), line
            assert line.isprintable() and len(line) < 600, line
    except UsageError as error:  # pragma: no cover - a written file is always readable
        pytest.fail(str(error))


EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
ODD_VALUES = [
    None,
    True,
    0,
    -1,
    1.5,
    10**30,
    "",
    "a\nb",
    [],
    {},
    [None],
    {"": None},
    "$(id)",
    "x" * 300,
    "9" * 5000,
    "10.0.0.1/24",
    "default",
    "host",
]


def _leaves(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        found += _leaves(value, (*prefix, key))
    return found


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    example=st.sampled_from(EXAMPLES),
    changes=st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(ODD_VALUES), st.booleans()),
        min_size=1,
        max_size=4,
    ),
)
def test_an_example_with_odd_values_anywhere_is_a_topology_or_clean_problems(
    example: Path, changes: list[tuple[int, Any, bool]], tmp_path: Path
) -> None:
    """Every example (the Docker and Kubernetes vocabularies included) with values or keys of
    any type put anywhere: the model, the expanders and the cross-object checks never crash."""
    data = yaml.safe_load(example.read_text())
    for pick, value, as_key in changes:
        leaves = _leaves(data)
        where = leaves[pick % len(leaves)]
        parent = data
        for part in where[:-1]:
            parent = parent[part]
        if as_key and isinstance(parent, dict) and isinstance(value, str | int):
            parent[value] = parent.pop(where[-1])
        else:
            parent[where[-1]] = copy.deepcopy(value)
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    try:
        load_topology(path)
    except TopologyError as error:
        for line in error.lines():
            assert line.startswith(f"{path}"), line
            assert line.isprintable() and len(line) < 600, line


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=_yaml_texts())
def test_random_yaml_through_the_real_command_is_valid_or_refused_cleanly(
    text: str, tmp_path: Path
) -> None:
    """The same random files through `nsgen validate` in its own process, under the memory
    limit (a few examples: each costs a Python start-up)."""
    path = tmp_path / "random.yaml"
    path.write_text("name: lab\n" + text, encoding="utf-8")
    outcome = validate(path)
    if outcome.code == 0:
        assert outcome.stdout.startswith(f"{path}: topology 'lab' is valid")
    else:
        assert_refused(outcome, str(path))


@settings(max_examples=300, deadline=None)
@given(text=_yaml_texts())
def test_the_cheap_node_bound_never_undercounts(text: str) -> None:
    """The loader composes a text at once only when this bound says it cannot hold more than
    MAX_VALUES nodes: the bound must hold for every text libyaml accepts."""
    try:
        root = yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        return
    count, stack, seen = 0, [root] if root is not None else [], set()
    while stack:
        node = stack.pop()
        count += 1
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack += [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
    assert count <= _node_bound(text)
