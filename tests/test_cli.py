"""The command line: user errors are one line on stderr and exit code 2 (checked in a real
subprocess), success paths through typer's CliRunner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patentcpc.cli import app

runner = CliRunner()
ENV = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "400"}


def _error_cases(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (arguments, words the one-line message must contain)."""
    (tmp / "empty.csv").write_bytes(b"")
    (tmp / "header.csv").write_text("text,cpc_ids\n")
    (tmp / "latin1.csv").write_bytes(b"text,cpc_ids\nok,H04L\ncaf\xe9 machine,H04L\n")
    (tmp / "malformed.csv").write_text("text,cpc_ids\nfine,H04L\nbad,NOT-A-CODE\n")
    (tmp / "emptytext.jsonl").write_text('{"title": "a", "abstract": "b", "cpc": "H04L"}\n'
                                         '{"title": " ", "abstract": "", "cpc": "H04L"}\n')
    (tmp / "nolabels.csv").write_text("text,foo\nhello,bar\n")
    (tmp / "ok.csv").write_text("text,cpc_ids\nhello world,H04L\nplough,A01B\n")
    (tmp / "broken.jsonl").write_text('{"text": "a", "cpc": "H04L"}\n{"text": "b", \n')
    stats = ["data", "stats", "--plots-dir", str(tmp / "plots"), "--data"]
    return {
        "empty": (stats + [str(tmp / "empty.csv")], ["empty.csv", "empty"]),
        "header_only": (stats + [str(tmp / "header.csv")], ["header.csv", "no rows"]),
        "non_utf8": (stats + [str(tmp / "latin1.csv")], ["latin1.csv", "line 3", "UTF-8"]),
        "malformed_cpc": (stats + [str(tmp / "malformed.csv")], ["malformed.csv", "row 2", "cpc_ids", "NOT-A-CODE"]),
        "empty_text": (stats + [str(tmp / "emptytext.jsonl")], ["emptytext.jsonl", "row 2", "title+abstract",
                                                                "empty text"]),
        "missing_label_column": (stats + [str(tmp / "nolabels.csv")], ["nolabels.csv", "no label column"]),
        "missing_text_field": (stats + [str(tmp / "ok.csv"), "--text-fields", "title,abstract"],
                               ["ok.csv", "no column 'title'"]),
        "missing_label_field": (stats + [str(tmp / "ok.csv"), "--label-field", "codes"], ["ok.csv", "'codes'"]),
        "broken_jsonl": (stats + [str(tmp / "broken.jsonl")], ["broken.jsonl", "line 2", "JSON"]),
        "missing_file": (stats + [str(tmp / "nope.csv")], ["nope.csv", "not found"]),
    }


SUBPROCESS_CASES = ("empty", "header_only", "non_utf8", "malformed_cpc", "empty_text", "missing_label_column",
                    "broken_jsonl", "missing_file")


