"""`make generate`: render every example under examples/ into generated/<name>/ for review,
with its diagram, and the topology format's JSON Schema into generated/topology.schema.json.
An example spread over hosts gets what `nsgen render` writes for it: <host>/*.sh per host and
ansible/*.yml (its diagram draws the whole topology on one machine).

The committed files are golden outputs: tests re-render and compare, so a change to the
renderer shows up as a diff of generated/ in the same commit."""

from __future__ import annotations

import sys
from pathlib import Path

from nsgen.diagram import dot, mermaid, render_image
from nsgen.fleet import load
from nsgen.fleet.bundle import fleet_files
from nsgen.plan import build_plan
from nsgen.render import render_scripts
from nsgen.schema import schema_text

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "generated" / "topology.schema.json"


def generated_files(example: Path) -> dict[str, str]:
    """The text files generated/ holds for one example, by path under generated/<name>/
    (scripts, Ansible files and diagrams; a one-host topology's scripts again under
    nftables/, rendered with that firewall backend)."""
    topology, fleet = load(example)
    if fleet is not None:
        files = fleet_files(fleet)
    else:
        files = render_scripts(build_plan(topology))
        for name, text in render_scripts(build_plan(topology, firewall="nftables")).items():
            files[f"{NFTABLES}/{name}"] = text
    files["diagram.mmd"] = mermaid(topology)
    files["diagram.dot"] = dot(topology)
    return files


NFTABLES = "nftables"
"""generated/<example>/nftables/: the same scripts, with nftables as the firewall backend."""


def main() -> int:
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        out = ROOT / "generated" / example.stem
        files = generated_files(example)
        for name, text in files.items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755 if name.endswith(".sh") else 0o644)
            print(path.relative_to(ROOT))
        render_image(files["diagram.dot"], "svg", out / "diagram.svg")
        print((out / "diagram.svg").relative_to(ROOT))
    SCHEMA.write_text(schema_text())
    print(SCHEMA.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
