"""The command line as a person meets it: every --help page, the README's command reference,
render to stdout, diagram formats from the file name, and `lab --check` without checks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer import _click
from typer.core import TyperGroup
from typer.testing import CliRunner

from nsgen import diagram
from nsgen.cli import app
from nsgen.clihelp import summary
from nsgen.load import load_topology
from tests.harness import EXAMPLES, ROOT

NSGEN = (sys.executable, "-m", "nsgen")
SEED = EXAMPLES / "seed.yaml"
README = (ROOT / "README.md").read_text()
PYTHON_TYPE = re.compile(r"<(str|int|float|bool|path|file|list\[[^\]]*\]|[a-z]+\|[a-z|]+)>")


def nsgen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """nsgen run in this process (typer's CliRunner: quick), as a finished process."""
    argv = [str(a) for a in args]
    result = CliRunner().invoke(app, argv, prog_name="nsgen", env={"COLUMNS": "80"})
    return subprocess.CompletedProcess(argv, result.exit_code, result.stdout, result.stderr)


def _commands(
    command: _click.Command, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], _click.Command]]:
    """Every command reachable from `command`, groups included, hidden ones left out."""
    found = [(path, command)]
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            if not sub.hidden:
                found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))
HELP_PAGES = [path for path, _ in COMMANDS] + [("lab", "examples/seed.yaml")]


