"""Safe outputs: atomic writers and the guard every command's output goes through.

Atomic writers (one implementation for the whole package):

- :func:`atomic_write_text` / :func:`atomic_write_bytes`: a whole file at once;
- :func:`atomic_open`: a file object for streamed output (:func:`write_jsonl`: records as JSON Lines);
- :func:`atomic_path`: a fresh temporary path for libraries that write by file name;
- :func:`atomic_dir`: a temporary sibling folder that replaces the destination folder in one rename.

Temporary files and folders are made with :mod:`tempfile` in the destination's folder (unique,
unpredictable names, created exclusively, so a symlink planted there is never followed), and removed
on every error path, ``KeyboardInterrupt`` included. Readers see the old content or the new one,
never a torn file.

Output guard: patentcpc writes a folder only when it does not exist, is empty or already holds a
patentcpc artifact of the same kind: a :data:`MARKER` file ``{"artifact": KIND, ...}`` written into
every output folder, except finished model folders, which their ``manifest.json`` marks (an
unfinished transformer run, before its manifest exists, carries the marker). It never writes
its output over one of its own inputs (paths compared after resolving links). Anything else is an
:class:`OutputError` (one line, exit 2 in the CLI) before any work is done.

One place for every command: a command declares each path it writes as an :class:`OutputSpec`
and runs inside :func:`guard_outputs` (the :func:`writes` decorator; the CLI applies it to every
command from one table, :mod:`patentcpc.cli.outputs`). The guard checks every output against the
rules above and against every other path the command was given, before any work; and when the
command fails or is interrupted, it removes what the command had put at an output path that did
not exist (or was an empty folder) before, so an error or Ctrl-C leaves nothing there.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from patentcpc.errors import ConfigError

MARKER = ".patentcpc.json"
ARTIFACT_KINDS = ("model", "tokenizer", "encoder", "index", "splits", "export", "embeddings", "benchmark", "plots",
                  "synth-audit", "synth-experiment")
_LEGACY = {"model": "manifest.json", "index": "index.json"}  # folders written before the marker existed
_SELF_MARKED = ("model",)  # a finished model folder is marked by its own manifest.json


class OutputError(ConfigError):
    """An output path patentcpc must not write (a user folder, another artifact, its own input)."""


# ----------------------------------------------------------------------------- atomic writers

#: Output folders this process made or marked (atomic_dir, prepare_output_dir): a command that fails
#: may remove them if they were not there (or empty) before it.
_MADE: set[Path] = set()

#: Set by the CLI's SIGINT handler. Once set, no atomic writer commits (it raises KeyboardInterrupt
#: instead), so an interrupt that a library swallowed still leaves nothing at the final path.
INTERRUPTED = threading.Event()


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed (even if a library swallowed it): for long loops."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt


def _commit_point() -> None:
    check_interrupted()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_name(path: Path) -> tuple[str, str]:
    # keep the suffix: some writers choose the format from it (matplotlib, pyarrow)
    return f".{path.name}.", f".tmp{path.suffix}"


def _unlink_quietly(path: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Yield a new, empty temporary file next to ``path``; write it by name, and on success it
    replaces ``path`` in one rename (on any error it is removed and ``path`` is untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _tmp_name(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    mode = mode if mode is not None else 0o666 & ~_umask()  # mkstemp makes 0600
    try:
        os.fchmod(fd, mode)
        os.close(fd)
        yield Path(tmp)
        _commit_point()
        os.chmod(tmp, mode)  # again: a writer may have replaced the file by name (safetensors makes 0600)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file for writing (``"w"`` or ``"wb"``); when the block ends without an
    error it is flushed, synced and renamed onto ``path``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _tmp_name(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _commit_point()
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a torn one."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_jsonl(records: Iterable[dict], path: str | os.PathLike,
                progress: Callable[[int], object] | None = None) -> int:
    """Write records as JSON Lines atomically (a temporary file renamed at the end); returns how
    many. ``progress`` is called with 1 after each record."""
    n = 0
    with atomic_open(path, "w") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
            if progress is not None:
                progress(1)
    return n


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, kind: str | None = None) -> Iterator[Path]:
    """Yield a new temporary sibling folder; on success it replaces ``path`` in one rename, so an
    old artifact at ``path`` stays usable until the new one is complete.

    With ``kind`` (one of :data:`ARTIFACT_KINDS`) the folder gets the :data:`MARKER` of that kind, and
    an existing ``path`` is only replaced when :func:`check_output_dir` allows it (checked again
    right before the rename)."""
    path = Path(path)
    if kind is not None:
        check_output_dir(path, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        yield tmp
        if kind is not None:
            if kind not in _SELF_MARKED or not (tmp / _LEGACY[kind]).is_file():
                write_marker(tmp, kind)
            check_output_dir(path, kind)
        _commit_point()
        _replace_dir(tmp, path)
        _MADE.add(_real(path))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(new: Path, path: Path) -> None:
    if not (path.exists() or path.is_symlink()):
        os.replace(new, path)
        return
    if path.is_symlink() or not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder; choose another output")
    # reserve an unpredictable name, then move the old folder onto it (rename(2) replaces an empty folder)
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
    os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- output guard


def write_marker(folder: str | os.PathLike, kind: str, **extra: Any) -> None:
    """Mark ``folder`` as a patentcpc artifact of ``kind``."""
    from patentcpc import __version__

    if kind not in ARTIFACT_KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    doc = {"artifact": kind, "patentcpc_version": __version__,
           "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
    atomic_write_text(Path(folder) / MARKER, json.dumps(doc, indent=2) + "\n")


def artifact_kind(folder: str | os.PathLike) -> str | None:
    """The kind of patentcpc artifact ``folder`` holds (None: not one)."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.is_file():
        try:
            kind = json.loads(marker.read_text(encoding="utf-8")).get("artifact")
        except (OSError, ValueError, AttributeError):
            return None
        return kind if kind in ARTIFACT_KINDS else None
    for kind, name in _LEGACY.items():
        file = folder / name
        if file.is_file():
            try:
                doc = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and ("format_version" in doc if kind == "model" else "format" in doc):
                return kind
    return None


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _is_non_empty_dir(path: Path) -> bool:
    with os.scandir(path) as it:
        return any(True for _ in it)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def check_not_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None],
                    option: str = "--output", folder: bool = False, within: bool = False) -> None:
    """Refuse an output that is one of the inputs (after resolving links; a hard link to it too), or,
    for an output ``folder`` (which gets replaced), one that contains an input; ``within``: also an
    existing file inside an input folder (a file of a model, an index or a dataset folder)."""
    real = _real(output)
    st = _stat(real)
    for inp in inputs:
        if inp is None or str(inp) == "" or not os.path.lexists(os.path.expanduser(os.fspath(inp))):
            continue  # not a local path (a hub id, a model name): nothing to overwrite
        ri = _real(inp)
        same = st is not None and not folder and (sti := _stat(ri)) is not None and \
            (sti.st_dev, sti.st_ino) == (st.st_dev, st.st_ino)
        if ri == real or same:
            raise OutputError(f"{output}: {option} is the input {inp}; patentcpc never writes over its input")
        if folder and real in ri.parents:
            raise OutputError(f"{output}: {option} holds the input {inp}; choose another {option}")
        if within and st is not None and ri in real.parents and ri.is_dir():
            raise OutputError(f"{output}: {option} is a file of the input folder {inp}; patentcpc never writes "
                              "over its input")


