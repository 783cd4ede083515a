"""Synthetic data: targets, prompts, generators (hf on a tiny random decoder, openai against a local
server, recombine), audits, the experiment (integration, shared titles) and the attention guard."""

from __future__ import annotations

import asyncio
import csv
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi import Request  # module level: the route's annotation is resolved here

from patentcpc.errors import PatentCPCError
from patentcpc.synth import generators as G
from patentcpc.synth.audit import AuditOptions, audit_rows, duplicate_flags, mmd2, write_report

TITLES = [
    ("Plough with adjustable soil working tines for tractors", "A01B"),
    ("Harrow for breaking up soil clods with rotating discs", "A01B"),
    ("Seed drill with a metering wheel for sowing grain", "A01C"),
    ("Wireless base station scheduling packets to user equipment", "H04W"),
    ("Handover of a mobile phone between radio cells", "H04W"),
    ("Encryption of data packets in a digital network using keys", "H04L"),
    ("Routing of packets between network nodes with a protocol table", "H04L"),
    ("Semiconductor transistor with a gate oxide layer", "H01L"),
]
INFOS = {c: G.LabelInfo(c, f"title of {c} with words", f"definition of {c}") for _, c in TITLES}


@pytest.fixture
def titles_csv(tmp_path: Path) -> Path:
    path = tmp_path / "real.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "cpc_ids"])
        w.writerows(TITLES)
    return path


def _cli(main, argv: list[str]) -> int:
    """The exit code of ``patentcpc ARGV`` run in-process (main() always ends with sys.exit)."""
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _real():
    return [t for t, _ in TITLES], [[c] for _, c in TITLES]


# --------------------------------------------------------------------------- targets, prompts, parsing


def test_plan_targets_modes():
    counts = {"A": 1, "B": 5, "C": 2}
    assert G.plan_targets(counts, "fill", k=4) == {"A": 3, "B": 0, "C": 2}
    assert G.plan_targets(counts, "ratio", ratio=0.5) == {"A": 0, "B": 2, "C": 1}
    # water-filling: the fewest first (ties by code): A and C rise to 5, then A and B get one more
    assert G.plan_targets(counts, "budget", budget=9) == {"A": 5, "B": 1, "C": 3}
    with pytest.raises(PatentCPCError):
        G.plan_targets(counts, "budget")


def test_prompts_label_removal_and_few_shot():
    info = G.LabelInfo("H04L", "TRANSMISSION OF DIGITAL INFORMATION", "ELECTRIC COMMUNICATION; Secret communication")
    named = G.build_prompts("H04L", 2, "label-description", info, [], seed=3)
    assert len(named) == 2 and named[0].names_label and "H04L" in named[0].messages[1]["content"]
    assert "Secret communication" in named[0].messages[1]["content"]
    removed = G.build_prompts("H04L", 1, "label-description", info, [], seed=3, remove_label=True)[0]
    text = removed.messages[1]["content"]
    assert "H04L" not in text and "TRANSMISSION OF DIGITAL" not in text and not removed.names_label
    shots = G.build_prompts("H04L", 1, "few-shot", info, ["Routing of packets\nAn abstract."], seed=1, shots=2,
                            remove_label=True)[0]
    assert "Title: Routing of packets" in shots.messages[1]["content"]
    assert "Abstract: An abstract." in shots.messages[1]["content"] and "H04L" not in shots.messages[1]["content"]
    assert shots.template == "few-shot/no-label"


def test_parse_generation_and_masking():
    p = G.parse_generation("**Title:** A new plough\nAbstract: A plough\nwith tines.\nClaims: 1. A plough.",
                           ("title", "abstract", "claims"))
    assert p == {"title": "A new plough", "abstract": "A plough\nwith tines.", "claims": "1. A plough."}
    assert G.parse_generation("Just a line\nand more", ("title", "abstract")) == {"title": "Just a line",
                                                                                   "abstract": "and more"}
    assert G.parse_generation("   ") is None
    info = G.LabelInfo("H04L", "TRANSMISSION OF DIGITAL INFORMATION, e.g. TELEGRAPHIC COMMUNICATION")
    text, changed = G.mask_label_names("H04L: transmission of digital information over a bus", info)
    assert changed and "h04l" not in text.lower() and "digital information" not in text.lower()
    assert text.endswith("over a bus")


