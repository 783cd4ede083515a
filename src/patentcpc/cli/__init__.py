"""The ``patentcpc`` command line: a thin Typer layer over the library.

Every error a user can cause (bad data, bad options, a missing model) is a
:class:`~patentcpc.errors.PatentCPCError`: :func:`main` prints it on one line and exits with code 2,
without a traceback. Sub-modules register their commands on :data:`app`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import sys
import traceback
import warnings

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
# order of `patentcpc --help` (hence not sorted). Shared options: :mod:`patentcpc.cli.options`.
# isort: off
from patentcpc.cli import data, train, evaluate, predict, cpc, quickstart, pretrain, tokenizer, bench  # noqa: E402, F401
from patentcpc.cli import serve, export, search, synth, embeddings, read  # noqa: E402, F401
# isort: on

# every command's outputs go through one guard (patentcpc.io.guard_outputs), from one table
from patentcpc.cli.outputs import install as _install_output_guard  # noqa: E402

_install_output_guard(app)


def _version(value: bool) -> None:
    if value:
        from patentcpc import __version__

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


def _one_line(message: str, limit: int = 2000) -> str:
    """``message`` on one line: its lines joined by "; ", white space collapsed, at most ``limit``
    characters (a library's multi-line message must not make an error several lines)."""
    text = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fail(message: str, code: int, debug: bool) -> None:
    from rich.markup import escape

    from patentcpc.io import INTERRUPTED

    if debug:
        traceback.print_exc()
    if INTERRUPTED.is_set():  # an error the Ctrl-C caused (a library wrapped it): main reports the interrupt
        sys.exit(code)
    console.print(f"[bold red]error:[/] {escape(_one_line(message))}", highlight=False, soft_wrap=True,
                  markup=True)
    sys.exit(code)


# errno values of a path the user named (exit 2, like bad input), in plain words
_PATH_ERRORS = {
    errno.ENOENT: "no such file or folder", errno.EEXIST: "file exists", errno.EISDIR: "is a folder",
    errno.ENOTDIR: "not a folder (a part of the path is a file)", errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted", errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long", errno.ELOOP: "too many levels of symbolic links",
    errno.ENOTEMPTY: "folder not empty", errno.EXDEV: "on another file system",
}
# errno values of the machine's resources (exit 1)
_RESOURCE_ERRORS = {
    errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large",
    errno.ENOMEM: "out of memory", errno.EMFILE: "too many open files", errno.ENFILE: "too many open files",
    errno.EIO: "input/output error",
}
# numpy's words for a short write (an OSError without errno): the disk is full
_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")


def os_error_message(exc: OSError, argv: list[str] | None = None) -> tuple[str, int]:
    """(one-line message, exit code) of an :class:`OSError`: the file (``exc.filename``, else the
    command's output path) and a plain cause ("disk full", "is a folder", ...); exit 2 for a path
    the user named, 1 for the machine's resources and anything else."""
    code = exc.errno
    short = _SHORT_WRITE.search(str(exc))
    if code in _PATH_ERRORS:
        cause, status = _PATH_ERRORS[code], 2
    elif code in _RESOURCE_ERRORS or short:
        cause, status = _RESOURCE_ERRORS.get(code, "disk full"), 1
        if short:
            cause += f" ({short.group(2)} of {short.group(1)} bytes written)"
    else:
        cause, status = exc.strerror or str(exc) or type(exc).__name__, 1
    where = [_user_path(exc.filename)] if exc.filename is not None else []
    if where and getattr(exc, "filename2", None) is not None:
        where.append(f"-> {_user_path(exc.filename2)}")
    if not where and status == 1 and code != errno.ENOMEM:
        from patentcpc.cli.outputs import OUTPUT_OPTIONS  # (the guard's one list of output options)

        output = _named_option(argv or [], OUTPUT_OPTIONS)
        if output:
            cause += f" while writing {output}"
    return (" ".join(where) + ": " if where else "") + cause, status


# patentcpc.io's temporary names: ".NAME.tmp-XXXXXXXX" (folders), ".NAME.XXXXXXXX.tmp.EXT" (files)
_TEMP_NAME = re.compile(r"\.(?P<name>.+?)\.(?:tmp-[a-z0-9_]{8}|[a-z0-9_]{8}\.tmp(?:\.[^./]*)?)")


def _user_path(filename: object) -> str:
    """``filename`` as the user knows it: an atomic writer's temporary name is shown as the output
    it stands for (``out/.parts.tmp-1a2b3c4d/train.jsonl`` -> ``out/parts/train.jsonl``)."""
    text = os.fsdecode(filename) if isinstance(filename, (str, bytes, os.PathLike)) else str(filename)
    parts = text.split("/")
    return "/".join(m.group("name") if (m := _TEMP_NAME.fullmatch(part)) else part for part in parts)


_INPUT_OPTIONS = ("--data", "--input", "--config", "--eval-data", "--model", "--index")


def _named_option(argv: list[str], names: tuple[str, ...]) -> str | None:
    """The value of the first of ``names`` on the command line (``--x v`` or ``--x=v``)."""
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in names:
            if eq:
                return value
            if i + 1 < len(argv):
                return argv[i + 1]
    return None


def _unexpected_message(exc: BaseException, argv: list[str]) -> str:
    """``Type: message``, followed by the command's inputs when the message names none of them
    (so that even an unforeseen error says which file it was about)."""
    text = f"{type(exc).__name__}: {exc}"
    named = [(name, value) for name in _INPUT_OPTIONS if (value := _named_option(argv, (name,)))]
    if named and not any(value in text for _, value in named):
        text += " (" + ", ".join(f"{name} {value}" for name, value in named) + ")"
    return text


def _unicode_message(exc: UnicodeDecodeError, argv: list[str]) -> str:
    source = _named_option(argv, _INPUT_OPTIONS)
    bad = ""
    if 0 <= exc.start < len(exc.object):
        bad = f" (byte 0x{exc.object[exc.start]:02x})"
    return f"{source + ': ' if source else ''}bytes that are not UTF-8{bad}; re-save the file as UTF-8"


def _on_sigint(signum, frame) -> None:
    from patentcpc.io import INTERRUPTED

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


def _quiet_library_progress() -> None:
    """No progress bars (tqdm's: transformers' "Loading weights", the hub's downloads, batch
    prediction) unless a person watches stderr: they would make an error message several lines."""
    if os.environ.get("PATENTCPC_PROGRESS", "1") == "1" and sys.stderr.isatty():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # read when tqdm is first imported (after this)
    if "transformers" in sys.modules:  # imported already (in-process use): its flag is set at import
        with contextlib.suppress(Exception):
            sys.modules["transformers"].utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit 0 on success, 2 on a usage or input error, 130 when
    interrupted, 1 on any other failure; one line of message, the traceback only with ``--debug``
    or ``PATENTCPC_DEBUG=1``."""
    global _REAL_PROCESS
    from patentcpc.io import INTERRUPTED

    _REAL_PROCESS = argv is None
    argv, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_library_progress()
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


class _DeferredLog(logging.Handler):
    """Stands in for :data:`logging.lastResort` during a command: what libraries log without a
    handler of their own is kept, and shown only when the command succeeds (or, for a long-running
    command such as ``serve``, from :func:`show_held_messages` on)."""

    def __init__(self, original: logging.Handler | None, caught: list) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.original, self.caught = original, caught
        self.released = False
        self.shown: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if self.released:
            if self.original is not None:
                self.original.handle(record)
            return
        with contextlib.suppress(Exception):  # a record that cannot be formatted is dropped
            self.messages.append(record.getMessage())

    def show(self) -> None:
        """Print what was held, one line each, once."""
        texts = [*(str(w.message) for w in self.caught), *self.messages]
        self.caught.clear()
        self.messages.clear()
        for text in texts:
            line = _one_line(text, 500)
            if line and line not in self.shown:
                self.shown.add(line)
                console.print(f"warning: {line}", highlight=False, markup=False, soft_wrap=True)

    def let_through(self) -> None:  # (not "release": a Handler's lock method)
        self.show()
        self.released = True

        def show_now(message, category, filename, lineno, file=None, line=None):
            console.print(f"warning: {_one_line(str(message), 500)}", highlight=False, markup=False,
                          soft_wrap=True)

        warnings.showwarning = show_now  # (catch_warnings restores it when the command ends)


_HELD: _DeferredLog | None = None


def show_held_messages() -> None:
    """For a command that runs on after its checks (``serve``): print the warnings held back so far
    and let later ones (a service's log) through at once."""
    if _HELD is not None:
        _HELD.let_through()


def _run(argv: list[str], debug: bool) -> int:
    """Run the command. Without ``--debug``, Python warnings and unhandled library log records are
    held back and printed (one line each) only when it succeeds: an error is exactly one line."""
    global _HELD
    if debug:
        return _run_command(argv, debug)
    ok = False
    with warnings.catch_warnings(record=True) as caught:
        saved = logging.lastResort
        _HELD = logging.lastResort = _DeferredLog(saved, caught)
        try:
            rv = _run_command(argv, debug)
            ok = True
        except SystemExit as exc:
            ok = exc.code in (0, None)
            raise
        finally:
            held, _HELD = _HELD, None
            logging.lastResort = saved
            if ok:
                held.show()
    return rv


def _is_usage_mistake(exc: Exception) -> bool:
    """A click usage error (unknown option, bad value, missing argument), not a request for help.
    By class name: typer vendors its own click (``typer._click``), older typers use click itself."""
    names = {c.__name__ for c in type(exc).__mro__}
    return "UsageError" in names and "NoArgsIsHelpError" not in names and hasattr(exc, "format_message")


def _run_command(argv: list[str], debug: bool) -> int:
    from patentcpc.errors import PatentCPCError

    try:
        rv = app(args=argv, prog_name="patentcpc", standalone_mode=False)
    except _EXIT as exc:
        sys.exit(exc.exit_code)
    except _CLICK_EXCEPTIONS as exc:  # usage mistakes (exit 2) and click's own errors
        if debug:
            traceback.print_exc()
        show = getattr(exc, "show", None)
        if _is_usage_mistake(exc):  # one line, like every other error: what is wrong, where to look
            path = exc.ctx.command_path if exc.ctx is not None else "patentcpc"
            console.print(f"error: {' '.join(exc.format_message().split())} (see '{path} --help')",
                          highlight=False, markup=False, soft_wrap=True)
        elif show is not None:
            show()
        else:
            console.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except _ABORT:
        console.print("aborted")
        sys.exit(1)
    except PatentCPCError as exc:
        _fail(str(exc), 2, debug)
    except KeyboardInterrupt:
        _interrupted(debug)
    except OSError as exc:
        _fail(*os_error_message(exc, argv), debug)
    except MemoryError:
        _fail("out of memory", 1, debug)
    except RecursionError:  # a reader that recursed on deeply nested input
        source = _named_option(argv, _INPUT_OPTIONS)
        _fail(f"{source + ': ' if source else ''}input nested too deeply", 2, debug)
    except UnicodeDecodeError as exc:  # a reader that met bytes that are not UTF-8
        _fail(_unicode_message(exc, argv), 2, debug)
    except Exception as exc:  # anything unexpected: one line, never a silent success
        _fail(_unexpected_message(exc, argv), 1, debug)
    # typer turns Ctrl-C into a returned 130 (and an explicit Exit into its code) in this mode
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
