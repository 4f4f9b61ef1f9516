"""The ``headsurgeon`` command: wires the subcommand modules together and turns user errors
into one-line messages (``error: ...``, exit code 2, no traceback)."""

from __future__ import annotations

import importlib
import math
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
SUBCOMMANDS = ("diagnose", "plan", "operate", "compare", "report", "study", "extremes", "toy", "lab", "runs")


def _version(value: bool) -> None:
    if value:
        from headsurgeon._version import DOCUMENT_VERSIONS, __version__

        typer.echo(f"headsurgeon {__version__}")
        typer.echo("document versions: " + ", ".join(f"{k} {v}" for k, v in DOCUMENT_VERSIONS.items()))
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
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


def _is_float_option(param) -> bool:
    """Whether a typer parameter takes floats (``float``, ``Optional[float]``, ``list[float]``)."""
    import typing

    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    args = typing.get_args(annotation)
    return annotation is float or float in args


def _finite(callback):
    """A parameter callback that refuses ``nan``, ``inf`` and ``-inf`` before ``callback`` runs."""

    def check(ctx, param, value):
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise typer.BadParameter(f"{v} is not a finite number", ctx=ctx, param=param)
        return callback(ctx, param, value) if callback is not None else value

    return check


def _finite_floats(command):
    """Every float option of every subcommand refuses NaN and infinity while parsing.

    The library's configuration rules (:mod:`headsurgeon.options`) refuse them too; doing it
    here as well stops a command before any work, whatever its option feeds.
    """
    for param in command.params:
        if _is_float_option(param):
            param.callback = _finite(param.callback)
    for sub in (getattr(command, "commands", None) or {}).values():
        _finite_floats(sub)
    return command


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _subcommand(argv: list[str]) -> str:
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] not in SUBCOMMANDS:
        return ""
    return " ".join(words[:2]) if words[0] == "toy" and words[1:2] and words[1] in ("train", "compare", "presets") else words[0]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds as from a Ctrl-C: a run says what it
    kept and resumes next time. Batch schedulers (SLURM, Kubernetes) and ``kill`` send SIGTERM
    before SIGKILL; without a handler Python dies on the spot, mid-evaluation."""


def _raise_terminated(signum, frame) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut short the unwinding (SIGKILL still ends it)
    raise Terminated("SIGTERM")


class _Interrupted(Exception):  # noqa: N818 - a carrier, not an error of its own
    """A Ctrl-C / SIGTERM carried past typer, which would turn it into a bare ``Exit(130)``
    and drop the run's message (what it kept, how to resume) and the 143 of SIGTERM."""

    def __init__(self, original: KeyboardInterrupt):
        super().__init__(str(original))
        self.original = original


def _carry_interrupts(command):
    """Wrap the root command's option parsing and invocation (subcommands run inside the latter)."""
    for name in ("make_context", "invoke"):
        original = getattr(command, name)

        def carried(*args, _original=original, **kwargs):
            try:
                return _original(*args, **kwargs)
            except KeyboardInterrupt as exc:
                raise _Interrupted(exc) from exc

        setattr(command, name, carried)
    return command


def interrupted_exit_code(exc: BaseException | None = None) -> int:
    """143 (128 + SIGTERM) when ``exc`` came from SIGTERM, else 130 (128 + SIGINT), the shell's convention."""
    return 143 if any(isinstance(e, Terminated) for e in _chain(exc)) else 130


def _interrupted(exc: BaseException) -> int:
    """Say what an interruption left (a run's own message names its checkpoint) and return 130 or 143."""
    runs = sys.modules.get("headsurgeon.surgery.training_run")  # not imported: no run was interrupted (and no torch to load now)
    code = interrupted_exit_code(exc)
    kept = next((e for e in _chain(exc) if isinstance(e, runs.RunInterrupted)), None) if runs else None
    if kept is not None:
        typer.echo(f"error: {kept}", err=True)
    else:
        typer.echo(f"error: interrupted{' (SIGTERM)' if code == 143 else ''}; run the same command again to resume where a run allows it",
                   err=True)
    return code


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def run(argv: list[str] | None = None) -> int:
    """Entry point: every failure becomes one line ``error: ...`` on stderr, never a traceback.

    Exit codes: 2 for anything about the input (a :class:`HeadsurgeonError`, a bad option, an
    output path that cannot be written), 1 for the rest (a full disk, a bug), 130 when
    interrupted (Ctrl-C), 143 when terminated (SIGTERM, handled the same way). An unexpected
    exception is a bug: its one line says so, and ``HEADSURGEON_TRACEBACK=1`` shows the traceback.
    """
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str] | None) -> int:
    import os

    from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer >= 0.20 carries its own click

    from headsurgeon.errors import HeadsurgeonError, from_os_error

    argv = list(sys.argv[1:] if argv is None else argv)
    command = _carry_interrupts(_finite_floats(typer.main.get_command(app)))
    try:
        result = command.main(args=argv, prog_name="headsurgeon", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except NoArgsIsHelpError as exc:
        exc.show()  # the help text: the right answer to a bare `headsurgeon`
        return 2
    except UsageError as exc:
        sub = _subcommand(argv)
        typer.echo(f"error: {_one_line(exc.format_message()).rstrip('.')}; see `headsurgeon {sub + ' ' if sub else ''}--help`", err=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except _Interrupted as exc:
        return _interrupted(exc.original)
    except (typer.Abort, KeyboardInterrupt) as exc:  # outside the wrapped calls (typer's own set-up)
        return _interrupted(exc)
    except HeadsurgeonError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback
        if os.environ.get("HEADSURGEON_TRACEBACK") == "1":
            raise
        if isinstance(exc, OSError) or _wraps_os_error(exc):
            err = from_os_error(exc)
            typer.echo(f"error: {err}", err=True)
            return err.exit_code
        if isinstance(exc, MemoryError):
            typer.echo("error: out of memory; use a smaller --batch-size or --seq-len, or a machine with more memory", err=True)
            return 1
        first = _one_line(str(exc).splitlines()[0] if str(exc) else "")
        typer.echo(f"error: unexpected {type(exc).__name__}: {first[:300]}; this is a bug in headsurgeon, please report it "
                   "(HEADSURGEON_TRACEBACK=1 shows where it happened)", err=True)
        return 1


def _wraps_os_error(exc: BaseException) -> bool:
    """A library error that is an OS refusal in disguise (safetensors' ``SafetensorError``, ...)."""
    text = str(exc).lower()
    return type(exc).__name__ == "SafetensorError" or any(
        n in text for n in ("no space left", "read-only file system", "os error 28", "storagefull"))


if __name__ == "__main__":
    sys.exit(run())
