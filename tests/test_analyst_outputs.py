"""Batch output an analyst can use on its own (issue 29, sections 3 and 6): the input's id and
title in every CSV/TSV row, code titles, `hits` as the metrics count them, row-number ids said,
a malformed gold code that does not stop prediction, `predict --text --output`, options a command
would ignore refused, a missing model folder named as such, inputs checked before any model loads,
JSON without NaN, skip counts, and splits that keep every input column at the asked sizes."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patentcpc.cli import app

runner = CliRunner()

TOPICS = [
    ("H04L 5/0053; H04W 72/04", "wireless base station allocates radio resources user equipment channel"),
    ("G06F 16/00 (2019.01)", "database query index retrieval records storage search"),
    ("A61K 31/00 | A61P 35/00", "pharmaceutical compound tumour treatment dose patient cancer"),
    ("B60L 53/00, H02J 7/00", "electric vehicle battery charging station power connector"),
]


def _export(path: Path, rows: range, header=("Publication Number", "Title", "Abstract", "CPC Codes"),
            bad_gold_row: int | None = None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for n, i in enumerate(rows, 1):
            codes, words = TOPICS[i % 4]
            rng = random.Random(i)
            vocab = words.split()
            row = [f"US-{10000 + i}-B2", " ".join(rng.sample(vocab, 3)).title(),
                   " ".join(rng.choices(vocab, k=20)) + f" variant {i}",
                   "H04Q 99/99/99" if n == bad_gold_row else codes]
            w.writerow([v for v, h in zip(row, ("Publication Number", "Title", "Abstract", "CPC Codes"), strict=True)
                        if h in header])
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outputs")
    _export(tmp / "train.csv", range(48))
    res = runner.invoke(app, ["train", "--model", "tfidf", "--data", str(tmp / "train.csv"),
                              "--output", str(tmp / "m")])
    assert res.exit_code == 0, res.output
    return tmp / "m"


def _main(args, capsys) -> tuple[int, str]:
    """Exit code and stderr of ``patentcpc ARGS`` through the real entry point (errors mapped)."""
    from patentcpc.cli import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code, capsys.readouterr().err


def _table(path: Path, delimiter: str = ",") -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def test_csv_rows_carry_id_title_code_titles_and_metric_hits(model, tmp_path):
    _export(tmp_path / "test.csv", range(48, 64))
    res = runner.invoke(app, ["predict-batch", "--model", str(model), "--input", str(tmp_path / "test.csv"),
                              "--output", str(tmp_path / "o.tsv"), "--quiet", "--top-k", "3"])
    assert res.exit_code == 0, res.output
    rows = _table(tmp_path / "o.tsv", "\t")
    assert list(rows[0])[:2] == ["Publication Number", "Title"]
    assert {"codes", "titles", "hits", "assigned_hits"} <= set(rows[0])
    src = _table(tmp_path / "test.csv")
    assert [r["Title"] for r in rows] == [r["Title"] for r in src]
    for r in rows:
        codes = r["codes"].split(";")
        titles = r["titles"].split(" | ")
        assert len(titles) == len(codes) and all(titles)  # every code with its title, same order
        gold = r["gold"].split(";")
        assert (r["hits"].split(";") if r["hits"] else []) == [c for c in gold if c in codes]  # among the top k
        assigned = r["assigned"].split(";")
        assert (r["assigned_hits"].split(";") if r["assigned_hits"] else []) == [c for c in gold if c in assigned]


def test_ids_are_said_to_be_row_numbers_and_titles_fall_back_to_a_snippet(model, tmp_path):
    f = _export(tmp_path / "noid.csv", range(48, 52), header=("Abstract", "CPC Codes"))
    res = runner.invoke(app, ["predict-batch", "--model", str(model), "--input", str(f),
                              "--output", str(tmp_path / "o.csv"), "--quiet"])
    assert res.exit_code == 0, res.output
    rows = _table(tmp_path / "o.csv")
    assert list(rows[0])[:2] == ["row", "snippet"]
    assert [r["row"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[0]["snippet"] and rows[0]["snippet"].split()[0] in TOPICS[0][1]
    assert "row numbers" in res.stdout


def test_a_malformed_gold_code_warns_once_and_prediction_goes_on(model, tmp_path):
    f = _export(tmp_path / "badgold.csv", range(48, 56), bad_gold_row=3)
    res = runner.invoke(app, ["predict-batch", "--model", str(model), "--input", str(f),
                              "--output", str(tmp_path / "o.csv"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("warning") == 1 and "row 3" in res.stderr and "CPC Codes" in res.stderr
    rows = _table(tmp_path / "o.csv")
    assert len(rows) == 8 and rows[2]["gold"] == "" and rows[2]["codes"]


def test_skipped_rows_are_counted_by_predict_batch(model, tmp_path):
    f = tmp_path / "skip.csv"
    f.write_text("Publication Number,Abstract\nUS-1,battery charging station\nUS-2,\nUS-3,database query index\n")
    res = runner.invoke(app, ["predict-batch", "--model", str(model), "--input", str(f), "--on-bad-row", "skip",
                              "--output", str(tmp_path / "o.csv"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "skipped 1 bad row(s)" in res.stderr and "row 2" in res.stderr
    assert len(_table(tmp_path / "o.csv")) == 2


def test_predict_text_writes_output(model, tmp_path):
    out = tmp_path / "x.csv"
    res = runner.invoke(app, ["predict", "--model", str(model), "--text", "battery charging station for a car",
                              "--output", str(out), "--top-k", "2"])
    assert res.exit_code == 0, res.output
    rows = _table(out)
    assert len(rows) == 1 and rows[0]["row"] == "1" and len(rows[0]["codes"].split(";")) == 2


@pytest.mark.parametrize("extra", [["--id-field", "x"], ["--text-fields", "title"], ["--on-bad-row", "skip"],
                                   ["--label-field", "cpc"]])
def test_options_the_command_would_ignore_are_refused(model, extra, capsys):
    code, err = _main(["predict", "--model", model, "--text", "a battery", *extra], capsys)
    assert code == 2 and extra[0] in err, err


@pytest.mark.parametrize("extra", [["--compile"], ["--autocast", "bf16"], ["--token-budget", "999"]])
def test_predict_batch_refuses_transformer_options_on_a_linear_model(model, tmp_path, extra, capsys):
    f = _export(tmp_path / "t.csv", range(48, 50))
    code, err = _main(["predict-batch", "--model", model, "--input", f, "--output", tmp_path / "o.csv", *extra],
                      capsys)
    assert code == 2 and extra[0] in err and not (tmp_path / "o.csv").exists(), err


def test_a_missing_local_model_folder_is_named_not_sent_to_the_hub(tmp_path, monkeypatch, capsys):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    code, err = _main(["predict", "--model", "models/nope", "--text", "a battery"], capsys)
    assert code == 2 and "does not exist" in err and "Hub" not in err, err


@pytest.mark.parametrize("command", [
    ["predict", "--input", "{missing}", "--output", "{out}"],
    ["predict-batch", "--input", "{missing}", "--output", "{out}"],
    ["evaluate", "--data", "{missing}"],
])
def test_missing_inputs_are_reported_before_the_model_loads(model, tmp_path, monkeypatch, command, capsys):
    import patentcpc.api

    def no_loading(*_a, **_k):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(patentcpc.api, "load_model", no_loading)
    args = [a.format(missing=tmp_path / "nope.csv", out=tmp_path / "o.csv") for a in command]
    code, err = _main([args[0], "--model", model, *args[1:]], capsys)
    assert code == 2 and "nope.csv" in err and "not found" in err, err


def test_evaluate_json_has_no_nan_and_says_why(model, tmp_path):
    _export(tmp_path / "same.csv", range(8))  # training rows: every top-1 code right, AUROC@1 undefined
    res = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(tmp_path / "same.csv"), "--json"])
    assert res.exit_code == 0, res.output
    line = res.stdout.strip().splitlines()[-1]
    assert "NaN" not in line and "Infinity" not in line
    d = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert d["auroc@1"] is None and "auroc@1" in d["undefined"]


def test_split_keeps_every_input_column_at_the_asked_sizes(tmp_path):
    rng = random.Random(0)
    codes = ["H04L", "H04W", "G06F", "A61K", "A61P", "B60L", "H02J", "G06Q", "C07K", "B29C"]
    f = tmp_path / "in.jsonl"
    with open(f, "w") as fh:
        for i in range(150):
            labels = rng.sample(codes[: 3 + i % 7], 1 + i % 3)
            fh.write(json.dumps({"patent_id": f"P{i}", "title": f"title {i}", "abstract": f"words {i} about things",
                                 "cpc": "; ".join(f"{c} 1/00" for c in labels), "year": 2000 + i % 20}) + "\n")
    res = runner.invoke(app, ["data", "split", "--data", str(f), "--output", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    parts = {n: [json.loads(x) for x in (tmp_path / "s" / f"{n}.jsonl").read_text().splitlines()]
             for n in ("train", "valid", "test")}
    assert [len(p) for p in parts.values()] == [120, 15, 15]  # 0.8/0.1/0.1 of 150, exactly
    assert "120 documents (80.0 %" in res.stdout
    assert set(parts["train"][0]) == {"patent_id", "title", "abstract", "cpc", "year"}
    assert isinstance(parts["train"][0]["year"], int)
    ids = [r["patent_id"] for p in parts.values() for r in p]
    assert sorted(ids) == sorted(f"P{i}" for i in range(150))


def test_plain_flags_show_no_type_in_help():
    res = runner.invoke(app, ["--help"])
    assert "--version" in res.output and "<bool>" not in res.output
    res = runner.invoke(app, ["predict", "--help"])
    assert "--explain" in res.output and "<bool>" not in res.output


# ----------------------------------------------------------------------------- search and embeddings (§4, §6)


def test_train_embeddings_names_the_file_and_fails_before_the_model_loads(tmp_path, monkeypatch, capsys):
    import patentcpc.retrieval.finetune as finetune

    def no_loading(*_a, **_k):
        raise AssertionError("the encoder was loaded before the data was checked")

    monkeypatch.setattr(finetune, "load_sentence_transformer", no_loading)
    f = tmp_path / "one-field.jsonl"
    f.write_text("".join(json.dumps({"id": f"P{i}", "text": f"words {i}", "cpc": "H04L"}) + "\n" for i in range(6)))
    model = tmp_path / "encoder"
    model.mkdir()
    code, err = _main(["train-embeddings", "--model", model, "--data", f, "--signal", "multiview",
                       "--output", tmp_path / "emb"], capsys)
    assert code == 2 and "one-field.jsonl" in err and "multiview" in err and "<data>" not in err, err


def test_search_table_says_what_the_score_is(tmp_path):
    f = tmp_path / "docs.jsonl"
    f.write_text("".join(json.dumps({"id": f"P{i}", "title": t, "abstract": t + " more words"}) + "\n"
                         for i, (_, t) in enumerate(TOPICS)))
    res = runner.invoke(app, ["index", "build", "--data", str(f), "--output", str(tmp_path / "idx")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", "battery charging", "--index", str(tmp_path / "idx"), "--k", "2"])
    assert res.exit_code == 0, res.output
    assert "score: BM25" in res.stdout
    from patentcpc.retrieval.search import score_legend

    legend = score_legend("hybrid", "minmax", 0.7)
    assert "0.7 x dense" in legend and "1.0000" in legend and "min-max" in legend
    assert "1/(60 + BM25 rank)" in score_legend("hybrid", "rrf")


# ----------------------------------------------------------------------------- small things (§5)


def test_cpc_names_subgroups_and_says_ipc_once(capsys):
    from patentcpc.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["cpc", "G11B 5/5547 (20130101)", "H04L0009320000", "A01B 63/00"])
    code = exc.value.code
    text = capsys.readouterr().out
    assert code in (0, None)
    assert "G11B 5/5547 (subgroup)" in text and "H04L 9/32 (subgroup)" in text and "A01B 63/00 (main group)" in text
    if "ELECTRICITY" in text and "secret or secure" in text:  # the IPC scheme is installed
        assert "(IPC title)" not in text and text.count("IPC scheme's wording") == 1
        # the missing-dot-levels note only for the code the IPC does not have
        assert text.count("not in the IPC scheme data") == 1
        h04l = text[text.index("H04L 9/32 (subgroup)"):text.index("A01B 63/00")]
        assert "PATENTCPC_SCHEME" not in h04l


def test_ipc_titles_keep_the_space_before_a_glued_reference():
    from patentcpc.cpc import clean_title

    raw = "RECOGNITION OF DATA; HANDLING RECORD CARRIERS (printing per seB41J)"
    assert clean_title(raw) == "RECOGNITION OF DATA; HANDLING RECORD CARRIERS"
    assert "seB41J" not in clean_title("Devices (couplings per seF16D; other B60D)")


def test_web_page_pluralises_score_types():
    from importlib.resources import files

    js = files("patentcpc").joinpath("static/app.js").read_text(encoding="utf-8")
    assert "${scoreType}s" not in js  # "probabilitys"


def test_model_option_help_names_hub_ids():
    for command in ("predict", "predict-batch", "evaluate", "serve"):
        res = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "Hub id" in res.output, command


def test_search_endpoint_answers_from_a_loaded_index(model, tmp_path):
    from fastapi.testclient import TestClient

    from patentcpc.api import load_model
    from patentcpc.retrieval.search import SearchIndex
    from patentcpc.serving import create_app

    f = tmp_path / "docs.jsonl"
    f.write_text("".join(json.dumps({"id": f"P{i}", "title": w.split()[0], "abstract": w}) + "\n"
                         for i, (_, w) in enumerate(TOPICS)))
    res = runner.invoke(app, ["index", "build", "--data", str(f), "--output", str(tmp_path / "idx")])
    assert res.exit_code == 0, res.output
    index = SearchIndex.load(tmp_path / "idx").warm()
    with TestClient(create_app(load_model(model), search_index=index)) as client:
        for _ in range(3):  # many queries, one loaded index
            r = client.post("/search", json={"query": "battery charging station", "k": 2})
            assert r.status_code == 200, r.text
            body = r.json()
            assert [h["id"] for h in body["results"]][0] == "P3" and len(body["results"]) == 2
            assert body["mode"] == "bm25" and body["score"].startswith("score: BM25") and body["seconds"] < 1.0
        assert client.post("/search", json={"query": " "}).status_code == 422
        assert client.post("/search", json={"query": "x", "k": 0}).status_code == 422
        assert client.post("/search", json={"query": "x", "mode": "dense"}).status_code == 422
        assert client.post("/search", json={"query": "x", "nope": 1}).status_code == 422
    with TestClient(create_app(load_model(model))) as client:  # no --index: no route
        assert client.post("/search", json={"query": "x"}).status_code in (404, 405)


def test_train_embeddings_bounds_memory_with_gradcache_off_gpu(tmp_path):
    """Issue 29 §6: one cpc step (32 pairs + hard negatives, 256 tokens) held 11.8 GB on a CPU; the
    cached loss (same gradients, a few texts' activations at a time) is the default off a CUDA GPU."""
    pytest.importorskip("sentence_transformers")
    import torch
    from transformers import BertConfig, BertModel

    from patentcpc.kinds.transformer.model import default_tokenizer_path, load_tokenizer
    from patentcpc.retrieval.finetune import FinetuneOptions, _contrastive_loss, load_sentence_transformer

    try:
        tok = load_tokenizer(default_tokenizer_path())
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no offline tokenizer: {exc}")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(tmp_path / "enc")
    tok.save_pretrained(tmp_path / "enc")
    model = load_sentence_transformer(str(tmp_path / "enc"), "cpu", 32)
    default = _contrastive_loss(model, FinetuneOptions(), "cpc")
    assert type(default).__name__ == "CachedMultipleNegativesRankingLoss" and default.mini_batch_size <= 8
    assert type(_contrastive_loss(model, FinetuneOptions(cached=False), "cpc")).__name__ == \
        "MultipleNegativesRankingLoss"


def test_bench_says_how_long_is_left():
    from patentcpc.kinds.transformer.bench import BenchConfig, run_bench

    lines: list[str] = []
    run_bench(BenchConfig(arch="modernbert-tiny", n_docs=8, batch_size=4, repeats=2, max_length=32, n_labels=4),
              log=lines.append)
    timed = [line for line in lines if line.startswith("rep ")]
    assert len(timed) == 4 and all("left)" in line for line in timed[:-1]) and "left" not in timed[-1]
    assert "timed runs" in lines[0]


def test_train_reports_a_missing_file_before_loading_anything(tmp_path, capsys, monkeypatch):
    import patentcpc.registry

    def no_kind(*_a, **_k):  # the first step that may load a model, a library or ask the hub
        raise AssertionError("the model kind (and the libraries after it) came before the input check")

    monkeypatch.setattr(patentcpc.registry, "select", no_kind)
    monkeypatch.setattr(patentcpc.registry, "kinds", no_kind)
    for option in ("--data", "--eval-data"):
        args = ["train", "--model", "tfidf", "--data", tmp_path / "train.csv", "--output", tmp_path / "m"]
        if option == "--data":
            args[4] = tmp_path / "nope.csv"
        else:
            (tmp_path / "train.csv").write_text("text,cpc_ids\na plough,A01B\n")
            args += ["--eval-data", tmp_path / "nope.csv"]
        code, err = _main(args, capsys)
        assert code == 2 and "nope.csv" in err and option in err, err
