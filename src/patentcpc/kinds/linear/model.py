"""The linear baseline: TF-IDF word n-grams + one-vs-rest linear classifier.

Trained with scikit-learn, stored and scored as plain arrays: a model folder holds only data, and
loading it needs neither scikit-learn nor any object deserializer, so no file in the folder can
name a callable (the old ``linear.skops`` format could chain NumPy functions into ``exec``).

Folder layout (beside ``manifest.json``)::

    vocabulary.json     {"term": column, ...}  the TF-IDF vocabulary
    linear.json         TF-IDF settings (n-gram range, sublinear tf), checked against a schema
    linear.safetensors  idf (V,), coef_t (V, L) float32 (coefficients, one column per label),
                        intercept (L,) float32

Scores: ``decision = tfidf(text) @ coef_t + intercept``; ``svc`` models give these margins,
``logreg`` models their sigmoid (scikit-learn's one-vs-rest probabilities). The TF-IDF transform is
scikit-learn's ``TfidfVectorizer`` (lowercase, unicode accent stripping, token pattern
``(?u)\\b\\w\\w+\\b``, the Snowball stemmer of ``linear.stemmer`` (``linear.json``'s
``stemmer``; none in folders saved before it), the first line's terms counted ``linear.title_weight``
times (``linear.json``'s ``title_weight``; 1 in folders saved before it; :class:`patentcpc.words.WordAnalyzer`),
sublinear tf, smooth idf, l2 norm) re-done with NumPy
(a test pins it to scikit-learn's output): predicting does not import scikit-learn, which keeps
startup fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from patentcpc.config import LinearConfig
from patentcpc.errors import ConfigError, ModelError
from patentcpc.folder_files import MiB, check_folder_file, limit, read_folder_bytes, read_folder_json
from patentcpc.models.artifact import OLD_LINEAR_WEIGHTS, Manifest, check_no_code_files
from patentcpc.models.base import CPCModel
from patentcpc.numeric import sigmoid
from patentcpc.words import (
    MAX_TITLE_WEIGHT,
    TOKEN_PATTERN,
    WordAnalyzer,
    WordTokenizer,
    known_stemmer,
    stemmer_names,
    strip_accents,
)

WEIGHTS = "linear.safetensors"
VOCABULARY = "vocabulary.json"
SETTINGS = "linear.json"
DEFAULT_C = 1.0  # LinearConfig.C = None means this, unless the model kind chose another
DEFAULT_TITLE_WEIGHT = 10  # LinearConfig.title_weight = None means this, unless the model kind chose another
_CONSTANT_LOGIT = 1e4  # a label present in every training document: its probability is 1


@contextlib.contextmanager
def vocabulary_errors(cfg: LinearConfig, n_docs: int) -> Iterator[None]:
    """scikit-learn's vectorizer errors about the vocabulary (``min_df`` above the document count,
    no term left, only stop words) as a :class:`ConfigError` that names the option."""
    try:
        yield
    except ValueError as exc:
        text = str(exc)
        if "min_df" in text or "no terms remain" in text or "empty vocabulary" in text:
            raise ConfigError(f"the TF-IDF vocabulary of the {n_docs} training documents is empty with "
                              f"linear.min_df={cfg.min_df} (a term must be in that many documents; lower it, or "
                              "give texts with words)") from None
        raise


def build_pipeline(cfg: LinearConfig, seed: int = 42):
    """The scikit-learn pipeline that :meth:`LinearCPCModel.fit` trains (then stores as arrays)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    # the analyzer lower-cases, strips accents, tokenizes, stems, forms n-grams and weights the title
    title_weight = DEFAULT_TITLE_WEIGHT if cfg.title_weight is None else cfg.title_weight
    vectorizer = TfidfVectorizer(analyzer=WordAnalyzer(cfg.stemmer, cfg.ngram_max, title_weight),
                                 sublinear_tf=cfg.sublinear_tf, min_df=cfg.min_df,
                                 max_features=cfg.max_features, dtype=np.float32, norm="l2", smooth_idf=True)
    C = DEFAULT_C if cfg.C is None else cfg.C
    if cfg.classifier == "svc":
        base = LinearSVC(C=C, class_weight=cfg.class_weight, random_state=seed)
    else:
        base = LogisticRegression(C=C, class_weight=cfg.class_weight, max_iter=1000, solver="liblinear")
    # n_jobs=None: the joblib backend active at fit time decides (LinearCPCModel.fit sets threads)
    return Pipeline([("tfidf", vectorizer), ("clf", OneVsRestClassifier(base, n_jobs=None))])


