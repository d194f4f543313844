"""Entry point of the `vlground` command. Each command module registers its commands here; they
import heavy libraries (torch, transformers) inside the commands so `vlground parse` stays instant.

Help is click's plain layout, not Typer's rich tables: option names are never cut, whatever the
width (80 columns in a pipe), and options are grouped under the headings their `rich_help_panel`
names, so the common ones come first and the rare ones below."""
from __future__ import annotations

import sys
import types
from typing import Annotated, Optional

import typer
from typer import _click as click
from typer.core import TyperArgument, TyperGroup

from vlground import __version__
from vlground.cli import convert, detect, eval, finetune, label, ocr, parse, point, tiny
from vlground.cli.verbosity import quiet_libraries, results_only_on_stdout, verbose_option
from vlground.extras import MissingExtraError


_KINDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH"}


PANELS = ("Arguments", "Options", "Output", "Documents", "Engine", "Model", "Scaling")  # the order of help's sections


def _grouped_options(command: click.Command, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    """Arguments, then the options under their panel's heading ("Options" first) in the order given, then
    a group's commands."""
    sections: dict[str, list[tuple[str, str]]] = {name: [] for name in PANELS}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            heading = "Arguments" if param.param_type_name == "argument" else getattr(param, "rich_help_panel", None) or "Options"
            sections.setdefault(heading, []).append(record)
    for heading, records in sections.items():
        if records:
            with formatter.section(heading):
                formatter.write_dl(records)
    if hasattr(command, "format_commands"):  # a group: its commands after its options
        command.format_commands(ctx, formatter)


def _plain_help(command: click.Command, ctx: click.Context) -> click.Command:
    """Help in the words click and argparse users know: a flag shows no type and no default, a value
    its kind in capitals (TEXT, INTEGER, PATH), an argument only its name; not Typer's `<bool>` /
    `<str>` tags. Every command also takes --verbose (see `vlground.cli.verbosity`)."""
    if not hasattr(command, "commands") and not any(p.name == "verbose" for p in command.params):
        command.params.append(verbose_option())
    command.format_options = types.MethodType(_grouped_options, command)
    for param in [*command.params, command.get_help_option(ctx)]:
        if param is None:
            continue
        if isinstance(param, TyperArgument) or getattr(param, "is_flag", False):
            param.display_type_rich = lambda ctx: None
            param.show_default = False
            if isinstance(param, TyperArgument) and param.metavar is None:  # FILE, as the usage lines of click and argparse
                param.metavar = param.name.upper()
        elif param.metavar is None and not param.type_descriptor.is_choice:
            kind = param.display_type(None).strip("<>").removesuffix(" range")  # the range shows beside it
            kind = kind.removeprefix("list[").removesuffix("]")  # a repeatable option: the kind of one value
            param.metavar = _KINDS.get(kind, kind.upper())
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub, ctx)
    return command


class _Commands(TyperGroup):
    """The command group, its own and its subcommands' help made plain (see `_plain_help`) when it parses."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return super(_Commands, _plain_help(self, ctx)).get_params(ctx)

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """As click's, but a usage error (unknown option, bad value, missing argument) is one line
        on stderr with exit status 2, like every other error of the command."""
        quiet_libraries()
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            status = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:
            typer.echo(error.ctx.get_help())
            sys.exit(2)
        except click.exceptions.UsageError as error:
            hint = f" ({error.ctx.command_path} -h for help)" if error.ctx is not None else ""
            typer.echo(f"error: {error.format_message()}{hint}", err=True)
            sys.exit(2)
        except click.exceptions.ClickException as error:
            typer.echo(f"error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except typer.Abort as abort:
            if isinstance(abort.__cause__, EOFError):  # click wraps EOFError as Ctrl-C; it is a fault (a cut file)
                raise abort.__cause__ from None
            sys.exit(130)
        except MissingExtraError as error:  # a command of an extra this install leaves out
            typer.echo(f"error: {error}", err=True)
            sys.exit(2)
        sys.exit(status if isinstance(status, int) else 0)


app = typer.Typer(
    name="vlground",
    cls=_Commands,
    help="Visual grounding and OCR with the Qwen-VL family, with boxes on the original image.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vlground {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[Optional[bool], typer.Option("--version", "-V", callback=_print_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """Visual grounding and OCR with the Qwen-VL family, with boxes on the original image."""


for module in (parse, detect, point, ocr, label, eval, convert, finetune, tiny):
    module.register(app)


def main() -> None:
    with results_only_on_stdout():
        app()


if __name__ == "__main__":
    main()
