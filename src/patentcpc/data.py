"""Reading patent records: files and Hugging Face datasets -> one Arrow table of (id, text, labels).

Every source becomes a :class:`datasets.Dataset` with three columns:

* ``id``: the record's id (an id column when there is one, else the 1-based row number);
* ``text``: the *text view*: a ``text`` column, or the fields the user names (default
  ``title,abstract`` where those exist) joined by a newline;
* ``labels``: the CPC codes of the record mapped to the chosen level, de-duplicated.

Loading goes through Arrow (``datasets``, memory-mapped on disk) and statistics through batched
iteration, so USPTO-3M-sized inputs never become Python lists of everything.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from patentcpc.cpc import check_level, parse_labels
from patentcpc.errors import CPCError, DataError

log = logging.getLogger(__name__)

TEXT_COLUMN_CANDIDATES = ("text", "document", "content", "body")
VIEW_FIELDS = ("title", "abstract", "claims", "description")
DEFAULT_VIEW = ("title", "abstract")
# Patent-database exports name the text fields in many ways; each alias (compared with
# :func:`column_key`) maps to one of VIEW_FIELDS.
VIEW_FIELD_ALIASES = {
    "title": ("title", "invention_title", "title_of_invention", "title_en", "english_title", "ti"),
    "abstract": ("abstract", "abstract_text", "abstract_en", "english_abstract", "ab"),
    "claims": ("claims", "claim", "claims_text", "first_claim", "independent_claims", "claims_en", "clm"),
    "description": ("description", "description_text", "full_description", "description_en", "desc"),
}
LABEL_COLUMN_CANDIDATES = (
    "cpc_ids", "labels", "cpc", "cpc_codes", "cpc_subclasses", "cpc_labels", "codes", "ipc",
    "ipc_codes", "label", "classification", "cpc_classes",
    # patent-database exports (compared with column_key: case, spaces and punctuation ignored)
    "cpc_current", "cpc_current_full", "cpc_classification", "cpc_classifications", "cpc_symbols",
    "cpc_full", "cpc_inventive", "cpc_all", "cpc_code", "current_cpc", "cpc_current_codes", "cpc_class",
    "cooperative_patent_classification", "ipc_current", "ipc_classification", "ipc_classifications",
    "ipc_symbols", "ipc_full", "ipc_code", "ipcr", "ipcr_codes", "ic", "international_patent_classification",
    "classifications_cpc", "classifications_ipc",
)
ID_COLUMN_CANDIDATES = (
    "id", "patent_id", "publication_number", "doc_id", "docid", "patent_number",
    # patent-database exports
    "publication_no", "pub_number", "pub_no", "publication_id", "publication", "patent_no", "patent",
    "document_number", "document_id", "doc_number", "lens_id", "family_id", "application_number",
    "application_no", "application_id", "app_number", "pn", "an",
)
FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".json": "json", ".parquet": "parquet", ".pq": "parquet",
}
TEXT_JOINER = "\n"


@dataclass
class PatentData:
    """A loaded source. ``dataset`` has the columns ``id``, ``text``, ``labels``."""

    dataset: object  # datasets.Dataset
    source: str
    text_fields: list[str]
    label_field: str | None
    id_field: str | None
    level: str
    n_skipped: int = 0
    skipped: list[str] = field(default_factory=list)  # the first few skip messages
    # optional extras (load_data's carry_title / carry_raw): the title column carried as
    # ``_title``, every input column carried as ``_raw.<name>`` (original values)
    title_field: str | None = None
    raw_columns: list[str] = field(default_factory=list)
    # rows whose label column could not be parsed where labels were not required (kept, no gold)
    n_label_warnings: int = 0
    label_warning: str = ""

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def texts(self) -> list[str]:
        return self.dataset["text"][:]  # a list (datasets >= 4 returns a lazy Column)

    @property
    def labels(self) -> list[list[str]]:
        return self.dataset["labels"][:]  # a list (datasets >= 4 returns a lazy Column)

    @property
    def ids(self) -> list[str]:
        return self.dataset["id"][:]  # a list (datasets >= 4 returns a lazy Column)

    @property
    def text_view(self) -> dict:
        return {"fields": list(self.text_fields), "joiner": TEXT_JOINER}

    def fingerprint(self) -> str:
        """A content hash of the normalized records (order-sensitive), for model manifests."""
        h = hashlib.sha256()
        for batch in self.dataset.iter(batch_size=10_000):
            for text, labels in zip(batch["text"], batch["labels"], strict=True):
                h.update(text.encode())
                h.update(b"\x00" + ",".join(labels).encode() + b"\x01")
        return h.hexdigest()[:16]

    def select(self, indices: Sequence[int]) -> PatentData:
        return PatentData(self.dataset.select(indices), self.source, self.text_fields, self.label_field,
                          self.id_field, self.level, title_field=self.title_field,
                          raw_columns=list(self.raw_columns))


def detect_format(source: str | os.PathLike) -> str:
    """One of csv, tsv, jsonl, json, parquet, disk (a ``save_to_disk`` folder), hub, or documents
    (patent PDFs and scans, or a folder of them)."""
    path = Path(source)
    from patentcpc.documents.dataset import is_documents  # (PDFs and scans: issue 31)

    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return "disk"
        if is_documents(path):
            return "documents"
        raise DataError(source, "is a folder but not a Hugging Face save_to_disk dataset")
    if path.exists() and is_documents(path):
        return "documents"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zst"):
        suffixes = suffixes[:-1]
    if path.exists():
        if suffixes and suffixes[-1] in FORMATS:
            return FORMATS[suffixes[-1]]
        raise DataError(source, f"unknown file type '{path.suffix}' (use .csv, .tsv, .jsonl, .json or .parquet)")
    if suffixes and suffixes[-1] in FORMATS:
        raise DataError(source, "file not found")
    if "/" in str(source) and not str(source).startswith((".", "/")) and str(source).count("/") == 1:
        return "hub"
    raise DataError(source, "file not found")


def _check_text_file(path: Path, decode: bool = True) -> int | None:
    """Fail early, with the line number, on an empty file or bytes that are not UTF-8 (``decode``;
    the CSV structure scan decodes the file itself and calls this again only when that fails).

    Returns the line of the first NUL byte (None when there is none): the caller decides."""
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")
    suffix = path.suffix.lower()
    if suffix in (".gz", ".bz2", ".xz"):
        _check_compressed_utf8(path, suffix)
        return None
    if suffix == ".zst":
        return None
    nul_line = None
    with open(path, "rb") as fh:
        line_no = 0
        offset = 0
        carry = b""
        while chunk := fh.read(1 << 24):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1 if len(chunk) == 1 << 24 else len(data)
            block, carry = data[:cut], data[cut:]
            try:
                if decode:
                    block.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad_line = line_no + block[: exc.start].count(b"\n") + 1
                raise DataError(path, f"line {bad_line}: bytes that are not UTF-8 (byte 0x{block[exc.start]:02x}) "
                                      f"at byte offset {offset + exc.start}; re-save the file as UTF-8") from None
            if nul_line is None and (pos := block.find(b"\x00")) >= 0:
                nul_line = line_no + block[:pos].count(b"\n") + 1
            line_no += block.count(b"\n")
            offset += len(block)
    return nul_line


def _check_compressed_utf8(path: Path, suffix: str) -> None:
    """The UTF-8 check of :func:`_check_text_file` for a gzip, bzip2 or xz file, on the decompressed
    stream (in 16 MB blocks): Arrow's JSON reader does not check it, and a bad byte would surface
    later as a bare UnicodeDecodeError. A file that cannot be decompressed is a :class:`DataError`."""
    import bz2
    import gzip
    import lzma
    import zlib

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[suffix]
    decoder = codecs.getincrementaldecoder("utf-8")()
    line_no = offset = 0
    try:
        with opener(path, "rb") as fh:
            while True:
                chunk = fh.read(1 << 24)
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    # the decoder may hold back up to 3 bytes of the previous chunk: count lines in
                    # this one up to the bad byte (approximate only when a line break was held back)
                    at = max(exc.start - (len(exc.object) - len(chunk)), 0)
                    bad_line = line_no + chunk[:at].count(b"\n") + 1
                    byte = chunk[at] if at < len(chunk) else exc.object[exc.start]
                    raise DataError(path, f"line {bad_line} (after decompressing): bytes that are not UTF-8 "
                                          f"(byte 0x{byte:02x}) at byte offset {offset + at}; re-save the file "
                                          "as UTF-8") from None
                if not chunk:
                    return
                line_no += chunk.count(b"\n")
                offset += len(chunk)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise DataError(path, f"cannot be decompressed as {suffix[1:]} ({str(exc) or type(exc).__name__})") from None


def read_raw(source: str | os.PathLike, split: str = "train", *, on_bad_row: str = "error",
             max_field_chars: int | None = None):
    """Read a source into a :class:`datasets.Dataset` with its own columns (no mapping yet).

    Text files are checked for structure first (see :mod:`patentcpc.input_checks`): a bad record
    raises a :class:`DataError` naming its row, line and field. With ``on_bad_row='skip'`` bad
    records become rows of empty values (use :func:`load_data` to drop and count them)."""
    return _read_raw(source, split, on_bad_row, max_field_chars)[0]


def _read_raw(source, split: str = "train", on_bad_row: str = "error", max_field_chars: int | None = None):
    """(dataset, bad records: row -> (problem, field)) for :func:`read_raw` and :func:`load_data`."""
    import datasets  # (heavy import)

    from patentcpc import input_checks as ic

    if os.environ.get("CI") or not sys.stderr.isatty():
        datasets.disable_progress_bars()  # progress bars only for a person watching a terminal
    fmt = detect_format(source)
    src = str(source)
    limit = ic.max_field_chars(max_field_chars)
    bad: dict[int, tuple[str, str | None]] = {}
    if fmt == "documents":  # patent PDFs and scans, read into front-page records (issue 31)
        from patentcpc.documents.dataset import documents_dataset

        return documents_dataset(src, on_bad_row)
    try:
        if fmt == "disk":
            ds = datasets.load_from_disk(src)
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(src, f"has no split '{split}' (splits: {', '.join(ds)})")
                ds = ds[split]
            return ds, bad
        if fmt == "hub":
            from patentcpc.hub import check_hub

            check_hub(src, "dataset")  # fails in seconds, with a hint, when the hub is unreachable
            return datasets.load_dataset(src, split=split), bad
        path = Path(src)
        scanned = fmt in ("csv", "tsv") and ic.can_scan(path)
        nul_line = _check_text_file(path, decode=not scanned) if fmt != "parquet" else None
        if scanned and nul_line is not None:
            _check_text_file(path)  # the row-by-row reader needs the UTF-8 check first
        if fmt in ("csv", "tsv"):
            delimiter = "\t" if fmt == "tsv" else ","
            try:
                first = ic.scan_csv(path, delimiter, limit, src) if scanned and nul_line is None else None
            except UnicodeDecodeError:
                _check_text_file(path)  # raises with the line and byte offset
                raise
            if first is not None and (on_bad_row == "error" or first.row is None):
                raise DataError(src, first.problem, first.row, first.field)
            if first is not None or nul_line is not None:
                return _read_rows(path, src, "csv", bad, on_bad_row, limit,
                                  lambda stop: ic.iter_csv_rows(path, delimiter, limit, src, bad, stop)), bad
        if fmt in ("jsonl", "json") and ic.can_scan(path) and not _starts_with(path, b"["):
            deep, nul = ic.scan_jsonl(path)
            if deep is not None and on_bad_row == "error":
                raise DataError(src, f"line {deep}: JSON nested deeper than {ic.MAX_JSON_DEPTH} levels")
            if deep is not None or nul:  # the careful reader (see scan_jsonl)
                return _read_rows(path, src, fmt, bad, on_bad_row, limit,
                                  lambda stop: ic.iter_jsonl_rows(path, bad, stop)), bad
        builder = {"csv": "csv", "tsv": "csv", "jsonl": "json", "json": "json", "parquet": "parquet"}[fmt]
        kwargs = {"delimiter": "\t"} if fmt == "tsv" else {}
        if fmt in ("csv", "tsv"):
            kwargs["keep_default_na"] = False  # an empty cell is an empty string, not NaN
            kwargs["encoding"] = "utf-8-sig"  # spreadsheet exports start with a byte-order mark
        try:
            with _quiet_datasets():
                ds = datasets.load_dataset(builder, data_files=str(path.resolve()), split="train", **kwargs)
        except Exception:
            if fmt in ("jsonl", "json") and on_bad_row == "skip" and not _starts_with(path, b"["):
                return _read_rows(path, src, fmt, bad, on_bad_row, limit,
                                  lambda stop: ic.iter_jsonl_rows(path, bad, stop)), bad
            raise
        if fmt == "parquet":
            problem = ic.check_header(list(ds.column_names), src)
            if problem:
                raise DataError(src, problem)
        return ds, bad
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(src, "file not found") from exc
    except RecursionError:
        raise DataError(src, f"cannot be read as {fmt}: nested too deeply") from None
    except Exception as exc:  # the readers raise many kinds: report them on one line
        msg = _root_message(exc)
        if "corresponds to no data" in msg:  # datasets' words for a file with a header and no rows
            raise DataError(src, "has no rows") from None
        if fmt in ("jsonl", "json") and not _starts_with(Path(src), b"["):
            bad_line = _first_bad_json_line(Path(src))
            if bad_line is not None:
                raise DataError(src, f"line {bad_line[0]}: {bad_line[1]}") from None
        if "depth limit" in msg:
            raise DataError(src, f"cannot be read as {fmt}: JSON nested too deeply ({msg})") from None
        if fmt == "hub":
            msg = f"cannot load the Hugging Face dataset ({msg})"
        raise DataError(src, f"cannot be read as {fmt}: {msg}") from None


def column_key(name: str) -> str:
    """A column name compared the way exports vary it: ``CPC - Current`` -> ``cpc_current``,
    ``Publication Number`` -> ``publication_number`` (case, spaces and punctuation ignored)."""
    return "_".join(re.findall(r"[a-z0-9]+", str(name).lower()))


def first_line_is_title(text_view: dict | None) -> bool:
    """Whether the texts of a text view (a manifest's ``text_view``) are read as starting with a
    title line: its first field is a title column (``title``, ``Invention Title``, ...) or a
    whole-text column (``text``, ...), whose texts are taken to follow the default view's
    ``title\\nabstract``; not when it starts with another field (an abstract, claims)."""
    fields = (text_view or {}).get("fields") or []
    first = column_key(fields[0]) if fields else ""
    return first in {column_key(a) for a in (*VIEW_FIELD_ALIASES["title"], *TEXT_COLUMN_CANDIDATES)}


def pin_view_settings(cfg, text_view: dict | None):
    """``cfg`` (a :class:`~patentcpc.config.TrainConfig`) with what its data's text view decides
    pinned: where the texts do not start with a title, ``linear.title_weight`` unset becomes 1.
    The linear trainer pins it for its data; the ensemble, router and synthetic-data arms for
    theirs, before their models train on whole-text copies (a ``text`` column) that no longer
    show the view."""
    import dataclasses

    if cfg.linear.title_weight is None and not first_line_is_title(text_view):
        return dataclasses.replace(cfg, linear=dataclasses.replace(cfg.linear, title_weight=1))
    return cfg


def _find_column(keys: dict[str, str], candidates: Sequence[str]) -> str | None:
    return next((keys[column_key(c)] for c in candidates if column_key(c) in keys), None)


def _fallback_label_column(cols: Sequence[str]) -> str | None:
    """A column whose name starts with CPC (then IPC), e.g. ``CPC Classification (Current)``."""
    for scheme_name in ("cpc", "ipc"):
        for c in cols:
            words = column_key(c).split("_")
            if words[0] == scheme_name and not {"count", "number", "n", "date", "version"} & set(words[1:]):
                return c
    return None
def _starts_with(path: Path, prefix: bytes) -> bool:
    """Whether a plain text file starts (after a byte-order mark and white space) with ``prefix``."""
    if path.suffix.lower() in (".gz", ".bz2", ".xz", ".zst"):
        return False
    with open(path, "rb") as fh:
        head = fh.read(4096)
    return head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(prefix)


def _read_rows(path: Path, src: str, fmt: str, bad: dict, on_bad_row: str, limit: int, make_rows):
    """A dataset built row by row from ``make_rows(stop_at_first)`` (the slow, careful path for a file
    with bad records); under ``on_bad_row='error'`` the first bad record raises."""
    import datasets
    import pyarrow as pa

    from patentcpc import input_checks as ic

    stop = on_bad_row == "error"
    tables, batch = [], []
    try:
        for rec in make_rows(stop):
            batch.append(rec)
            if fmt == "csv" and len(batch) >= 10_000:  # JSON: one table at the end (types of all rows)
                tables.append(_rows_table(batch, fmt))
                batch = []
    except ic.BadRecordError as exc:
        r = exc.record
        raise DataError(src, r.problem, r.row, r.field) from None
    if batch:
        tables.append(_rows_table(batch, fmt))
    n_rows = sum(t.num_rows for t in tables)
    if not n_rows:
        raise DataError(src, "has no rows")
    if len(bad) == n_rows:
        problem, field_name = bad[min(bad)]
        first = DataError(src, problem, min(bad), field_name)
        raise DataError(src, f"every row is bad ({len(bad)} skipped); first: {first}")
    table = pa.concat_tables(tables)
    if _PLACEHOLDER in table.column_names:
        table = table.drop_columns([_PLACEHOLDER])
    return datasets.Dataset(table)


def _rows_table(rows: list[dict], fmt: str):
    """An Arrow table of rows: CSV values are strings; a JSON column whose values are all lists
    becomes a list of strings, any other a string column (lists and objects in a mixed column as
    JSON text)."""
    import json

    import pyarrow as pa

    if fmt == "csv":  # every value a string (None for a bad record's placeholder)
        names = list(next((r for r in rows if r), rows[0]))
        return pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names})
    names = list(dict.fromkeys(k for r in rows for k in r))  # every key, in first-seen order
    if not names:  # bad records only
        return pa.table({_PLACEHOLDER: pa.nulls(len(rows))})

    def text(v):
        if v is None or isinstance(v, str):
            return v
        return json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else str(v)

    cols = {}
    for n in names:
        values = [r.get(n) for r in rows]
        if all(v is None or isinstance(v, list) for v in values) and any(v is not None for v in values):
            cols[n] = pa.array([None if v is None else [None if x is None else text(x) for x in v]
                                for v in values], pa.list_(pa.string()))
        else:
            cols[n] = pa.array([text(v) for v in values], pa.string())
    # a NUL in a column name: Arrow's C layers cut names there (two columns of one name): U+FFFD instead
    return pa.table({n.replace("\x00", "\ufffd"): c for n, c in cols.items()})


_PLACEHOLDER = "__patentcpc_bad_rows__"


def resolve_columns(
    columns: Sequence[str],
    source: str,
    text_fields: Sequence[str] | None = None,
    label_field: str | None = None,
    id_field: str | None = None,
    require_labels: bool = True,
) -> tuple[list[str], str | None, str | None]:
    """Pick the text fields, label column and id column (explicit choices first, then detection).

    Names are matched as exports write them: ``Publication Number``, ``publication_number`` and
    ``PUBLICATION-NUMBER`` are the same column (see :func:`column_key`); an explicit name is
    matched exactly first, then the same way.
    """
    cols = list(columns)
    keys: dict[str, str] = {}
    for c in cols:
        keys.setdefault(column_key(c), c)
    available = ", ".join(cols)
    view = {f: _find_column(keys, VIEW_FIELD_ALIASES[f]) for f in VIEW_FIELDS}  # title -> "Title", ...

    def lookup(name: str) -> str | None:
        if name in cols:
            return name
        return keys.get(column_key(name)) or view.get(column_key(name))

    if text_fields:
        found = [lookup(f) for f in text_fields]
        missing = [f for f, c in zip(text_fields, found, strict=True) if c is None]
        if missing:
            raise DataError(source, f"no column '{missing[0]}' for the text view (columns: {available})")
        fields = list(dict.fromkeys(found))
    else:
        fields = next(([keys[c]] for c in TEXT_COLUMN_CANDIDATES if c in keys), [])
        if not fields:
            fields = [view[f] for f in DEFAULT_VIEW if view[f] is not None]
        if not fields:
            fields = [view[f] for f in VIEW_FIELDS if view[f] is not None][:1]
        if not fields:
            raise DataError(source, f"no text column found (looked for text, title, abstract, claims, "
                                    f"description; columns: {available}); name one with --text-fields")

    def pick(explicit: str | None, candidates: Sequence[str], role: str) -> str | None:
        if explicit:
            col = explicit if explicit in cols else keys.get(column_key(explicit))
            if col is None:
                raise DataError(source, f"no column '{explicit}' for the {role} (columns: {available})")
            return col
        return _find_column(keys, candidates)

    labels = pick(label_field, LABEL_COLUMN_CANDIDATES, "labels")
    if labels is None and not label_field:
        labels = _fallback_label_column(cols)
    if labels is None and require_labels:
        raise DataError(source, f"no label column found (looked for {', '.join(LABEL_COLUMN_CANDIDATES[:6])}, "
                                f"CPC Codes, IPC, …; columns: {available}); name one with --label-field")
    ids = pick(id_field, ID_COLUMN_CANDIDATES, "ids")
    return fields, labels, ids


def _has_fields(columns: Sequence[str], fields: Sequence[str]) -> bool:
    """Whether every one of ``fields`` is found in ``columns`` (matched as :func:`resolve_columns` does)."""
    try:
        resolve_columns(columns, "", fields, require_labels=False)
    except DataError:
        return False
    return True


def _normalizer(source, fields, label_field, id_field, level, on_bad_row, require_labels,
                pre_bad: dict | None = None, max_chars: int | None = None, title_field: str | None = None,
                raw_columns: Sequence[str] = ()):
    """The batched map function that builds (id, text, labels) and flags bad rows.

    ``pre_bad`` (row -> (problem, field)) holds records the reader already found bad; ``max_chars``
    bounds every field used. Where labels are not required, a label column that cannot be parsed
    is no bad row: the row keeps no labels and ``_warning`` says why. ``title_field`` is carried
    as ``_title``, each of ``raw_columns`` as ``_raw.<name>``."""
    pre_bad = pre_bad or {}
    used = [*fields, *([label_field] if label_field else [])]

    def fn(batch: dict, indices: list[int]) -> dict:
        out = {"id": [], "text": [], "labels": [], "_error": [], "_warning": []}
        if title_field is not None:
            out["_title"] = []
        for name in raw_columns:
            out[f"_raw.{name}"] = []
        for j, idx in enumerate(indices):
            row = idx + 1
            err: tuple = ()
            if row in pre_bad:
                err = (pre_bad[row][0], row, pre_bad[row][1])
            elif max_chars:
                for f in used:
                    v = batch[f][j]
                    n = len(v) if isinstance(v, str) else 0
                    if n > max_chars:
                        err = (f"field of {n:,} characters, over the limit of {max_chars:,} "
                               f"(raise it with PATENTCPC_MAX_FIELD_CHARS)", row, f)
                        break
            parts = []
            for f in fields:
                v = batch[f][j]
                if not err and (isinstance(v, dict) or isinstance(v, (list, tuple)) and any(
                        isinstance(x, (dict, list, tuple)) for x in v)):
                    # a JSON object (or nested list) where text belongs: no silent "{'a': 1}" text
                    kind = "a JSON object" if isinstance(v, dict) else "a list of objects or lists"
                    err = (f"{kind}, not text", row, f)
                if isinstance(v, (list, tuple)):  # e.g. claims as a list of strings
                    v = TEXT_JOINER.join(str(x).strip() for x in v if x is not None and str(x).strip())
                if v is not None and str(v).strip():
                    parts.append(str(v).strip())
            text = TEXT_JOINER.join(parts)
            labels: list[str] = []
            warning = ""
            if err:
                text = ""
            elif not text:
                err = ("empty text", row, "+".join(fields))
            elif "\x00" in text:
                err = ("a NUL character in the text", row, "+".join(fields))
            elif label_field is not None:
                raw = batch[label_field][j]
                try:
                    labels = parse_labels(raw, level)
                except CPCError as exc:
                    if require_labels:
                        err = (f"malformed CPC: {exc}", row, label_field)
                    else:  # prediction does not need the gold column: keep the row, say why it has none
                        warning = DataError(source, f"malformed CPC: {exc} (kept, no gold labels)", row,
                                            label_field).args[0]
                else:
                    if not labels and require_labels:
                        problem = "no CPC labels" if not str(raw or "").strip() else \
                            f"no CPC code at the {level} level in '{str(raw)[:60]}'"
                        err = (problem, row, label_field)
            if err and on_bad_row == "error":
                raise _BadRow(*err)
            out["id"].append(str(batch[id_field][j]) if id_field else str(row))
            out["text"].append(text)
            out["labels"].append(labels)
            out["_error"].append(DataError(source, *err).args[0] if err else "")
            out["_warning"].append(warning)
            if title_field is not None:
                v = batch[title_field][j]
                out["_title"].append("" if v is None else str(v).strip())
            for name in raw_columns:
                out[f"_raw.{name}"].append(batch[name][j])
        return out

    return fn


def _list_feature(datasets):
    """A list-of-strings feature (``List`` in datasets >= 4, ``Sequence`` before)."""
    lst = getattr(datasets, "List", None) or datasets.Sequence
    return lst(datasets.Value("string"))


def _root_message(exc: BaseException) -> str:
    """The most specific message in an exception chain, on one line."""
    msgs = []
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).strip()
        if text:
            msgs.append(text.splitlines()[-1] if len(text.splitlines()) else text)
        exc = exc.__cause__ or exc.__context__
    generic = ("An error occurred while generating the dataset",)
    for msg in reversed(msgs):
        if not msg.startswith(generic):
            return msg[:300]
    return msgs[0][:300] if msgs else "unknown error"


def _first_bad_json_line(path: Path) -> tuple[int, str] | None:
    """(line number, problem) of the first line of a JSON Lines file that is not a JSON object."""
    from patentcpc.input_checks import json_line_problem

    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            _, problem = json_line_problem(line)
            if problem:
                return n, problem
    return None


@contextlib.contextmanager
def _quiet_datasets():
    """datasets logs reader failures itself; patentcpc reports them once, as a DataError."""
    from datasets.utils import logging as ds_logging

    level = ds_logging.get_verbosity()
    ds_logging.set_verbosity(logging.CRITICAL)
    try:
        yield
    finally:
        ds_logging.set_verbosity(level)


class _BadRow(Exception):
    pass


def load_data(
    source: str | os.PathLike,
    *,
    text_fields: Sequence[str] | None = None,
    label_field: str | None = None,
    id_field: str | None = None,
    level: str = "subclass",
    on_bad_row: str = "error",
    split: str = "train",
    require_labels: bool = True,
    num_proc: int | None = None,
    preferred_text_fields: Sequence[str] | None = None,
    max_field_chars: int | None = None,
    carry_title: bool = False,
    carry_raw: bool = False,
) -> PatentData:
    """Load any supported source into a :class:`PatentData`.

    ``on_bad_row='error'`` stops at the first bad row with a :class:`DataError` naming file, row
    and field; ``'skip'`` drops bad rows and counts them in ``n_skipped``.
    ``preferred_text_fields`` (e.g. a model's text view) is used when ``text_fields`` is not given
    and the source has every one of those fields; otherwise the text view is auto-detected.
    ``max_field_chars`` bounds every field used (default 10 million characters, or
    ``$PATENTCPC_MAX_FIELD_CHARS``); a longer one is a bad row.
    ``carry_title``: the title column (if the source has one) goes along as ``_title``;
    ``carry_raw``: every input column goes along, values as read, as ``_raw.<name>``.
    """
    check_level(level)
    if on_bad_row not in ("error", "skip"):
        raise DataError(source, f"on_bad_row must be 'error' or 'skip', not '{on_bad_row}'")
    from patentcpc.input_checks import max_field_chars as _limit

    raw, pre_bad = _read_raw(source, split, on_bad_row, max_field_chars)
    if len(raw) == 0:
        raise DataError(source, "has no rows")
    src = str(source)
    if not text_fields and preferred_text_fields and _has_fields(raw.column_names, preferred_text_fields):
        text_fields = preferred_text_fields  # e.g. a model's view: Title,Abstract,Claims -> title,abstract,claims
    fields, label_col, id_col = resolve_columns(raw.column_names, src, text_fields, label_field, id_field,
                                                require_labels)
    title_col = None
    if carry_title:
        keys: dict[str, str] = {}
        for c in raw.column_names:
            keys.setdefault(column_key(c), c)
        title_col = _find_column(keys, VIEW_FIELD_ALIASES["title"])
    raw_cols = [c for c in raw.column_names if c != _PLACEHOLDER] if carry_raw else []
    fn = _normalizer(src, fields, label_col, id_col, level, on_bad_row, require_labels, pre_bad,
                     _limit(max_field_chars), title_col, raw_cols)
    small = len(raw) <= 200_000
    import datasets

    # explicit output types: an input column named like an output ("text") must not lend it its type
    features = datasets.Features({"id": datasets.Value("string"), "text": datasets.Value("string"),
                                  "labels": _list_feature(datasets),
                                  "_error": datasets.Value("string"), "_warning": datasets.Value("string"),
                                  **({"_title": datasets.Value("string")} if title_col else {}),
                                  **{f"_raw.{c}": raw.features[c] for c in raw_cols}})
    try:
        ds = raw.map(fn, batched=True, batch_size=2000, with_indices=True, remove_columns=raw.column_names,
                     keep_in_memory=small, load_from_cache_file=False, num_proc=num_proc,
                     features=features, desc="Reading records")
    except _BadRow as exc:
        raise DataError(src, *exc.args) from None
    errors = [e for e in ds["_error"][:] if e] if small else None
    if errors is None:
        errors = [e for b in ds.select_columns(["_error"]).iter(batch_size=50_000) for e in b["_error"] if e]
    if errors:
        ds = ds.filter(lambda b: [not e for e in b["_error"]], batched=True, batch_size=10_000,
                       keep_in_memory=small, load_from_cache_file=False)
        if len(ds) == 0:
            raise DataError(source, f"every row is bad ({len(errors)} skipped); first: {errors[0]}")
    warnings = [w for b in ds.select_columns(["_warning"]).iter(batch_size=50_000) for w in b["_warning"] if w]
    ds = ds.remove_columns(["_error", "_warning"])
    return PatentData(ds, src, fields, label_col, id_col, level, n_skipped=len(errors), skipped=errors[:5],
                      title_field=title_col, raw_columns=raw_cols, n_label_warnings=len(warnings),
                      label_warning=warnings[0] if warnings else "")


def records_from_texts(texts: Sequence[str], ids: Sequence[str] | None = None) -> PatentData:
    """Wrap raw texts (no labels) as :class:`PatentData`, for prediction."""
    import datasets

    ids = list(ids) if ids is not None else [str(i + 1) for i in range(len(texts))]
    ds = datasets.Dataset.from_dict({"id": ids, "text": list(texts), "labels": [[] for _ in texts]})
    return PatentData(ds, "<texts>", ["text"], None, None, "subclass")


# --------------------------------------------------------------------------- splitting


STRATIFY_MAX_ROWS = 50_000


def _rarest_label_split(data: PatentData, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """A stratified split in O(n log n): documents grouped by their rarest label (the label that
    is hardest to keep in every part), shuffled within the group (seeded), and the parts cut at
    the same fractions of every group, so every label with enough documents is split close to
    ``fractions``; the parts have the sizes a seeded shuffle would. Reads the labels in batches;
    no documents x labels matrix."""
    counts: Counter = Counter()
    for batch in data.dataset.select_columns(["labels"]).iter(batch_size=100_000):
        for labels in batch["labels"]:
            counts.update(labels)
    rank = {c: i for i, (c, _) in enumerate(sorted(counts.items(), key=lambda kv: (kv[1], kv[0])))}
    key = np.empty(len(data), dtype=np.int64)
    pos = 0
    for batch in data.dataset.select_columns(["labels"]).iter(batch_size=100_000):
        for labels in batch["labels"]:
            key[pos] = min((rank[c] for c in labels), default=len(rank))
            pos += 1
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(data)), key))  # by group, shuffled within
    # a low-discrepancy sequence along that order (golden-ratio steps): every stretch of it, so
    # every group, spreads evenly over [0, 1); the parts are its quantiles, of exact sizes
    v = ((np.arange(len(order)) + rng.random()) * 0.6180339887498949) % 1.0
    bounds = np.cumsum([round(f * len(data)) for f in fractions[:-1]])
    return [np.sort(p) for p in np.split(order[np.argsort(v, kind="stable")], bounds)]


def split_data(
    data: PatentData, fractions: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 42,
    stratify_max_rows: int = STRATIFY_MAX_ROWS,
) -> list[PatentData]:
    """Deterministic multi-label iterative stratification (Sechidis et al. 2011, via
    ``iterative-stratification``) into len(fractions) parts.

    Iterative stratification needs a dense documents x labels matrix and a Python loop over rows;
    above ``stratify_max_rows`` rows a sort-based split stratified on each document's rarest label
    (:func:`_rarest_label_split`, O(n log n), bounded memory) is used instead, so USPTO-3M splits in
    seconds.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit
    from sklearn.preprocessing import MultiLabelBinarizer

    from patentcpc.config import check_seed

    if abs(sum(fractions) - 1.0) > 1e-6 or any(f <= 0 for f in fractions):
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    check_seed(seed)
    if len(data) > stratify_max_rows:
        return [data.select(p) for p in _rarest_label_split(data, fractions, seed)]
    y = MultiLabelBinarizer(sparse_output=False).fit_transform(data.labels).astype(np.uint8)
    if y.shape[1] < 2:
        # one label (or none) in the whole set: nothing to stratify, and scikit-learn refuses a
        # single-column target; a second, all-zero column makes it a (trivial) multi-label target
        y = np.concatenate([y, np.zeros((len(y), 2 - y.shape[1]), dtype=np.uint8)], axis=1)
    remaining = np.arange(len(data))
    parts: list[np.ndarray] = []
    left = 1.0
    for frac in fractions[:-1]:
        share = frac / left
        if share >= 1.0 or len(remaining) < 2:
            parts.append(remaining)
            remaining = np.array([], dtype=int)
            break
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=1 - share, random_state=seed)
        take, rest = next(splitter.split(np.zeros(len(remaining)), y[remaining]))
        parts.append(np.sort(remaining[take]))
        remaining = remaining[rest]
        left -= frac
    parts.append(np.sort(remaining))
    if any(len(p) == 0 for p in parts) and len(data) >= len(fractions):
        # too few rows for stratification to fill every part: fall back to a seeded shuffle
        order = np.random.default_rng(seed).permutation(len(data))
        bounds = np.cumsum([max(1, round(f * len(data))) for f in fractions[:-1]])
        parts = [np.sort(p) for p in np.split(order, bounds)]
    parts = _rebalance(parts, y, fractions, seed)
    return [data.select(p.tolist()) for p in parts]


def split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Part sizes for ``n`` documents: the largest-remainder rounding of ``fractions`` x ``n``
    (every part within one document of its fraction; sizes sum to ``n``)."""
    raw = np.asarray(fractions, dtype=np.float64) * n
    sizes = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - sizes), kind="stable")[: n - int(sizes.sum())]:
        sizes[i] += 1
    return sizes.tolist()


def _rebalance(parts: list[np.ndarray], y: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Move documents from parts above their target size (:func:`split_sizes`) to parts below it.

    Iterative stratification places documents label by label, rarest first, and on small
    multi-label data leaves the parts far from the fractions (453/34/65 for 0.8/0.1/0.1 of 552
    documents). The documents moved out of a part are those whose labels that part holds most
    of, relative to its share, so the label balance suffers least; ties are broken by a seeded
    shuffle."""
    n = sum(len(p) for p in parts)
    target = split_sizes(n, fractions)
    parts = [np.asarray(p, dtype=np.int64) for p in parts]
    if [len(p) for p in parts] == target:
        return parts
    rng = np.random.default_rng(seed)
    total = y.sum(0).astype(np.float64)
    over = [i for i, p in enumerate(parts) if len(p) > target[i]]
    under = [i for i, p in enumerate(parts) if len(p) < target[i]]
    moved: dict[int, list[np.ndarray]] = {i: [] for i in under}
    for i in over:
        p = parts[i]
        excess = len(p) - target[i]
        # how far over its share the part holds each label; a document's surplus: its least one
        surplus = y[p].sum(0) - fractions[i] * total
        doc = np.where(y[p] > 0, surplus[None, :], np.inf).min(1)
        doc[~np.isfinite(doc)] = surplus.max(initial=0.0) + 1  # no labels: moved first
        order = np.lexsort((rng.random(len(p)), -doc))
        out, keep = p[order[:excess]], p[order[excess:]]
        parts[i] = np.sort(keep)
        start = 0
        for j in under:
            need = target[j] - len(parts[j]) - sum(len(m) for m in moved[j])
            if need > 0:
                moved[j].append(out[start : start + need])
                start += need
    for j in under:
        parts[j] = np.sort(np.concatenate([parts[j], *moved[j]]))
    return parts


# --------------------------------------------------------------------------- statistics


@dataclass
class DataStats:
    n_docs: int
    n_labels: int
    n_label_assignments: int
    label_cardinality: float
    label_density: float
    imbalance_ratio: float  # most frequent / least frequent label count
    mean_imbalance_ratio: float  # MeanIR of Charte et al. 2015
    top30_share: float  # share of label assignments held by the 30 most frequent labels
    mean_text_chars: float
    median_text_words: float
    n_skipped: int
    label_counts: list[tuple[str, int]]  # most frequent first

    def summary(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "label_counts"}
        d["top_labels"] = self.label_counts[:10]
        return d


def iter_batches(data: PatentData, batch_size: int = 10_000) -> Iterator[dict]:
    yield from data.dataset.iter(batch_size=batch_size)


def compute_stats(data: PatentData, batch_size: int = 10_000) -> DataStats:
    """Label and length statistics in one streaming pass over Arrow batches."""
    counts: Counter[str] = Counter()
    n_docs = n_assign = 0
    chars = 0
    word_hist = np.zeros(4097, dtype=np.int64)  # words per doc, capped: median without a list
    for batch in iter_batches(data, batch_size):
        for text, labels in zip(batch["text"], batch["labels"], strict=True):
            n_docs += 1
            n_assign += len(labels)
            counts.update(labels)
            chars += len(text)
            word_hist[min(text.count(" ") + 1, 4096)] += 1
    freq = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    values = np.array([c for _, c in freq], dtype=float) if freq else np.array([1.0])
    cum = np.cumsum(word_hist)
    median_words = float(np.searchsorted(cum, (n_docs + 1) / 2)) if n_docs else 0.0
    return DataStats(
        n_docs=n_docs,
        n_labels=len(counts),
        n_label_assignments=n_assign,
        label_cardinality=n_assign / max(n_docs, 1),
        label_density=n_assign / max(n_docs, 1) / max(len(counts), 1),
        imbalance_ratio=float(values.max() / values.min()),
        mean_imbalance_ratio=float(np.mean(values.max() / values)),
        top30_share=float(values[:30].sum() / max(values.sum(), 1)),
        mean_text_chars=chars / max(n_docs, 1),
        median_text_words=median_words,
        n_skipped=data.n_skipped,
        label_counts=freq,
    )


def load_for_model(source: str, cfg_data, model=None, require_labels: bool = True, **extra) -> PatentData:
    """Load data with the text view and label level a model was trained on (``model``: a loaded
    :class:`~patentcpc.models.base.CPCModel`) when the source has those fields (else auto-detect).
    ``cfg_data``: a :class:`~patentcpc.config.DataConfig` or None; ``extra``: more :func:`load_data`
    keywords (``carry_title=True``)."""
    kwargs = cfg_data.load_kwargs() if cfg_data is not None else {}
    kwargs.update(extra)
    kwargs["require_labels"] = require_labels
    if model is not None:
        kwargs["level"] = model.manifest.label_level
        kwargs["preferred_text_fields"] = model.manifest.text_view.get("fields")
    return load_data(source, **kwargs)