def _settings_schema():
    from pydantic import BaseModel, ConfigDict, Field

    class LinearSettings(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        format_version: Literal[2]
        analyzer: Literal["word"]
        token_pattern: Literal[TOKEN_PATTERN]  # fixed: stored to be explicit, never compiled from the file
        lowercase: Literal[True]
        strip_accents: Literal["unicode"]
        ngram_range: tuple[Literal[1], Annotated[int, Field(ge=1, le=10)]]
        stemmer: Annotated[str, Field(pattern=r"^[a-z_]{2,40}$")] | None = None  # absent before session 31
        title_weight: Annotated[int, Field(ge=1, le=MAX_TITLE_WEIGHT)] = 1  # absent before session 32
        sublinear_tf: bool
        norm: Literal["l2"]
        n_features: int = Field(ge=1)
        n_labels: int = Field(ge=1)

    return LinearSettings


# ----------------------------------------------------------------------------- TF-IDF with NumPy


def training_vocab(texts: Sequence[str], labels: Sequence[Sequence[str]]) -> list[str]:
    """The label vocabulary of a training set (every label seen, sorted); at least one document and
    two labels, else a ModelError."""
    if len(texts) == 0:
        raise ModelError("no training documents")
    vocab = sorted({c for ls in labels for c in ls})
    if len(vocab) < 2:
        raise ModelError(f"training needs at least 2 distinct labels, found {len(vocab)}")
    return vocab


class TfidfArrays:
    """The TF-IDF transform of a fitted ``TfidfVectorizer``, from its vocabulary and idf."""

    def __init__(self, vocabulary: dict[str, int], idf: np.ndarray, ngram_max: int, sublinear_tf: bool,
                 stemmer: str | None = None, title_weight: int = 1):
        self.vocabulary = vocabulary
        self.idf = np.asarray(idf, dtype=np.float32)
        self.ngram_max = int(ngram_max)
        self.sublinear_tf = bool(sublinear_tf)
        self.stemmer = stemmer
        self.title_weight = int(title_weight)
        self.terms = WordAnalyzer(stemmer, self.ngram_max, self.title_weight)
        self.tokenize = self.terms.tokenize

    def surface_forms(self, text: str) -> dict[str, str]:
        """Each term of ``text`` (a stem, or n-gram of stems) -> the words of the text it first came
        from (lower-cased, accents stripped): what an explanation shows of a stemmed model."""
        plain = strip_accents(text.lower())
        words = WordTokenizer(None)(plain)
        terms = self.tokenize(plain) if self.stemmer else words
        out: dict[str, str] = {}
        for n in range(1, min(self.ngram_max, len(terms)) + 1):
            for i in range(len(terms) - n + 1):
                out.setdefault(" ".join(terms[i : i + n]), " ".join(words[i : i + n]))
        return out

    def transform_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(column indices, l2-normalised tf-idf values) of one document."""
        counts: dict[int, int] = {}
        vocab = self.vocabulary
        for term in self.terms(text):
            j = vocab.get(term)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        order = np.argsort(idx)
        idx = idx[order]
        val = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))[order]
        if self.sublinear_tf:
            val = np.log(val) + np.float32(1.0)
        val *= self.idf[idx]
        norm = np.sqrt(np.dot(val, val))
        if norm > 0:
            val /= norm
        return idx, val


# ----------------------------------------------------------------------------- the model


class LinearCPCModel(CPCModel):
    kind = "linear"
    from_scheme = False  # trained on labelled patents (the scheme kind: on the scheme's own text)

    def term_weights(self):
        """(TF-IDF transform, coefficients labels x features, feature names): explanations by term."""
        if self.tfidf is None or self.coef_t is None or not hasattr(self.tfidf, "transform_one"):
            return None
        names = getattr(self, "_explain_names", None)
        if names is None:
            names = np.empty(len(self.tfidf.vocabulary), dtype=object)
            for term, j in self.tfidf.vocabulary.items():
                names[j] = term
            self._explain_names = names
        return self.tfidf, np.asarray(self.coef_t).T, names

    def __init__(self, manifest: Manifest, tfidf: TfidfArrays, coef_t: np.ndarray, intercept: np.ndarray,
                 pipeline=None):
        super().__init__(manifest)
        if manifest.score_type not in ("margin", "probability"):
            raise ModelError(f"linear model: score_type must be margin or probability, not '{manifest.score_type}'")
        self.tfidf = tfidf
        self.coef_t = coef_t
        self.intercept = intercept
        self.pipeline = pipeline  # the fitted scikit-learn pipeline, only on a freshly trained model

    @classmethod
    def default_C(cls) -> float:
        """The regularisation strength when the configuration leaves ``linear.C`` unset."""
        return DEFAULT_C

    @classmethod
    def default_title_weight(cls) -> int:
        """How many times a title's terms count when the configuration leaves ``linear.title_weight``
        unset (benchmarks/accuracy.md, session 32)."""
        return DEFAULT_TITLE_WEIGHT

    @classmethod
    def training_documents(cls, cfg, data: str | None) -> tuple[list[str], list[list[str]], dict, dict, object]:
        """(texts, labels, text view, training-data record, the PatentData) of the labelled file ``data``."""
        from patentcpc.data import load_data

        if not data:
            raise ConfigError("--data is required to train a tfidf model")
        train = load_data(data, **cfg.data.load_kwargs())
        info = {"source": str(data), "n_docs": len(train), "fingerprint": train.fingerprint(),
                "n_skipped": train.n_skipped}
        return train.texts, train.labels, train.text_view, info, train

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[Sequence[str]], cfg: LinearConfig | None = None,
            seed: int = 42, manifest_fields: dict | None = None) -> LinearCPCModel:
        """Train on texts and their label lists; the label vocabulary is every label seen."""
        from sklearn.preprocessing import MultiLabelBinarizer

        cfg = cfg or LinearConfig()
        if cfg.title_weight is None:  # unset (fitted without the trainer): this kind's default
            cfg = dataclasses.replace(cfg, title_weight=cls.default_title_weight())
        vocab = training_vocab(texts, labels)
        weights = None
        label_docs = None
        if cfg.label_docs in ("seen", "all"):  # the scheme's text of the labels, weighted (``auto``: resolved
            from patentcpc.scheme import label_documents  # by the trainer, here: none)

            extra_texts, extra_labels = label_documents(vocab, cfg.label_docs)
            label_docs = {"scope": cfg.label_docs, "weight": cfg.label_docs_weight, "n_docs": len(extra_texts)}
            weights = np.concatenate([np.ones(len(texts)), np.full(len(extra_texts), cfg.label_docs_weight)])
            texts, labels = list(texts) + extra_texts, list(labels) + extra_labels
            vocab = sorted(set(vocab) | {c for (c,) in extra_labels})
        y = MultiLabelBinarizer(classes=vocab, sparse_output=True).fit_transform(labels)  # CSR: n x labels
        pipeline = build_pipeline(cfg, seed)
        # the per-label fits in threads (liblinear releases the GIL: no process start-up, no copies)
        n_jobs = cfg.n_jobs if len(texts) >= cfg.parallel_min_docs else 1
        import sklearn
        from joblib import parallel_config

        with parallel_config(backend="threading", n_jobs=n_jobs), vocabulary_errors(cfg, len(texts)):
            if weights is None:
                pipeline.fit(list(texts), y)
            else:  # sample weights reach each label's classifier through scikit-learn's metadata routing
                with sklearn.config_context(enable_metadata_routing=True):
                    pipeline.named_steps["clf"].estimator.set_fit_request(sample_weight=True)
                    pipeline.fit(list(texts), y, sample_weight=weights)
        fields = dict(manifest_fields or {})
        if label_docs is not None:
            fields["extra"] = {**fields.get("extra", {}), "label_docs": label_docs}
        score_type = "margin" if cfg.classifier == "svc" else "probability"
        manifest = Manifest(kind=cls.kind, labels=vocab, score_type=score_type,
                            threshold=0.0 if score_type == "margin" else 0.5, **fields)
        tfidf, coef_t, intercept = _arrays_from_pipeline(pipeline, score_type)
        return cls(manifest, tfidf, coef_t, intercept, pipeline)

    def decision(self, texts: Sequence[str]) -> np.ndarray:
        """``tfidf(texts) @ coef_t + intercept`` (len(texts), n_labels), float32."""
        out = np.empty((len(texts), self.coef_t.shape[1]), dtype=np.float32)
        for i, text in enumerate(texts):
            idx, val = self.tfidf.transform_one(text)
            out[i] = val @ self.coef_t[idx] if len(idx) else 0.0
        out += self.intercept
        return out

    def raw_scores(self, texts: Sequence[str], batch_size: int = 4096, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        s = self.decision(texts)
        if self.manifest.score_type == "probability":
            s = sigmoid(s.astype(np.float64))
        return s.astype(np.float32)

    def _save_weights(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        settings = {"format_version": 2, "analyzer": "word", "token_pattern": TOKEN_PATTERN, "lowercase": True,
                    "strip_accents": "unicode", "ngram_range": [1, self.tfidf.ngram_max],
                    "stemmer": self.tfidf.stemmer, "title_weight": self.tfidf.title_weight,
                    "sublinear_tf": self.tfidf.sublinear_tf, "norm": "l2",
                    "n_features": int(self.coef_t.shape[0]), "n_labels": int(self.coef_t.shape[1])}
        (folder / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        (folder / VOCABULARY).write_text(json.dumps(self.tfidf.vocabulary, ensure_ascii=False), encoding="utf-8")
        from patentcpc.io import atomic_path

        with atomic_path(folder / WEIGHTS) as tmp:  # the usual permissions (safetensors alone writes 0600)
            save_file({"idf": np.ascontiguousarray(self.tfidf.idf, dtype=np.float32),
                       "coef_t": np.ascontiguousarray(self.coef_t, dtype=np.float32),
                       "intercept": np.ascontiguousarray(self.intercept, dtype=np.float32)},
                      str(tmp), metadata={"format": "patentcpc-linear-2"})

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, **kwargs) -> LinearCPCModel:
        folder = Path(path)
        if (folder / OLD_LINEAR_WEIGHTS).exists():  # the old skops format: never loaded (it can run code)
            raise ModelError(f"{folder}: saved by an older patentcpc as {OLD_LINEAR_WEIGHTS}, a format that is no "
                             "longer loaded (it can run code); retrain the model with `patentcpc train`")
        check_no_code_files(folder)
        if not (folder / WEIGHTS).exists():
            raise ModelError(f"{folder}: missing {WEIGHTS}")
        for name in (SETTINGS, VOCABULARY):
            if not (folder / name).is_file():
                raise ModelError(f"{folder}: missing {name}")
        settings = _read_settings(folder / SETTINGS)
        tensors = read_safetensors(folder / WEIGHTS, {"idf": 1, "coef_t": 2, "intercept": 1})
        idf, coef_t, intercept = tensors["idf"], tensors["coef_t"], tensors["intercept"]
        n_features, n_labels = settings.n_features, settings.n_labels
        if coef_t.shape != (n_features, n_labels) or idf.shape != (n_features,) or intercept.shape != (n_labels,):
            raise ModelError(f"{folder / WEIGHTS}: array shapes {idf.shape}, {coef_t.shape}, {intercept.shape} do not "
                             f"match {SETTINGS} ({n_features} features, {n_labels} labels)")
        if n_labels != len(manifest.labels):
            raise ModelError(f"{folder / WEIGHTS}: does not match the manifest ({n_labels} classifiers for "
                             f"{len(manifest.labels)} labels)")
        if not (np.isfinite(idf).all() and np.isfinite(intercept).all()):
            raise ModelError(f"{folder / WEIGHTS}: idf or intercept holds NaN or infinity")
        if not known_stemmer(settings.stemmer):
            raise ModelError(f"{folder / SETTINGS}: unknown stemmer '{settings.stemmer}' (this install has "
                             f"{', '.join(stemmer_names())})")
        vocabulary = _read_vocabulary(folder / VOCABULARY, n_features)
        tfidf = TfidfArrays(vocabulary, idf, settings.ngram_range[1], settings.sublinear_tf, settings.stemmer,
                            settings.title_weight)
        return cls(manifest, tfidf, coef_t, intercept)


def _arrays_from_pipeline(pipeline, score_type: str) -> tuple[TfidfArrays, np.ndarray, np.ndarray]:
    vec = pipeline.named_steps["tfidf"]
    clf = pipeline.named_steps["clf"]
    vocabulary = {str(t): int(j) for t, j in vec.vocabulary_.items()}
    n_features = len(vocabulary)
    coef_t = np.zeros((n_features, len(clf.estimators_)), dtype=np.float32)
    intercept = np.zeros(len(clf.estimators_), dtype=np.float32)
    for k, est in enumerate(clf.estimators_):
        if hasattr(est, "coef_"):
            coef_t[:, k] = np.asarray(est.coef_, dtype=np.float64).ravel()
            intercept[k] = float(np.ravel(est.intercept_)[0])
        else:  # scikit-learn's _ConstantPredictor: a label in every (or no) training document
            y = float(np.ravel(est.y_)[0])
            intercept[k] = y if score_type == "margin" else (_CONSTANT_LOGIT if y > 0 else -_CONSTANT_LOGIT)
    words = vec.analyzer
    tfidf = TfidfArrays(vocabulary, np.asarray(vec.idf_, dtype=np.float32), words.ngram_max, vec.sublinear_tf,
                        words.stemmer, words.title_weight)
    return tfidf, coef_t, intercept


def _read_settings(file: Path):
    from pydantic import ValidationError

    from patentcpc.validation import validation_message

    schema = _settings_schema()
    try:
        return schema.model_validate_json(read_folder_bytes(file.parent, file.name, limit("json")))
    except ValidationError as exc:
        raise ModelError(f"{file}: {validation_message(exc, list(schema.model_fields))}") from None


def _read_vocabulary(file: Path, n_features: int) -> dict[str, int]:
    # a term is a few words: the file grows with the features, not beyond
    vocab = read_folder_json(file.parent, file.name, min(limit("text"), MiB + n_features * 1024))
    if not isinstance(vocab, dict) or len(vocab) != n_features:
        raise ModelError(f"{file}: must be an object of {n_features} term -> column entries")
    cols = np.fromiter((v if type(v) is int else -1 for v in vocab.values()), dtype=np.int64, count=len(vocab))
    if len(cols) and (cols.min() < 0 or cols.max() >= n_features or len(np.unique(cols)) != n_features):
        raise ModelError(f"{file}: columns must be the integers 0..{n_features - 1}, each once")
    return vocab


# ----------------------------------------------------------------------------- safetensors reader

_DTYPES = {"F32": np.float32}


def read_safetensors(file: Path, expected: dict[str, int]) -> dict[str, np.ndarray]:
    """Read-only, memory-mapped float32 arrays of a safetensors file; only the names in ``expected``
    (name -> number of dimensions), all of them, nothing else. Pages load on first use, so a large
    coefficient matrix costs nothing until a document touches its rows."""
    _, size = check_folder_file(file.parent, file.name, limit("array"))
    try:
        with open(file, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n <= 1 or 8 + n > size or n > 100_000_000:
                raise ModelError(f"{file}: not a safetensors file")
            header = json.loads(fh.read(n).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelError(f"{file}: not a safetensors file ({str(exc)[:200]})") from None
    if not isinstance(header, dict):
        raise ModelError(f"{file}: not a safetensors file")
    header.pop("__metadata__", None)
    if set(header) != set(expected):
        raise ModelError(f"{file}: holds tensors {sorted(header)}, expected {sorted(expected)}")
    base = 8 + n
    out = {}
    for name, ndim in expected.items():
        info = header[name]
        try:
            dtype, shape, (start, end) = info["dtype"], info["shape"], info["data_offsets"]
            ok = (dtype in _DTYPES and isinstance(shape, list) and len(shape) == ndim
                  and all(type(d) is int and d >= 0 for d in shape) and type(start) is int and type(end) is int)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise ModelError(f"{file}: tensor '{name}' must be F32 with {ndim} dimension(s)")
        count = int(np.prod(shape, dtype=np.int64))
        if start < 0 or end - start != count * 4 or base + end > size:
            raise ModelError(f"{file}: tensor '{name}' has bad offsets")
        if count == 0:
            out[name] = np.zeros(shape, dtype=np.float32)
        else:
            out[name] = np.memmap(file, dtype=_DTYPES[dtype], mode="r", offset=base + start, shape=tuple(shape))
    return out
