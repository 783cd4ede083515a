"""train-embeddings: signal pairs, batching, training, saving; truncation/quantization; transfer report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from patentcpc.errors import ConfigError, DataError
from patentcpc.retrieval.finetune import (
    MANIFEST,
    Corpus,
    FinetuneOptions,
    Pair,
    citation_pairs,
    classification_examples,
    conflict_free_batches,
    corpus_from_records,
    cpc_pairs,
    jaccard,
    mine_hard_negatives,
    multiview_pairs,
    parse_signals,
    read_citation_pairs,
)
from patentcpc.retrieval.quantize import bytes_per_vector, compress, dequantize, quantize, truncate
from patentcpc.retrieval.transfer import format_markdown, transfer_report, write_report

RECORDS = [
    {"id": "p1", "title": "Battery cell cooling", "abstract": "A cooling plate for lithium battery cells.",
     "claims": "1. A battery pack comprising a cooling plate.", "labels": ["H01M", "B60L"]},
    {"id": "p2", "title": "Electrode coating", "abstract": "Coating an electrode of a lithium cell.",
     "labels": ["H01M"]},
    {"id": "p3", "title": "Electric vehicle charger", "abstract": "A charger for an electric vehicle battery.",
     "claims": "1. A charger with a connector.", "labels": ["B60L", "H02J"]},
    {"id": "p4", "title": "Wireless handover", "abstract": "Handover of a terminal between base stations.",
     "labels": ["H04W"]},
    {"id": "p5", "title": "Packet scheduling", "abstract": "Scheduling packets in a cellular network.",
     "labels": ["H04W", "H04L"]},
    {"id": "p6", "title": "Seed coating", "abstract": "A coating for crop seeds with a fungicide.",
     "labels": ["A01C"]},
    {"id": "p7", "title": "Tractor hitch", "abstract": "A hitch for coupling implements to a tractor.",
     "labels": ["A01B"]},
    {"id": "p8", "title": "Router firmware", "abstract": "Updating the firmware of a network router.",
     "labels": ["H04L"]},
]


@pytest.fixture
def corpus() -> Corpus:
    return corpus_from_records(RECORDS)


# --------------------------------------------------------------------------- signals (unit)


def test_multiview_pairs_every_field_pair_present(corpus):
    pairs = multiview_pairs(corpus)
    by_id = Counter(p.ids[0] for p in pairs)
    assert by_id["p1"] == 3 and by_id["p3"] == 3  # title-abstract, title-claims, abstract-claims
    assert by_id["p2"] == 1  # no claims: title-abstract only
    p1 = {(p.anchor, p.positive) for p in pairs if p.ids == ("p1",)}
    assert ("Battery cell cooling", "A cooling plate for lithium battery cells.") in p1
    assert ("A cooling plate for lithium battery cells.", "1. A battery pack comprising a cooling plate.") in p1
    assert all(p.negative is None for p in pairs)
    # restricted views
    only = multiview_pairs(corpus, ["abstract", "claims"])
    assert {p.ids[0] for p in only} == {"p1", "p3"}


def test_cpc_pairs_positives_share_labels_and_negatives_same_section(corpus):
    sets = dict(zip(corpus.ids, corpus.label_sets(), strict=True))
    pairs = cpc_pairs(corpus, np.random.default_rng(0))
    assert pairs
    for p in pairs:
        a, pos = p.ids[0], p.ids[1]
        assert a != pos and sets[a] & sets[pos]
        assert p.score == pytest.approx(jaccard(sets[a], sets[pos]))
        if p.negative is not None:
            neg = p.ids[2]
            assert not (sets[neg] & sets[a])
            assert {c[0] for c in sets[neg]} & {c[0] for c in sets[a]}  # same section, other subclass
    # p6 (A01C) has no partner sharing a label: no pair; p4 (H04W) -> p5 is its only candidate
    assert "p6" not in {p.ids[0] for p in pairs}
    p4 = next(p for p in pairs if p.ids[0] == "p4")
    assert p4.ids[1] == "p5" and p4.ids[2] == "p8" or p4.negative is None or sets[p4.ids[2]].isdisjoint({"H04W"})


def test_cpc_positives_are_sampled_by_label_overlap():
    recs = [{"id": "a", "title": "a", "labels": ["H01M", "B60L"]},
            {"id": "same", "title": "b", "labels": ["H01M", "B60L"]},       # jaccard 1
            {"id": "half", "title": "c", "labels": ["H01M", "B60L", "H02J", "H01G"]},  # jaccard 0.5
            {"id": "quarter", "title": "d", "labels": ["H01M", "A01B", "C07K"]}]       # jaccard 0.25
    c = corpus_from_records(recs)
    rng = np.random.default_rng(1)
    counts = Counter(next(p for p in cpc_pairs(c, rng, hard_negatives=False) if p.ids[0] == "a").ids[1]
                     for _ in range(700))
    # expected shares 1 : 0.5 : 0.25 of 1.75
    assert counts["same"] > counts["half"] > counts["quarter"] > 0
    assert abs(counts["same"] / 700 - 1 / 1.75) < 0.07


def test_citation_pairs_from_qrels_and_csv(tmp_path, corpus):
    q = tmp_path / "cites.qrels"
    q.write_text("p1 0 p3 1\np1 0 p2 0\np4 0 p5 2\np4 0 UNKNOWN 1\n")
    pairs = read_citation_pairs(q)
    assert pairs == [("p1", "p3"), ("p4", "p5"), ("p4", "UNKNOWN")]  # relevance 0 dropped
    built = citation_pairs(corpus, pairs)
    assert [(p.ids) for p in built] == [("p1", "p3"), ("p4", "p5")]  # unknown id dropped
    assert built[0].anchor == corpus.texts[0] and built[0].positive == corpus.texts[2]
    csv = tmp_path / "cites.csv"
    csv.write_text("citing,cited\np2,p1\n")
    assert [p.ids for p in citation_pairs(corpus, read_citation_pairs(csv))] == [("p2", "p1")]
    with pytest.raises(DataError):
        citation_pairs(corpus, [("x", "y")])
    bad = tmp_path / "bad.qrels"
    bad.write_text("p1 0 p3 high\n")
    with pytest.raises(DataError, match="row 1"):
        read_citation_pairs(bad)


def test_classification_examples_multi_hot(corpus):
    vocab, rows, y = classification_examples(corpus)
    assert vocab == sorted({"H01M", "B60L", "H02J", "H04W", "H04L", "A01C", "A01B"})
    assert rows == list(range(8))
    assert y[0, vocab.index("H01M")] == 1 and y[0, vocab.index("B60L")] == 1 and y[0].sum() == 2


def test_batches_never_mix_pairs_sharing_a_label_or_patent(corpus):
    pairs = multiview_pairs(corpus) + cpc_pairs(corpus, np.random.default_rng(0))
    batches = conflict_free_batches(pairs, 4, np.random.default_rng(0))
    assert batches
    for b in batches:
        assert 2 <= len(b) <= 4
        for i, p in enumerate(b):
            for q in b[i + 1:]:
                assert not (p.labels & q.labels)
                assert not (set(p.ids) & set(q.ids))


def test_mined_negatives_are_most_similar_without_shared_labels(corpus):
    # a fake embedder: p1's nearest neighbours are p2 (shares H01M), then p6, then p7
    order = {"p1": [1, 0, 0], "p2": [0.99, 0.1, 0], "p6": [0.9, 0.3, 0], "p7": [0.8, 0.5, 0]}

    def embed(texts):
        vecs = np.array([order.get(i, [0, 0, 1]) for i in corpus.ids], dtype=np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    pairs = [p for p in multiview_pairs(corpus, ["title", "abstract"]) if p.ids == ("p1",)]
    mined = mine_hard_negatives(pairs, corpus, embed)
    assert mined[0].negative == "A coating for crop seeds with a fungicide."  # p6's abstract, not p2's
    assert mined[0].ids == ("p1", "p6")


def test_signal_parsing_and_options():
    assert parse_signals("cpc,multiview") == {"cpc": 1.0, "multiview": 1.0}
    assert parse_signals("cpc,multiview", "2,0.5") == {"cpc": 2.0, "multiview": 0.5}
    assert parse_signals("cpc:3,classification") == {"cpc": 3.0, "classification": 1.0}
    for bad, w in (("cpc,foo", None), ("cpc", "1,2"), ("cpc:-1", None), ("cpc,cpc", None), ("", None)):
        with pytest.raises(ConfigError):
            parse_signals(bad, w)
    with pytest.raises(ConfigError, match="combine"):
        FinetuneOptions(signals={"classification": 1.0})
    with pytest.raises(ConfigError):
        FinetuneOptions(cpc_loss="triplet")


# --------------------------------------------------------------------------- quantization (unit)


def test_truncate_int8_binary_and_sizes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = truncate(x, 16)
    assert t.shape == (50, 16) and np.allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    assert np.allclose(t, x[:, :16] / np.linalg.norm(x[:, :16], axis=1, keepdims=True), atol=1e-6)
    codes, ranges = quantize(x, "int8")
    assert codes.dtype == np.int8 and ranges.shape == (2, 64)
    dec = dequantize(codes, "int8", ranges)
    assert np.abs(dec - x).max() < 2 * (ranges[1] - ranges[0]).max() / 255 + 1e-6
    bits, none = quantize(x, "binary")
    assert bits.dtype == np.uint8 and bits.shape == (50, 8) and none is None
    assert np.array_equal(dequantize(bits, "binary", dim=64) > 0, x > 0)
    assert [bytes_per_vector(64, p) for p in ("float32", "int8", "binary")] == [256, 64, 8]
    # ranking with int8 documents stays close to float32
    docs, _, _ = compress(x, None, "int8")
    assert np.mean(np.argmax(x @ docs.T, axis=1) == np.arange(50)) == 1.0


def test_quantize_matches_sentence_transformers():
    st_q = pytest.importorskip("sentence_transformers.quantization")
    x = np.random.default_rng(1).normal(size=(20, 32)).astype(np.float32)
    codes, ranges = quantize(x, "int8")
    assert np.array_equal(codes, st_q.quantize_embeddings(x, "int8", ranges=ranges))
    assert np.array_equal(quantize(x, "binary")[0], np.packbits(x > 0, axis=-1))


# --------------------------------------------------------------------------- transfer report (unit)


def test_transfer_report_changes_in_both_domains(tmp_path):
    in_rows = [{"model": "bm25", "view": "abstract", "ndcg@10": 0.2},
               {"model": "base", "view": "abstract", "ndcg@10": 0.40, "knn_f1@1": 0.30},
               {"model": "tuned", "view": "abstract", "ndcg@10": 0.50, "knn_f1@1": 0.33},
               {"model": "tuned@64d-int8", "view": "abstract", "ndcg@10": 0.45}]
    out_rows = [{"model": "base", "view": "text", "ndcg@10": 0.20},
                {"model": "tuned", "view": "text", "ndcg@10": 0.15}]
    rep = transfer_report(in_rows, out_rows, "base")
    got = {(r["domain"], r["metric"]): r for r in rep["rows"]}
    assert set(got) == {("in-domain", "ndcg@10"), ("in-domain", "knn_f1@1"), ("out-of-domain", "ndcg@10")}
    assert got[("in-domain", "ndcg@10")]["delta"] == pytest.approx(0.10)
    assert got[("in-domain", "ndcg@10")]["relative"] == pytest.approx(0.25)
    assert got[("out-of-domain", "ndcg@10")]["delta"] == pytest.approx(-0.05)
    md = format_markdown(rep)
    assert "| out-of-domain | text | ndcg@10 | 0.2000 | 0.1500 | -0.0500 | -25.0% |" in md
    write_report(rep, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["baseline"] == "base"
    with pytest.raises(ConfigError):
        transfer_report(in_rows, out_rows, "missing")


# --------------------------------------------------------------------------- training (tiny model)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> str:
    """A 2-layer random BERT with the MiniLM tokenizer (offline)."""
    import torch
    from transformers import BertConfig, BertModel

    from patentcpc.kinds.transformer.model import default_tokenizer_path, load_tokenizer

    try:
        tok = load_tokenizer(default_tokenizer_path())
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no offline tokenizer: {exc}")
    folder = tmp_path_factory.mktemp("tiny-encoder")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def _write_jsonl(path: Path, records) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps({"patent_id": r["id"], "title": r["title"], "abstract": r["abstract"],
                                 "cpc": "; ".join(r["labels"])}) + "\n")
    return path


@pytest.mark.slow
def test_training_reduces_contrastive_loss_and_round_trips(tiny_encoder, corpus, tmp_path):
    pytest.importorskip("sentence_transformers")
    from patentcpc.retrieval.embeddings import EmbedOptions, load_embedder
    from patentcpc.retrieval.finetune import (
        contrastive_loss,
        load_sentence_transformer,
        read_manifest,
        save_embedder,
        train_embedder,
    )

    pairs = multiview_pairs(corpus, ["title", "abstract"])
    before = contrastive_loss(load_sentence_transformer(tiny_encoder, "cpu", 64), pairs, batch_size=8)
    opts = FinetuneOptions(signals={"multiview": 1.0, "cpc": 0.5, "classification": 0.5}, epochs=5, batch_size=8,
                           lr=3e-3, max_length=64, warmup_ratio=0.0, device="cpu", seed=0)
    result = train_embedder(tiny_encoder, corpus, opts)
    after = contrastive_loss(result.model, pairs, batch_size=8)
    assert after < before - 0.1, (before, after)
    assert result.history and result.steps > 0 and "classification" in result.n_examples

    out = save_embedder(result, tmp_path / "E", tiny_encoder, opts, {"source": "handmade"})
    manifest = read_manifest(out)
    assert manifest["signals"] == {"multiview": 1.0, "cpc": 0.5, "classification": 0.5}
    assert manifest["base_model"] == tiny_encoder and manifest["options"]["seed"] == 0
    assert manifest["classification_head"]["labels"] == classification_examples(corpus)[0]
    assert (out / "model.safetensors").exists() and (out / "classification_head.safetensors").exists()
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pkl"))
    texts = corpus.texts[:4]
    direct = result.model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    reloaded = load_embedder(str(out), EmbedOptions(batch_size=2, device="cpu")).encode(texts)
    assert np.allclose(direct, reloaded, atol=1e-4)
    # patentcpc's train --model loads it as a plain Hugging Face encoder too
    from patentcpc.kinds.transformer.model import load_encoder

    assert load_encoder(str(out)).config.hidden_size == 32
    # a folder patentcpc did not write is never replaced
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(ConfigError):
        save_embedder(result, foreign, tiny_encoder, opts)
    assert (foreign / "keep.txt").read_text() == "x"


@pytest.mark.slow
def test_training_is_seeded(tiny_encoder, corpus):
    pytest.importorskip("sentence_transformers")
    from patentcpc.retrieval.finetune import train_embedder

    opts = FinetuneOptions(signals={"cpc": 1.0}, epochs=1, batch_size=4, lr=1e-3, max_length=32, device="cpu",
                           seed=3)
    a = train_embedder(tiny_encoder, corpus, opts).model.encode(corpus.texts[:3])
    b = train_embedder(tiny_encoder, corpus, opts).model.encode(corpus.texts[:3])
    assert np.allclose(a, b, atol=1e-6)


@pytest.mark.slow
def test_cli_train_embed_index_search_transfer(tiny_encoder, tmp_path):
    pytest.importorskip("sentence_transformers")
    from patentcpc.cli import main as _main

    def main(argv):  # main() always exits with the command's code: 0 here
        with pytest.raises(SystemExit) as done:
            _main(argv)
        assert done.value.code == 0

    data = _write_jsonl(tmp_path / "train.jsonl", RECORDS)
    other = tmp_path / "other.csv"
    other.write_text("text,cpc_ids\n" + "\n".join(f'"{r["title"]}","{",".join(r["labels"])}"' for r in RECORDS)
                     + "\n")
    out = tmp_path / "E"
    main(["train-embeddings", "--model", tiny_encoder, "--data", str(data), "--signal", "cpc,multiview",
          "--signal-weights", "1,2", "--output", str(out), "--batch-size", "4", "--max-length", "32",
          "--set", "cached=true", "--set", "mini_batch_size=2", "--set", "device=cpu"])
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["signals"] == {"cpc": 1.0, "multiview": 2.0} and manifest["options"]["cached"] is True

    emb = tmp_path / "v.npz"
    main(["embed", "--model", str(out), "--data", str(data), "--output", str(emb), "--truncate-dim", "16",
          "--precision", "int8"])
    from patentcpc.retrieval.embeddings import load_embeddings

    ids, codes, meta = load_embeddings(emb)
    assert codes.dtype == np.int8 and codes.shape == (8, 16) and meta["precision"] == "int8"
    assert meta["bytes_per_vector"] == 16 and len(meta["int8_ranges"]) == 2

    for precision, dtype, width in (("int8", np.int8, 16), ("binary", np.uint8, 2)):
        idx = tmp_path / f"idx-{precision}"
        main(["index", "build", "--data", str(data), "--model", str(out), "--output", str(idx),
              "--truncate-dim", "16", "--precision", precision])
        stored = np.load(idx / "embeddings.npy")
        assert stored.dtype == dtype and stored.shape == (8, width)
        from patentcpc.retrieval.search import SearchIndex, SearchOptions

        index = SearchIndex.load(idx)
        assert index.embeddings.shape == (8, 16)
        hits = index.search("lithium battery cooling plate", SearchOptions(k=3, mode="dense"))
        assert len(hits) == 3

    bench = tmp_path / "bench"
    main(["benchmark-embeddings", "--models", str(out), "--baseline", tiny_encoder, "--data", str(data),
          "--transfer", str(other), "--output-dir", str(bench), "--folds", "2", "--knn-k", "2", "--no-probe",
          "--zero-shot", "off", "--views", "title+abstract", "--compression", "16:int8,binary"])
    rep = json.loads((bench / "transfer_report.json").read_text())
    assert {r["domain"] for r in rep["rows"]} == {"in-domain", "out-of-domain"}
    assert all(r["model"] == str(out) for r in rep["rows"])
    csv_text = (bench / "embedding_benchmark.csv").read_text()
    assert "@16d-int8" in csv_text and "@32d-binary" in csv_text and "(transfer)" in csv_text

    with pytest.raises(SystemExit) as exc:
        _main(["train-embeddings", "--model", tiny_encoder, "--data", str(data), "--output", str(bench)])
    assert exc.value.code == 2


def test_corpus_loads_fields_from_a_file(tmp_path):
    from patentcpc.retrieval.finetune import load_corpus

    data = _write_jsonl(tmp_path / "d.jsonl", RECORDS)
    c = load_corpus(str(data))
    assert c.ids[0] == "p1" and set(c.fields) == {"title", "abstract"}
    assert c.fields["title"][1] == "Electrode coating" and c.labels[0] == ["B60L", "H01M"] or \
        sorted(c.labels[0]) == ["B60L", "H01M"]
    with pytest.raises(DataError, match="claims"):
        load_corpus(str(data), views=["title", "claims"])
    assert isinstance(Pair("a", "b"), Pair)
