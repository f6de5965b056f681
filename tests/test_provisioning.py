"""Outputs for provisioning images: the systemd unit and the --install-to layout."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import EXAMPLES

NSGEN = (sys.executable, "-m", "nsgen")
SEED = EXAMPLES / "seed.yaml"


def nsgen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NSGEN, *map(str, args)], capture_output=True, text=True, check=False)


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is not installed (make test installs the systemd package)"
    return subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )


def test_render_systemd_writes_a_oneshot_unit_that_systemd_analyze_accepts(
    tmp_path: Path,
) -> None:
    result = nsgen("render", SEED, "-o", tmp_path, "--systemd")
    assert result.returncode == 0, result.stderr
    unit = tmp_path / "nsgen-seed.service"
    text = unit.read_text()
    assert "Type=oneshot" in text and "RemainAfterExit=yes" in text
    assert f"ExecStart={tmp_path.resolve()}/setup.sh" in text
    assert f"ExecStop={tmp_path.resolve()}/teardown.sh" in text
    assert "After=network-online.target" in text
    checked = verify(unit)
    assert checked.returncode == 0, checked.stderr


def test_systemd_analyze_rejects_a_broken_unit_so_the_check_above_means_something(
    tmp_path: Path,
) -> None:
    assert nsgen("render", SEED, "-o", tmp_path, "--systemd").returncode == 0
    unit = tmp_path / "nsgen-seed.service"
    unit.write_text(unit.read_text().replace("ExecStart=", "ExecStart=/nonexistent/x "))
    assert verify(unit).returncode != 0


def test_install_to_lays_out_an_image_tree(tmp_path: Path) -> None:
    result = nsgen("render", SEED, "--install-to", tmp_path)
    assert result.returncode == 0, result.stderr
    libexec = tmp_path / "usr/libexec/nsgen/seed"
    assert sorted(p.name for p in libexec.iterdir()) == ["check.sh", "setup.sh", "teardown.sh"]
    unit = tmp_path / "etc/systemd/system/nsgen-seed.service"
    text = unit.read_text()
    assert "ExecStart=/usr/libexec/nsgen/seed/setup.sh" in text
    assert "ExecStop=/usr/libexec/nsgen/seed/teardown.sh" in text
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    # the same files as a plain render: the image gets exactly what a reviewer read
    plain = tmp_path / "plain"
    assert nsgen("render", SEED, "-o", plain).returncode == 0
    for name in ("setup.sh", "teardown.sh", "check.sh"):
        assert (libexec / name).read_bytes() == (plain / name).read_bytes()


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_rendered_scripts_carry_no_dependency_on_nsgen_or_python(
    example: Path, tmp_path: Path
) -> None:
    assert nsgen("render", example, "-o", tmp_path).returncode == 0
    scripts = sorted(tmp_path.rglob("*.sh"))  # a topology with hosts: one directory per host
    assert scripts
    for script in scripts:
        lines = script.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            words = line.split("#", 1)[0].split()
            assert not words or words[0] != "nsgen", f"{script.name}:{number} runs nsgen: {line}"
            if "python3" in line.split("#", 1)[0] and script.name != "check.sh":
                raise AssertionError(f"{script.name}:{number} uses python: {line}")
    # check.sh may start a listener with python3, only when socat is missing
    for check in tmp_path.rglob("check.sh"):
        assert "elif command -v python3 >/dev/null; then" in check.read_text()


def test_render_without_a_destination_prints_setup_sh(tmp_path: Path) -> None:
    result = nsgen("render", SEED)
    assert result.returncode == 0, result.stderr
    assert nsgen("render", SEED, "-o", tmp_path).returncode == 0
    assert result.stdout == (tmp_path / "setup.sh").read_text()
    assert result.stderr == ""


def test_render_systemd_needs_a_directory() -> None:
    result = nsgen("render", SEED, "--systemd")
    assert result.returncode == 2
    assert result.stderr.strip() == "--systemd writes DIR/nsgen-<topology>.service: give -o DIR"
