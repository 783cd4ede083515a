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

import contextlib
import hashlib
import logging
import os
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
LABEL_COLUMN_CANDIDATES = (
    "cpc_ids", "labels", "cpc", "cpc_codes", "cpc_subclasses", "cpc_labels", "codes", "ipc",
    "ipc_codes", "label", "classification", "cpc_classes",
)
ID_COLUMN_CANDIDATES = ("id", "patent_id", "publication_number", "doc_id", "docid", "patent_number")
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
                          self.id_field, self.level)


def detect_format(source: str | os.PathLike) -> str:
    """One of csv, tsv, jsonl, json, parquet, disk (a ``save_to_disk`` folder) or hub."""
    path = Path(source)
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return "disk"
        raise DataError(source, "is a folder but not a Hugging Face save_to_disk dataset")
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


def _check_text_file(path: Path) -> None:
    """Fail early, with the line number, on an empty file or bytes that are not UTF-8."""
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")
    if path.suffix.lower() in (".gz", ".bz2", ".xz", ".zst"):
        return
    with open(path, "rb") as fh:
        line_no = 0
        carry = b""
        while chunk := fh.read(1 << 24):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1 if len(chunk) == 1 << 24 else len(data)
            block, carry = data[:cut], data[cut:]
            try:
                block.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad_line = line_no + block[: exc.start].count(b"\n") + 1
                raise DataError(path, f"line {bad_line}: bytes that are not UTF-8 "
                                      f"(byte 0x{block[exc.start]:02x}); re-save the file as UTF-8") from None
            line_no += block.count(b"\n")


def read_raw(source: str | os.PathLike, split: str = "train"):
    """Read a source into a :class:`datasets.Dataset` with its own columns (no mapping yet)."""
    import datasets  # noqa: PLC0415 (heavy import)

    if os.environ.get("CI") or not sys.stderr.isatty():
        datasets.disable_progress_bars()  # progress bars only for a person watching a terminal
    fmt = detect_format(source)
    src = str(source)
    try:
        if fmt == "disk":
            ds = datasets.load_from_disk(src)
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(src, f"has no split '{split}' (splits: {', '.join(ds)})")
                ds = ds[split]
            return ds
        if fmt == "hub":
            from patentcpc.hub import check_hub  # noqa: PLC0415

            check_hub(src, "dataset")  # fails in seconds, with a hint, when the hub is unreachable
            return datasets.load_dataset(src, split=split)
        path = Path(src)
        if fmt != "parquet":
            _check_text_file(path)
        builder = {"csv": "csv", "tsv": "csv", "jsonl": "json", "json": "json", "parquet": "parquet"}[fmt]
        kwargs = {"delimiter": "\t"} if fmt == "tsv" else {}
        if fmt in ("csv", "tsv"):
            kwargs["keep_default_na"] = False  # an empty cell is an empty string, not NaN
            kwargs["encoding"] = "utf-8-sig"  # spreadsheet exports start with a byte-order mark
        with _quiet_datasets():
            return datasets.load_dataset(builder, data_files=str(path.resolve()), split="train", **kwargs)
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(src, "file not found") from exc
    except Exception as exc:  # the readers raise many kinds: report them on one line
        msg = _root_message(exc)
        if "corresponds to no data" in msg:  # datasets' words for a file with a header and no rows
            raise DataError(src, "has no rows") from None
        if fmt == "jsonl":
            bad = _first_bad_json_line(Path(src))
            if bad is not None:
                raise DataError(src, f"line {bad[0]}: {bad[1]}") from None
        if fmt == "hub":
            msg = f"cannot load the Hugging Face dataset ({msg})"
        raise DataError(src, f"cannot be read as {fmt}: {msg}") from None


def resolve_columns(
    columns: Sequence[str],
    source: str,
    text_fields: Sequence[str] | None = None,
    label_field: str | None = None,
    id_field: str | None = None,
    require_labels: bool = True,
) -> tuple[list[str], str | None, str | None]:
    """Pick the text fields, label column and id column (explicit choices first, then detection)."""
    cols = list(columns)
    lower = {c.lower(): c for c in cols}
    available = ", ".join(cols)
    if text_fields:
        missing = [f for f in text_fields if f not in cols and f.lower() not in lower]
        if missing:
            raise DataError(source, f"no column '{missing[0]}' for the text view (columns: {available})")
        fields = [f if f in cols else lower[f.lower()] for f in text_fields]
    else:
        fields = next(([lower[c]] for c in TEXT_COLUMN_CANDIDATES if c in lower), [])
        if not fields:
            fields = [lower[c] for c in DEFAULT_VIEW if c in lower]
        if not fields:
            fields = [lower[c] for c in VIEW_FIELDS if c in lower][:1]
        if not fields:
            raise DataError(source, f"no text column found (looked for text, title, abstract, claims, "
                                    f"description; columns: {available}); name one with --text-fields")
    def pick(explicit: str | None, candidates: Sequence[str], role: str) -> str | None:
        if explicit:
            if explicit not in cols:
                raise DataError(source, f"no column '{explicit}' for the {role} (columns: {available})")
            return explicit
        return next((lower[c] for c in candidates if c in lower), None)

    labels = pick(label_field, LABEL_COLUMN_CANDIDATES, "labels")
    if labels is None and require_labels:
        raise DataError(source, f"no label column found (looked for {', '.join(LABEL_COLUMN_CANDIDATES[:6])}, "
                                f"…; columns: {available}); name one with --label-field")
    ids = pick(id_field, ID_COLUMN_CANDIDATES, "ids")
    return fields, labels, ids


