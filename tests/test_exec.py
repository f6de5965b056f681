"""The topology's own commands (`exec:`): run inside their namespace after everything else
(DNS files included), quoted word for word, shown as a numbered step of their own with no
undo; their output reaches the log and `-v`; one that fails fails its step and everything is
rolled back; `nsgen status` lists them as unobserved, which is not drift."""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgen.errors import TopologyError
from nsgen.load import topology_from_data
from nsgen.plan import build_plan
from nsgen.render import render_scripts, write_scripts
from nsgen.snapshot import take_snapshot
from tests.harness import EXAMPLES, assert_same_state, make_canary, run, sandboxed

NSGEN = (sys.executable, "-m", "nsgen")
SRC = "cmds.yaml"
TRICKY = 'it\'s $(touch /etc/netns/pwned) `id` "quoted" ; exit 9'
"""An argument that a shell would expand, split and end early: it must arrive as it is."""

CMDS: dict[str, Any] = {
    "name": "cmds",
    "namespaces": {
        "web": {
            "interfaces": [
                {"addresses": ["198.51.100.1/24"], "peer": {"netns": "client", "name": "eth0",
                 "addresses": ["198.51.100.2/24"]}}
            ]
        },
        "client": {
            "dns": {"hosts": {"web": "198.51.100.1"}},
            "exec": [
                ["printf", "%s\\n", TRICKY],
                "getent hosts web | cut -d' ' -f1",  # /etc/netns/client/hosts is written
                ["ip", "addr", "add", "203.0.113.7/32", "dev", "lo"],
            ],
        },
    },
}  # fmt: skip


def cmds() -> dict[str, Any]:
    return copy.deepcopy(CMDS)


def nsgen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(*NSGEN, *args, timeout=120)


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, SRC)
    return info.value.lines()


# ---- how the step reads ------------------------------------------------------------------


EXPECTED_COMMANDS = (
    "ip netns exec client printf '%s\\n' "
    "'it'\"'\"'s $(touch /etc/netns/pwned) `id` \"quoted\" ; exit 9' </dev/null\n"
    "ip netns exec client sh -c 'getent hosts web | cut -d'\"'\"' '\"'\"' -f1' </dev/null\n"
    "ip netns exec client ip addr add 203.0.113.7/32 dev lo </dev/null\n"
)


@pytest.mark.parametrize("style", ["batch", "tutorial"])
def test_the_commands_are_the_last_step_quoted_word_for_word_with_no_undo(style: str) -> None:
    setup = render_scripts(build_plan(topology_from_data(CMDS, SRC), style))["setup.sh"]
    steps = setup.split("\n# ---- step ")[1:]
    last, before_last = steps[-1], steps[-2]
    assert "write /etc/netns/client/hosts" in before_last.splitlines()[0]
    assert last.splitlines()[0].startswith(
        f"{len(steps)}/{len(steps)}: run 3 commands of the topology in client "
    )
    why = " ".join(line[2:] for line in last.splitlines() if line.startswith("# "))
    assert (
        "nsgen does not undo them: what they change in client's network goes away with the "
        "namespace; anything else they do (a file written, a process left running) is the "
        "topology author's to undo."
    ) in why
    assert (
        "# Undo: nothing of its own; it goes away with the namespace client.\n"
        f"nsgen_begin {len(steps)} 'run 3 commands of the topology in client'\n"
        + EXPECTED_COMMANDS
        + f"nsgen_end {len(steps)}\n"
    ) in last
    teardown = render_scripts(build_plan(topology_from_data(CMDS, SRC), style))["teardown.sh"]
    assert "getent" not in teardown and "203.0.113.7" not in teardown  # no undo


# ---- for real ------------------------------------------------------------------------------


