"""The renderer: a Plan becomes text through Jinja2 templates (setup.sh, teardown.sh).

The rendered text of each step is also what `nsgen up` runs, so what a reviewer reads is what
runs. Output is deterministic: the same topology always gives byte-identical scripts.
"""

from __future__ import annotations

import os
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from nsgen import __version__
from nsgen.errors import UsageError
from nsgen.model import HOST
from nsgen.plan import Plan, Step

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
    text = str(value)
    return text if text.isprintable() else "".join(ch if ch.isprintable() else "?" for ch in text)


def restore_quote(value: object) -> str:
    """Quoting for an iptables-restore line: bare when safe, else in double quotes."""
    text = str(value)
    if text and all(ch.isalnum() or ch in "-_.:/,!=+@%[]" for ch in text):
        return text
    if "\n" in text:
        raise ValueError(f"{text!r} cannot go into an iptables-restore line")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates are kept in $XDG_CACHE_HOME/nsgen (~/.cache/nsgen): compiling them
    is a good part of rendering a small topology. Jinja2 checks each entry against the
    template's source, so an edited template is compiled again. No cache if the directory
    cannot be made."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(base, "nsgen", f"jinja-{__version__}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError:
        return None
    if not os.access(directory, os.W_OK):
        return None
    return jinja2.FileSystemBytecodeCache(directory)


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        bytecode_cache=_bytecode_cache(),
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
    env.filters["rq"] = restore_quote
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
    parallel: bool = False
    entered: tuple[Entered, ...] = ()
    """For a step confined to one namespace: the same commands as `do`, as (program, stdin)
    pairs to run inside `netns`; `nsgen up` enters the namespace itself (setns) instead of
    starting nsenter for each step."""
    netns: str = ""


@dataclass(frozen=True)
class Entered:
    """One command of a namespace step: argv and the text it reads on stdin."""

    argv: tuple[str, ...]
    stdin: str


class Renderer:
    """Holds one Jinja2 environment; renders plans into step texts and whole scripts."""

    def __init__(self) -> None:
        self.env = make_environment()
        self.macros = self.env.get_template("_steps.j2").module

    def steps(self, plan: Plan) -> list[RenderedStep]:
        rendered = []
        for number, step in enumerate(plan.steps, start=1):
            owner = step.owner
            entered: tuple[Entered, ...] = ()
            if step.parts:
                do, undo, entered = self._batched(step)
                if not undo and owner is None:
                    owner = _owners(step.parts)
            else:
                do = self._macro(f"do_{step.kind}", step.args)
                undo = "" if step.owner else self._macro(f"undo_{step.kind}", step.args)
            why = textwrap.wrap(step.why, width=78)
            netns = str(step.args["netns"]) if entered else ""
            rendered.append(
                RenderedStep(
                    number, step.title, why, do, undo, owner, step.parallel, entered, netns
                )
            )
        return rendered

    def _batched(self, step: Step) -> tuple[str, str, tuple[Entered, ...]]:
        """A batched step's commands: its parts spelled as batch lines, then wrapped."""
        ip_lines: list[str] = []
        fdb_lines: list[str] = []
        rules: list[Step] = []
        sysctls: list[str] = []
        for part in step.parts:
            args = {**part.args, "batch": True}
            if part.kind in ("chain", "rule", "masquerade"):
                rules.append(part)
            elif part.kind == "sysctl":
                sysctls.append(self._macro("sysctl_line", args))
            elif part.kind == "fdb":
                fdb_lines += self._batch_lines("do_fdb", args)
            elif part.kind != "netns":
                ip_lines += self._batch_lines(f"do_{part.kind}", args)
        args = {
            **step.args,
            "ip_lines": ip_lines,
            "fdb_lines": fdb_lines,
            "restore": self._restore(rules),
            "sysctls": sysctls,
            "chains": [f"{p.args['table']}/{p.args['name']}" for p in rules if p.kind == "chain"],
        }
        entered = _entered(args) if step.kind == "ns_batch" else ()
        do = self._macro(f"do_{step.kind}", {**args, "commands": entered})
        if step.owner:
            return do, "", entered
        if step.kind in ("netns_batch", "restore"):
            return do, self._macro(f"undo_{step.kind}", args), entered
        # Links of the root namespace go in one call (deleting a veth end deletes the pair
        # there and then, while a deleted namespace is cleaned up by the kernel later).
        links: list[str] = []
        undo: list[str] = []
        for part in step.parts:
            if part.owner:
                continue
            if part.kind in ("bridge", "vxlan"):
                links.append(str(part.args["name"]))
            elif part.kind == "veth":
                links.append(str(part.args["near" if part.args["near_ns"] == HOST else "far"]))
            else:
                undo.append(self._macro(f"undo_{part.kind}", part.args))
        if links:
            undo.append(self._macro("undo_links", {"names": links}))
        return do, "\n".join(undo), entered

    def _batch_lines(self, macro: str, args: dict[str, Any]) -> list[str]:
        lines = self._macro(macro, args).splitlines()
        for line in lines:
            if any(ch in line for ch in "'\"\\#"):
                raise ValueError(f"cannot put {line!r} into an ip batch: it needs quoting")
        return lines

    def _restore(self, rules: list[Step]) -> str:
        """iptables-restore input: per table, the new chains, then the rules, then COMMIT."""
        tables: dict[str, tuple[list[str], list[str]]] = {}
        for part in rules:
            table = "nat" if part.kind == "masquerade" else str(part.args["table"])
            chains, lines = tables.setdefault(table, ([], []))
            (chains if part.kind == "chain" else lines).append(
                self._macro(f"restore_{part.kind}", part.args)
            )
        return "\n".join(
            "\n".join([f"*{table}", *chains, *lines, "COMMIT"])
            for table, (chains, lines) in tables.items()
        )

    def _macro(self, name: str, args: dict[str, Any]) -> str:
        macro = getattr(self.macros, name)
        return str(macro({**args, "ip": _ip_prefix(args)})).strip("\n")

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
            plan=plan,
            steps=steps,
            probes=plan.probes,
            macros=self.macros,
            version=__version__,
            **extra,
        )

    def unit(self, plan: Plan, libexec: str) -> str:
        """A systemd unit running the scripts installed in `libexec` (an absolute path)."""
        if not _UNIT_PATH.fullmatch(libexec):
            raise UsageError(
                f"{libexec}: a systemd unit needs an absolute path of letters, "
                "digits and / . _ - only"
            )
        return self._render("unit.service.j2", plan, [], libexec=libexec)


