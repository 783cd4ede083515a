"""The linear baseline: TF-IDF word n-grams + one-vs-rest linear classifier (scikit-learn).

Saved with ``skops`` (no pickle): loading checks every stored type against an allow-list of
scikit-learn / NumPy / SciPy types before anything is built.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from patentcpc.config import LinearConfig
from patentcpc.errors import ModelError
from patentcpc.models.artifact import Manifest
from patentcpc.models.base import CPCModel

WEIGHTS = "linear.skops"
DEFAULT_C = 0.5  # LinearConfig.C = None means this, unless the model kind chose another
# Types skops does not trust by default are accepted only from these packages (a scikit-learn
# pipeline of ours needs none today); "builtins." is not here: it would admit eval, exec, getattr.
_ALLOWED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.")


def build_pipeline(cfg: LinearConfig, seed: int = 42):
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.multiclass import OneVsRestClassifier  # noqa: PLC0415
    from sklearn.pipeline import Pipeline  # noqa: PLC0415
    from sklearn.svm import LinearSVC  # noqa: PLC0415

    vectorizer = TfidfVectorizer(ngram_range=(1, cfg.ngram_max), sublinear_tf=cfg.sublinear_tf, min_df=cfg.min_df,
                                 max_features=cfg.max_features, strip_accents="unicode", dtype=np.float32)
    C = DEFAULT_C if cfg.C is None else cfg.C
    if cfg.classifier == "svc":
        base = LinearSVC(C=C, class_weight=cfg.class_weight, random_state=seed)
    else:
        base = LogisticRegression(C=C, class_weight=cfg.class_weight, max_iter=1000, solver="liblinear")
    # n_jobs=None: the joblib backend active at fit time decides (LinearCPCModel.fit sets threads)
    return Pipeline([("tfidf", vectorizer), ("clf", OneVsRestClassifier(base, n_jobs=None))])


class LinearCPCModel(CPCModel):
    kind = "linear"

    def __init__(self, manifest: Manifest, pipeline):
        super().__init__(manifest)
        self.pipeline = pipeline

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[Sequence[str]], cfg: LinearConfig | None = None,
            seed: int = 42, manifest_fields: dict | None = None) -> LinearCPCModel:
        """Train on texts and their label lists; the label vocabulary is every label seen."""
        from sklearn.preprocessing import MultiLabelBinarizer  # noqa: PLC0415

        cfg = cfg or LinearConfig()
        if len(texts) == 0:
            raise ModelError("no training documents")
        vocab = sorted({c for ls in labels for c in ls})
        if len(vocab) < 2:
            raise ModelError(f"training needs at least 2 distinct labels, found {len(vocab)}")
        y = MultiLabelBinarizer(classes=vocab).fit_transform(labels)
        pipeline = build_pipeline(cfg, seed)
        # the per-label fits in threads (liblinear releases the GIL: no process start-up, no copies)
        n_jobs = cfg.n_jobs if len(texts) >= cfg.parallel_min_docs else 1
        from joblib import parallel_config  # noqa: PLC0415

        with parallel_config(backend="threading", n_jobs=n_jobs):
            pipeline.fit(list(texts), y)
        fields = dict(manifest_fields or {})
        score_type = "margin" if cfg.classifier == "svc" else "probability"
        manifest = Manifest(kind=cls.kind, labels=vocab, score_type=score_type,
                            threshold=0.0 if score_type == "margin" else 0.5, **fields)
        return cls(manifest, pipeline)

    def scores(self, texts: Sequence[str], batch_size: int = 4096, progress: bool = False) -> np.ndarray:
        clf = self.pipeline.named_steps["clf"]
        out = []
        for i in range(0, len(texts), batch_size):
            x = self.pipeline.named_steps["tfidf"].transform(list(texts[i : i + batch_size]))
            if self.manifest.score_type == "probability":
                out.append(clf.predict_proba(x))
            else:
                out.append(clf.decision_function(x))
        if not out:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        s = np.vstack(out).astype(np.float32)
        return s.reshape(len(texts), -1)

    def _save_weights(self, folder: Path) -> None:
        import skops.io as sio  # noqa: PLC0415

        sio.dump(self.pipeline, folder / WEIGHTS)

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, **kwargs) -> LinearCPCModel:
        import skops.io as sio  # noqa: PLC0415

        file = Path(path) / WEIGHTS
        if not file.exists():
            raise ModelError(f"{path}: missing {WEIGHTS}")
        try:
            untrusted = sio.get_untrusted_types(file=file)
        except Exception as exc:  # noqa: BLE001  (a corrupt file)
            raise ModelError(f"{file}: cannot be read ({exc})") from None
        bad = [t for t in untrusted if not t.startswith(_ALLOWED_PREFIXES)]
        if bad:
            raise ModelError(f"{file}: refuses to load types outside scikit-learn/NumPy/SciPy: {', '.join(bad)}")
        try:
            pipeline = sio.load(file, trusted=untrusted)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{file}: cannot be loaded ({type(exc).__name__}: {exc})") from None
        clf = pipeline.named_steps.get("clf") if hasattr(pipeline, "named_steps") else None
        n_out = len(getattr(clf, "estimators_", []) or [])
        if clf is None or "tfidf" not in pipeline.named_steps or n_out != len(manifest.labels):
            raise ModelError(f"{file}: does not match the manifest ({n_out} classifiers for "
                             f"{len(manifest.labels)} labels, or not a tfidf+clf pipeline)")
        return cls(manifest, pipeline)
