"""Structural checks of text data files before the fast readers see them.

The fast readers (pandas' C tokenizer behind ``datasets``' CSV builder, pyarrow's JSON reader) are
lenient or fragile: an unterminated quote can merge many CSV rows into one field without a word, a
quote in the middle of a quoted field is silently dropped, and JSON nested tens of thousands of levels
deep crashes pyarrow's reader. This module

* scans a CSV/TSV file once with Python's strict ``csv`` reader (unterminated or stray quotes, too
  many / too few fields, over-long fields, duplicate header names) and names the first problem by
  row, line and field;
* scans JSON Lines for nesting deeper than :data:`MAX_JSON_DEPTH`, vectorized with numpy (strings
  are masked out, so brackets inside text do not count);
* reads a dirty file row by row (``on_bad_row='skip'``), keeping a placeholder for every bad record so
  that row numbers, and the ids made from them, stay those of the file.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import hashlib
import json
import lzma
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_FIELD_CHARS = 10_000_000  # per field; PATENTCPC_MAX_FIELD_CHARS overrides it
MAX_JSON_DEPTH = 512
_CHUNK = 1 << 24


def max_field_chars(value: int | None = None) -> int:
    """The field size limit in characters: ``value``, else ``$PATENTCPC_MAX_FIELD_CHARS``, else 10 M."""
    if value is not None:
        return int(value)
    env = os.environ.get("PATENTCPC_MAX_FIELD_CHARS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n > 0:
            return n
    return MAX_FIELD_CHARS


@dataclass
class BadRecord:
    """A record that cannot be read: ``row`` counts records (header and blank lines excluded), 1-based."""

    row: int | None
    line: int
    problem: str
    field: str | None = None


def _open_text(path: Path):
    suffix = path.suffix.lower()
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix)
    if opener is not None:
        return opener(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def can_scan(path: Path) -> bool:
    return path.suffix.lower() != ".zst"


@contextlib.contextmanager
def _field_limit(limit: int):
    old = csv.field_size_limit()
    csv.field_size_limit(max(limit, 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _is_blank(row: list[str]) -> bool:
    return len(row) <= 1 and (not row or not row[0].strip())  # pandas skips these lines too


def check_header(header: list[str], source: str) -> str | None:
    """A problem with a CSV header (duplicate or missing names), or None."""
    seen: dict[str, int] = {}
    for i, name in enumerate(header, 1):
        if name in seen:
            return (f"duplicate column name '{name}' (columns {seen[name]} and {i}); "
                    f"rename one so that every column has its own name")
        seen[name] = i
    return None


def _quote_field(line: str, delimiter: str) -> int | None:
    """0-based index of the field on ``line`` whose opening quote is not closed properly there."""
    i, field_idx, n = 0, 0, len(line)
    while i < n:
        if line[i] == '"':
            j = i + 1
            while True:
                j = line.find('"', j)
                if j < 0:
                    return field_idx
                if j + 1 < n and line[j + 1] == '"':
                    j += 2
                    continue
                break
            if j + 1 < n and line[j + 1] not in (delimiter, "\r", "\n"):
                return field_idx
            i = j + 1
        else:
            k = line.find(delimiter, i)
            if k < 0:
                return None
            i = k
        if i < n and line[i] == delimiter:
            field_idx += 1
            i += 1
        else:
            return None
    return None


def _line_text(path: Path, line_no: int) -> str:
    with _open_text(path) as fh:
        for n, line in enumerate(fh, 1):
            if n == line_no:
                return line
    return ""


def _describe_csv_error(exc: csv.Error, path: Path, header: list[str], delimiter: str, start_line: int,
                        end_line: int, limit: int) -> tuple[str, str | None]:
    msg = str(exc)
    start = _line_text(path, start_line)
    idx = _quote_field(start, delimiter)
    name = (header[idx] if idx is not None and idx < len(header) else None)
    if "field larger than field limit" in msg:
        return (f"line {start_line}: a field longer than {limit:,} characters (the limit; raise it with "
                f"PATENTCPC_MAX_FIELD_CHARS, or look for an unterminated quote)", name)
    if "unexpected end of data" in msg or "EOF" in msg or "newline inside string" in msg:
        return (f"line {start_line}: unterminated quote: the quoted field opened on line {start_line} "
                f"runs to the end of the file", name)
    if "expected after" in msg:
        where = (f"opened on line {start_line} is closed on line {end_line} by a quote followed by more text"
                 if end_line != start_line else f"on line {start_line} has a quote followed by more text")
        return (f"line {start_line}: bad quoting: the quoted field {where} (an unterminated quote, or a quote "
                f"inside a quoted field that is not doubled as \"\")", name)
    return f"line {start_line}: {msg}", name


def scan_csv(path: Path, delimiter: str, max_chars: int, source: str) -> BadRecord | None:
    """The first structural problem of a CSV/TSV file (streaming, strict), or None when it is clean.

    A problem in the header is returned with ``row=None``."""
    with _field_limit(max_chars), _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            return BadRecord(None, 1, f"the header line cannot be read ({exc})")
        if header is None:
            return None
        problem = check_header(header, source)
        if problem:
            return BadRecord(None, 1, problem)
        k = len(header)
        row = 0
        while True:
            before = reader.line_num
            try:
                fields = next(reader)
            except StopIteration:
                return None
            except csv.Error as exc:
                problem, name = _describe_csv_error(exc, path, header, delimiter, before + 1, reader.line_num,
                                                    max_chars)
                return BadRecord(row + 1, before + 1, problem, name)
            if len(fields) == k:
                row += 1
                continue
            if _is_blank(fields):
                continue
            row += 1
            return BadRecord(row, before + 1, _count_problem(len(fields), k, before + 1))


def _count_problem(n: int, k: int, line: int) -> str:
    many = "too many" if n > k else "too few"
    return f"line {line}: {many} fields ({n}, the header has {k})"


class _Lines:
    """Lines of a text file with push-back, so that a CSV reader can restart after a bad record."""

    def __init__(self, fh):
        self.fh, self.back, self.taken, self.n = fh, [], [], 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.back.pop() if self.back else next(self.fh)
        self.taken.append(line)
        self.n += 1
        return line

    def restart_after_first(self) -> None:
        """Give back every line of the current record but its first one."""
        rest = self.taken[1:]
        self.back.extend(reversed(rest))
        self.n -= len(rest)
        self.taken = self.taken[:1]


def iter_csv_rows(path: Path, delimiter: str, max_chars: int, source: str,
                  bad: dict[int, tuple[str, str | None]], stop_at_first: bool) -> Iterator[dict]:
    """Rows of a CSV/TSV file as dicts of strings; a bad record yields a row of None values and is
    entered in ``bad`` (row -> (problem, field)). After an unterminated quote the reader restarts on
    the line after the one where the quote opened. ``stop_at_first`` raises :class:`BadRecordError`."""
    with _field_limit(max_chars), _open_text(path) as fh:
        lines = _Lines(fh)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        header = next(reader, None)
        if header is None:
            return
        problem = check_header(header, source)
        if problem:
            raise BadRecordError(BadRecord(None, 1, problem))
        k = len(header)
        empty = dict.fromkeys(header)
        row = 0
        while True:
            lines.taken = []
            start = lines.n + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                problem, name = _describe_csv_error(exc, path, header, delimiter, start, lines.n, max_chars)
                row += 1
                rec = BadRecord(row, start, problem, name)
                if stop_at_first:
                    raise BadRecordError(rec) from None
                bad[row] = (problem, name)
                lines.restart_after_first()
                reader = csv.reader(lines, delimiter=delimiter, strict=True)
                yield empty
                continue
            if len(fields) != k and _is_blank(fields):
                continue
            row += 1
            problem, name = None, None
            if len(fields) != k:
                problem = _count_problem(len(fields), k, start)
            else:
                for col, value in zip(header, fields, strict=True):
                    if "\x00" in value:
                        problem, name = f"line {start}: a NUL byte in the field", col
                        break
            if problem:
                if stop_at_first:
                    raise BadRecordError(BadRecord(row, start, problem, name))
                bad[row] = (problem, name)
                yield empty
                continue
            yield dict(zip(header, fields, strict=True))


class BadRecordError(Exception):
    def __init__(self, record: BadRecord):
        super().__init__(record.problem)
        self.record = record


# --------------------------------------------------------------------------- JSON


def _block_depth(block: bytes, depth_in: int, limit: int) -> tuple[int | None, int]:
    """(offset of the first byte where nesting exceeds ``limit`` or None, depth at the block's end).

    Brackets inside JSON strings are masked out (quotes escaped with a backslash are no string ends);
    each line starts outside a string (a JSON string cannot hold a raw newline)."""
    a = np.frombuffer(block, dtype=np.uint8)
    low = a | 0x20  # '[' -> '{', ']' -> '}'
    br = np.flatnonzero((low == 0x7B) | (low == 0x7D))
    if len(br) == 0:
        return None, depth_in
    q = np.flatnonzero(a == 0x22)
    if len(q):
        esc = q[q > 0]
        esc = esc[a[esc - 1] == 0x5C]
        if len(esc):
            escaped = []
            for p in esc.tolist():
                k = 0
                while p - 1 - k >= 0 and a[p - 1 - k] == 0x5C:
                    k += 1
                if k % 2:
                    escaped.append(p)
            if escaped:
                q = np.setdiff1d(q, np.asarray(escaped, dtype=q.dtype), assume_unique=True)
    nl = np.flatnonzero(a == 0x0A)
    line_start = np.concatenate(([0], nl + 1))[np.searchsorted(nl, br)]
    inside = (np.searchsorted(q, br) - np.searchsorted(q, line_start)) & 1
    step = np.where(low[br] == 0x7B, 1, -1)
    step[inside == 1] = 0
    depth = depth_in + np.cumsum(step)
    over = np.flatnonzero(depth > limit)
    if len(over):
        return int(br[over[0]]), int(depth[-1])
    return None, max(0, int(depth[-1]))


def scan_jsonl(path: Path, limit: int = MAX_JSON_DEPTH) -> tuple[int | None, bool]:
    """One pass over a JSON (Lines) file: (the line number of the first place where nesting
    exceeds ``limit``, or None; whether the file holds ``\\u0000``, an escaped NUL character, up
    to there). pyarrow's JSON reader cuts object keys at a NUL (``{"": 1, "\\u0000": 2}`` becomes
    two fields of one name: errors later, or a crash), so such a file, like a too deep one, is
    read row by row with Python's ``json``."""
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    depth, line_no, carry, nul = 0, 0, b"", False
    with opener(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            data = carry + chunk
            if not data:
                return None, nul
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            if cut == 0:
                cut = len(data) if len(data) > 4 * _CHUNK else 0
            if cut == 0:
                carry = data
                continue
            block, carry = data[:cut], data[cut:]
            nul = nul or b"\\u0000" in block  # blocks end at a line end (but in a line of over 64 MiB)
            off, depth = _block_depth(block, depth, limit)
            if off is not None:
                return line_no + block.count(b"\n", 0, off) + 1, nul
            line_no += block.count(b"\n")
            if not chunk:
                return None, nul


def json_line_problem(line: str | bytes, limit: int = MAX_JSON_DEPTH) -> tuple[dict | None, str | None]:
    """(record, None) for a good JSON Lines line, (None, problem) for a bad one; (None, None) if blank."""
    if not line.strip():
        return None, None
    raw = line.encode() if isinstance(line, str) else line
    if raw.count(b"[") + raw.count(b"{") > limit:
        off, _ = _block_depth(raw, 0, limit)
        if off is not None:
            return None, f"JSON nested deeper than {limit} levels"
    dup: list[str] = []

    def pairs(items):
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            dup.extend(k for k in keys if keys.count(k) > 1)
        return dict(items)

    try:
        obj = json.loads(line, object_pairs_hook=pairs)
    except RecursionError:
        return None, f"JSON nested deeper than {limit} levels"
    except ValueError as exc:
        return None, f"not valid JSON ({exc})"
    if not isinstance(obj, dict):
        return None, f"a JSON {type(obj).__name__}, not an object with fields"
    if dup:
        return None, f"duplicate key '{dup[0]}' in one object"
    return obj, None


def iter_jsonl_rows(path: Path, bad: dict[int, tuple[str, str | None]], stop_at_first: bool,
                    limit: int = MAX_JSON_DEPTH) -> Iterator[dict]:
    """Records of a JSON Lines file; a bad line yields ``{}`` and is entered in ``bad``."""
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    with opener(path, "rt", encoding="utf-8-sig") as fh:
        row = 0
        for n, line in enumerate(fh, 1):
            obj, problem = json_line_problem(line, limit)
            if obj is None and problem is None:
                continue
            row += 1
            if problem:
                if stop_at_first:
                    raise BadRecordError(BadRecord(row, n, f"line {n}: {problem}"))
                bad[row] = (f"line {n}: {problem}", None)
                yield {}
                continue
            yield obj


def fingerprint(path: Path, *parts: object) -> str:
    st = path.stat()
    h = hashlib.sha256(repr((str(path.resolve()), st.st_size, st.st_mtime_ns, parts, "v1")).encode())
    return h.hexdigest()[:32]


__all__ = ["MAX_FIELD_CHARS", "MAX_JSON_DEPTH", "BadRecord", "BadRecordError", "check_header", "iter_csv_rows",
           "iter_jsonl_rows", "json_line_problem", "max_field_chars", "scan_csv", "scan_jsonl"]
