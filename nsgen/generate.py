"""`make generate`: render every example under examples/ into generated/<name>/ for review.

The committed files are golden outputs: tests re-render and compare, so a change to the
renderer shows up as a diff of generated/ in the same commit."""

from __future__ import annotations

import sys
from pathlib import Path

from nsgen.load import load_topology
from nsgen.plan import build_plan
from nsgen.render import render_scripts, write_scripts

ROOT = Path(__file__).resolve().parent.parent


def generated_files(example: Path) -> dict[str, str]:
    """Everything generated/ holds for one example, by file name."""
    return render_scripts(build_plan(load_topology(example)))


def main() -> int:
    examples = sorted((ROOT / "examples").glob("*.yaml"))
    for example in examples:
        out = ROOT / "generated" / example.stem
        for path in write_scripts(generated_files(example), out):
            print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
