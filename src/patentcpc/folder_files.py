"""Reading files from a model or index folder: someone else's data, read within bounds.

Every file that patentcpc reads from a model folder (``manifest.json``, weights, vocabularies,
tokenizer files, an ensemble's member manifests, the explanation index) or from a search index
folder goes through this module or through :func:`check_folder_tree`, which every model kind's
loading passes (:func:`patentcpc.registry.load_model`) before a third-party reader (transformers,
peft, bm25s, omikuji, ONNX Runtime) opens anything:

* a link whose target leaves the folder is refused, and so is anything that is not a regular file
  (a FIFO, ``/dev/zero``, a socket, a device): checked with ``stat`` before opening, and the
  opened file is checked again (``O_NONBLOCK``: opening a FIFO never blocks);
* each kind of file has a size limit, checked before reading, and at most limit + 1 bytes are
  read: JSON metadata (manifests, settings, configs) :data:`JSON_LIMIT`; text that grows with the
  data (vocabularies, tokenizers, the explanation index's ``docs.json``) :data:`TEXT_LIMIT`;
  arrays and weights :data:`ARRAY_LIMIT`. The environment variables ``PATENTCPC_MAX_JSON_BYTES``,
  ``PATENTCPC_MAX_TEXT_BYTES`` and ``PATENTCPC_MAX_ARRAY_BYTES`` raise (or lower) them;
* pickle-family files (``*.bin``, ``*.pt``, ``*.pkl``, ...) are refused anywhere in a model folder;
* ``.npy`` arrays are read only after their header (dtype, shape) agrees with the file's size.

A refusal is the project's one-line error naming the file (the CLI exits with code 2).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from patentcpc.errors import DataError, ModelError, PatentCPCError

MiB = 1 << 20
GiB = 1 << 30
JSON_LIMIT = 32 * MiB
TEXT_LIMIT = 512 * MiB
ARRAY_LIMIT = 32 * GiB
_ENV = {"json": ("PATENTCPC_MAX_JSON_BYTES", JSON_LIMIT), "text": ("PATENTCPC_MAX_TEXT_BYTES", TEXT_LIMIT),
        "array": ("PATENTCPC_MAX_ARRAY_BYTES", ARRAY_LIMIT)}
# files read as arrays/weights (memory-mapped or loaded whole): the array limit; any other file: text
ARRAY_SUFFIXES = (".safetensors", ".npy", ".npz", ".onnx", ".data", ".onnx_data", ".cbor", ".parquet")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt", ".skops")
MAX_FOLDER_ENTRIES = 100_000
MAX_FOLDER_DEPTH = 64


def limit(kind: str) -> int:
    """The size limit in bytes of a kind of file: ``json``, ``text`` or ``array`` (environment
    variable ``PATENTCPC_MAX_<KIND>_BYTES`` when set to a positive integer)."""
    name, default = _ENV[kind]
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ModelError(f"{name}={raw!r}: must be a positive number of bytes")
    return value


# metadata files of the formats patentcpc reads (its own, transformers', peft's, sentence-transformers',
# bm25s', omikuji's): small whatever the model's size, so the JSON limit
METADATA_FILES = frozenset({
    "manifest.json", "config.yaml", "ensemble.json", "linear.json", "config.json", "generation_config.json",
    "tokenizer_config.json", "special_tokens_map.json", "adapter_config.json", "modules.json",
    "sentence_bert_config.json", "config_sentence_transformers.json", "params.index.json", "settings.json",
    "model.safetensors.index.json", "preprocessor_config.json", "chat_template.json", ".patentcpc.json",
})


def kind_of(name: str) -> str:
    """``array`` for weight/array files (by suffix), ``json`` for known metadata files (by name),
    else ``text``."""
    name = os.path.basename(str(name)).lower()
    if name.endswith(ARRAY_SUFFIXES):
        return "array"
    return "json" if name in METADATA_FILES else "text"


def _fail(error: type[PatentCPCError], file: str | os.PathLike, problem: str) -> PatentCPCError:
    if issubclass(error, DataError):
        return error(os.fspath(file), problem)
    return error(f"{os.fspath(file)}: {problem}")


def _size(n: int) -> str:
    for unit, k in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{n} bytes"


def _under(root: str, target: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def _inside(root: str, target: str) -> bool:
    """Whether ``target`` (a real path) lies in the folder ``root`` (a real path). A folder in the
    Hugging Face cache (``models--org--name/snapshots/REV/...``) holds links to its repository's
    ``blobs/``: those count as inside (they are checked as the regular files they are)."""
    if _under(root, target):
        return True
    parts = Path(root).parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots":
            return _under(os.path.join(*parts[:i], "blobs"), target)
    return False


def _what(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_folder_file(folder: str | os.PathLike, rel: str | os.PathLike, max_bytes: int | None = None, *,
                      error: type[PatentCPCError] = ModelError, what: str = "the folder") -> tuple[Path, int]:
    """``(real path, size)`` of the regular file ``rel`` inside ``folder``; refuses (``error``, naming
    ``folder/rel``) a missing file, a link that leaves ``folder``, anything but a regular file, and
    a file over ``max_bytes`` (default: the limit of its kind, see :func:`kind_of`)."""
    shown = Path(folder) / rel
    root = os.path.realpath(folder)
    real = os.path.realpath(shown)
    if not _inside(root, real):
        raise _fail(error, shown, f"is a link to {real}, outside {what}; refused")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise _fail(error, shown, "not found") from None
    except OSError as exc:
        raise _fail(error, shown, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _fail(error, shown, f"is {_what(st.st_mode)}, not a regular file; refused")
    cap = limit(kind_of(str(shown))) if max_bytes is None else max_bytes
    if st.st_size > cap:
        raise _fail(error, shown, f"is {_size(st.st_size)}, over the {_size(cap)} limit for this file; refused "
                                  "(see PATENTCPC_MAX_*_BYTES in the README)")
    return Path(real), st.st_size


def read_folder_bytes(folder: str | os.PathLike, rel: str | os.PathLike, max_bytes: int | None = None, *,
                      error: type[PatentCPCError] = ModelError, what: str = "the folder") -> bytes:
    """The bytes of ``folder/rel`` after :func:`check_folder_file`; never more than ``max_bytes``
    are read (a file that grows meanwhile is refused too)."""
    shown = Path(folder) / rel
    real, _ = check_folder_file(folder, rel, max_bytes, error=error, what=what)
    cap = limit(kind_of(str(shown))) if max_bytes is None else max_bytes
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise _fail(error, shown, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for something else since the check
            raise _fail(error, shown, "is not a regular file; refused")
        chunks, n = [], 0
        while n <= cap:
            chunk = os.read(fd, min(cap + 1 - n, 8 * MiB))
            if not chunk:
                break
            chunks.append(chunk)
            n += len(chunk)
    except OSError as exc:
        raise _fail(error, shown, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    finally:
        os.close(fd)
    if n > cap:
        raise _fail(error, shown, f"is over the {_size(cap)} limit for this file; refused")
    return b"".join(chunks)


def read_folder_json(folder: str | os.PathLike, rel: str | os.PathLike, max_bytes: int | None = None, *,
                     error: type[PatentCPCError] = ModelError, what: str = "the folder") -> Any:
    """The parsed JSON of ``folder/rel`` (:func:`read_folder_bytes`; default limit: JSON metadata)."""
    shown = Path(folder) / rel
    data = read_folder_bytes(folder, rel, limit("json") if max_bytes is None else max_bytes, error=error, what=what)
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _fail(error, shown, f"not valid JSON ({str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def check_npy(folder: str | os.PathLike, rel: str | os.PathLike, max_bytes: int | None = None, *,
              error: type[PatentCPCError] = ModelError, what: str = "the folder") -> tuple[Path, tuple, Any]:
    """``(real path, shape, dtype)`` of the ``.npy`` file ``folder/rel`` once its header is a plain
    numeric array whose data fills the file exactly (no object arrays, no shape larger than the
    file); refuses anything else, naming the file."""
    import numpy as np
    from numpy.lib import format as npformat

    shown = Path(folder) / rel
    real, size = check_folder_file(folder, rel, max_bytes, error=error, what=what)
    try:
        with open(real, "rb") as fh:
            version = npformat.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(fh, max_header_size=10_000)
            elif version == (2, 0):
                shape, fortran, dtype = npformat.read_array_header_2_0(fh, max_header_size=10_000)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = fh.tell()
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
        raise _fail(error, shown, f"not a .npy array ({str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    if dtype.hasobject or dtype.kind not in "biuf" or not isinstance(shape, tuple):
        raise _fail(error, shown, f"holds {dtype} values; only plain numbers are read")
    count = 1
    for d in shape:
        if type(d) is not int or d < 0:
            raise _fail(error, shown, f"has a bad shape {shape}")
        count *= d
    if offset + count * dtype.itemsize != size:
        raise _fail(error, shown, f"shape {shape} of {dtype} does not match the file's {size} bytes")
    return real, shape, np.dtype(dtype)


def load_npy(folder: str | os.PathLike, rel: str | os.PathLike, max_bytes: int | None = None, *,
             mmap: bool = False, error: type[PatentCPCError] = ModelError, what: str = "the folder"):
    """A ``.npy`` array of ``folder/rel`` after :func:`check_npy` (``mmap``: memory-mapped, read-only)."""
    import numpy as np

    shown = Path(folder) / rel
    real, _, _ = check_npy(folder, rel, max_bytes, error=error, what=what)
    try:
        return np.load(real, allow_pickle=False, mmap_mode="r" if mmap else None)
    except MemoryError:
        raise _fail(error, shown, f"too large to load into this process's memory ({_size(os.stat(real).st_size)})"
                    ) from None
    except (OSError, ValueError) as exc:
        raise _fail(error, shown, f"not a readable .npy array ({str(exc).splitlines()[0][:200]})") from None


def check_folder_tree(folder: str | os.PathLike, *, error: type[PatentCPCError] = ModelError,
                      what: str = "the model folder", skip: tuple[str, ...] = (),
                      refuse_pickle: bool = True) -> None:
    """Check everything inside ``folder`` before any reader opens it: no link leaving it, nothing
    but regular files and folders, each file within the limit of its kind (:func:`kind_of`), and
    (``refuse_pickle``) no pickle-family file. ``skip``: top-level folders not read (training
    checkpoints)."""
    root = os.path.realpath(folder)
    if not os.path.isdir(root):
        raise _fail(error, folder, "not a folder")
    n = 0

    def refuse(path: str, problem: str):
        return _fail(error, Path(folder) / os.path.relpath(path, root), problem)

    def onerror(exc: OSError) -> None:
        raise refuse(exc.filename or root, f"cannot be read ({exc.strerror or type(exc).__name__})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if d not in skip]
        if dirnames and os.path.relpath(dirpath, root).count(os.sep) + 1 >= MAX_FOLDER_DEPTH:
            raise _fail(error, folder, f"holds folders nested more than {MAX_FOLDER_DEPTH} deep; refused")
        n += len(dirnames) + len(filenames)
        if n > MAX_FOLDER_ENTRIES:
            raise _fail(error, folder, f"holds more than {MAX_FOLDER_ENTRIES} files; refused")
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    real = os.path.realpath(path)
                    if not _inside(root, real):
                        raise refuse(path, f"is a link to {real}, outside {what}; refused")
                    st = os.stat(path)
            except OSError as exc:
                raise refuse(path, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise refuse(path, f"is {_what(st.st_mode)}, not a regular file; refused")
            if refuse_pickle and name.lower().endswith(PICKLE_SUFFIXES):
                raise _fail(error, folder, f"holds {os.path.relpath(path, root)}, a pickle-based weight file that "
                                           "patentcpc does not load (only safetensors, JSON and ONNX); remove it "
                                           "or re-save the model")
            cap = limit(kind_of(name))
            if st.st_size > cap:
                raise refuse(path, f"is {_size(st.st_size)}, over the {_size(cap)} limit for this file; refused "
                                   "(see PATENTCPC_MAX_*_BYTES in the README)")


BM25_PARAMS = "params.index.json"
BM25_VOCAB = "vocab.index.json"
BM25_ARRAYS = ("data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy")
BM25_NONOCCURRENCE = "nonoccurrence_array.index.npy"
_BM25_KEYS = {"k1", "b", "delta", "method", "idf_method", "dtype", "int_dtype", "num_docs", "version", "backend"}


def check_bm25_folder(folder: str | os.PathLike, *, error: type[PatentCPCError] = ModelError,
                      what: str = "the folder") -> int:
    """Check a saved ``bm25s`` index (``bm25/`` of a search or explanation index) before bm25s reads
    it: its parameters (small JSON, known keys), its arrays (.npy headers that match the files, one
    vocabulary entry per column) and its vocabulary's size; returns the number of documents."""
    folder = Path(folder)
    params = read_folder_json(folder, BM25_PARAMS, MiB, error=error, what=what)
    if not isinstance(params, dict) or not set(params) <= _BM25_KEYS:
        raise _fail(error, folder / BM25_PARAMS, f"must be an object with the keys {sorted(_BM25_KEYS)}")
    n_docs = params.get("num_docs")
    if type(n_docs) is not int or n_docs < 0:
        raise _fail(error, folder / BM25_PARAMS, f"num_docs must be a non-negative integer, not {n_docs!r}")
    shapes = {name: check_npy(folder, name, error=error, what=what)[1] for name in BM25_ARRAYS}
    data, indices, indptr = (shapes[n] for n in BM25_ARRAYS)
    if len(indptr) != 1 or indptr[0] < 1 or len(data) != 1 or data != indices:
        raise _fail(error, folder, f"bm25 arrays of shapes {data}, {indices}, {indptr} do not fit together")
    if (folder / BM25_NONOCCURRENCE).exists():
        check_npy(folder, BM25_NONOCCURRENCE, error=error, what=what)
    n_vocab = indptr[0] - 1
    check_folder_file(folder, BM25_VOCAB, min(limit("text"), MiB + n_vocab * 1024), error=error, what=what)
    return n_docs
