"""generated/ holds what the renderer produces now for every example (golden files)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nsgen.generate import ROOT, generated_files

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_generated_scripts_are_what_the_renderer_produces_now(example: Path) -> None:
    for name, text in generated_files(example).items():
        committed = ROOT / "generated" / example.stem / name
        assert committed.exists(), f"{committed} is missing: run make generate"
        assert committed.read_text() == text, f"{committed} is stale: run make generate"
        if name.endswith(".sh"):
            assert os.access(committed, os.X_OK), f"{committed} is not executable"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_generated_scripts_are_shellcheck_clean(example: Path) -> None:
    scripts = sorted((ROOT / "generated" / example.stem).glob("*.sh"))
    assert scripts
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
