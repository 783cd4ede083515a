"""Reading records: every file format, column detection, text views, bad rows, splits, statistics."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from patentcpc.data import compute_stats, detect_format, load_data, read_raw, records_from_texts, split_data
from patentcpc.errors import DataError, PatentCPCError

ROWS = [
    {"patent_id": "P1", "title": "Plough", "abstract": "A plough with tines.", "claims": "1. A plough.",
     "cpc": "A01B 1/00 (20130101); A01B 3/00 (20130101)"},
    {"patent_id": "P2", "title": "Seed drill", "abstract": "Plants seeds in furrows.", "claims": "1. A drill.",
     "cpc": "A01C 5/00 (20130101); A01B 1/00 (20130101)"},
    {"patent_id": "P3", "title": "Router", "abstract": "Routes packets.", "claims": "1. A router.",
     "cpc": "H04L 45/00 (20130101)"},
    {"patent_id": "P4", "title": "Handover", "abstract": "Hands over calls.", "claims": "1. A phone.",
     "cpc": "H04W 36/00 (20130101); H04L 5/00 (20130101)"},
]
EXPECTED_LABELS = [["A01B"], ["A01C", "A01B"], ["H04L"], ["H04W", "H04L"]]


def _write(path: Path, fmt: str, rows=ROWS) -> Path:
    if fmt in ("csv", "tsv"):
        with open(path, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="," if fmt == "csv" else "\t")
            w.writeheader()
            w.writerows(rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_every_file_format(tmp_path, fmt):
    path = _write(tmp_path / f"data.{fmt}", fmt)
    data = load_data(path)
    assert len(data) == 4
    assert data.labels == EXPECTED_LABELS
    assert data.texts[0] == "Plough\nA plough with tines."  # default view: title, abstract
    assert data.ids == ["P1", "P2", "P3", "P4"]
    assert (data.label_field, data.id_field, data.text_fields) == ("cpc", "patent_id", ["title", "abstract"])
    assert data.n_skipped == 0


def test_hf_save_to_disk_folder(tmp_path):
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    assert detect_format(tmp_path / "ds") == "disk"
    data = load_data(tmp_path / "ds")
    assert data.labels == EXPECTED_LABELS
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:3]),
                               "test": datasets.Dataset.from_list(ROWS[3:])})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert load_data(tmp_path / "dd", split="test").labels == EXPECTED_LABELS[3:]
    with pytest.raises(DataError, match="no split 'valid'"):
        load_data(tmp_path / "dd", split="valid")


def test_detect_format(tmp_path):
    assert detect_format("org/dataset") == "hub"
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(DataError, match="unknown file type"):
        detect_format(tmp_path / "x.txt")
    with pytest.raises(DataError, match="file not found"):
        detect_format(tmp_path / "missing.csv")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="save_to_disk"):
        detect_format(tmp_path / "folder")


def test_text_view_in_user_order(tmp_path):
    path = _write(tmp_path / "d.jsonl", "jsonl")
    data = load_data(path, text_fields=["claims", "title"])
    assert data.texts[0] == "1. A plough.\nPlough"
    assert data.text_view == {"fields": ["claims", "title"], "joiner": "\n"}
    assert load_data(path, text_fields=["abstract"]).texts[2] == "Routes packets."


def test_text_column_wins_and_label_candidates(tmp_path):
    rows = [{"text": "alpha beta", "title": "ignored", "labels": "['C12Q', 'A01H']", "id": 7},
            {"text": "gamma", "title": "ignored", "labels": "['H04L']", "id": 8}]
    data = load_data(_write(tmp_path / "d.jsonl", "jsonl", rows))
    assert data.text_fields == ["text"] and data.label_field == "labels"
    assert data.labels == [["C12Q", "A01H"], ["H04L"]] and data.ids == ["7", "8"]


@pytest.mark.parametrize("col", ["cpc_ids", "labels", "cpc", "cpc_codes", "ipc"])
def test_label_column_detection(tmp_path, col):
    rows = [{"text": "a", col: "H04L,H04W"}, {"text": "b", col: "G06F"}]
    data = load_data(_write(tmp_path / "d.csv", "csv", rows))
    assert data.label_field == col and data.labels == [["H04L", "H04W"], ["G06F"]]


def test_explicit_columns(tmp_path):
    rows = [{"body_text": "a b", "my_codes": "H04L", "pn": "X1"}, {"body_text": "c", "my_codes": "G06F", "pn": "X2"}]
    path = _write(tmp_path / "d.csv", "csv", rows)
    with pytest.raises(DataError, match="no text column"):
        load_data(path)
    data = load_data(path, text_fields=["body_text"], label_field="my_codes", id_field="pn")
    assert data.labels == [["H04L"], ["G06F"]] and data.ids == ["X1", "X2"]
    for kwargs, field in ((dict(text_fields=["nope"]), "nope"), (dict(text_fields=["body_text"], label_field="x"), "x"),
                          (dict(text_fields=["body_text"], label_field="my_codes", id_field="y"), "y")):
        with pytest.raises(DataError, match=f"no column '{field}'"):
            load_data(path, **kwargs)


def test_json_list_labels(tmp_path):
    rows = [{"text": "a", "cpc": ["H04L 9/32", "H04W 12/06"]}, {"text": "b", "cpc": ["G06F 3/01"]}]
    assert load_data(_write(tmp_path / "d.jsonl", "jsonl", rows)).labels == [["H04L", "H04W"], ["G06F"]]


def test_levels(tmp_path):
    path = _write(tmp_path / "d.jsonl", "jsonl")
    assert load_data(path, level="section").labels == [["A"], ["A"], ["H"], ["H"]]
    assert load_data(path, level="class").labels == [["A01"], ["A01"], ["H04"], ["H04"]]
    assert load_data(path, level="group").labels[1] == ["A01C 5/00", "A01B 1/00"]
    with pytest.raises(PatentCPCError):
        load_data(path, level="subgroup")


def test_unlabelled_prediction_input(tmp_path):
    rows = [{"text": "a"}, {"text": "b"}]
    path = _write(tmp_path / "d.csv", "csv", rows)
    with pytest.raises(DataError, match="no label column"):
        load_data(path)
    data = load_data(path, require_labels=False)
    assert data.labels == [[], []] and data.label_field is None
    wrapped = records_from_texts(["x", "y"])
    assert wrapped.texts == ["x", "y"] and wrapped.ids == ["1", "2"]


BAD_ROWS = [
    {"text": "fine", "cpc": "H04L"},
    {"text": "", "cpc": "H04L"},             # row 2: empty text
    {"text": "malformed", "cpc": "XYZ 12"},  # row 3: malformed CPC
    {"text": "no labels", "cpc": ""},        # row 4: no labels
    {"text": "also fine", "cpc": "G06F 3/00"},
]


def test_bad_row_error_names_file_row_field(tmp_path):
    path = _write(tmp_path / "bad.csv", "csv", BAD_ROWS)
    with pytest.raises(DataError) as exc:
        load_data(path)
    msg = str(exc.value)
    assert "bad.csv" in msg and "row 2" in msg and "field 'text'" in msg and "empty text" in msg
    assert exc.value.row == 2 and exc.value.field == "text"
    with pytest.raises(DataError) as exc:
        load_data(_write(tmp_path / "b2.csv", "csv", [BAD_ROWS[0], BAD_ROWS[2]]))
    assert exc.value.row == 2 and exc.value.field == "cpc" and "malformed CPC" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_bad_rows_skipped_and_counted(tmp_path):
    data = load_data(_write(tmp_path / "bad.csv", "csv", BAD_ROWS), on_bad_row="skip")
    assert len(data) == 2 and data.n_skipped == 3
    assert data.labels == [["H04L"], ["G06F"]]
    assert data.ids == ["1", "5"]  # ids keep the original row numbers
    assert "row 2" in data.skipped[0] and "row 3" in data.skipped[1] and "row 4" in data.skipped[2]
    with pytest.raises(DataError, match="every row is bad"):
        load_data(_write(tmp_path / "all.csv", "csv", BAD_ROWS[1:4]), on_bad_row="skip")
    with pytest.raises(DataError, match="on_bad_row"):
        load_data(tmp_path / "bad.csv", on_bad_row="ignore")


def test_unreadable_files(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match="file is empty"):
        load_data(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("text,cpc_ids\n")
    with pytest.raises(DataError, match="has no rows"):
        load_data(tmp_path / "header.csv")
    (tmp_path / "latin1.csv").write_bytes(b"text,cpc_ids\nok,H04L\ncaf\xe9,H04L\n")
    with pytest.raises(DataError, match=r"line 3: bytes that are not UTF-8 \(byte 0xe9\)"):
        load_data(tmp_path / "latin1.csv")
    (tmp_path / "broken.jsonl").write_text('{"text": "a", "cpc": "H04L"}\n{"text": "b", "cpc": \n')
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        load_data(tmp_path / "broken.jsonl")
    (tmp_path / "ragged.csv").write_text("text,cpc_ids\na,H04L\nb,H04L,extra\n")
    with pytest.raises(DataError, match="row 2: line 3: too many fields"):
        load_data(tmp_path / "ragged.csv")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="cannot be read as parquet"):
        load_data(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="file not found"):
        load_data(tmp_path / "missing.jsonl")


def test_non_string_text_values(tmp_path):
    rows = [{"text": "a b", "cpc": "H04L"}, {"text": 5, "cpc": "H04L"}, {"text": ["x", "y"], "cpc": "G06F"}]
    data = load_data(_write(tmp_path / "d.jsonl", "jsonl", rows))
    assert data.texts == ["a b", "5", "x\ny"]
    assert compute_stats(data).n_docs == 3


def test_fingerprint(tmp_path):
    a = load_data(_write(tmp_path / "a.jsonl", "jsonl"))
    b = load_data(_write(tmp_path / "b.csv", "csv"))
    c = load_data(_write(tmp_path / "c.jsonl", "jsonl", ROWS[::-1]))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert len(a.fingerprint()) == 16


# --------------------------------------------------------------------------- split


def _many(n=300, seed=0):
    rng = np.random.default_rng(seed)
    codes = ["A01B", "A01C", "H04L", "H04W", "G06F", "A61K", "C12N", "Y02E"]
    p = np.array([30, 20, 15, 10, 10, 8, 5, 2], float)
    p /= p.sum()
    rows = []
    for i in range(n):
        labs = list(dict.fromkeys(rng.choice(codes, size=rng.integers(1, 4), p=p)))
        rows.append({"id": f"D{i}", "text": f"doc {i}", "cpc_ids": ",".join(labs)})
    return rows


def test_split_is_deterministic_disjoint_and_stratified(tmp_path):
    data = load_data(_write(tmp_path / "many.csv", "csv", _many()))
    parts = split_data(data, (0.8, 0.1, 0.1), seed=3)
    ids = [p.ids for p in parts]
    assert [len(x) for x in ids] == pytest.approx([240, 30, 30], abs=3)
    assert sorted(sum(ids, [])) == sorted(data.ids)  # a partition
    assert ids == [p.ids for p in split_data(data, (0.8, 0.1, 0.1), seed=3)]  # deterministic
    assert ids != [p.ids for p in split_data(data, (0.8, 0.1, 0.1), seed=4)]
    # stratified: every label's share in each part is close to its share overall
    total = Counter(c for ls in data.labels for c in ls)
    for part, frac in zip(parts, (0.8, 0.1, 0.1), strict=True):
        got = Counter(c for ls in part.labels for c in ls)
        for code, n in total.items():
            assert abs(got[code] - frac * n) <= max(2, 0.15 * frac * n), (code, got[code], frac * n)


def test_split_large_falls_back_to_seeded_shuffle(tmp_path):
    data = load_data(_write(tmp_path / "many.csv", "csv", _many(100)))
    parts = split_data(data, (0.5, 0.25, 0.25), seed=1, stratify_max_rows=50)
    assert [len(p) for p in parts] == [50, 25, 25]
    assert sorted(sum((p.ids for p in parts), [])) == sorted(data.ids)
    assert [p.ids for p in parts] == [p.ids for p in split_data(data, (0.5, 0.25, 0.25), 1, stratify_max_rows=50)]


def test_split_tiny_and_invalid(tiny_jsonl):
    data = load_data(tiny_jsonl)
    parts = split_data(data)
    assert all(len(p) > 0 for p in parts) and sum(len(p) for p in parts) == len(data)
    with pytest.raises(ValueError):
        split_data(data, (0.8, 0.3))


# --------------------------------------------------------------------------- statistics


def test_compute_stats_against_direct_count(tmp_path):
    rows = _many(200, seed=5)
    data = load_data(_write(tmp_path / "many.csv", "csv", rows))
    st = compute_stats(data, batch_size=7)  # many small batches: the streaming path
    label_lists = [r["cpc_ids"].split(",") for r in rows]
    counts = Counter(c for ls in label_lists for c in ls)
    assert st.n_docs == 200 and st.n_labels == len(counts)
    assert st.n_label_assignments == sum(counts.values())
    assert st.label_cardinality == pytest.approx(np.mean([len(ls) for ls in label_lists]))
    assert st.label_density == pytest.approx(st.label_cardinality / len(counts))
    assert dict(st.label_counts) == dict(counts)
    assert [n for _, n in st.label_counts] == sorted(counts.values(), reverse=True)
    v = np.array(sorted(counts.values(), reverse=True), float)
    assert st.imbalance_ratio == pytest.approx(v.max() / v.min())
    assert st.mean_imbalance_ratio == pytest.approx(np.mean(v.max() / v))
    assert st.top30_share == 1.0
    texts = [r["text"] for r in rows]
    assert st.mean_text_chars == pytest.approx(np.mean([len(t) for t in texts]))
    assert st.median_text_words == np.median([len(t.split()) for t in texts])
    assert set(st.summary()) >= {"n_docs", "n_labels", "top_labels"}


@pytest.mark.integration
def test_shared_data_formats(shared_data):
    ab = load_data(shared_data / "uspto-abstracts" / "patents.jsonl")
    assert len(ab) == 552 and ab.text_fields == ["title", "abstract"] and ab.label_field == "cpc"
    assert len({c for ls in ab.labels for c in ls}) == 196
    tt = load_data(shared_data / "uspto-titles" / "train.csv")
    assert len(tt) == 4201 and tt.text_fields == ["text"] and tt.label_field == "cpc_ids"
    sample = load_data(shared_data / "uspto70k-sample" / "train.tsv")
    assert len(sample) == 10 and sample.label_field == "labels"
    assert all(ls and all(len(c) == 4 for c in ls) for ls in sample.labels)
    raw = read_raw(shared_data / "uspto-abstracts" / "patents.jsonl")
    assert "cpc" in raw.column_names


def test_csv_with_byte_order_mark(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("text,cpc_ids\nhello,H04L\n".encode("utf-8-sig"))
    data = load_data(path)
    assert data.text_fields == ["text"] and data.labels == [["H04L"]]