@sandboxed
def test_up_runs_the_commands_in_their_namespace_shows_their_output_and_status_lists_them(
    tmp_path: Path,
) -> None:
    before = take_snapshot()
    path, log = write(tmp_path, CMDS), tmp_path / "up.jsonl"
    up = nsgen("up", "-v", "--log", log, path)
    assert up.returncode == 0, up.stderr
    try:
        shown = up.stderr.splitlines()
        assert f"    | {TRICKY}" in shown  # printf got the argument as it is
        assert "    | 198.51.100.1" in shown  # the namespace's own hosts file was in place
        assert not Path("/etc/netns/pwned").exists()
        records = [json.loads(line) for line in log.read_text().splitlines()]
        (record,) = [r for r in records if r["title"].startswith("run 3 commands")]
        assert (record["exit_code"], record["stdout"]) == (0, f"{TRICKY}\n198.51.100.1\n")
        assert record["step"] == record["total"]  # the last step
        lo = json.loads(run("ip", "-j", "addr", "show", "dev", "lo", netns="client").stdout)
        assert "203.0.113.7" in [a["local"] for a in lo[0]["addr_info"]]

        status = nsgen("status", path)
        assert status.returncode == 0, status.stdout  # unobserved is not drift
        lines = status.stdout.splitlines()
        assert lines[-1].endswith(" present, 0 missing, 0 different, 3 unobserved"), lines[-1]
        row = next(line for line in lines if "203.0.113.7" in line)
        assert row.split() == [
            "exec", "client", "ip", "addr", "add", "203.0.113.7/32", "dev", "lo", "unobserved",
            "run", "once", "at", "setup;", "what", "it", "changed", "is", "not", "known", "to",
            "nsgen",
        ]  # fmt: skip
        as_json = json.loads(nsgen("status", "--json", path).stdout)
        assert (as_json["drifted"], as_json["summary"]["unobserved"]) == (False, 3)
        assert [
            (o["netns"], o["name"], o["state"]) for o in as_json["objects"] if o["kind"] == "exec"
        ] == [
            ("client", shlex.join(["printf", "%s\\n", TRICKY]), "unobserved"),
            ("client", shlex.join(["sh", "-c", "getent hosts web | cut -d' ' -f1"]), "unobserved"),
            ("client", "ip addr add 203.0.113.7/32 dev lo", "unobserved"),
        ]
    finally:
        down = nsgen("down", "-q", "cmds")
    assert down.returncode == 0, down.stderr
    assert_same_state(before)


FAILING: list[str | list[str]] = [
    ["ip", "addr", "add", "203.0.113.7/32", "dev", "lo"],
    "echo boom >&2; exit 7",
    ["touch", "/etc/netns/never"],  # never runs: the step stops at the failing command
]


@sandboxed
def test_a_failing_command_fails_its_step_and_up_rolls_everything_back(tmp_path: Path) -> None:
    make_canary()
    before = take_snapshot()
    data = cmds()
    data["namespaces"]["client"]["exec"] = FAILING
    up = nsgen("up", write(tmp_path, data))
    assert up.returncode == 3, up.stderr
    total = len(build_plan(topology_from_data(data, SRC)).steps)
    assert (
        f"step {total}/{total} (run 3 commands of the topology in client) failed with exit "
        "status 7: boom"
    ) in up.stderr
    assert (
        f"cmds: step {total}/{total} (run 3 commands of the topology in client) failed; "
        "rolled back, the host is as it was"
    ) in up.stderr
    assert_same_state(before)


@sandboxed
def test_setup_sh_rolls_back_when_a_command_fails(tmp_path: Path) -> None:
    before = take_snapshot()
    data = cmds()
    data["namespaces"]["client"]["exec"] = FAILING
    plan = build_plan(topology_from_data(data, SRC), "tutorial")
    setup, _, _ = write_scripts(render_scripts(plan), tmp_path)
    result = run(setup)
    assert result.returncode == 3, result.stderr
    assert "boom" in result.stderr
    assert (
        f"[nsgen] step {len(plan.steps)}/{len(plan.steps)} (run 3 commands of the topology in "
        "client) failed with exit status 7: rolling back"
    ) in result.stderr.splitlines()
    assert_same_state(before)


@sandboxed
def test_the_example_s_commands_take_effect_in_a_lab_and_its_checks_pass() -> None:
    lab = nsgen("lab", EXAMPLES / "two-switches.yaml", "--", "ip", "-n", "pc2", "route", "show")
    assert lab.returncode == 0, lab.stdout + lab.stderr
    assert "blackhole 203.0.113.0/24" in [line.strip() for line in lab.stdout.splitlines()]
    checks = nsgen("lab", EXAMPLES / "two-switches.yaml", "--check")
    assert checks.returncode == 0, checks.stdout + checks.stderr
    assert checks.stdout.splitlines()[-1] == "2 passed, 0 failed"


# ---- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("", "a command must not be empty"),
        ("   ", "a command must not be empty"),
        ([], "a command must not be empty: give a program and its arguments"),
        (["", "x"], "the program (the list's first word) must not be empty"),
        ("echo a\necho b", "'echo a\\necho b': a command line is one line of printable text"),
        (["echo", "a\nb"], "'a\\nb': an argument is printable text, without line breaks"),
        (7, "expected a command line or a list of words, got 7"),
        (["sleep", 1.5], "word 1 is 1.5: write it in quotes"),
        (["sleep", True], "word 1 is True: write it in quotes"),
    ],
)
def test_a_command_is_a_line_or_a_program_and_its_arguments(command: Any, reason: str) -> None:
    data = cmds()
    data["namespaces"]["client"]["exec"] = [command]
    assert problems(data) == [f"{SRC}: namespaces.client.exec[0]: {reason}"]


def test_commands_run_only_in_named_namespaces() -> None:
    data = cmds()
    data["host"] = {"exec": [["sysctl", "-w", "net.ipv4.ip_forward=1"]]}
    assert problems(data) == [
        f"{SRC}: host.exec: commands run only in named namespaces: in the root namespace they "
        "would change the machine's own network, which no teardown could put back"
    ]