# --------------------------------------------------------------------------- recombine


def test_recombine_never_returns_a_real_text():
    texts, labels = _real()
    forbidden = {G.normalize_text(t) for t in texts}
    for label in ("A01B", "H04L", "H04W"):
        own = [t for t, ls in zip(texts, labels, strict=True) if label in ls]
        out = G.recombine(label, own, 20, seed=0, forbidden=forbidden)
        assert out, label
        for text, template in out:
            assert G.normalize_text(text) not in forbidden and template in ("phrase-splice", "ngram-markov")
        assert len({G.normalize_text(t) for t, _ in out}) == len(out)
    # one single-phrase title: nothing new can be made, so nothing comes back (never a copy)
    assert G.recombine("X", ["Transistor"], 5, 0, {"transistor"}) == []
    # deterministic for a seed
    assert G.recombine("A01B", texts[:2], 4, 7, forbidden) == G.recombine("A01B", texts[:2], 4, 7, forbidden)


def test_generate_rows_and_files(tmp_path: Path):
    texts, labels = _real()
    rows, summary = G.generate_synthetic(texts, labels, G.GenerateOptions(k=3, fields=("title",), seed=5))
    assert summary["n_requested"] == sum(max(0, 3 - n) for n in (2, 1, 2, 2, 1))
    assert rows and all(r["synthetic"] is True and r["generator"] == "recombine" and r["seed"] >= 5 for r in rows)
    assert all(r["cpc_ids"] == r["source_label"] and r["template"] for r in rows)
    for suffix in ("csv", "jsonl"):
        path = G.write_rows(rows, tmp_path / f"syn.{suffix}")
        back = G.read_rows(path)
        assert [r["text"] for r in back] == [r["text"] for r in rows] and back[0]["synthetic"] is True
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    with pytest.raises(PatentCPCError):
        G.write_rows(rows, tmp_path / "syn.txt")


# --------------------------------------------------------------------------- hf generator


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from patentcpc.kinds.transformer.model import default_tokenizer_path, load_tokenizer

    tok = load_tokenizer(default_tokenizer_path())
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_hf_generator_tiny_random_decoder(tiny_decoder: Path):
    texts, labels = _real()
    gen = G.make_generator("hf", hf_model=str(tiny_decoder), batch_size=3, max_new_tokens=8, temperature=1.0)
    opts = G.GenerateOptions(generator="hf", strategy="label-description", k=3, fields=("title",), seed=11)
    rows, summary = G.generate_synthetic(texts, labels, opts, gen, INFOS)
    assert summary["n_generated"] + summary["n_unparseable"] == summary["n_requested"] == 7
    assert rows and all(r["generator"] == "hf" and r["model"] == str(tiny_decoder) for r in rows)
    assert {r["template"] for r in rows} == {"label-description"}
    again, _ = G.generate_synthetic(texts, labels, opts, gen, INFOS)
    assert [r["text"] for r in again] == [r["text"] for r in rows]  # seeded
    other, _ = G.generate_synthetic(texts, labels, G.GenerateOptions(**{**opts.__dict__, "seed": 12}), gen, INFOS)
    assert [r["text"] for r in other] != [r["text"] for r in rows]


def test_hf_generator_bad_model(tmp_path: Path):
    with pytest.raises(PatentCPCError, match="--hf-model"):
        G.make_generator("hf", hf_model=str(tmp_path / "missing"))


# --------------------------------------------------------------------------- openai generator, local server


