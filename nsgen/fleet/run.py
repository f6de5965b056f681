"""`nsgen up` and `nsgen down` of a topology spread over hosts: render the fleet's bundle into a
temporary directory and run one of its playbooks with ansible-playbook, which does the work
(nsgen has no ssh fan-out of its own). Its output goes straight to the terminal."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from nsgen.errors import ToolMissingError
from nsgen.fleet import Fleet
from nsgen.fleet.bundle import write_fleet
from nsgen.plan import build_plan


def ansible_playbook() -> str:
    """ansible-playbook beside this Python (a venv with ansible-core), else on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file():
        return str(beside)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise ToolMissingError(
            "ansible-playbook is not installed: a topology with hosts: is deployed by Ansible "
            "(pip install ansible-core, or apt-get install ansible-core)"
        )
    return found


def describe(fleet: Fleet, playbook: str, style: str) -> str:
    """What `--dry-run` prints: each host's share and the command that would run."""
    lines = [
        f"{fleet.topology.name}: {len(fleet.parts)} host(s), run by ansible-playbook {playbook}"
    ]
    for part in fleet.parts:
        plan = build_plan(part.topology, style)
        lines.append(
            f"  {part.name} ({part.spec.address}): {plan.topology}, {len(plan.steps)} steps, "
            f"{len(plan.probes)} check(s)"
        )
    lines.append(
        "nsgen render FILE -o DIR writes them; then: ansible-playbook -i "
        f"DIR/ansible/inventory.yml DIR/ansible/{playbook}"
    )
    return "\n".join(lines)


def run_playbook(
    fleet: Fleet, playbook: str, announce: Callable[[str], None], style: str = "batch"
) -> int:
    """Render the bundle into a temporary directory, run `ansible-playbook -i inventory.yml
    PLAYBOOK` there (`announce` is told the command first), and return its exit status."""
    program = ansible_playbook()
    with tempfile.TemporaryDirectory(prefix=f"nsgen-{fleet.topology.name}-") as tmp:
        out = Path(tmp)
        write_fleet(fleet, out, style)
        argv = [
            program,
            "-i",
            str(out / "ansible" / "inventory.yml"),
            str(out / "ansible" / playbook),
        ]
        announce(" ".join(argv))
        return subprocess.run(argv, check=False).returncode
