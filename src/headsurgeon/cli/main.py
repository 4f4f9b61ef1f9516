"""The ``headsurgeon`` command: wires the subcommand modules together and turns user errors
into one-line messages (``error: ...``, exit code 2, no traceback)."""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="headsurgeon",
    help="Find, explain, repair and measure collapsed attention heads (attention sinks).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Subcommand modules; each exposes ``register(app)``.
SUBCOMMANDS = ("diagnose", "plan", "operate", "compare", "report", "study", "extremes", "toy")


def _register_all() -> None:
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"headsurgeon.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not written yet must not break the rest
            if exc.name == f"headsurgeon.cli.{name}":
                continue
            raise
        module.register(app)


_register_all()


def run(argv: list[str] | None = None) -> int:
    """Entry point: run the app; user errors become one line on stderr and exit code 2."""
    from headsurgeon.errors import HeadsurgeonError

    try:
        app(args=argv, standalone_mode=False)
    except HeadsurgeonError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # click usage errors and friends
        import click

        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            typer.echo("aborted", err=True)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(run())