def _check_parents(path: Path, option: str) -> None:
    """Refuse an output under an existing file (it could never be written)."""
    for parent in path.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise OutputError(f"{path}: {option} is under {parent}, which is not a folder")
            return


def check_output_dir(path: str | os.PathLike, kind: str, inputs: Iterable[str | os.PathLike | None] = (),
                     option: str = "--output") -> Path:
    """Raise :class:`OutputError` unless patentcpc may write a ``kind`` artifact at folder ``path``:
    it does not exist, is empty, or holds an artifact of the same kind; and it is not (and does not
    hold) one of ``inputs``. Returns ``path`` as a Path."""
    path = Path(path)
    check_not_input(path, inputs, option, folder=True)
    if not (path.exists() or path.is_symlink()):
        _check_parents(path, option)
        return path
    if path.is_symlink() and not path.exists():
        raise OutputError(f"{path}: {option} is a dangling link; choose another {option}")
    if not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder; choose another {option}")
    if not _is_non_empty_dir(path):
        return path
    found = artifact_kind(path)
    if found == kind:
        return path
    if found is None:
        raise OutputError(f"{path}: folder exists and is not a patentcpc {kind} folder; patentcpc does not "
                          f"replace folders it did not write: choose another {option}")
    raise OutputError(f"{path}: holds a patentcpc {found}, not a {kind}; choose another {option}")