def test_user_errors_are_one_line_without_traceback(tmp_path):
    """The data errors the issue lists, each in a real ``python -m patentcpc`` process."""
    cases = {k: v for k, v in _error_cases(tmp_path).items() if k in SUBPROCESS_CASES}
    procs = {name: subprocess.Popen([sys.executable, "-m", "patentcpc", *args], env=ENV, cwd=tmp_path,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (args, _) in cases.items()}
    failures = []
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        words = cases[name][1]
        ok = (proc.returncode == 2 and "Traceback" not in err + out and len(lines) == 1
              and lines[0].startswith("error: ") and all(w in lines[0] for w in words))
        if not ok:
            failures.append(f"{name}: rc={proc.returncode} stderr={err!r}")
    assert not failures, "\n".join(failures)


def _main(args, capsys) -> tuple[int, str]:
    from patentcpc.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr().err


def test_more_user_errors_in_process(tmp_path, capsys, monkeypatch):
    """The same contract through ``patentcpc.cli.main`` in this process (cheaper than a subprocess)."""
    monkeypatch.setenv("COLUMNS", "400")
    cases = {k: v for k, v in _error_cases(tmp_path).items() if k not in SUBPROCESS_CASES}
    cases.update({
        "bad_level": (["data", "stats", "--data", str(tmp_path / "ok.csv"), "--level", "subgroup"], ["level"]),
        "no_model": (["evaluate", "--model", str(tmp_path / "nomodel"), "--data", str(tmp_path / "ok.csv")],
                     ["nomodel", "not found"]),
        "bad_set": (["train", "--model", "tfidf", "--data", str(tmp_path / "ok.csv"), "--output",
                     str(tmp_path / "m"), "--set", "linear.C=-1"], ["linear.C"]),
        "predict_no_input": (["predict", "--model", str(tmp_path / "nomodel")], ["--text or --input"]),
    })
    for name, (args, words) in cases.items():
        code, err = _main(args, capsys)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert all(w in lines[0] for w in words), (name, err)
    assert not (tmp_path / "m").exists()


@pytest.fixture
def trained(tiny_jsonl, tmp_path):
    model = tmp_path / "model"
    res = runner.invoke(app, ["train", "--model", "tfidf", "--data", str(tiny_jsonl), "--output", str(model),
                              "--eval-data", str(tiny_jsonl)])
    assert res.exit_code == 0, res.output
    assert "saved linear model (7 labels)" in res.output
    return model


def test_data_stats_writes_plots_and_json(tiny_jsonl, tmp_path):
    res = runner.invoke(app, ["data", "stats", "--data", str(tiny_jsonl), "--plots-dir", str(tmp_path / "p"),
                              "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["n_docs"] == 24 and d["n_labels"] == 7 and d["n_label_assignments"] == 28
    assert d["text_view"] == ["title", "abstract"] and d["label_field"] == "cpc"
    for p in d["plots"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(Path(p).name for p in d["plots"]) == ["tiny_rank_frequency_subclass.png", "tiny_top30_subclass.png"]
    res = runner.invoke(app, ["data", "stats", "--data", str(tiny_jsonl), "--plots-dir", str(tmp_path / "p")])
    assert res.exit_code == 0 and "n_docs" in res.output


def test_skipped_rows_are_reported(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("text,cpc_ids\nhello,H04L\n,H04L\nplough,A01B\nx,NOPE\n")
    res = runner.invoke(app, ["data", "stats", "--data", str(f), "--plots-dir", str(tmp_path / "plots"), "--json",
                              "--on-bad-row", "skip"])
    assert res.exit_code == 0, res.output
    assert "skipped 2 bad row(s)" in res.stderr and "row 2" in res.stderr
    assert json.loads(res.stdout)["n_skipped"] == 2


def test_data_split(tmp_path, tiny_jsonl):
    res = runner.invoke(app, ["data", "split", "--data", str(tiny_jsonl), "--output", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    rows = {n: [json.loads(x) for x in (tmp_path / "s" / f"{n}.jsonl").read_text().splitlines()]
            for n in ("train", "valid", "test")}
    assert sum(len(v) for v in rows.values()) == 24
    assert set(rows["train"][0]) == {"patent_id", "title", "abstract", "cpc"}  # the input's own columns


def test_train_evaluate_predict(trained, tiny_jsonl, tmp_path):
    res = runner.invoke(app, ["evaluate", "--model", str(trained), "--data", str(tiny_jsonl), "--json",
                              "--report", str(tmp_path / "report.csv")])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    for key in ("n_docs", "n_labels", "precision@1", "recall@1", "f1@1", "precision@3", "f1@3", "f1@5",
                "micro_precision", "micro_recall", "micro_f1", "macro_f1", "section_accuracy@1", "class_accuracy@1"):
        assert key in m, key
    assert m["n_docs"] == 24 and m["n_labels"] == 7 and m["precision@1"] == 1.0
    assert (tmp_path / "report.csv").read_text().startswith("label,support,predicted,precision,recall,f1")

    res = runner.invoke(app, ["predict", "--model", str(trained), "--text", "wireless base station handover"])
    assert res.exit_code == 0, res.output
    assert "H04W" in res.output

    inp = tmp_path / "in.csv"
    inp.write_text("id,text\nd1,semiconductor transistor gate oxide\nd2,harrow soil clods\n")
    res = runner.invoke(app, ["predict", "--model", str(trained), "--input", str(inp), "--output",
                              str(tmp_path / "out.jsonl"), "--top-k", "3"])
    assert res.exit_code == 0, res.output
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == ["d1", "d2"]
    assert out[0]["predictions"][0]["code"] == "H01L" and out[1]["predictions"][0]["code"] == "A01B"
    p = out[0]["predictions"][0]
    assert set(p) >= {"code", "score", "title", "path"} and len(out[0]["predictions"]) >= 3
    assert [x["code"] for x in p["path"]] == ["H", "H01", "H01L"]


def test_cpc_command():
    res = runner.invoke(app, ["cpc", "H04L0009320000", "Y02E 10/50"])
    assert res.exit_code == 0, res.output
    assert "H04L 9/32" in res.output and "ELECTRICITY" in res.output and "Y02E 10/50" in res.output


@pytest.mark.integration
def test_train_and_evaluate_json_on_shared_70k_sample(shared_data, tmp_path):
    """The USPTO-70k TSV format (Python-list labels) through train and evaluate --json."""
    folder = shared_data / "uspto70k-sample"
    model = tmp_path / "m"
    res = runner.invoke(app, ["train", "--model", "tfidf", "--data", str(folder / "train.tsv"), "--output", str(model)])
    assert res.exit_code == 0, res.output
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["text_view"]["fields"] == ["title", "abstract"]
    res = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(folder / "test.tsv"), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["n_docs"] == 10 and m["n_labels"] == len(manifest["labels"]) and 0.0 <= m["f1@1"] <= 1.0