class _Server:
    def __init__(self):
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse

        self.script: list[str] = []
        self.seen: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            self.seen.append({"body": body, "auth": request.headers.get("authorization"), "t": time.monotonic()})
            action = self.script.pop(0) if self.script else "ok"
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if action == "500":
                    return JSONResponse({"error": "boom"}, status_code=500)
                if action == "400":
                    return JSONResponse({"error": "bad request"}, status_code=400)
                if action == "429":
                    return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "0.3"})
                await asyncio.sleep(1.5 if action == "slow" else 0.05)
                n = len(self.seen)
                content = f"Title: Synthetic device number {n}\nAbstract: A device {n} for {body['model']}."
                return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
            finally:
                self.in_flight -= 1

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def reset(self, script=()):
        for _ in range(100):  # a request of an earlier test (a timed-out one) may still be running
            if self.in_flight == 0:
                break
            time.sleep(0.05)
        self.script, self.seen, self.max_in_flight = list(script), [], 0


@pytest.fixture(scope="module")
def api_server():
    srv = _Server()
    yield srv
    srv.server.should_exit = True
    srv.thread.join(timeout=5)


def _prompts(n: int):
    return G.build_prompts("H04L", n, "label-description", INFOS["H04L"], [], seed=0, fields=("title", "abstract"))


