"""Safe outputs: atomic writers and the guard every command's output goes through.

Atomic writers (one implementation for the whole package):

- :func:`atomic_write_text` / :func:`atomic_write_bytes`: a whole file at once;
- :func:`atomic_open`: a file object for streamed output;
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
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from patentcpc.errors import ConfigError

MARKER = ".patentcpc.json"
ARTIFACT_KINDS = ("model", "tokenizer", "encoder", "index", "splits", "export", "embeddings", "benchmark")
_LEGACY = {"model": "manifest.json", "index": "index.json"}  # folders written before the marker existed
_SELF_MARKED = ("model",)  # a finished model folder is marked by its own manifest.json


class OutputError(ConfigError):
    """An output path patentcpc must not write (a user folder, another artifact, its own input)."""


# ----------------------------------------------------------------------------- atomic writers

#: Set by the CLI's SIGINT handler. Once set, no atomic writer commits (it raises KeyboardInterrupt
#: instead), so an interrupt that a library swallowed still leaves nothing at the final path.
INTERRUPTED = threading.Event()


def _commit_point() -> None:
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt


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
    from patentcpc import __version__  # noqa: PLC0415

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


def check_not_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None],
                    option: str = "--output", folder: bool = False) -> None:
    """Refuse an output that is one of the inputs (after resolving links), or, for an output
    ``folder`` (which gets replaced), one that contains an input."""
    real = _real(output)
    for inp in inputs:
        if inp is None or str(inp) == "" or not os.path.lexists(os.path.expanduser(os.fspath(inp))):
            continue  # not a local path (a hub id, a model name): nothing to overwrite
        ri = _real(inp)
        if ri == real:
            raise OutputError(f"{output}: {option} is the input {inp}; patentcpc never writes over its input")
        if folder and real in ri.parents:
            raise OutputError(f"{output}: {option} holds the input {inp}; choose another {option}")


def check_output_dir(path: str | os.PathLike, kind: str, inputs: Iterable[str | os.PathLike | None] = (),
                     option: str = "--output") -> Path:
    """Raise :class:`OutputError` unless patentcpc may write a ``kind`` artifact at folder ``path``:
    it does not exist, is empty, or holds an artifact of the same kind; and it is not (and does not
    hold) one of ``inputs``. Returns ``path`` as a Path."""
    path = Path(path)
    check_not_input(path, inputs, option, folder=True)
    if not (path.exists() or path.is_symlink()):
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
                      option: str = "--output") -> Path:
    """Raise :class:`OutputError` if the output file ``path`` is an existing folder or one of
    ``inputs`` (after resolving links). Returns ``path`` as a Path."""
    path = Path(path)
    check_not_input(path, inputs, option)
    if path.is_dir():
        raise OutputError(f"{path}: {option} is a folder; give a file name")
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
    return path
