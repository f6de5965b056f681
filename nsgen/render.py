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
from nsgen.fields import HOST
from nsgen.kinds.base import LANE_ORDER, Lane, Precondition, Step
from nsgen.kinds.firewall import ChainArgs, MasqueradeArgs, NftArgs, RuleArgs
from nsgen.kinds.registry import kind_of
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


@dataclass(frozen=True)
class Spelling:
    """How a command starts where a step acts (the `c` of every kind macro)."""

    batch: bool
    """The lines go to one program's batch (`ip -b -`, `bridge -b -`, ...): no program name."""
    ip: str
    """How an ip command starts: nothing in a batch, `ip ` in the root namespace,
    `ip netns exec NS ip ` (tutorial style) elsewhere."""
    at: str
    """How any other command starts in the step's namespace: nothing in the root namespace,
    `ip netns exec NS ` elsewhere."""

    @classmethod
    def of(cls, netns: str, batch: bool = False) -> Spelling:
        at = "" if netns == HOST else f"ip netns exec {quote(netns)} "
        return cls(batch, "" if batch else f"{at}ip ", at)


_PROGRAMS: dict[str, tuple[str, ...]] = {
    "ip": ("ip", "-b", "-"),
    "bridge": ("bridge", "-b", "-"),
    "tc": ("tc", "-b", "-"),
}
"""The programs that read batch lines on stdin, by lane."""


class Renderer:
    """Holds one Jinja2 environment; renders plans into step texts and whole scripts."""

    def __init__(self) -> None:
        self.env = make_environment()
        self._modules: dict[str, Any] = {}

    def _module(self, template: str) -> Any:
        module = self._modules.get(template)
        if module is None:
            module = self._modules[template] = self.env.get_template(template).module
        return module

    def steps(self, plan: Plan) -> list[RenderedStep]:
        rendered = []
        for number, step in enumerate(plan.steps, start=1):
            owner = str(step.owner) if step.owner else None
            entered: tuple[Entered, ...] = ()
            if step.parts:
                do, undo, entered = self._batched(step)
                if not undo and owner is None:
                    owner = _owners(step.parts)
            else:
                do = self._kind_macro("do", step)
                undo = "" if step.owner else self._kind_macro("undo", step)
            why = textwrap.wrap(step.why, width=78)
            netns = step.args.netns if entered else ""
            rendered.append(
                RenderedStep(
                    number, step.title, why, do, undo, owner, step.parallel, entered, netns
                )
            )
        return rendered

    def _kind_macro(self, what: str, step: Step, batch: bool = False) -> str:
        """A single step spelled by its kind's `do_`/`undo_<step>` macro."""
        template = kind_of(step.kind).template_of(step)
        spelling = Spelling.of(step.args.netns, batch)
        return self._call(template, f"{what}_{step.kind}", step.args, spelling)

    def _call(self, template: str, macro: str, *args: Any) -> str:
        return str(getattr(self._module(template), macro)(*args)).strip("\n")

    def _batched(self, step: Step) -> tuple[str, str, tuple[Entered, ...]]:
        """A batched step's commands: its parts spelled as batch lines per program, then
        wrapped by templates/_batches.j2 (the root namespace's firewall by its backend's
        template: one iptables-restore, or one nft -f)."""
        lines: dict[Lane, list[str]] = {lane: [] for lane in LANE_ORDER}
        firewall: list[Step] = []
        for part in step.parts:
            lane = kind_of(part.kind).lane_of(part)
            if lane == "firewall":
                firewall.append(part)
            elif lane != "netns":
                batch = self._kind_macro("do", part, batch=True).splitlines()
                if lane in _PROGRAMS:
                    _check_batch_lines(batch)
                lines[lane] += batch
        nft = firewall[0].args if firewall and isinstance(firewall[0].args, NftArgs) else None
        chains: dict[int, list[str]] = {}
        restores: list[tuple[tuple[str, ...], str]]
        if nft is not None:  # one `nft -f -`: the table and all that is in it, one transaction
            restore = "\n".join(self._kind_macro("do", part, batch=True) for part in firewall)
            restores = [(("nft", "-f", "-"), restore)] if restore else []
        else:
            restore = ""
            by_family = self._restore(firewall)
            restores = [((_RESTORE[f], "--noflush", "-w"), text) for f, text in by_family.items()]
            for part in firewall:
                chains.setdefault(_family(part), [])
                if isinstance(part.args, ChainArgs):
                    chains[part.args.family].append(f"{part.args.table}/{part.args.name}")
        commands = _commands(lines, restores)
        b = {
            "commands": commands,
            "restore": restore,
            "chains": dict(sorted(chains.items())),
            "family": nft.family if nft else "",
            "table": nft.table if nft else "",
        }
        template = (
            kind_of(firewall[0].kind).template_of(firewall[0])
            if step.kind == "restore"
            else "_batches.j2"
        )
        entered = commands if step.kind == "ns_batch" else ()
        do = self._call(template, f"do_{step.kind}", step.args, b)
        if step.owner:
            return do, "", entered
        if step.kind in ("netns_batch", "restore"):
            return do, self._call(template, f"undo_{step.kind}", step.args, b), entered
        # Links of the root namespace go in one call (deleting a veth end deletes the pair
        # there and then, while a deleted namespace is cleaned up by the kernel later).
        links: list[str] = []
        undo: list[str] = []
        for part in step.parts:
            if part.owner:
                continue
            link = kind_of(part.kind).deletes_link(part)
            if link is not None:
                links.append(link)
            else:
                undo.append(self._kind_macro("undo", part))
        if links:
            undo.append(self._call("_batches.j2", "undo_links", links))
        return do, "\n".join(undo), entered

    def _restore(self, rules: list[Step]) -> dict[int, str]:
        """iptables-restore input per family (6: ip6tables-restore's): per table, the new
        chains, then the rules, then COMMIT."""
        families: dict[int, dict[str, tuple[list[str], list[str]]]] = {}
        for part in rules:
            template = kind_of(part.kind).template
            table = part.args.table if isinstance(part.args, ChainArgs | RuleArgs) else "nat"
            chains, lines = families.setdefault(_family(part), {}).setdefault(table, ([], []))
            (chains if part.kind == "chain" else lines).append(
                self._call(template, f"restore_{part.kind}", part.args)
            )
        return {
            family: "\n".join(
                "\n".join([f"*{table}", *chains, *lines, "COMMIT"])
                for table, (chains, lines) in tables.items()
            )
            for family, tables in sorted(families.items())
        }

    def preflight(self, check: Precondition) -> str:
        """One precondition's lines of setup.sh's preflight."""
        return self._call(check.template, f"preflight_{check.name}", check.args)

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
            preflight=self.preflight,
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


