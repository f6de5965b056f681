"""`nsgen up` / `nsgen down` for real, inside a sandbox: what runs, the log, rollback under
injected faults and signals, repeats, concurrency, and teardown from the record."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nsgen.sandbox import upstream
from nsgen.snapshot import take_snapshot
from nsgen.state import topology_lock
from tests.faults import calls_made, fail_at, install_stand_ins
from tests.harness import (
    EXAMPLES,
    assert_same_state,
    make_canary,
    ping,
    render_example,
    run,
    sandboxed,
    wait_until_up,
)

NSGEN = (sys.executable, "-m", "nsgen")
SEED = EXAMPLES / "seed.yaml"


def nsgen(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run(*NSGEN, *args, env=env, timeout=timeout)


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def setup_sh_blocks(setup: Path) -> dict[int, str]:
    """Step number -> the commands between nsgen_begin N and nsgen_end N in setup.sh."""
    text = setup.read_text()
    inline = re.findall(r"^nsgen_begin (\d+) [^\n]*\n(.*?)\nnsgen_end \1$", text, re.M | re.S)
    # steps that run side by side are functions, called by nsgen_lanes
    functions = re.findall(r"^nsgen_do_(\d+)\(\) \{\n(.*?)\n\}$", text, re.M | re.S)
    return {int(number): body for number, body in [*inline, *functions]}


@sandboxed
def test_up_runs_exactly_the_commands_of_setup_sh_and_logs_each_step(tmp_path: Path) -> None:
    scripts = render_example("seed", tmp_path / "out")
    log = tmp_path / "up.jsonl"
    with upstream(["eth0"]):
        before = take_snapshot()
        result = nsgen("up", SEED, "--log", log)
        assert result.returncode == 0, result.stderr
        assert re.search(
            r"^\[3/8\] create veth pairs \(2 veths\)  ok  \d+ ms$", result.stderr, re.M
        ), result.stderr
        records = read_log(log)
        assert sorted(r["step"] for r in records) == list(range(1, 9))
        assert {r["phase"] for r in records} == {"do"}
        for record in records:
            assert set(record) >= {
                "step",
                "title",
                "commands",
                "exit_code",
                "stdout",
                "stderr",
                "started",
                "duration_ms",
            }
            assert record["exit_code"] == 0
        ran = {r["step"]: r["commands"] for r in records}
        assert ran == setup_sh_blocks(scripts / "setup.sh")

        assert ping("192.168.15.1", netns="red")
        status = nsgen("down", SEED, "--log", log)
        assert status.returncode == 0, status.stderr
        undone = [r for r in read_log(log) if r["phase"] == "undo"]
        assert [r["step"] for r in undone] == [8, 7, 6, 2, 1]
        assert_same_state(before)


@pytest.mark.parametrize("style", ["batch", "tutorial"])
@pytest.mark.parametrize("example", ["seed", "two-tier", "seed-dual"])
@sandboxed
def test_up_rolls_back_a_fault_at_every_call_and_restores_the_snapshot(
    tmp_path: Path, example: str, style: str
) -> None:
    topology = EXAMPLES / f"{example}.yaml"
    env = install_stand_ins(tmp_path / "bin")
    log = tmp_path / "up.jsonl"
    with upstream(["eth0"]):
        make_canary()
        before = take_snapshot()
        clean = nsgen("up", topology, "--quiet", "--style", style, env=fail_at(env, 0))
        assert clean.returncode == 0, clean.stderr
        total = calls_made(env)
        assert nsgen("down", topology, "--quiet").returncode == 0
        assert_same_state(before)

        for k in range(1, total + 1):
            log.unlink(missing_ok=True)
            result = nsgen("up", topology, "--log", log, "--style", style, env=fail_at(env, k))
            assert result.returncode == 3, f"fault {k}: exit {result.returncode}\n{result.stderr}"
            records = read_log(log)
            failed = [r for r in records if r["phase"] == "do" and r["exit_code"] != 0]
            assert len(failed) == 1, records
            assert f"injected fault on state-changing call {k}" in failed[0]["stderr"]
            # the summary quotes the command's own error line
            assert re.search(
                rf"step {failed[0]['step']}/\d+ \(.*\) failed with exit status 2: \S+: "
                rf"injected fault on state-changing call {k}:",
                result.stderr,
            ), result.stderr
            undone = [r["step"] for r in records if r["phase"] == "undo"]
            assert undone == sorted(undone, reverse=True) and undone, records
            assert all(r["exit_code"] == 0 for r in records if r["phase"] == "undo")
            assert_same_state(before)


@sandboxed
def test_an_undo_that_fails_is_reported_by_name_with_exit_4(tmp_path: Path) -> None:
    env = install_stand_ins(tmp_path / "bin")
    with upstream(["eth0"]):
        before = take_snapshot()
        faulty = {**fail_at(env, 0), "NSGEN_FAIL_MATCH": "^link delete br0$"}
        # fail the masquerade rule (an iptables call), then fail deleting the bridge
        faulty["NSGEN_FAIL_MATCH"] = "^(link delete br0|-w -t nat -A POSTROUTING .*)$"
        result = nsgen("up", SEED, "--style", "tutorial", env=faulty)
        assert result.returncode == 4, result.stderr
        assert "rollback incomplete, still present: step 3/17 create bridge br0" in result.stderr
        assert run("ip", "link", "show", "br0").returncode == 0
        assert run("ip", "netns", "exec", "red", "true").returncode != 0, "red was undone"
        # with the cause gone, down finishes the job from the record
        finish = nsgen("down", "seed")
        assert finish.returncode == 0, finish.stderr
        assert_same_state(before)


def _wait_for_step(log: Path, step: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.exists() and any(r["step"] >= step for r in read_log(log) if r["phase"] == "do"):
            return
        time.sleep(0.01)
    raise AssertionError(f"step {step} did not finish within {seconds} s")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@sandboxed
def test_a_signal_during_up_rolls_back_and_exits_128_plus_signal(
    tmp_path: Path, signum: int, code: int
) -> None:
    env = {**install_stand_ins(tmp_path / "bin"), "NSGEN_SLOW": "0.02"}
    with upstream(["eth0"]):
        make_canary()
        before = take_snapshot()
        for step in (1, 5, 10, 14):
            log = tmp_path / f"up-{step}.jsonl"
            process = subprocess.Popen(
                [*NSGEN, "up", str(SEED), "--style", "tutorial", "--log", str(log)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            _wait_for_step(log, step)
            process.send_signal(signum)
            _, stderr = process.communicate(timeout=60)
            assert process.returncode == code, stderr
            assert "rolled back" in stderr
            assert_same_state(before)


@sandboxed
def test_sigkill_during_up_leaves_a_record_that_down_finishes(tmp_path: Path) -> None:
    env = {**install_stand_ins(tmp_path / "bin"), "NSGEN_SLOW": "0.02"}
    log = tmp_path / "up.jsonl"
    with upstream(["eth0"]):
        before = take_snapshot()
        process = subprocess.Popen(
            [*NSGEN, "up", str(SEED), "--style", "tutorial", "--log", str(log)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_step(log, 9)
        process.kill()
        process.wait(timeout=30)
        time.sleep(0.2)  # a step's own bash may still be finishing its last command
        again = nsgen("up", SEED, "--style", "tutorial")
        assert again.returncode == 1
        assert "did not finish" in again.stderr
        finish = nsgen("down", "seed")
        assert finish.returncode == 0, finish.stderr
        assert_same_state(before)


@sandboxed
def test_up_twice_and_down_twice_change_nothing_the_second_time(tmp_path: Path) -> None:
    with upstream(["eth0"]):
        before = take_snapshot()
        assert nsgen("up", SEED).returncode == 0
        wait_until_up("br0")
        during = take_snapshot()
        second = nsgen("up", SEED)
        assert second.returncode == 0
        assert "already up and unchanged" in second.stderr
        assert_same_state(during)
        assert nsgen("down", SEED).returncode == 0
        assert_same_state(before)
        again = nsgen("down", SEED)
        assert again.returncode == 0
        assert "not up: nothing to do" in again.stderr
        assert_same_state(before)


@sandboxed
def test_up_of_a_drifted_topology_refuses_naming_the_drift_and_replace_rebuilds_it(
    tmp_path: Path,
) -> None:
    """Reproduced: a route deleted by hand, and `nsgen up` said 'already up and unchanged'."""
    with upstream(["eth0"]):
        before = take_snapshot()
        assert nsgen("up", SEED).returncode == 0
        wait_until_up("br0")
        assert run("ip", "route", "del", "default", netns="red").returncode == 0
        assert run("ip", "link", "set", "veth-blue-br", "down").returncode == 0
        drifted = take_snapshot()
        again = nsgen("up", SEED)
        assert again.returncode == 1
        assert again.stderr.splitlines() == [
            "seed is up, but the live state no longer matches it:",
            "  veth veth-blue-br: different, down",
            "  route default via 192.168.15.254 (in red): missing",
            "nothing was changed; 'nsgen up --replace' rebuilds it (down, then up), "
            "'nsgen status' shows every object",
        ]
        assert_same_state(drifted)
        rebuilt = nsgen("up", SEED, "--replace", "-q")
        assert rebuilt.returncode == 0, rebuilt.stderr
        wait_until_up("br0")
        assert "already up and unchanged" in nsgen("up", SEED).stderr
        assert nsgen("down", SEED).returncode == 0
        assert_same_state(before)


@sandboxed
def test_up_with_changed_yaml_refuses_unless_replace(tmp_path: Path) -> None:
    changed = tmp_path / "seed.yaml"
    changed.write_text(SEED.read_text().replace("192.168.15.1/24", "192.168.15.3/24"))
    with upstream(["eth0"]):
        before = take_snapshot()
        assert nsgen("up", SEED).returncode == 0
        refused = nsgen("up", changed)
        assert refused.returncode == 1
        assert "up with a different topology" in refused.stderr
        replaced = nsgen("up", changed, "--replace")
        assert replaced.returncode == 0, replaced.stderr
        assert ping("192.168.15.3", netns="red")
        assert nsgen("down", "seed").returncode == 0
        assert_same_state(before)


@sandboxed
def test_down_works_from_the_record_after_the_yaml_is_deleted(tmp_path: Path) -> None:
    copy = tmp_path / "mine.yaml"
    shutil.copy(SEED, copy)
    with upstream(["eth0"]):
        before = take_snapshot()
        assert nsgen("up", copy).returncode == 0
        copy.unlink()
        result = nsgen("down", "seed")
        assert result.returncode == 0, result.stderr
        assert "seed is down" in result.stderr
        assert_same_state(before)


@sandboxed
def test_down_of_a_setup_sh_run_uses_the_topology_file(tmp_path: Path) -> None:
    scripts = render_example("seed", tmp_path / "out")
    with upstream(["eth0"]):
        before = take_snapshot()
        assert run(scripts / "setup.sh").returncode == 0
        by_name = nsgen("down", "seed")
        assert by_name.returncode == 1
        assert "give the topology file" in by_name.stderr
        by_file = nsgen("down", SEED)
        assert by_file.returncode == 0, by_file.stderr
        assert_same_state(before)


@sandboxed
def test_a_held_lock_makes_up_wait_then_fail_clearly(tmp_path: Path) -> None:
    with upstream(["eth0"]):
        before = take_snapshot()
        with topology_lock("seed", timeout=5):
            started = time.monotonic()
            result = nsgen("up", SEED, "--lock-timeout", "0.5")
            waited = time.monotonic() - started
        assert result.returncode == 5
        assert "another nsgen run holds /run/nsgen/seed.lock (waited 0.5 s)" in result.stderr
        assert waited >= 0.5
        assert_same_state(before)


@sandboxed
def test_two_concurrent_ups_of_one_topology_build_it_once(tmp_path: Path) -> None:
    with upstream(["eth0"]):
        before = take_snapshot()
        processes = [
            subprocess.Popen(
                [*NSGEN, "up", str(SEED)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120)[1] for p in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
        assert sum("already up and unchanged" in out for out in outputs) == 1, outputs
        assert ping("192.168.15.1", netns="red")
        assert nsgen("down", "seed").returncode == 0
        assert_same_state(before)


@sandboxed
def test_two_topologies_come_up_at_once_without_xtables_lock_errors(tmp_path: Path) -> None:
    with upstream(["eth0"]):
        before = take_snapshot()
        processes = [
            subprocess.Popen(
                [*NSGEN, "up", str(EXAMPLES / f"{name}.yaml")],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in ("seed", "two-tier")
        ]
        outputs = [p.communicate(timeout=120)[1] for p in processes]
        assert [p.returncode for p in processes] == [0, 0], outputs
        assert not any("xtables" in out.lower() for out in outputs), outputs
        assert ping("192.168.15.1", netns="red")
        assert ping("10.0.2.21", netns="web1"), "web1 -> db through the router"
        assert ping("10.0.3.2", netns="db"), "db -> backup over the direct veth"
        assert nsgen("down", "seed").returncode == 0
        forward = Path("/proc/sys/net/ipv4/ip_forward")
        assert forward.read_text().strip() == "1", "two-tier still needs forwarding"
        assert nsgen("down", "two-tier").returncode == 0
        assert forward.read_text().strip() == "0", "the value from before the first up"
        assert_same_state(before)


def test_dry_run_prints_the_plan_and_needs_no_root() -> None:
    result = subprocess.run(
        [*NSGEN, "up", "--dry-run", str(SEED)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "plan for seed: 8 steps (nothing is run)" in result.stdout
    assert "    $ link add veth-red netns red type veth peer name veth-red-br" in result.stdout


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_namespace_steps_that_up_enters_itself_run_what_setup_sh_says(example: Path) -> None:
    """`nsgen up` runs a `configure namespace X` step by entering X itself (setns) and starting
    the step's programs with the step's input: spelled as nsenter commands again, they must be
    the step's text in setup.sh, letter for letter."""
    import shlex

    from nsgen.load import load_topology
    from nsgen.plan import build_plan
    from nsgen.render import Renderer

    steps = Renderer().steps(build_plan(load_topology(example)))
    entered = [s for s in steps if s.entered]
    assert entered, "every example has a namespace to configure"
    for step in entered:
        assert step.parallel and step.netns
        spelled = []
        for command in step.entered:
            head = f"nsgen_enter {shlex.quote(step.netns)} {shlex.join(command.argv)}"
            spelled.append(f"{head} <<'EOF'\n{command.stdin}EOF" if command.stdin else head)
        assert "\n".join(spelled) == step.do, step.title
