"""setup.sh rolls itself back: for every state-changing `ip`/`iptables`/`ip6tables` call of the
seed (and of its dual-stack twin), a run that fails exactly that call exits 3 and leaves the
network exactly as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nsgen.load import load_topology
from nsgen.plan import build_plan
from nsgen.render import RenderedStep, Renderer
from nsgen.sandbox import upstream
from nsgen.snapshot import diff_snapshots, take_snapshot
from tests.faults import calls_made, fail_at, install_stand_ins
from tests.harness import EXAMPLES, make_canary, render_example, run, sandboxed


def render_steps(example: str, style: str) -> list[RenderedStep]:
    return Renderer().steps(build_plan(load_topology(EXAMPLES / f"{example}.yaml"), style))


@pytest.mark.parametrize("style", ["batch", "tutorial"])
@pytest.mark.parametrize("example", ["seed", "two-tier", "seed-dual"])
@sandboxed
def test_setup_rolls_back_every_injected_fault_and_restores_the_snapshot(
    tmp_path: Path, example: str, style: str
) -> None:
    scripts = render_example(example, tmp_path / "out", style)
    total_steps = len(build_plan(load_topology(EXAMPLES / f"{example}.yaml"), style).steps)
    env = install_stand_ins(tmp_path / "bin")
    with upstream(["eth0"]):
        make_canary()
        before = take_snapshot()

        clean = run(scripts / "setup.sh", env=fail_at(env, 0))
        assert clean.returncode == 0, clean.stderr
        total = calls_made(env)
        assert total >= 3, f"only {total} state-changing calls counted"
        assert run(scripts / "teardown.sh").returncode == 0

        failed_steps = set()
        # one lane: the k-th call is always the same one; two lanes: whichever comes first
        for lanes, k in [(1, k) for k in range(1, total + 1)] + [
            (2, k) for k in range(1, total + 1)
        ]:
            result = run(scripts / "setup.sh", env={**fail_at(env, k), "NSGEN_LANES": str(lanes)})
            assert result.returncode == 3, f"fault {k}: exit {result.returncode}\n{result.stderr}"
            assert f"injected fault on state-changing call {k}" in result.stderr
            match = re.search(
                rf"step (\d+)/{total_steps} \(.*\) failed with exit status 2: "
                rf"\S+: injected fault on state-changing call {k}:",
                result.stderr,
            )
            assert match, result.stderr
            if lanes == 1:
                failed_steps.add(int(match.group(1)))
            assert "rolled back: everything this run created is gone" in result.stderr
            differences = diff_snapshots(before, take_snapshot())
            assert differences == [], f"fault {k} left:\n" + "\n".join(differences)
        # every step that calls ip or ip(6)tables to change something was failed at least
        # once (sysctls and DNS files are written by bash itself, not by ip or iptables)
        file_only = {
            n
            for n, step in enumerate(render_steps(example, style), 1)
            if not re.search(
                r"^(ip netns exec \S+ |nsgen_enter \S+ )?"
                r"(ip|iptables|iptables-restore|ip6tables|ip6tables-restore) (?!netns exec)",
                step.do,
                re.M,
            )
        }
        assert failed_steps | file_only == set(range(1, total_steps + 1)), sorted(failed_steps)


@sandboxed
def test_teardown_after_an_interrupted_setup_finishes_the_job(tmp_path: Path) -> None:
    """A setup killed with SIGKILL leaves its journal; teardown undoes what it had begun."""
    scripts = render_example("seed", tmp_path / "out", "tutorial")
    with upstream(["eth0"]):
        before = take_snapshot()
        # Stop setup for good in the middle of step 8 (after the bridge and veths exist).
        text = (scripts / "setup.sh").read_text()
        cut = text.index("nsgen_begin 8 ")
        partial = tmp_path / "partial-setup.sh"
        partial.write_text(text[:cut] + "nsgen_begin 8 'killed'\nkill -9 $$\n")
        partial.chmod(0o755)
        killed = run(partial)
        assert killed.returncode == -9
        assert run("ip", "link", "show", "br0").returncode == 0
        teardown = run(scripts / "teardown.sh")
        assert teardown.returncode == 0, teardown.stderr
        differences = diff_snapshots(before, take_snapshot())
        assert differences == [], "\n".join(differences)