def _check_batch_lines(lines: list[str]) -> None:
    for line in lines:
        if any(ch in line for ch in "'\"\\#"):
            raise ValueError(f"cannot put {line!r} into a batch: it needs quoting")


_RESTORE = {4: "iptables-restore", 6: "ip6tables-restore"}
"""The firewall lane's program with the iptables backend, by family."""


def _family(part: Step) -> int:
    """The family (4 or 6) of an iptables firewall step."""
    assert isinstance(part.args, ChainArgs | RuleArgs | MasqueradeArgs)
    return part.args.family


def _commands(
    lines: dict[Lane, list[str]], restores: list[tuple[tuple[str, ...], str]]
) -> tuple[Entered, ...]:
    """What a batched step runs, in LANE_ORDER, as argv and stdin: setup.sh spells each as a
    here-document (templates/_batches.j2), and `nsgen up` starts a namespace step's commands
    itself, from inside the namespace."""
    commands = []
    for lane in LANE_ORDER:
        if lane in _PROGRAMS and lines[lane]:
            commands.append(Entered(_PROGRAMS[lane], "".join(f"{x}\n" for x in lines[lane])))
        elif lane == "firewall":
            for argv, restore in restores:
                commands.append(Entered(argv, restore + "\n"))
        elif lane == "sysctl" and lines[lane]:
            commands.append(Entered(("bash", "-c", "; ".join(lines[lane])), ""))
    return tuple(commands)


def _owners(parts: tuple[Step, ...]) -> str:
    """What takes a batched step's effects with it, when each of its parts has an owner: the
    namespaces its veth pairs reach into."""
    names = list(
        dict.fromkeys(p.owner.name for p in parts if p.owner and p.owner.what == "namespace")
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