def _ip_prefix(args: dict[str, Any]) -> str:
    """How an ip command starts in templates/_steps.j2 (`a.ip`): nothing inside a batch,
    `ip ` in the root namespace, `ip netns exec NS ip ` (tutorial style) elsewhere."""
    if args.get("batch"):
        return ""
    netns = args.get("netns", HOST)
    return "ip " if netns == HOST else f"ip netns exec {quote(netns)} ip "


def _entered(args: dict[str, Any]) -> tuple[Entered, ...]:
    """What a namespace step runs inside its namespace, in order, as argv and stdin: setup.sh
    spells each as an `nsgen_enter NS ...` line (templates/_steps.j2, do_ns_batch), and
    `nsgen up` starts them itself from inside the namespace."""
    commands = []
    if args["ip_lines"]:
        commands.append(Entered(("ip", "-b", "-"), "".join(f"{x}\n" for x in args["ip_lines"])))
    if args["fdb_lines"]:
        commands.append(
            Entered(("bridge", "-b", "-"), "".join(f"{x}\n" for x in args["fdb_lines"]))
        )
    if args["restore"]:
        commands.append(Entered(("iptables-restore", "--noflush", "-w"), args["restore"] + "\n"))
    if args["sysctls"]:
        commands.append(Entered(("bash", "-c", "; ".join(args["sysctls"])), ""))
    return tuple(commands)


def _owners(parts: tuple[Step, ...]) -> str:
    """What takes a batched step's effects with it, when each of its parts has an owner: the
    namespaces its veth pairs reach into."""
    names = list(
        dict.fromkeys(
            str(p.owner).removeprefix("namespace ")
            for p in parts
            if p.owner and str(p.owner).startswith("namespace ")
        )
    )
    if not names:
        return "links it configures"
    if len(names) == 1:
        return f"namespace {names[0]}"
    if len(names) <= 4:
        return "namespaces " + ", ".join(names[:-1]) + f" and {names[-1]}"
    return f"{len(names)} namespaces its pairs reach into"


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


def write_bundle(
    plan: Plan, out: Path | None, systemd: bool = False, install_to: Path | None = None
) -> list[Path]:
    """What `nsgen render` writes: the scripts into `out` (with the systemd unit running them
    from there if `systemd`), and/or an image tree under `install_to`:
    PREFIX/usr/libexec/nsgen/<topology>/*.sh and PREFIX/etc/systemd/system/nsgen-<topology>.service.
    Returns the paths written, in order."""
    renderer = Renderer()
    steps = renderer.steps(plan)
    scripts = {name: renderer.script(name, plan, steps) for name in SCRIPTS}
    written: list[Path] = []
    if out is not None:
        written += write_scripts(scripts, out)
        if systemd:
            unit = out / unit_name(plan)
            unit.write_text(renderer.unit(plan, str(out.resolve())))
            written.append(unit)
    if install_to is not None:
        libexec = f"/usr/libexec/nsgen/{plan.topology}"
        written += write_scripts(scripts, install_to / libexec.lstrip("/"))
        units = install_to / "etc/systemd/system"
        units.mkdir(parents=True, exist_ok=True)
        unit = units / unit_name(plan)
        unit.write_text(renderer.unit(plan, libexec))
        unit.chmod(0o644)
        written.append(unit)
    return written