def _sections(text: str) -> dict[str, list[str]]:
    """A help page's sections by heading ("Usage", "Commands", "Examples" ...)."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        heading = re.match(r"^(Usage|[A-Z][a-z]+):", line)
        if heading:
            current = heading.group(1)
            sections[current] = [line]
        elif current:
            sections[current].append(line)
    return sections


@pytest.mark.parametrize("path", HELP_PAGES, ids=lambda p: " ".join(p) or "nsgen")
def test_every_help_page_names_values_in_words_and_shows_examples_one_per_line(
    path: tuple[str, ...],
) -> None:
    result = nsgen(*path, "--help")
    assert result.returncode == 0, result.stderr
    page = result.stdout
    assert not PYTHON_TYPE.search(page), f"a Python type in:\n{page}"
    sections = _sections(page)
    usage = page.split("\n\n")[0].splitlines()
    assert usage[0].startswith("Usage: nsgen")
    for line in usage:
        assert not set(line) & set("<>{}"), f"usage line with a type or braces: {line!r}"
    examples = sections.get("Examples") or sections.get("Example")
    assert examples, f"no examples in:\n{page}"
    for line in [e for e in examples[1:] if e.strip()]:
        assert re.match(r"^  (sudo nsgen|nsgen|echo) ", line), f"not an example line: {line!r}"
        assert line.count("nsgen ") == 1, f"two examples run together: {line!r}"
        assert len(line) <= 80, f"example wider than a terminal: {line!r}"


def test_lab_usage_shows_both_forms_and_the_one_shot_options() -> None:
    page = nsgen("lab", "--help").stdout
    assert page.splitlines()[:2] == [
        "Usage: nsgen lab [OPTIONS] FILE [-- CMD...]",
        "       nsgen lab COMMAND [ARGS]...",
    ]
    assert "  [-- CMD...]  Command to run inside (default: a shell)." in page.splitlines()
    one_shot = nsgen("lab", SEED, "--help").stdout
    assert one_shot.splitlines()[0] == "Usage: nsgen lab [OPTIONS] FILE [-- CMD...]"
    assert nsgen("lab", "exec", "--help").stdout.splitlines()[0] == (
        "Usage: nsgen lab exec [OPTIONS] NAME NODE -- CMD..."
    )


@pytest.mark.parametrize(
    "group", [p for p, c in COMMANDS if isinstance(c, TyperGroup)], ids=lambda p: " ".join(p)
)
def test_the_command_list_gives_each_command_its_whole_summary_on_one_line(
    group: tuple[str, ...],
) -> None:
    command = dict(COMMANDS)[group]
    assert isinstance(command, TyperGroup)
    listing = _sections(nsgen(*group, "--help").stdout)["Commands"][1:]
    visible = {n: c for n, c in command.commands.items() if not c.hidden}
    rows = [line for line in listing if line.strip()]
    assert len(rows) == len(visible), "a summary took more than one line:\n" + "\n".join(rows)
    for row, (name, sub) in zip(rows, visible.items(), strict=True):
        assert row.split()[0] == name
        assert " ".join(row.split()[1:]) == summary(sub), f"cut or changed: {row!r}"
        assert "..." not in row


def test_the_readme_documents_every_command_and_option() -> None:
    missing = []
    for path, command in COMMANDS:
        if path and f"nsgen {' '.join(path)}" not in README:
            missing.append(f"nsgen {' '.join(path)}")
        for param in command.params:
            for name in [*param.opts, *getattr(param, "secondary_opts", [])]:
                if name.startswith("--") and name != "--help" and name not in README:
                    missing.append(f"{' '.join(('nsgen', *path))} {name}")
    assert missing == []


def test_lab_check_without_checks_refuses_before_building(tmp_path: Path) -> None:
    bare = tmp_path / "bare.yaml"
    bare.write_text("name: bare\nnamespaces:\n  red: {}\n")
    result = subprocess.run(
        [*NSGEN, "lab", str(bare), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{bare}: --check: the topology declares no checks (add a checks: list)"
    ]
    assert result.stdout == ""


# ---- diagram -------------------------------------------------------------------------------


def _text(fmt: str) -> bytes:
    topology = load_topology(SEED)
    return (diagram.mermaid(topology) if fmt == "mermaid" else diagram.dot(topology)).encode()


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("seed.mmd", "mermaid"), ("seed.mermaid", "mermaid"), ("seed.dot", "dot"), ("seed.gv", "dot")],
)
def test_diagram_takes_a_text_format_from_the_file_name(
    tmp_path: Path, name: str, fmt: str
) -> None:
    out = tmp_path / name
    result = nsgen("diagram", SEED, "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == _text(fmt)


@pytest.mark.parametrize(("name", "magic"), [("seed.svg", b"<?xml"), ("seed.PNG", b"\x89PNG\r\n")])
def test_diagram_takes_an_image_format_from_the_file_name(
    tmp_path: Path, name: str, magic: bytes
) -> None:
    out = tmp_path / name
    result = nsgen("diagram", SEED, "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{out}\n"
    assert out.read_bytes().startswith(magic)
    if name.endswith(".svg"):
        assert "<svg" in out.read_text() and "eth0" in out.read_text()


def test_diagram_format_option_overrides_the_file_name(tmp_path: Path) -> None:
    out = tmp_path / "seed.svg"
    assert nsgen("diagram", SEED, "--format", "mermaid", "-o", out).returncode == 0
    assert out.read_bytes() == _text("mermaid")
    text = tmp_path / "seed.txt"
    assert nsgen("diagram", SEED, "-f", "dot", "-o", text).returncode == 0
    assert text.read_bytes() == _text("dot")


def test_diagram_with_an_unknown_extension_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "seed.jpeg"
    result = nsgen("diagram", SEED, "-o", out)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"-o {out}: cannot tell the format from the extension (.mmd, .dot, .svg or .png); "
        "give --format"
    ]
    assert not out.exists()


def test_diagram_without_a_file_prints_mermaid() -> None:
    result = nsgen("diagram", SEED)
    assert result.returncode == 0
    assert result.stdout.encode() == _text("mermaid")


# ---- completion ----------------------------------------------------------------------------

CONSOLE_SCRIPT = Path(sys.executable).parent / "nsgen"


def complete(words: str, cwd: Path = ROOT) -> list[str]:
    """What bash completion offers for the last word of `words` (the installed script)."""
    cwords = words.split(" ")
    env = {
        **os.environ,
        "_NSGEN_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(cwords) - 1),
    }
    result = subprocess.run(
        [str(CONSOLE_SCRIPT)], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_completion_offers_commands_options_and_topology_files() -> None:
    assert complete("nsgen va") == ["validate"]
    assert set(complete("nsgen ")) >= {"validate", "render", "up", "down", "lab", "diagram"}
    assert complete("nsgen up --dr") == ["--dry-run"]
    assert complete("nsgen lab ex") == ["exec", "examples/"]
    assert complete("nsgen validate examples/s") == [
        "examples/seed-dual.yaml",
        "examples/seed.yaml",
    ]
    offered = complete("nsgen validate examples/")
    assert "examples/two-tier.yaml" in offered
    assert "examples/seed-demo.sh" not in offered  # not a topology file
    assert complete("nsgen lab up examples/k8s") == [
        "examples/k8s-dual.yaml",
        "examples/k8s-fleet.yaml",
        "examples/k8s-two-nodes.yaml",
        "examples/k8s-vxlan.yaml",
    ]


def _from_a_bash_prompt(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run argv as a child of bash, as a user at a bash prompt does.

    Typer detects the shell from the process's ancestors (the nearest shell
    wins), so the test must not depend on what started pytest: under `make`
    that is /bin/sh, which completion does not support. The trailing `exit`
    keeps bash from exec-ing the command in its own place."""
    return subprocess.run(
        ["bash", "-c", '"$@"; exit "$?"', "bash", *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_show_completion_prints_the_bash_script_and_install_writes_it(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    shown = _from_a_bash_prompt([str(CONSOLE_SCRIPT), "--show-completion"], env)
    assert shown.returncode == 0, shown.stderr
    assert "_NSGEN_COMPLETE=complete_bash" in shown.stdout
    assert "complete -o default -F _nsgen_completion nsgen" in shown.stdout
    installed = _from_a_bash_prompt([str(CONSOLE_SCRIPT), "--install-completion"], env)
    assert installed.returncode == 0, installed.stderr
    script = tmp_path / ".bash_completions" / "nsgen.sh"
    assert "_NSGEN_COMPLETE=complete_bash" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()