def check_output_file(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                      option: str = "--output", within: bool = True) -> Path:
    """Raise :class:`OutputError` if the output file ``path`` is an existing folder, one of
    ``inputs`` (after resolving links), ``within``: an existing file inside an input folder, or
    under a file. Returns ``path`` as a Path."""
    path = Path(path)
    check_not_input(path, inputs, option, within=within)
    if path.is_dir():
        raise OutputError(f"{path}: {option} is a folder; give a file name")
    _check_parents(path, option)
    return path


def check_model_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (),
                       resume: bool = False, overwrite: bool = False, option: str = "--output") -> Path:
    """The training rule: like :func:`check_output_dir` for a model, and an existing, non-empty
    model folder needs ``--resume`` (continue its run) or ``--overwrite`` (replace it once the new
    model is complete)."""
    path = check_output_dir(path, "model", inputs, option)
    if path.is_dir() and _is_non_empty_dir(path) and not (resume or overwrite):
        raise OutputError(f"{path}: a model folder already exists; add --resume to continue its training or "
                          f"--overwrite to replace it")
    return path


def prepare_output_dir(path: str | os.PathLike, kind: str, inputs: Iterable[str | os.PathLike | None] = (),
                       option: str = "--output") -> Path:
    """For outputs written file by file into a folder: check, create and mark it."""
    path = check_output_dir(path, kind, inputs, option)
    path.mkdir(parents=True, exist_ok=True)
    if artifact_kind(path) is None or not (path / MARKER).exists():
        write_marker(path, kind)
        _MADE.add(_real(path))  # made or marked by this process
    return path


# ----------------------------------------------------------------------------- one guard for every command


@dataclass(frozen=True)
class OutputSpec:
    """A path a command writes: the function parameter ``param`` (the CLI option ``option``) is a
    ``"file"`` or a folder holding an artifact of ``kind`` (one of :data:`ARTIFACT_KINDS`).

    ``training``: the training rule (:func:`check_model_output`, with the command's ``resume`` and
    ``overwrite`` arguments); the trainer itself keeps or removes an unfinished run.
    ``by_file``: the command writes the folder file by file (each file atomically), not as one
    :func:`atomic_dir`: it is marked as a ``kind`` folder once the command succeeds.
    ``in_input_folder``: the file may replace a file inside an input folder (the command checks
    that itself: ``export onnx`` writes into its model folder)."""

    param: str
    option: str
    kind: str = "file"
    training: bool = False
    by_file: bool = False
    in_input_folder: bool = False

    def __post_init__(self) -> None:
        if self.kind != "file" and self.kind not in ARTIFACT_KINDS:
            raise ValueError(f"OutputSpec {self.option}: unknown kind {self.kind!r}")


_MAX_PATH = 4096


def _input_paths(arguments: Mapping[str, Any], exclude: set[str]) -> list[str]:
    """Every argument that may name a local path (strings and paths, in lists too, and each item
    of a comma-separated list): the inputs no output may be, or hold."""
    found: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str | os.PathLike):
            text = os.fspath(value)
            if isinstance(text, str) and 0 < len(text) <= _MAX_PATH and "\0" not in text:
                found.append(text)
                if "," in text:
                    found.extend(part.strip() for part in text.split(",") if part.strip())
        elif isinstance(value, list | tuple):
            for item in value:
                add(item)

    for name, value in arguments.items():
        if name not in exclude:
            add(value)
    return found


def _given(value: Any) -> bool:
    return value is not None and os.fspath(value) != ""


