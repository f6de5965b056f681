"""What `nsgen render` writes for a topology spread over hosts: per host, the usual standalone
scripts of its share (`<host>/setup.sh`, `teardown.sh`, `check.sh`) and `preflight.sh`, and for
the whole fleet an Ansible inventory and playbooks (`ansible/inventory.yml`, `site.yml`,
`teardown.yml`, `check.yml`) that run them, from templates/ansible/ in nsgen's own strict
Jinja2 environment. Output is byte-stable, like every script nsgen renders."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsgen import __version__
from nsgen.fleet import Fleet
from nsgen.plan import build_plan
from nsgen.render import Renderer, make_environment, write_scripts

PLAYBOOKS = ("inventory.yml", "site.yml", "teardown.yml", "check.yml")
HOST_SCRIPTS = ("setup.sh", "teardown.sh", "check.sh", "preflight.sh")


def yaml_scalar(value: object) -> str:
    """A value as a YAML flow scalar: JSON's spelling (every JSON value is YAML), so any
    string is quoted and escaped."""
    return json.dumps(value)


@dataclass(frozen=True)
class _Part:
    """What the playbooks say of one host."""

    name: str
    topology: str
    digest: str
    ansible: dict[str, Any]
    checks: int


def fleet_files(fleet: Fleet, style: str = "batch") -> dict[str, str]:
    """Every file of the fleet's bundle, by path relative to the output directory."""
    renderer = Renderer()
    env = make_environment()
    env.filters["yaml"] = yaml_scalar
    files: dict[str, str] = {}
    parts: list[_Part] = []
    for part in fleet.parts:
        plan = build_plan(part.topology, style)
        steps = renderer.steps(plan)
        for name in ("setup.sh", "teardown.sh", "check.sh"):
            files[f"{part.name}/{name}"] = renderer.script(name, plan, steps)
        header = env.get_template("ansible/preflight.sh.j2").render(plan=plan, version=__version__)
        files[f"{part.name}/preflight.sh"] = header + renderer.preflight_script(plan, steps)
        ansible = {"ansible_host": part.spec.address}
        ansible.update(part.spec.ansible.model_dump(exclude_none=True))
        parts.append(_Part(part.name, plan.topology, plan.digest, ansible, len(plan.probes)))
    context = {
        "topology": fleet.topology.name,
        "parts": parts,
        "checked": [p.name for p in parts if p.checks],
        "version": __version__,
    }
    for name in PLAYBOOKS:
        files[f"ansible/{name}"] = env.get_template(f"ansible/{name}.j2").render(**context)
    return files


def write_fleet(fleet: Fleet, out: Path, style: str = "batch") -> list[Path]:
    """Write the bundle under `out`: scripts 0755, Ansible files 0644. Returns the paths."""
    written: list[Path] = []
    files = fleet_files(fleet, style)
    for part in fleet.parts:
        scripts = {name: files[f"{part.name}/{name}"] for name in HOST_SCRIPTS}
        written += write_scripts(scripts, out / part.name)
    (out / "ansible").mkdir(parents=True, exist_ok=True)
    for name in PLAYBOOKS:
        path = out / "ansible" / name
        path.write_text(files[f"ansible/{name}"], encoding="utf-8")
        path.chmod(0o644)
        written.append(path)
    return written
