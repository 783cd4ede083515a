"""Nearest-neighbour label votes over an encoder's document embeddings.

With ``ensemble.neighbours`` an ensemble keeps, for each encoder member, the member's pooled
embeddings of its training documents and their codes. A new document's vote for a code is the
softmax-weighted share of its ``k`` most similar training documents (cosine similarity /
``temperature``) that carry the code: a second, instance-based reading of the same encoder
(benchmarks/ensemble.md, "Session 22").

File (safetensors, no code)::

    embeddings     (n, d) float16, L2-normalised
    label_indptr   (n + 1,) int64   CSR rows: the codes of document i are
    label_indices  (nnz,) int32     label_indices[label_indptr[i]:label_indptr[i + 1]]
    metadata       {"format": "patentcpc-neighbours-1", "labels": JSON list, "k", "temperature"}
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from patentcpc.errors import ModelError
from patentcpc.folder_files import check_folder_file
from patentcpc.numeric import knn_label_votes, l2_normalize

FORMAT = "patentcpc-neighbours-1"


@dataclass
class NeighbourVote:
    embeddings: np.ndarray
    label_indptr: np.ndarray
    label_indices: np.ndarray
    labels: list[str]
    k: int = 20
    temperature: float = 0.05

    @classmethod
    def build(cls, embeddings: np.ndarray, gold: Sequence[Sequence[str]], k: int = 20,
              temperature: float = 0.05) -> NeighbourVote:
        """From the (n, d) embeddings of n training documents and their codes."""
        labels = sorted({c for g in gold for c in g})
        index = {c: j for j, c in enumerate(labels)}
        rows = [sorted({index[c] for c in g}) for g in gold]
        indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        indices = np.array([j for r in rows for j in r], dtype=np.int32)
        unit = l2_normalize(np.asarray(embeddings, dtype=np.float32)).astype(np.float16)
        return cls(unit, indptr, indices, labels, k, temperature)

    @functools.cached_property
    def codes(self) -> np.ndarray:
        """The training documents' codes as a dense boolean (n, len(labels)) matrix."""
        y = np.zeros((len(self.embeddings), len(self.labels)), dtype=bool)
        rows = np.repeat(np.arange(len(self.embeddings)), np.diff(self.label_indptr))
        y[rows, self.label_indices] = True
        return y

    def scores(self, queries: np.ndarray, chunk: int = 256) -> np.ndarray:
        """(m, len(labels)) votes in [0, 1] of the m query embeddings (each row sums to at most
        the mean number of codes of the neighbours)."""
        queries = l2_normalize(np.asarray(queries, dtype=np.float32))
        n = len(self.embeddings)
        out = np.zeros((len(queries), len(self.labels)), dtype=np.float64)
        if n == 0:
            return out
        emb_t = self.embeddings.T.astype(np.float32)  # once, not per chunk
        for start in range(0, len(queries), chunk):
            sims = queries[start : start + chunk] @ emb_t
            out[start : start + len(sims)] = knn_label_votes(sims, self.codes, self.k, "softmax", self.temperature)
        return out

    def aligned(self, queries: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """:meth:`scores` in the column order of ``labels`` (codes not in ``labels`` dropped)."""
        index = {c: j for j, c in enumerate(labels)}
        keep = [(i, index[c]) for i, c in enumerate(self.labels) if c in index]
        out = np.zeros((len(queries), len(labels)), dtype=np.float64)
        if keep:
            src, dst = (np.array(x) for x in zip(*keep, strict=True))
            out[:, dst] = self.scores(queries)[:, src]
        return out

    def save(self, file: str | os.PathLike) -> None:
        from safetensors.numpy import save_file

        from patentcpc.io import atomic_path

        meta = {"format": FORMAT, "labels": json.dumps(self.labels), "k": str(self.k),
                "temperature": repr(float(self.temperature))}
        with atomic_path(Path(file)) as tmp:
            save_file({"embeddings": np.ascontiguousarray(self.embeddings, dtype=np.float16),
                       "label_indptr": np.ascontiguousarray(self.label_indptr, dtype=np.int64),
                       "label_indices": np.ascontiguousarray(self.label_indices, dtype=np.int32)},
                      str(tmp), metadata=meta)

    @classmethod
    def load(cls, file: str | os.PathLike) -> NeighbourVote:
        """Read and check a neighbour file (arrays and JSON only; nothing is executed)."""
        from safetensors import SafetensorError, safe_open

        real, _ = check_folder_file(Path(file).parent, Path(file).name, error=ModelError, what="its folder")
        try:
            with safe_open(str(real), framework="numpy") as fh:
                meta = fh.metadata() or {}
                if meta.get("format") != FORMAT or set(fh.keys()) != {"embeddings", "label_indptr", "label_indices"}:
                    raise ValueError("not a patentcpc neighbour file")
                emb, indptr, indices = (fh.get_tensor(n) for n in ("embeddings", "label_indptr", "label_indices"))
            labels = json.loads(meta["labels"])
            k, temperature = int(meta["k"]), float(meta["temperature"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError, SafetensorError) as exc:
            raise ModelError(f"{file}: not a readable neighbour file ({str(exc).splitlines()[0][:200]})") from None
        ok = (emb.ndim == 2 and indptr.shape == (len(emb) + 1,) and indices.ndim == 1
              and isinstance(labels, list) and all(isinstance(c, str) for c in labels)
              and k >= 1 and np.isfinite(temperature) and temperature > 0
              and (len(indptr) == 0 or (indptr[0] == 0 and indptr[-1] == len(indices)
                                        and bool(np.all(np.diff(indptr) >= 0))))
              and (len(indices) == 0 or (indices.min() >= 0 and indices.max() < len(labels))))
        if not ok:
            raise ModelError(f"{file}: inconsistent neighbour arrays")
        return cls(emb, indptr, indices, labels, k, temperature)