def check_outputs(specs: Iterable[OutputSpec], arguments: Mapping[str, Any]) -> list[tuple[OutputSpec, Path]]:
    """Apply the output rules to every output in ``arguments`` (a command's arguments by parameter
    name): each against every other path argument (its inputs), and the outputs against each other.
    Returns the outputs given, as (spec, path)."""
    specs = list(specs)
    given = [(s, Path(arguments[s.param])) for s in specs if _given(arguments.get(s.param))]
    inputs = _input_paths(arguments, {s.param for s in specs})
    for (a, pa), (b, pb) in itertools.combinations(given, 2):
        if _real(pa) == _real(pb):
            raise OutputError(f"{pa}: {a.option} and {b.option} are the same path; give each its own")
    for spec, path in given:
        if spec.kind == "file":
            check_output_file(path, inputs, spec.option, within=not spec.in_input_folder)
        elif spec.training:
            check_model_output(path, inputs, resume=bool(arguments.get("resume")),
                               overwrite=bool(arguments.get("overwrite")), option=spec.option)
        else:
            check_output_dir(path, spec.kind, inputs, spec.option)
    return given


@dataclass
class _Before:
    """What was at an output path before the command (to undo exactly what it added)."""

    path: Path
    existed: bool
    empty_dir: bool
    first_new: Path | None  # the outermost folder above ``path`` that the command may create


def _before(path: Path) -> _Before:
    path = Path(os.path.abspath(path))
    if os.path.lexists(path):
        empty = path.is_dir() and not path.is_symlink() and not _is_non_empty_dir(path)
        return _Before(path, True, empty, None)
    first_new = None
    for parent in path.parents:
        if os.path.lexists(parent):
            break
        first_new = parent
    return _Before(path, False, False, first_new)


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.exists():
        return  # not ours to follow
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        _unlink_quietly(path)


def _ours(folder: Path) -> bool:
    """A folder this process made, or one nobody has marked yet (a command's files in the making); not
    a folder another process has made and marked meanwhile."""
    return _real(folder) in _MADE or artifact_kind(folder) is None


def _undo(state: _Before, folder: bool) -> None:
    """Remove what a failed command put at an output path that held nothing (or, a folder output,
    an empty folder) before."""
    path = state.path
    real_dir = path.is_dir() and not path.is_symlink()
    if state.existed:
        if state.empty_dir and folder and real_dir and _ours(path):
            for child in list(path.iterdir()):
                _remove(child)
        return
    if (real_dir and _ours(path)) if folder else (path.is_file() and not path.is_symlink()):
        _remove(path)
    parent = path.parent
    while state.first_new is not None and parent != state.first_new.parent:  # folders made for it, if empty
        with contextlib.suppress(OSError):
            os.rmdir(parent)
        parent = parent.parent


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Hold off Ctrl-C while cleaning up (a second one must not leave half of it)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _succeeded(exc: BaseException) -> bool:
    """An exception that ends a command successfully (``sys.exit(0)``, ``typer.Exit()``)."""
    if isinstance(exc, SystemExit):
        return exc.code in (0, None)
    return type(exc).__name__ == "Exit" and getattr(exc, "exit_code", 1) == 0


@contextlib.contextmanager
def guard_outputs(specs: Iterable[OutputSpec], arguments: Mapping[str, Any]) -> Iterator[None]:
    """Check every output (:func:`check_outputs`) before the work. If the block fails or is
    interrupted, remove what it put at an output path that held nothing (or an empty folder)
    before; if it succeeds, mark the folders written file by file."""
    given = check_outputs(specs, arguments)
    states = [(spec, _before(path)) for spec, path in given if not spec.training]
    try:
        yield
        for spec, path in given:
            if spec.by_file and path.is_dir() and not path.is_symlink() and not (path / MARKER).exists():
                write_marker(path, spec.kind)
    except BaseException as exc:
        if not _succeeded(exc):
            with _no_interrupts():
                for spec, state in states:
                    _undo(state, folder=spec.kind != "file")
        raise


def writes(*specs: OutputSpec) -> Callable[[Callable], Callable]:
    """Decorate a function (a CLI command) whose arguments name the outputs ``specs``: every call
    runs inside :func:`guard_outputs`. The wrapper keeps the signature (``__wrapped__``) and lists
    its outputs in ``__patentcpc_outputs__``."""

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)
        missing = [s.param for s in specs if s.param not in signature.parameters]
        if missing:
            raise ValueError(f"{fn.__qualname__}: no parameter {', '.join(missing)}")

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with guard_outputs(specs, bound.arguments):
                return fn(*args, **kwargs)

        guarded.__patentcpc_outputs__ = tuple(specs)  # type: ignore[attr-defined]
        return guarded

    return decorate