def test_openai_retries_500_then_success(api_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    api_server.reset(["500"])
    gen = G.OpenAIGenerator(api_server.url, "tiny-model", backoff=0.05, concurrency=1)
    out = gen.complete(_prompts(1))
    assert out[0].startswith("Title: Synthetic device")
    assert len(api_server.seen) == 2 and gen.stats["http_500"] == 1 and gen.stats["retries"] == 1
    assert api_server.seen[0]["auth"] == "Bearer test-key" and api_server.seen[0]["body"]["model"] == "tiny-model"


def test_openai_rate_limit_429_honours_retry_after(api_server):
    api_server.reset(["429"])
    gen = G.OpenAIGenerator(api_server.url, "m", backoff=0.01, concurrency=1)
    gen.complete(_prompts(1))
    assert gen.stats["http_429"] == 1
    assert api_server.seen[1]["t"] - api_server.seen[0]["t"] >= 0.28  # Retry-After: 0.3, not the 0.01 backoff


def test_openai_timeout_is_retried(api_server):
    api_server.reset(["slow"])
    gen = G.OpenAIGenerator(api_server.url, "m", timeout=0.4, backoff=0.01, concurrency=1)
    out = gen.complete(_prompts(1))
    assert gen.stats["timeouts"] == 1 and out[0].startswith("Title:")


def test_openai_gives_up_and_does_not_retry_client_errors(api_server):
    api_server.reset(["500"] * 5)
    with pytest.raises(PatentCPCError, match="gave up after 3 tries"):
        G.OpenAIGenerator(api_server.url, "m", max_retries=2, backoff=0.01).complete(_prompts(1))
    api_server.reset(["400"])
    with pytest.raises(PatentCPCError, match="HTTP 400"):
        G.OpenAIGenerator(api_server.url, "m", backoff=0.01).complete(_prompts(1))
    assert len(api_server.seen) == 1


def test_openai_concurrency_and_rate_limit(api_server):
    api_server.reset()
    gen = G.OpenAIGenerator(api_server.url, "m", concurrency=2)
    assert len(gen.complete(_prompts(6))) == 6
    assert api_server.max_in_flight <= 2
    api_server.reset()
    t = time.monotonic()
    G.OpenAIGenerator(api_server.url, "m", concurrency=6, rate_limit=10).complete(_prompts(4))
    starts = sorted(s["t"] for s in api_server.seen)
    assert starts[-1] - starts[0] >= 0.25 and time.monotonic() - t >= 0.25  # 4 requests at 10/s


@pytest.mark.slow
def test_cli_generate_against_local_server(api_server, titles_csv: Path, tmp_path: Path, capsys):
    from patentcpc.cli import main

    api_server.reset(["500"])
    out = tmp_path / "syn.jsonl"
    assert _cli(main, ["synth", "generate", "--data", str(titles_csv), "--output", str(out), "--generator", "openai",
                       "--base-url", api_server.url, "--api-model", "tiny", "--k", "3", "--backoff", "0.01",
                       "--strategy", "few-shot", "--remove-label"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = G.read_rows(out)
    assert summary["n_generated"] == len(rows) == 7 and summary["stats"]["http_500"] == 1
    assert all(r["synthetic"] is True and r["generator"] == "openai" and r["model"] == "tiny" for r in rows)
    assert all(r["template"] == "few-shot/no-label" and r["prompt_names_label"] is False for r in rows)
    assert rows[0]["abstract"].startswith("A device")
    # a file patentcpc did not write is never overwritten
    foreign = tmp_path / "mine.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit) as exc:
        main(["synth", "generate", "--data", str(titles_csv), "--output", str(foreign)])
    assert exc.value.code == 2 and foreign.read_text() == "a,b\n1,2\n"


# --------------------------------------------------------------------------- audits


def test_mmd_and_duplicates():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    assert abs(mmd2(a, b, 0.25)) < 0.05 < mmd2(a, b + 2.0, 0.25)
    assert mmd2(a[:1], b, 0.25) is None
    flags = duplicate_flags(["Plough with adjustable soil working tines for tractors!",
                             "Plough with adjustable soil working tines for tractor",
                             "Something entirely different"],
                            {"train": [TITLES[0][0]]}, near_threshold=0.7)
    assert flags["exact_train"].tolist() == [True, False, False]
    assert flags["near_train"].tolist() == [True, True, False]


@pytest.mark.slow
def test_audit_report(tmp_path: Path):
    texts, labels = _real()
    rows, _ = G.generate_synthetic(texts, labels, G.GenerateOptions(k=4, fields=("title",)))
    rows.append(G._row(texts[0], {"title": texts[0]}, "A01B", "recombine", None, "x", "copy", 0, True))
    report, kept = audit_rows(rows, texts, labels, ["An eval text about radio cells"],
                              AuditOptions(embedder="lsa:4"), INFOS)
    assert report["duplicates"]["exact_train"] == 1 and len(kept) == len(rows) - report["duplicates"]["near_train"]
    assert all(r["text"] != texts[0] for r in kept)
    fid = report["fidelity"]
    assert fid["mmd2_overall"] is not None and set(fid["per_label"]) <= {c for _, c in TITLES}
    assert 0 < fid["distinct_2"]["synthetic"] <= 1
    assert report["leakage"]["per_label"]["A01B"]["prompts_naming_label"] == 1
    files = write_report(report, tmp_path / "audit")
    assert [p.name for p in files] == ["audit.json", "audit.md", "audit.png"] and all(p.stat().st_size for p in files)


# --------------------------------------------------------------------------- numerics guard


def test_attention_check_warns_on_mismatch():
    from patentcpc.kinds.transformer.model import (
        build_encoder_from_arch,
        default_tokenizer_path,
        load_tokenizer,
    )
    from patentcpc.models.network import check_attention

    tok = load_tokenizer(default_tokenizer_path())
    enc = build_encoder_from_arch("bert-tiny", tok, 512, "sdpa")
    ids = tok(["a plough for soil", "a wireless base station with handover between cells"])["input_ids"]
    res = check_attention(enc, ids, tok.pad_token_id, bf16=False)
    assert res["ok"] and res["relative_difference"] < 1e-4 and res["implementation"] == "sdpa"
    with pytest.warns(RuntimeWarning, match="attn_implementation=eager"):
        res = check_attention(enc, ids, tok.pad_token_id, bf16=True, tol=1e-7)
    assert not res["ok"] and res["relative_difference"] > 1e-7


def test_config_pins_eager_attention():
    from patentcpc.config import TrainConfig, resolve

    cfg = resolve(TrainConfig, None, {}, ["transformer.attn_implementation=eager", "transformer.attn_check=false"])
    assert cfg.transformer.attn_implementation == "eager" and cfg.transformer.attn_check is False


# --------------------------------------------------------------------------- the experiment (shared data)


@pytest.mark.integration
@pytest.mark.slow
def test_experiment_on_shared_titles(shared_data: Path, tmp_path: Path, capsys):
    from patentcpc.cli import main

    src = shared_data / "uspto-titles"
    for name, n in (("train", 300), ("valid", 80)):
        with open(src / f"{name}.csv", encoding="utf-8") as fh, \
                open(tmp_path / f"{name}.csv", "w", encoding="utf-8", newline="") as out:
            r, w = csv.reader(fh), csv.writer(out)
            for i, row in enumerate(r):
                if i > n:
                    break
                w.writerow(row)
    out = tmp_path / "out"
    assert _cli(main, ["synth", "experiment", "--data", str(tmp_path / "train.csv"), "--eval-data",
                       str(tmp_path / "valid.csv"), "--generator", "recombine", "--model", "tfidf", "--seeds", "2",
                       "--set", "linear.label_docs=none",  # 14 fits: keep each one as quick as before
                       "--output", str(out)]) == 0
    res = json.loads(capsys.readouterr().out)
    names = [a["name"] for a in res["arms"]]
    assert names[0] == "real-only" and "focal" not in names
    assert sum(n.startswith("mix@") for n in names) == 3
    assert sum(n.startswith("duplicate-to-match@") for n in names) == 3
    for a in res["arms"]:
        for k in ("f1@1", "micro_f1", "macro_f1", "rare_f1", "ndcg@10"):
            assert 0 <= a[k] <= 1 and a[f"{k}_std"] >= 0
    assert any(a["f1@1"] > 0 for a in res["arms"])
    mix = next(a for a in res["arms"] if a["name"] == "mix@20%")
    assert mix["gain_reference"] == "duplicate-to-match@20%"
    assert {s["name"] for s in res["skipped_arms"]} == {"focal", "curriculum"}
    for f in ("results.json", "results.md", "results.png", "audit/audit.md"):
        assert (out / f).stat().st_size > 0
    assert "Skipped arm `focal`" in (out / "results.md").read_text()
    full = json.loads((out / "results.json").read_text())
    assert set(full["fidelity_gain_correlation"]) == {"mix@50%", "mix@30%", "mix@20%"}
    assert not [p for p in out.iterdir() if p.name.startswith(".synth-work")]


# --------------------------------------------------------------------------- loss-trained kinds (tiny transformer)

# one run of a few optimizer steps: no probe/re-fit/WiSE-FT, so each arm is a handful of seconds on a CPU
TINY_TRANSFORMER = ["transformer.max_steps=2", "transformer.max_length=32", "transformer.batch_size=8",
                    "transformer.eval_batch_size=32", "transformer.head_init=prior", "transformer.refit_head=false",
                    "transformer.wise_alpha=null", "transformer.patience=0"]
MORE_TITLES = [
    ("Seed drill that plants seeds in furrows made in the soil", "A01C"),
    ("Semiconductor wafer etched to form a transistor device", "H01L"),
    ("Pharmaceutical composition containing an antibody for treating cancer", "A61K"),
    ("Tablet formulation of a drug with a polymer coating for oral delivery", "A61K"),
]


def _write_titles(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "cpc_ids"])
        w.writerows(rows)
    return path


@pytest.mark.slow
def test_experiment_tiny_transformer_runs_focal_and_curriculum(tmp_path: Path, capsys, monkeypatch):
    """Every arm of a loss-trained kind (--arch bert-tiny, MiniLM tokenizer): real-only,
    duplicate-to-match, focal (really the focal loss), the shuffled mix and the curriculum."""
    from patentcpc.cli import main

    monkeypatch.setenv("PATENTCPC_PROGRESS", "0")
    rows = TITLES + MORE_TITLES  # 12 documents, 6 labels
    train = _write_titles(tmp_path / "train.csv", rows + [(t + " again", c) for t, c in rows])
    ev = _write_titles(tmp_path / "eval.csv", [("A new " + t.lower(), c) for t, c in rows])
    out = tmp_path / "out"
    argv = ["synth", "experiment", "--data", str(train), "--eval-data", str(ev), "--arch", "bert-tiny",
            "--seeds", "1", "--real-shares", "0.75", "--generator", "recombine", "--output", str(out)]
    for s in TINY_TRANSFORMER:
        argv += ["--set", s]
    assert _cli(main, argv) == 0
    res = json.loads(capsys.readouterr().out)
    names = [a["name"] for a in res["arms"]]
    assert names == ["real-only", "focal", "duplicate-to-match@75%", "mix@75%", "curriculum@75%"]
    assert res["skipped_arms"] == []
    for a in res["arms"]:
        for k in ("f1@1", "micro_f1", "macro_f1", "rare_f1", "ndcg@10"):
            assert np.isfinite(a[k]) and 0 <= a[k] <= 1 and a[f"{k}_std"] == 0.0
    # the loss each trained model's resolved config records
    assert {a["name"]: a["loss"] for a in res["arms"]} == {
        "real-only": "bce", "focal": "focal", "duplicate-to-match@75%": "bce", "mix@75%": "bce",
        "curriculum@75%": "bce"}
    full = json.loads((out / "results.json").read_text())
    assert full["model"] != "tfidf" and full["synthetic_budgets"] == {"75%": 8}
    mix = next(a for a in full["arms"] if a["name"] == "mix@75%")
    assert 0 < mix["n_synthetic"] <= 8 and mix["gain_reference"] == "duplicate-to-match@75%"
    assert "curriculum@75%" in (out / "results.md").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".synth-work")]


