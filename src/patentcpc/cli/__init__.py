"""The ``patentcpc`` command line: a thin Typer layer over the library.

Every error a user can cause (bad data, bad options, a missing model) is a
:class:`~patentcpc.errors.PatentCPCError`: :func:`main` prints it on one line and exits with code 2,
without a traceback. Sub-modules register their commands on :data:`app`.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

import typer
from rich.console import Console

app = typer.Typer(
    name="patentcpc",
    help="Assign CPC codes to patent text: data, training, evaluation, prediction, serving, search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect and split patent datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console(stderr=True)
out = Console()

# Command modules, one per thing the user does (each registers its commands on `app`, and imports
# the library only inside a command: `--help` stays fast); imported for their side effect, in the
# order of `patentcpc --help`. Shared options: :mod:`patentcpc.cli.options`.
COMMAND_MODULES = ("data", "train", "evaluate", "predict", "cpc", "quickstart", "pretrain", "tokenizer", "bench",
                   "serve", "export", "search", "synth", "embeddings")
for _name in COMMAND_MODULES:
    __import__(f"patentcpc.cli.{_name}")


def _version(value: bool) -> None:
    if value:
        from patentcpc import __version__  # noqa: PLC0415

        print(f"patentcpc {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    version: bool = typer.Option(False, "--version", help="Show the version and exit.", callback=_version,
                                 is_eager=True),
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of an error "
                                                      "(also PATENTCPC_DEBUG=1)."),
) -> None:
    """Assign CPC codes to patent text: data, training, evaluation, prediction, serving, search."""


# typer's own exception classes (typer >= 0.16 carries its own click: click's classes never match)
_CLICK_EXCEPTIONS = (typer.TyperException,)
_ABORT = (typer.Abort,)
_EXIT = (typer.Exit,)


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """Take ``--debug`` out of the global options (those before the command name)."""
    debug = os.environ.get("PATENTCPC_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    rest: list[str] = []
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            return rest + argv[i:], debug
        if arg == "--debug":
            debug = True
        else:
            rest.append(arg)
    return rest, debug


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    sys.exit(code)


def _on_sigint(signum, frame) -> None:
    from patentcpc.io import INTERRUPTED  # noqa: PLC0415

    INTERRUPTED.set()  # remembered even if a library swallows the KeyboardInterrupt
    raise KeyboardInterrupt


_REAL_PROCESS = False  # main() called by the console script / python -m (not in-process by a test)


def _interrupted(debug: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a late or repeated Ctrl-C must not turn 130 into a kill
    if debug:
        traceback.print_exc()
    console.print("interrupted")
    if _REAL_PROCESS:
        # every temporary output is already removed (the stack has unwound); skip interpreter
        # shutdown, where a SIGINT re-raised by a native library (Arrow) would end the process by
        # the signal (-2) instead of exit code 130
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit 0 on success, 2 on a usage or input error, 130 when
    interrupted, 1 on any other failure; one line of message, the traceback only with ``--debug``
    or ``PATENTCPC_DEBUG=1``."""
    global _REAL_PROCESS
    from patentcpc.io import INTERRUPTED  # noqa: PLC0415

    _REAL_PROCESS = argv is None
    argv, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    INTERRUPTED.clear()
    try:
        previous = signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread: keep Python's own handler
        previous = None
    try:
        rv = _run(argv, debug)
    except KeyboardInterrupt:
        _interrupted(debug)
    except SystemExit:
        if INTERRUPTED.is_set():  # an error that the interrupt caused: report the interrupt
            _interrupted(False)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        raise
    if INTERRUPTED.is_set() or rv == 130:  # typer returns 130 for a Ctrl-C it caught itself
        _interrupted(False)
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
    sys.exit(rv)


def _run(argv: list[str], debug: bool) -> int:
    from rich.markup import escape  # noqa: PLC0415

    from patentcpc.errors import PatentCPCError  # noqa: PLC0415

    try:
        rv = app(args=argv, prog_name="patentcpc", standalone_mode=False)
    except _EXIT as exc:
        sys.exit(exc.exit_code)
    except _CLICK_EXCEPTIONS as exc:  # usage mistakes (exit 2) and click's own errors
        if debug:
            traceback.print_exc()
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            console.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except _ABORT:
        console.print("aborted")
        sys.exit(1)
    except PatentCPCError as exc:
        _fail(escape(str(exc)), 2, debug)
    except KeyboardInterrupt:
        _interrupted(debug)
    except (OSError, MemoryError) as exc:
        _fail(escape(str(exc) or type(exc).__name__), 1, debug)
    except Exception as exc:  # anything unexpected: one line, never a silent success
        _fail(escape(f"{type(exc).__name__}: {exc}"), 1, debug)
    # typer turns Ctrl-C into a returned 130 (and an explicit Exit into its code) in this mode
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
