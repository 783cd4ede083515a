"""Malformed input is never silently accepted (issue 11, item 5), plus property-based tests of the
CPC parser and of every reader: arbitrary input parses or raises the project's own error."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patentcpc.cpc import CPCSymbol, normalize, parse_labels, parse_symbol
from patentcpc.data import load_data, read_raw
from patentcpc.errors import CPCError, DataError, PatentCPCError
from patentcpc.input_checks import scan_jsonl

ENV = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "400",
       "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
HEADER = b"text,cpc_ids\n"
UNTERMINATED = HEADER + b'hello world,H04L\n"broken text,H04L\nrow three,G06F\nrow four,G06F\n'
# pandas' lenient tokenizer reads this as 4 rows with 'broken text,H04L\nrow three,G06F\nrow 4 has a 5 screen'
# as one text: the quote on line 5 closes the field opened on line 3
MERGED = HEADER + b'hello world,H04L\n"broken text,H04L\nrow three,G06F\nrow 4 has a 5" screen,G06F\nrow five,H04L\n'


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _error(path: Path, **kw) -> DataError:
    with pytest.raises(DataError) as exc:
        load_data(path, **kw)
    assert "\n" not in str(exc.value)
    return exc.value


# ----------------------------------------------------------------------------- CSV / TSV structure


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_unterminated_quote_stops_with_its_row(tmp_path, fmt):
    data = UNTERMINATED if fmt == "csv" else UNTERMINATED.replace(b",", b"\t")
    err = _error(_file(tmp_path, f"bad.{fmt}", data))
    assert err.row == 2 and err.field == "text"
    assert "line 3" in str(err) and "unterminated quote" in str(err) and f"bad.{fmt}" in str(err)
    data = load_data(tmp_path / f"bad.{fmt}", on_bad_row="skip")
    assert data.n_skipped == 1 and "row 2" in data.skipped[0]
    assert data.texts == ["hello world", "row three", "row four"]  # reading restarts after the bad line
    assert data.ids == ["1", "3", "4"]  # ids keep the record numbers of the file


def test_quote_that_merges_rows_is_found(tmp_path):
    path = _file(tmp_path, "merged.csv", MERGED)
    err = _error(path)
    assert err.row == 2 and "line 3" in str(err) and "line 5" in str(err) and "bad quoting" in str(err)
    data = load_data(path, on_bad_row="skip")
    assert data.n_skipped == 1
    assert data.texts == ["hello world", "row three", 'row 4 has a 5" screen', "row five"]


@pytest.mark.parametrize(("body", "words"), [
    (b"a,H04L\nb,H04L,extra\nc,G06F\n", ["row 2", "line 3", "too many fields (3, the header has 2)"]),
    (b"a,H04L\nb\nc,G06F\n", ["row 2", "line 3", "too few fields (1, the header has 2)"]),
])
def test_wrong_field_counts(tmp_path, body, words):
    path = _file(tmp_path, "ragged.csv", HEADER + body)
    msg = str(_error(path))
    assert all(w in msg for w in words), msg
    data = load_data(path, on_bad_row="skip")
    assert data.texts == ["a", "c"] and data.n_skipped == 1


def test_too_few_fields_in_an_optional_column_is_not_padded(tmp_path):
    # pandas pads a short line with empty values; here the missing field is not the label
    path = _file(tmp_path, "short.csv", b"text,cpc_ids,title\na,H04L,t\nb,G06F\n")
    assert "too few fields" in str(_error(path))


def test_blank_lines_are_not_rows(tmp_path):
    data = load_data(_file(tmp_path, "blank.csv", HEADER + b"a,H04L\n\n   \nb,G06F\n"))
    assert data.texts == ["a", "b"]


def test_nul_bytes(tmp_path):
    path = _file(tmp_path, "nul.csv", HEADER + b"ok,H04L\na\x00b,H04L\nc,G06F\n")
    err = _error(path)
    assert err.row == 2 and err.field == "text" and "NUL" in str(err) and "line 3" in str(err)
    data = load_data(path, on_bad_row="skip")
    assert data.texts == ["ok", "c"] and data.n_skipped == 1
    # a NUL that arrives through JSON escapes or Parquet is caught on the text
    rows = [{"text": "fine", "cpc": "H04L"}, {"text": "a\u0000b", "cpc": "H04L"}]
    jsonl = _file(tmp_path, "nul.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert "NUL" in str(_error(jsonl)) and _error(jsonl).row == 2
    assert load_data(jsonl, on_bad_row="skip").n_skipped == 1


def test_invalid_utf8_names_line_and_byte_offset(tmp_path):
    path = _file(tmp_path, "latin1.csv", HEADER + b"ok,H04L\ncaf\xe9,H04L\n")
    msg = str(_error(path))
    assert "line 3" in msg and "byte offset 24" in msg and "0xe9" in msg
    jsonl = _file(tmp_path, "latin1.jsonl", b'{"text": "ok", "cpc": "H04L"}\n{"text": "caf\xe9", "cpc": "H04L"}\n')
    assert "line 2" in str(_error(jsonl))


def test_huge_field(tmp_path, monkeypatch):
    path = _file(tmp_path, "huge.csv", HEADER + b"a" * 5000 + b",H04L\nsmall,G06F\n")
    err = _error(path, max_field_chars=1000)
    assert err.row == 1 and "1,000 characters" in str(err) and "PATENTCPC_MAX_FIELD_CHARS" in str(err)
    assert load_data(path, max_field_chars=1000, on_bad_row="skip").texts == ["small"]
    assert len(load_data(path).texts[0]) == 5000  # the default limit is 10 million characters
    monkeypatch.setenv("PATENTCPC_MAX_FIELD_CHARS", "1000")
    assert "1,000" in str(_error(path))
    jsonl = _file(tmp_path, "huge.jsonl", (json.dumps({"text": "b" * 5000, "cpc": "H04L"}) + "\n").encode())
    err = _error(jsonl)
    assert err.row == 1 and err.field == "text" and "5,000 characters" in str(err)


def test_empty_header_only_and_duplicate_columns(tmp_path):
    assert "file is empty" in str(_error(_file(tmp_path, "empty.csv", b"")))
    assert "has no rows" in str(_error(_file(tmp_path, "header.csv", HEADER)))
    assert "has no rows" in str(_error(_file(tmp_path, "header.tsv", b"text\tcpc_ids\n")))
    assert "has no rows" in str(_error(_file(tmp_path, "blank.jsonl", b"\n\n")))
    assert "has no rows" in str(_error(_file(tmp_path, "empty.json", b"[]")))
    for mode in ("error", "skip"):
        msg = str(_error(_file(tmp_path, "dup.csv", b"text,text,cpc_ids\na,b,H04L\n"), on_bad_row=mode))
        assert "duplicate column name 'text' (columns 1 and 2)" in msg
    msg = str(_error(_file(tmp_path, "dup.jsonl", b'{"text": "a", "text": "b", "cpc": "H04L"}\n')))
    assert "line 1" in msg and "duplicate key 'text'" in msg


def test_byte_order_mark_everywhere(tmp_path):
    bom = b"\xef\xbb\xbf"
    cases = {"bom.csv": HEADER + b"hello,H04L\n", "bom.tsv": b"text\tcpc_ids\nhello\tH04L\n",
             "bom.jsonl": b'{"text": "hello", "cpc": "H04L"}\n', "bom.json": b'[{"text": "hello", "cpc": "H04L"}]'}
    for name, body in cases.items():
        data = load_data(_file(tmp_path, name, bom + body))
        assert data.text_fields == ["text"] and data.texts == ["hello"], name


# ----------------------------------------------------------------------------- JSON


def test_deep_json_lines_is_an_error_not_a_crash(tmp_path):
    deep = b'{"text": "a", "cpc": "H04L", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n"
    path = _file(tmp_path, "deep.jsonl", b'{"text": "fine", "cpc": "H04L"}\n' + deep)
    err = _error(path)  # pyarrow's reader would crash the process (segfault) on this line
    assert "line 2" in str(err) and "nested deeper than" in str(err)
    assert load_data(path, on_bad_row="skip").texts == ["fine"]
    # spread over many lines (a pretty-printed document) it is found too
    pretty = _file(tmp_path, "pretty.json", b'{"x":\n' + b"[\n" * 20_000 + b"]\n" * 20_000 + b"}\n")
    assert "nested deeper than" in str(_error(pretty))
    # a JSON array file: the array reader's own depth limit, as a DataError
    arr = _file(tmp_path, "deep.json", b'[{"text": "a", "cpc": "H04L", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}]")
    assert "nested too deeply" in str(_error(arr))


def test_depth_scan_ignores_brackets_in_strings(tmp_path):
    text = "[" * 2000 + ' \\" {{{ ' + "]" * 10
    path = _file(tmp_path, "brackets.jsonl", (json.dumps({"text": text, "cpc": ["H04L"]}) + "\n").encode())
    assert scan_jsonl(path)[0] is None
    assert load_data(path).texts == [text.replace('\\"', '"')] or load_data(path).texts == [text]
    # and an escaped quote does not hide real nesting that follows it
    deep = _file(tmp_path, "d.jsonl", b'{"t": "a\\"b", "x": ' + b"[" * 600 + b"]" * 600 + b"}\n")
    assert scan_jsonl(deep)[0] == 1


def test_bad_json_lines_skipped_and_counted(tmp_path):
    body = (b'{"text": "a", "cpc": "H04L"}\n{"text": "b", \n[1, 2]\n'
            b'{"text": "c", "cpc": ["G06F"]}\n{"text": "d", "cpc": "A01B"}\n')
    path = _file(tmp_path, "mixed.jsonl", body)
    assert "line 2" in str(_error(path))
    data = load_data(path, on_bad_row="skip")
    assert data.texts == ["a", "c", "d"] and data.labels == [["H04L"], ["G06F"], ["A01B"]]
    assert data.n_skipped == 2 and "line 2" in data.skipped[0] and "line 3" in data.skipped[1]


# ----------------------------------------------------------------------------- CLI


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "patentcpc", *args], env=ENV, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow  # two processes that import the training stack (~20 s on 2 cores)
def test_cli_unterminated_quote_default_and_skip(tmp_path):
    rows = "".join(f"row {i} about wireless networks,H04L\nrow {i} about ploughs,A01B\n" for i in range(10))
    (tmp_path / "bad.csv").write_bytes(HEADER + rows.encode() + b'"broken text,H04L\n' + rows.encode())
    proc = _cli(["train", "--model", "tfidf", "--data", "bad.csv", "--output", "m"], tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and len(lines) == 1, proc.stderr
    assert "bad.csv" in lines[0] and "row 21" in lines[0] and "line 22" in lines[0] and "unterminated" in lines[0]
    assert not (tmp_path / "m").exists()
    proc = _cli(["train", "--model", "tfidf", "--data", "bad.csv", "--output", "m", "--on-bad-row", "skip"],
                tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 bad row(s)" in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- property-based: CPC

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECTIONS = "ABCDEFGHY"


@st.composite
def symbols(draw) -> tuple[str, str]:
    """(a CPC symbol in one of its written forms, its canonical group-level form)."""
    head = (draw(st.sampled_from(SECTIONS)) + f"{draw(st.integers(0, 99)):02d}"
            + draw(st.sampled_from(string.ascii_uppercase)))
    main = draw(st.integers(1, 9999))
    sub = draw(st.integers(0, 999_999))
    sub_text = f"{sub:02d}" if sub < 100 else str(sub).rstrip("0").ljust(2, "0")
    form = draw(st.sampled_from(["space", "compact", "master", "dated"]))
    if form == "space":
        text = f"{head} {main}/{sub_text}"
    elif form == "compact":
        text = f"{head}{main}/{sub_text}"
    elif form == "master":
        text = f"{head}{main:04d}{sub_text.ljust(6, '0')}"
    else:
        text = f"{head} {main}/{sub_text} (20130101)"
    return text, f"{head} {main}/{sub_text}"


@FAST
@given(st.text(max_size=60))
def test_cpc_arbitrary_text_parses_or_raises_cpcerror(text):
    for fn in (parse_symbol, normalize, parse_labels):
        with contextlib.suppress(CPCError):
            fn(text)


@FAST
@given(st.text(alphabet=string.ascii_uppercase + string.digits + " /;,()[]'\"", max_size=40))
def test_cpc_symbol_like_text_parses_or_raises_cpcerror(text):
    try:
        labels = parse_labels(text, "group")
    except CPCError:
        return
    assert all(parse_symbol(code).depth == "group" for code in labels)


@FAST
@given(symbols())
def test_generated_symbols_round_trip(pair):
    text, canonical = pair
    sym = parse_symbol(text)
    assert isinstance(sym, CPCSymbol)
    assert str(sym) == canonical
    assert parse_symbol(str(sym)) == sym
    assert normalize(text, "subclass") == canonical[:4]
    assert parse_labels(f"{text}; {canonical}", "group") == [f"{canonical.split('/')[0]}/00"]


# ----------------------------------------------------------------------------- property-based: readers

CELL = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
OK_ERRORS = (PatentCPCError,)


def _read(path: Path) -> None:
    for mode in ("error", "skip"):
        try:
            data = load_data(path, on_bad_row=mode, require_labels=False, max_field_chars=10_000)
        except OK_ERRORS:
            continue
        assert len(data.texts) == len(data.ids)
        assert all(isinstance(t, str) and t for t in data.texts)


READER = settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
READER_SMALL = settings(READER, max_examples=25)  # each example loads a dataset twice


@READER
@given(st.binary(max_size=300), st.sampled_from(["csv", "tsv", "jsonl", "json", "parquet"]))
def test_readers_on_arbitrary_bytes(tmp_path_factory, data, fmt):
    path = tmp_path_factory.mktemp("b") / f"f.{fmt}"
    path.write_bytes(data)
    _read(path)


@READER
@given(st.lists(st.lists(CELL, min_size=1, max_size=4), min_size=1, max_size=6),
       st.sampled_from(["csv", "tsv"]))
def test_csv_from_arbitrary_cells(tmp_path_factory, rows, fmt):
    buf = io.StringIO()
    csv.writer(buf, delimiter="," if fmt == "csv" else "\t").writerows([["text", "cpc"], *rows])
    path = tmp_path_factory.mktemp("c") / f"f.{fmt}"
    path.write_text(buf.getvalue(), encoding="utf-8")
    _read(path)


@READER
@given(st.text(max_size=200), st.sampled_from(["csv", "tsv", "jsonl"]))
def test_text_readers_on_arbitrary_text(tmp_path_factory, text, fmt):
    path = tmp_path_factory.mktemp("t") / f"f.{fmt}"
    head = {"csv": "text,cpc\n", "tsv": "text\tcpc\n", "jsonl": ""}[fmt]
    path.write_bytes((head + text).encode("utf-8", "surrogatepass"))
    _read(path)


JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | CELL,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(CELL, inner, max_size=3),
                          max_leaves=8)


@READER_SMALL
@given(st.lists(st.dictionaries(st.sampled_from(["text", "cpc", "title", "x"]), JSON_VALUE, max_size=4),
                min_size=1, max_size=5))
def test_jsonl_from_arbitrary_objects(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("j") / "f.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    _read(path)


@READER_SMALL
@given(st.lists(st.fixed_dictionaries({"text": st.one_of(st.none(), CELL), "cpc": st.one_of(st.none(), CELL)}),
                min_size=1, max_size=5), st.booleans())
def test_parquet_from_arbitrary_text(tmp_path_factory, records, binary):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(records, schema=pa.schema([("text", pa.string()), ("cpc", pa.string())]))
    if binary:  # raw bytes columns, possibly not UTF-8
        table = pa.table({"text": pa.array([None if r["text"] is None else r["text"].encode() + b"\xff"
                                            for r in records], pa.binary()), "cpc": table["cpc"]})
    path = tmp_path_factory.mktemp("p") / "f.parquet"
    pq.write_table(table, path)
    _read(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_json_keys_with_a_nul_character_are_read_row_by_row(tmp_path, suffix):
    """pyarrow's JSON reader cuts object keys at a NUL ({"": 1, "\\u0000": 2}: two fields of one name,
    a ValueError or KeyError later, once a crash): such a file is read with Python's json."""
    import gzip

    lines = [{"text": "plough", "cpc": "A01B", "x": {"": 1, "\u0000": 2}}, {"text": "wafer", "cpc": "H01L",
                                                                              "x": {"\u0000a": None}},
             {"te\u0000xt": "ignored", "text": "gate", "cpc": "H01L"}]
    body = "".join(json.dumps(r) + "\n" for r in lines).encode()
    path = tmp_path / f"f{suffix}"
    path.write_bytes(gzip.compress(body) if suffix.endswith(".gz") else body)
    for mode in ("error", "skip"):
        data = load_data(path, on_bad_row=mode)
        assert data.texts == ["plough", "wafer", "gate"] and data.labels == [["A01B"], ["H01L"], ["H01L"]]


def test_read_raw_keeps_its_signature(tmp_path):
    path = _file(tmp_path, "ok.csv", HEADER + b"a,H04L\n")
    assert read_raw(path).column_names == ["text", "cpc_ids"]
    with pytest.raises(DataError, match="unterminated quote"):
        read_raw(_file(tmp_path, "bad.csv", UNTERMINATED))
