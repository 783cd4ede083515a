"""The ``router`` model kind: a cheap first member (e.g. TF-IDF or an encoder) answers every
document it is sure of; the documents it is unsure of go to a second, costlier member (e.g. an LLM
classifier).

A document is *unsure* when the first member's top-1 margin over its decision threshold (score
minus threshold: comparable for probabilities and SVM margins) is below the routing threshold, or
when its top label had fewer than ``router.rare_count`` training documents. The routing threshold
is tuned on validation data so that a target share of documents (``router.share``) is routed.

Scores: each document's row comes from the member that answered it, as score minus that member's
threshold for the label, so the router's decision threshold is 0 for every label (``score_type``
``margin``); labels a member does not know get :data:`MISSING`.

Folder layout (beside ``manifest.json``)::

    members/0/   the first member's model folder (any kind)
    members/1/   the second member's model folder (any kind)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from patentcpc.errors import ModelError
from patentcpc.models.artifact import Manifest
from patentcpc.models.base import CPCModel

MEMBERS_DIR = "members"
MISSING = -1000.0


class RouterCPCModel(CPCModel):
    """Two member models and a routing rule (``manifest.extra``: ``route_threshold``,
    ``rare_labels``, ``share_target``, ``members``)."""

    kind = "router"

    def __init__(self, manifest: Manifest, members: Sequence[CPCModel]):
        super().__init__(manifest)
        if len(members) != 2:
            raise ModelError("a router needs exactly two members")
        self.members = list(members)
        index = {c: j for j, c in enumerate(manifest.labels)}
        self._columns = [np.asarray([index[c] for c in m.labels], dtype=np.int64) for m in self.members]
        self.last_routed: np.ndarray | None = None

    def member_margins(self, i: int, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Member ``i``'s scores minus its thresholds, in the router's label columns."""
        m = self.members[i]
        out = np.full((len(texts), len(self.labels)), MISSING, dtype=np.float64)
        if len(texts):
            out[:, self._columns[i]] = m.scores(list(texts), batch_size=batch_size) - m.thresholds
        return out

    def route(self, margins0: np.ndarray) -> np.ndarray:
        """Boolean mask of the documents to send to the second member."""
        extra = self.manifest.extra
        return routing_mask(margins0, self.labels, extra.get("route_threshold"), set(extra.get("rare_labels", [])))

    def raw_scores(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        out = self.member_margins(0, texts, batch_size)
        routed = self.route(out) if len(texts) else np.zeros(0, dtype=bool)
        if routed.any():
            out[routed] = self.member_margins(1, [t for t, r in zip(texts, routed, strict=True) if r], batch_size)
        self.last_routed = routed
        return out

    def explain_members(self) -> list:
        return list(self.members)

    def evaluation_report(self) -> dict:
        return self.routing_report()

    def routing_report(self) -> dict:
        """Share and number of documents the last :meth:`scores` call routed."""
        if self.last_routed is None:
            return {}
        n = len(self.last_routed)
        return {"share_routed": float(self.last_routed.mean()) if n else 0.0, "n_routed": int(self.last_routed.sum())}

    def _save_weights(self, folder: Path) -> None:
        for i, m in enumerate(self.members):
            m.save(folder / MEMBERS_DIR / str(i))

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, **kwargs) -> RouterCPCModel:
        from patentcpc.registry import load_model

        folder = Path(path)
        members = []
        for i in range(2):
            sub = folder / MEMBERS_DIR / str(i)
            if not sub.is_dir():
                raise ModelError(f"{folder}: incomplete router model (no {MEMBERS_DIR}/{i}/)")
            members.append(load_model(sub, **kwargs))
        return cls(manifest, members)


def routing_mask(margins0: np.ndarray, labels: Sequence[str], threshold: float | None,
                 rare_labels: set[str]) -> np.ndarray:
    """Route where the top-1 margin is below ``threshold`` (None: never) or the top label is rare."""
    if len(margins0) == 0:
        return np.zeros(0, dtype=bool)
    top = margins0.argmax(1)
    conf = margins0[np.arange(len(top)), top]
    routed = np.zeros(len(top), dtype=bool) if threshold is None else conf < threshold
    if rare_labels:
        rare_cols = np.asarray([c in rare_labels for c in labels])
        routed |= rare_cols[top]
    return routed


def tune_threshold(margins0: np.ndarray, labels: Sequence[str], rare_labels: set[str], share: float) -> float | None:
    """The routing threshold that routes about ``share`` of these documents (rare-label documents
    count towards it); None when the rare-label documents alone reach the share."""
    forced = routing_mask(margins0, labels, None, rare_labels)
    n_target = int(round(share * len(margins0)))
    k = n_target - int(forced.sum())
    if k <= 0:
        return None
    conf = np.sort(margins0[~forced].max(1))
    if k >= len(conf):
        return float(conf[-1]) + 1.0
    return float((conf[k - 1] + conf[k]) / 2)


# ----------------------------------------------------------------------------- training