def _normalizer(source, fields, label_field, id_field, level, on_bad_row, require_labels):
    """The batched map function that builds (id, text, labels) and flags bad rows."""

    def fn(batch: dict, indices: list[int]) -> dict:
        out = {"id": [], "text": [], "labels": [], "_error": []}
        for j, idx in enumerate(indices):
            row = idx + 1
            err: tuple = ()
            parts = []
            for f in fields:
                v = batch[f][j]
                if isinstance(v, (list, tuple)):  # e.g. claims as a list of strings
                    v = TEXT_JOINER.join(str(x).strip() for x in v if x is not None and str(x).strip())
                if v is not None and str(v).strip():
                    parts.append(str(v).strip())
            text = TEXT_JOINER.join(parts)
            labels: list[str] = []
            if not text:
                err = ("empty text", row, "+".join(fields))
            elif label_field is not None:
                raw = batch[label_field][j]
                try:
                    labels = parse_labels(raw, level)
                except CPCError as exc:
                    err = (f"malformed CPC: {exc}", row, label_field)
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
    import json  # noqa: PLC0415

    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                return n, f"not valid JSON ({exc})"
            if not isinstance(obj, dict):
                return n, f"a JSON {type(obj).__name__}, not an object with fields"
    return None


@contextlib.contextmanager
def _quiet_datasets():
    """datasets logs reader failures itself; patentcpc reports them once, as a DataError."""
    from datasets.utils import logging as ds_logging  # noqa: PLC0415

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
) -> PatentData:
    """Load any supported source into a :class:`PatentData`.

    ``on_bad_row='error'`` stops at the first bad row with a :class:`DataError` naming file, row
    and field; ``'skip'`` drops bad rows and counts them in ``n_skipped``.
    ``preferred_text_fields`` (e.g. a model's text view) is used when ``text_fields`` is not given
    and the source has every one of those fields; otherwise the text view is auto-detected.
    """
    check_level(level)
    if on_bad_row not in ("error", "skip"):
        raise DataError(source, f"on_bad_row must be 'error' or 'skip', not '{on_bad_row}'")
    raw = read_raw(source, split)
    if len(raw) == 0:
        raise DataError(source, "has no rows")
    src = str(source)
    if not text_fields and preferred_text_fields and all(f in raw.column_names for f in preferred_text_fields):
        text_fields = preferred_text_fields
    fields, label_col, id_col = resolve_columns(raw.column_names, src, text_fields, label_field, id_field,
                                                require_labels)
    fn = _normalizer(src, fields, label_col, id_col, level, on_bad_row, require_labels)
    small = len(raw) <= 200_000
    import datasets  # noqa: PLC0415

    # explicit output types: an input column named like an output ("text") must not lend it its type
    features = datasets.Features({"id": datasets.Value("string"), "text": datasets.Value("string"),
                                  "labels": _list_feature(datasets),
                                  "_error": datasets.Value("string")})
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
    ds = ds.remove_columns("_error")
    return PatentData(ds, src, fields, label_col, id_col, level, n_skipped=len(errors), skipped=errors[:5])


def records_from_texts(texts: Sequence[str], ids: Sequence[str] | None = None) -> PatentData:
    """Wrap raw texts (no labels) as :class:`PatentData`, for prediction."""
    import datasets  # noqa: PLC0415

    ids = list(ids) if ids is not None else [str(i + 1) for i in range(len(texts))]
    ds = datasets.Dataset.from_dict({"id": ids, "text": list(texts), "labels": [[] for _ in texts]})
    return PatentData(ds, "<texts>", ["text"], None, None, "subclass")


# --------------------------------------------------------------------------- splitting


STRATIFY_MAX_ROWS = 200_000


def split_data(
    data: PatentData, fractions: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 42,
    stratify_max_rows: int = STRATIFY_MAX_ROWS,
) -> list[PatentData]:
    """Deterministic multi-label iterative stratification (Sechidis et al. 2011, via
    ``iterative-stratification``) into len(fractions) parts.

    Iterative stratification needs a dense documents x labels matrix and a Python loop over rows;
    above ``stratify_max_rows`` rows (where a seeded random split is stratified closely enough by the
    law of large numbers) a seeded shuffle is used instead, so USPTO-3M splits in seconds.
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit  # noqa: PLC0415
    from sklearn.preprocessing import MultiLabelBinarizer  # noqa: PLC0415

    if abs(sum(fractions) - 1.0) > 1e-6 or any(f <= 0 for f in fractions):
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    if len(data) > stratify_max_rows:
        order = np.random.default_rng(seed).permutation(len(data))
        bounds = np.cumsum([round(f * len(data)) for f in fractions[:-1]])
        return [data.select(np.sort(p).tolist()) for p in np.split(order, bounds)]
    y = MultiLabelBinarizer(sparse_output=False).fit_transform(data.labels).astype(np.uint8)
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
    return [data.select(p.tolist()) for p in parts]


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
