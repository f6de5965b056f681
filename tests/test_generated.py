"""generated/ holds what nsgen produces now for every example (golden files)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nsgen.diagram import render_image
from nsgen.generate import ROOT, SCHEMA, generated_files
from nsgen.schema import schema_text

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_generated_files_are_what_nsgen_produces_now(example: Path) -> None:
    for name, text in generated_files(example).items():
        committed = ROOT / "generated" / example.stem / name
        assert committed.exists(), f"{committed} is missing: run make generate"
        assert committed.read_text() == text, f"{committed} is stale: run make generate"
        if name.endswith(".sh"):
            assert os.access(committed, os.X_OK), f"{committed} is not executable"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_generated_diagram_svg_is_the_committed_dot_drawn_by_graphviz(
    example: Path, tmp_path: Path
) -> None:
    committed = ROOT / "generated" / example.stem / "diagram.svg"
    assert committed.exists(), f"{committed} is missing: run make generate"
    render_image(
        (ROOT / "generated" / example.stem / "diagram.dot").read_text(), "svg", tmp_path / "now.svg"
    )
    assert committed.read_text() == (tmp_path / "now.svg").read_text(), (
        f"{committed} is stale: run make generate"
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_generated_scripts_are_shellcheck_clean(example: Path) -> None:
    directory = ROOT / "generated" / example.stem
    scripts = sorted(directory.rglob("*.sh"))
    expected = sorted(directory / name for name in generated_files(example) if name.endswith(".sh"))
    assert scripts == expected and len(scripts) >= 3
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_committed_schema_is_the_generated_one() -> None:
    assert SCHEMA.read_text() == schema_text(), f"{SCHEMA} is stale: run make generate"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_point_editors_at_the_schema(example: Path) -> None:
    first = example.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../generated/topology.schema.json"


def test_the_scripts_static_bash_partials_are_shellcheck_clean_on_their_own() -> None:
    """The bash that every script carries unchanged (helpers, journal and rollback) lives in
    templates/*.sh, where shellcheck reads it as it is, not only inside rendered scripts."""
    partials = sorted((ROOT / "templates").glob("*.sh"))
    assert {p.name for p in partials} >= {"_helpers.sh", "_runtime.sh"}
    result = subprocess.run(
        ["shellcheck", "-s", "bash", *map(str, partials)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