def test_experiment_arch_with_a_linear_model_is_refused(titles_csv: Path, tmp_path: Path):
    from patentcpc.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["synth", "experiment", "--data", str(titles_csv), "--eval-data", str(titles_csv), "--model", "tfidf",
              "--arch", "bert-tiny", "--output", str(tmp_path / "out")])
    assert exc.value.code == 2 and not (tmp_path / "out" / "results.json").exists()


@pytest.mark.slow
def test_training_runs_the_attention_check_once(titles_csv: Path, tmp_path: Path, monkeypatch):
    """transformer.attn_check runs once per training run on a real batch; fp32 sdpa on a CPU
    matches fp32 eager (no warning); attn_implementation=eager pins eager attention."""
    import warnings

    from patentcpc.config import TrainConfig, resolve
    from patentcpc.models import network as T
    from patentcpc.registry import train_model

    monkeypatch.setenv("PATENTCPC_PROGRESS", "0")
    calls = []
    real_check = T.check_attention

    def spy(encoder, input_ids, *args, **kwargs):
        calls.append(real_check(encoder, input_ids, *args, **kwargs) | {"n_rows": len(input_ids)})
        return calls[-1]

    monkeypatch.setattr(T, "check_attention", spy)
    for impl in ("sdpa", "eager"):
        calls.clear()
        cfg = resolve(TrainConfig, None, {"transformer": {"arch": "bert-tiny"}},
                      [*TINY_TRANSFORMER, "transformer.max_steps=1", f"transformer.attn_implementation={impl}"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train_model(cfg, str(titles_csv), str(titles_csv), tmp_path / impl)
        assert len(calls) == 1, calls
        c = calls[0]
        assert c["implementation"] == impl and c["bf16"] is False and c["n_rows"] == 8
        assert c["ok"] and c["relative_difference"] < 1e-4
        assert not [w for w in caught if "attention check" in str(w.message)]
        assert result.model.network.encoder.config._attn_implementation == impl
    cfg = resolve(TrainConfig, None, {"transformer": {"arch": "bert-tiny"}},
                  [*TINY_TRANSFORMER, "transformer.max_steps=1", "transformer.attn_check=false"])
    calls.clear()
    train_model(cfg, str(titles_csv), str(titles_csv), tmp_path / "off")
    assert calls == []
