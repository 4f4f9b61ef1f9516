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
SUBCOMMANDS = ("diagnose", "plan", "operate", "compare", "report", "study", "extremes", "toy", "lab")


@app.callback()
def _root() -> None:
    """Find, explain, repair and measure collapsed attention heads (attention sinks)."""


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
    """Entry point: run the app; user errors become one line on stderr and exit code 2.

    Usage errors (unknown option, bad value) are reported by typer/click itself, also
    without a traceback.
    """
    from headsurgeon.errors import HeadsurgeonError

    try:
        app(args=argv, standalone_mode=True)
    except HeadsurgeonError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(run())
