"""How nsgen's `--help` reads: usage lines in the words of the arguments (`FILE`, `[-- CMD...]`,
never a Python type), option values named by their metavar, the command list with each
command's whole one-line summary, and examples one per line. typer's own layout shows types
(`<str>`, `<list[str]>`), cuts summaries at 45 characters and re-flows examples into one
paragraph; these classes replace only those parts. Also here: how `nsgen lab` takes both its
subcommands and the one-shot `nsgen lab FILE [-- CMD...]`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import typer
from typer import _click
from typer._click.shell_completion import CompletionItem
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from nsgen import completion


def _value_metavar(param: _click.Parameter) -> str:
    """A metavar for an option value or argument that has none: its name, upper case."""
    return (param.name or "value").upper().replace("_", "-")


def _name_params(params: Sequence[_click.Parameter]) -> None:
    """Give every option that takes a value, and every argument, a metavar (typer would show
    the Python type instead)."""
    for param in params:
        if param.metavar is not None:
            continue
        if isinstance(param, TyperOption) and (param.is_flag or param.count):
            continue
        param.metavar = _value_metavar(param)


def _argument_usage(param: _click.Parameter) -> str:
    """`FILE` for a required argument, `[NAME]` for an optional one; a metavar that already
    spells its brackets (`[-- CMD...]`) is shown as it is."""
    name = param.metavar or _value_metavar(param)
    if param.nargs != 1 and "..." not in name:
        name += "..."
    if name.startswith("[") or param.required:
        return name
    return f"[{name}]"


def _format_params(
    command: _click.Command, ctx: _click.Context, formatter: _click.HelpFormatter
) -> None:
    arguments: list[tuple[str, str]] = []
    options: list[tuple[str, str]] = []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        if isinstance(param, TyperArgument):
            arguments.append((param.metavar or _value_metavar(param), getattr(param, "help", "")))
            continue
        record = param.get_help_record(ctx)
        if record is not None:
            options.append(record)
    if arguments:
        with formatter.section("Arguments"):
            formatter.write_dl(arguments)
    if options:
        with formatter.section("Options"):
            formatter.write_dl(options)


def _format_examples(command: _click.Command, formatter: _click.HelpFormatter) -> None:
    """The epilog as written: a heading ("Examples:") and one example per line, never
    re-flowed into a paragraph."""
    if not command.epilog:
        return
    formatter.write_paragraph()
    for line in command.epilog.strip("\n").splitlines():
        formatter.write(f"{line.rstrip()}\n")


class NsgenCommand(TyperCommand):
    """A command whose help follows the rules in this module's docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _name_params(self.params)

    def collect_usage_pieces(self, ctx: _click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                pieces.append(_argument_usage(param))
        return pieces

    def format_options(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        _format_params(self, ctx, formatter)

    def format_epilog(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        _format_examples(self, formatter)


def summary(command: _click.Command) -> str:
    """A command's one-line description in the command list: its short_help, else the first
    sentence of its help, whole."""
    if command.short_help:
        return inspect.cleandoc(command.short_help)
    text = inspect.cleandoc(command.help or "").partition("\f")[0]
    first = " ".join(text.split("\n\n")[0].split())
    end = first.find(". ")
    return first if end < 0 else first[: end + 1]


class NsgenGroup(TyperGroup):
    """A group (nsgen itself, `nsgen lab`) with the same help rules and whole summaries."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _name_params(self.params)

    def format_options(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        _format_params(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, summary(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def format_epilog(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        _format_examples(self, formatter)


class NsgenTyper(typer.Typer):
    """typer.Typer whose commands are NsgenCommands unless they ask for another class."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        kwargs.setdefault("cls", NsgenCommand)
        return super().command(*args, **kwargs)


class LabGroup(NsgenGroup):
    """`nsgen lab`: subcommands (up, list, exec, shell, down), and, when the first word is none
    of them, today's one-shot form `nsgen lab FILE [--check] [-- CMD...]` (the hidden `run`)."""

    ONE_SHOT = "run"

    def parse_args(self, ctx: _click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.ONE_SHOT, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        one_shot = self.commands[self.ONE_SHOT]
        pieces = " ".join(one_shot.collect_usage_pieces(ctx))
        formatter.write_usage(ctx.command_path, pieces)
        formatter.write_usage(ctx.command_path, "COMMAND [ARGS]...", prefix="       ")

    def format_options(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        self.commands[self.ONE_SHOT].format_options(ctx, formatter)
        self.format_commands(ctx, formatter)

    def shell_complete(self, ctx: _click.Context, incomplete: str) -> list[CompletionItem]:
        """The subcommands, and topology files for the one-shot form."""
        items = super().shell_complete(ctx, incomplete)
        return items + [CompletionItem(f) for f in completion.topology_files(incomplete)]


class LabOneShot(NsgenCommand):
    """`nsgen lab FILE ...`: its usage line without the hidden command's name."""

    def format_usage(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        path = ctx.parent.command_path if ctx.parent else ctx.command_path
        formatter.write_usage(path, " ".join(self.collect_usage_pieces(ctx)))
