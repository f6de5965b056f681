"""A built wheel carries the templates: `pip install .` without -e renders."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.harness import EXAMPLES, ROOT


def test_a_built_wheel_holds_the_templates_and_renders_without_the_source_tree(
    tmp_path: Path,
) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("nsgen-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(unpacked)
    assert "nsgen/templates/setup.sh.j2" in names
    assert "nsgen/templates/_helpers.sh" in names
    out = tmp_path / "out"
    # run from an unrelated directory, with only the unpacked wheel on the path
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    rendered = subprocess.run(
        [sys.executable, "-m", "nsgen", "render", str(EXAMPLES / "seed.yaml"), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    where = subprocess.run(
        [sys.executable, "-c", "import nsgen.render as r; print(r.templates_dir())"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert where.stdout.strip() == str(unpacked / "nsgen" / "templates")
    assert (out / "setup.sh").read_text() == (ROOT / "generated/seed/setup.sh").read_text()
