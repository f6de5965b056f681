"""The renderer: a Plan becomes text through Jinja2 templates (setup.sh, teardown.sh).

The rendered text of each step is also what `nsgen up` runs, so what a reviewer reads is what
runs. Output is deterministic: the same topology always gives byte-identical scripts.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from nsgen import __version__
from nsgen.errors import UsageError
from nsgen.plan import Plan

SCRIPTS = ("setup.sh", "teardown.sh", "check.sh")


def templates_dir() -> Path:
    """Top-level templates/ in a source tree; nsgen/templates/ in an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "setup.sh.j2").is_file():
            return candidate
    raise FileNotFoundError(f"nsgen templates not found next to {here}")


def quote(value: object) -> str:
    """The one quoting filter: every topology value reaches a script through it."""
    if value is None:
        raise ValueError("refusing to quote None into a script")
    return shlex.quote(str(value))


def comment(value: object) -> str:
    """Text for a bash comment: control characters (a newline would end the comment and
    start a command) become '?'. Names cannot hold them anyway; this is the second line."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(value))


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        # bash's ${#array[@]} would open a Jinja comment; maintainers' notes use {## ... ##}.
        comment_start_string="{##",
        comment_end_string="##}",
    )
    env.filters["q"] = quote
    env.filters["comment"] = comment
    return env


@dataclass(frozen=True)
class RenderedStep:
    """A step as it appears in setup.sh: `do` runs it, `undo` (empty if owned) reverses it."""

    number: int
    title: str
    why: list[str]
    do: str
    undo: str
    owner: str | None


class Renderer:
    """Holds one Jinja2 environment; renders plans into step texts and whole scripts."""

    def __init__(self) -> None:
        self.env = make_environment()
        self.macros = self.env.get_template("_steps.j2").module

    def steps(self, plan: Plan) -> list[RenderedStep]:
        rendered = []
        for number, step in enumerate(plan.steps, start=1):
            do = self._macro(f"do_{step.kind}", step.args)
            undo = "" if step.owner else self._macro(f"undo_{step.kind}", step.args)
            why = textwrap.wrap(step.why, width=78)
            rendered.append(RenderedStep(number, step.title, why, do, undo, step.owner))
        return rendered

    def _macro(self, name: str, args: dict[str, Any]) -> str:
        macro = getattr(self.macros, name)
        return str(macro(args)).strip("\n")

    def script(self, name: str, plan: Plan, steps: list[RenderedStep] | None = None) -> str:
        text = self._render(f"{name}.j2", plan, steps if steps is not None else self.steps(plan))
        return "\n".join(line.rstrip() for line in text.split("\n"))

    def prelude(self, plan: Plan, steps: list[RenderedStep]) -> str:
        """The variables and helpers every step runs with (the top of setup.sh)."""
        return self._render("_prelude.j2", plan, steps).rstrip("\n")

    def preflight_script(self, plan: Plan, steps: list[RenderedStep]) -> str:
        """setup.sh's preflight alone: exits 1 listing every problem, or 0; changes nothing."""
        return self._render("preflight.sh.j2", plan, steps)

    def _render(self, template: str, plan: Plan, steps: list[RenderedStep], **extra: Any) -> str:
        return self.env.get_template(template).render(
            plan=plan, steps=steps, probes=plan.probes, macros=self.macros, version=__version__,
            **extra,
        )

    def unit(self, plan: Plan, libexec: str) -> str:
        """A systemd unit running the scripts installed in `libexec` (an absolute path)."""
        if not _UNIT_PATH.fullmatch(libexec):
            raise UsageError(f"{libexec}: a systemd unit needs an absolute path of letters, "
                             "digits and / . _ - only")
        return self._render("unit.service.j2", plan, [], libexec=libexec)


_UNIT_PATH = re.compile(r"/[A-Za-z0-9/._-]*")


def unit_name(plan: Plan) -> str:
    return f"nsgen-{plan.topology}.service"


def render_scripts(plan: Plan) -> dict[str, str]:
    """All scripts of a plan, by file name."""
    renderer = Renderer()
    steps = renderer.steps(plan)
    return {name: renderer.script(name, plan, steps) for name in SCRIPTS}


def write_scripts(scripts: dict[str, str], out_dir: Path) -> list[Path]:
    """Write scripts into out_dir (created if needed), executable (0755). Returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in scripts.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755)
        written.append(path)
    return written
