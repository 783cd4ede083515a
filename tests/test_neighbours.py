"""Neighbour votes: the votes against a direct computation, label alignment, the file round trip
and refusal of files that are not neighbour files."""

from __future__ import annotations

import numpy as np
import pytest

from patentcpc.errors import ModelError
from patentcpc.kinds.ensemble.neighbours import NeighbourVote


def brute_force(emb, gold, queries, k, temperature):
    """The definition, one query at a time: cosine similarities, the k best, softmax weights."""
    labels = sorted({c for g in gold for c in g})
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    out = np.zeros((len(queries), len(labels)))
    for r, q in enumerate(queries):
        sims = emb @ (q / np.linalg.norm(q))
        best = sorted(range(len(emb)), key=lambda i: -sims[i])[:k]
        w = np.array([np.exp(sims[i] / temperature) for i in best])
        w /= w.sum()
        for i, wi in zip(best, w, strict=True):
            for c in gold[i]:
                out[r, labels.index(c)] += wi
    return out


@pytest.mark.parametrize("k,temperature", [(1, 0.05), (5, 0.05), (7, 0.5), (100, 0.1)])
def test_votes_match_the_definition(k, temperature):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 6))
    gold = [sorted(rng.choice(["A01B", "G06F", "H04L", "H04W"], size=rng.integers(1, 3), replace=False))
            for _ in range(40)]
    queries = rng.normal(size=(9, 6)) * 3
    vote = NeighbourVote.build(emb, gold, k, temperature)
    got = vote.scores(queries)
    # float16 storage of the embeddings: close, not bit-equal
    np.testing.assert_allclose(got, brute_force(emb, gold, queries, min(k, 40), temperature), atol=2e-2)
    assert got.min() >= 0 and np.all(got <= 1 + 1e-9)


def test_aligned_follows_the_given_labels():
    emb = np.eye(3)
    vote = NeighbourVote.build(emb, [["B"], ["A"], ["C"]], k=1)
    out = vote.aligned(np.array([[0.0, 1.0, 0.0]]), ["C", "A", "Z"])
    np.testing.assert_allclose(out, [[0.0, 1.0, 0.0]])


def test_save_load_round_trip_and_refusals(tmp_path):
    rng = np.random.default_rng(1)
    vote = NeighbourVote.build(rng.normal(size=(12, 4)), [["A01B"], ["H04L", "H04W"]] * 6, k=3, temperature=0.2)
    vote.save(tmp_path / "n.safetensors")
    back = NeighbourVote.load(tmp_path / "n.safetensors")
    assert back.labels == vote.labels and back.k == 3 and back.temperature == 0.2
    q = rng.normal(size=(5, 4))
    np.testing.assert_allclose(back.scores(q), vote.scores(q))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="junk.safetensors"):
        NeighbourVote.load(tmp_path / "junk.safetensors")
    bad = NeighbourVote(vote.embeddings, vote.label_indptr, vote.label_indices + 5, vote.labels)
    bad.save(tmp_path / "bad.safetensors")  # codes beyond the label list
    with pytest.raises(ModelError, match="inconsistent"):
        NeighbourVote.load(tmp_path / "bad.safetensors")
