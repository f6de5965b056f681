"""`make generate`: render every example under examples/ into generated/<name>/ for review,
with its diagram, and the topology format's JSON Schema into generated/topology.schema.json.
An example spread over hosts gets what `nsgen render` writes for it: <host>/*.sh per host and
ansible/*.yml (its diagram draws the whole topology on one machine). For every broken
topology tests/errors/<case>.yaml, what `nsgen validate` says about it goes into
tests/errors/<case>.txt.

The committed files are golden outputs: tests re-render and compare, so a change to the
renderer or to a validation message shows up as a diff in the same commit."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from typer.testing import CliRunner

from nsgen.diagram import dot, mermaid, render_image
from nsgen.fleet import load
from nsgen.fleet.bundle import fleet_files
from nsgen.plan import build_plan
from nsgen.render import render_scripts
from nsgen.schema import schema_text

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "generated" / "topology.schema.json"
ERRORS = ROOT / "tests" / "errors"
"""Broken topologies, one error class each, with what `nsgen validate` says about them."""


def error_cases() -> list[Path]:
    """The broken topologies of tests/errors/, by name."""
    return sorted(ERRORS.glob("*.yaml"))


def validate_output(case: Path) -> str:
    """The golden text of one broken topology: the command, what it prints on stderr (run
    from the repository root, so messages name the file as tests/errors/<case>.yaml) and its
    exit status. Anything on stdout is kept too, after a line `(stdout)`: an error case
    prints nothing there."""
    from nsgen.cli import app

    relative = case.relative_to(ROOT).as_posix()
    with contextlib.chdir(ROOT):
        result = CliRunner().invoke(app, ["validate", relative])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash is a bug to fix, never a golden output
    lines = [f"$ nsgen validate {relative}", *result.stderr.splitlines()]
    if result.stdout:
        lines += ["(stdout)", *result.stdout.splitlines()]
    lines.append(f"exit status {result.exit_code}")
    return "\n".join(lines) + "\n"


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
    for case in error_cases():
        golden = case.with_suffix(".txt")
        golden.write_text(validate_output(case), encoding="utf-8")
        print(golden.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
