"""Omikuji (partitioned label trees, Parabel / Bonsai style) on TF-IDF features: helpers.

Omikuji trains from a file in the extreme-classification text format ("XMC repository"
format): a header ``n_examples n_features n_labels`` then one line a document,
``label,label feature:value feature:value``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_xmc_file(path: str | Path, x, y, chunk: int = 20_000) -> None:
    """Write CSR features ``x`` and CSR 0/1 labels ``y`` in the XMC text format, in chunks."""
    x, y = x.tocsr(), y.tocsr()
    with open(path, "w", encoding="ascii") as fh:
        fh.write(f"{x.shape[0]} {x.shape[1]} {y.shape[1]}\n")
        for start in range(0, x.shape[0], chunk):
            lines = []
            for i in range(start, min(start + chunk, x.shape[0])):
                lab = ",".join(map(str, y.indices[y.indptr[i] : y.indptr[i + 1]]))
                a, b = x.indptr[i], x.indptr[i + 1]
                feats = " ".join(f"{j}:{v:.6g}" for j, v in zip(x.indices[a:b], x.data[a:b], strict=True))
                lines.append(f"{lab} {feats}\n")
            fh.write("".join(lines))


def predict_scores(model, x, n_labels: int, top_k: int = 10, beam_size: int = 10) -> np.ndarray:
    """Dense (n, n_labels) float32 scores: Omikuji's top_k probabilities, 0 elsewhere."""
    x = x.tocsr()
    out = np.zeros((x.shape[0], n_labels), dtype=np.float32)
    for i in range(x.shape[0]):
        a, b = x.indptr[i], x.indptr[i + 1]
        pairs = list(zip(x.indices[a:b].tolist(), x.data[a:b].tolist(), strict=True))
        for j, s in model.predict(pairs, beam_size=beam_size, top_k=top_k):
            out[i, j] = s
    return out


# ----------------------------------------------------------------------------- the model kind

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402

from patentcpc.config import LinearConfig  # noqa: E402
from patentcpc.errors import ModelError  # noqa: E402
from patentcpc.folder_files import MiB, limit, load_npy, read_folder_json  # noqa: E402
from patentcpc.kinds.linear.model import training_vocab, vocabulary_errors  # noqa: E402
from patentcpc.models.artifact import Manifest  # noqa: E402
from patentcpc.models.base import CPCModel  # noqa: E402
from patentcpc.words import MAX_TITLE_WEIGHT, known_stemmer  # noqa: E402

_FD_LOCK = threading.Lock()


@contextlib.contextmanager
def logs_to_stderr() -> Iterator[None]:
    """Omikuji's Rust logger writes its INFO lines to stdout (file descriptor 1) when a model is
    trained or loaded; inside this block they go to stderr, so stdout carries only patentcpc's own
    output (``evaluate --json``, predictions written to stdout)."""
    with _FD_LOCK:
        with contextlib.suppress(AttributeError, ValueError, OSError):  # stdout None or closed
            sys.stdout.flush()
        try:
            saved = os.dup(1)
        except OSError:  # no file descriptor 1: nothing to protect
            yield
            return
        try:
            try:
                os.dup2(2, 1)
            except OSError:  # no stderr: the lines may as well be dropped than break the call
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


@contextlib.contextmanager
def captured_fds() -> Iterator[list[str]]:
    """Omikuji's lines on file descriptors 1 and 2 while loading (its INFO log, its own error line)
    go to a temporary file instead; the list yielded gets that text's lines after the block, for an
    error message that names the problem on one line."""
    lines: list[str] = []
    with _FD_LOCK, tempfile.TemporaryFile() as tmp:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.flush()
        saved = []
        try:
            for fd in (1, 2):
                with contextlib.suppress(OSError):
                    saved.append((fd, os.dup(fd)))
                    os.dup2(tmp.fileno(), fd)
            yield lines
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            lines.extend(tmp.read(1 << 16).decode("utf-8", errors="replace").splitlines())


TREES_DIR = "omikuji"
VOCAB_FILE = "tfidf_vocabulary.json"
IDF_FILE = "tfidf_idf.npy"


def _vectorizer(cfg: LinearConfig):
    from patentcpc.kinds.linear.model import build_pipeline

    return build_pipeline(cfg).named_steps["tfidf"]


def _tfidf_settings(folder: Path, t: object) -> LinearConfig:
    """The manifest's ``extra.tfidf`` (the vectorizer's settings) as a LinearConfig; a value of the
    wrong type or range is a ModelError naming the manifest."""
    where = f"{folder / 'manifest.json'}: extra.tfidf"
    t = t if isinstance(t, dict) else {}
    stemmer = t.get("stemmer")  # absent (none) in folders saved before session 31
    if not known_stemmer(stemmer):
        raise ModelError(f"{where}.stemmer names no stemmer of this install: {stemmer!r}")
    ints = {"ngram_max": (1, 1, 10), "min_df": (1, 1, 2**31), "title_weight": (1, 1, MAX_TITLE_WEIGHT),
            "max_features": (None, 1, 2**31)}  # default (absent: title_weight 1 before session 32), range
    values = {}
    for key, (default, low, high) in ints.items():
        v = t.get(key, default)
        if not (v is None and default is None) and (type(v) is not int or not low <= v <= high):
            raise ModelError(f"{where}.{key} must be a whole number from {low} to {high}, not {v!r}")
        values[key] = v
    sublinear = t.get("sublinear_tf", True)
    if type(sublinear) is not bool:
        raise ModelError(f"{where}.sublinear_tf must be true or false, not {sublinear!r}")
    return LinearConfig(stemmer=stemmer, sublinear_tf=sublinear, **values)


class OmikujiCPCModel(CPCModel):
    """TF-IDF + Omikuji label trees (``linear.learner: omikuji``). Folder: the vectorizer as JSON
    (vocabulary) + ``.npy`` (idf, no pickle) and Omikuji's own model directory."""

    from_scheme = False  # trained on labelled patents (read by the linear trainer it shares)

    kind = "omikuji"

    def __init__(self, manifest: Manifest, vectorizer, trees):
        super().__init__(manifest)
        self.vectorizer, self.trees = vectorizer, trees

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[Sequence[str]], cfg: LinearConfig | None = None,
            seed: int = 42, manifest_fields: dict | None = None) -> OmikujiCPCModel:
        import omikuji
        from sklearn.preprocessing import MultiLabelBinarizer

        cfg = cfg or LinearConfig()
        vocab = training_vocab(texts, labels)
        vec = _vectorizer(cfg)
        with vocabulary_errors(cfg, len(texts)):
            x = vec.fit_transform(list(texts))
        y = MultiLabelBinarizer(classes=vocab, sparse_output=True).fit_transform(labels)
        n_threads = cfg.n_jobs if cfg.n_jobs and cfg.n_jobs > 0 else (os.cpu_count() or 1)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "train.txt"
            write_xmc_file(path, x, y)
            with logs_to_stderr():
                trees = omikuji.Model.train_on_data(str(path), omikuji.Model.default_hyper_param(), n_threads)
        fields = dict(manifest_fields or {})
        manifest = Manifest(kind=cls.kind, labels=vocab, score_type="probability", threshold=0.5, **fields)
        manifest.extra["tfidf"] = {"ngram_max": cfg.ngram_max, "stemmer": cfg.stemmer,
                                   "title_weight": vec.analyzer.title_weight, "min_df": cfg.min_df,
                                   "max_features": cfg.max_features, "sublinear_tf": cfg.sublinear_tf}
        return cls(manifest, vec, trees)

    def raw_scores(self, texts: Sequence[str], batch_size: int = 4096, progress: bool = False) -> np.ndarray:
        out = [predict_scores(self.trees, self.vectorizer.transform(list(texts[i : i + batch_size])),
                              len(self.labels), top_k=min(20, len(self.labels)))
               for i in range(0, len(texts), batch_size)]
        return np.vstack(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)

    def _save_weights(self, folder: Path) -> None:
        vocab = {k: int(v) for k, v in self.vectorizer.vocabulary_.items()}
        (folder / VOCAB_FILE).write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        np.save(folder / IDF_FILE, np.asarray(self.vectorizer.idf_, dtype=np.float64), allow_pickle=False)
        with logs_to_stderr():
            self.trees.save(str(folder / TREES_DIR))

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, **kwargs) -> OmikujiCPCModel:
        import omikuji

        folder = Path(path)
        if not all((folder / f).exists() for f in (VOCAB_FILE, IDF_FILE, TREES_DIR)):
            raise ModelError(f"{folder}: incomplete omikuji model (needs {VOCAB_FILE}, {IDF_FILE}, {TREES_DIR}/)")
        vec = _vectorizer(_tfidf_settings(folder, manifest.extra.get("tfidf", {})))
        idf = load_npy(folder, IDF_FILE, error=ModelError, what="the model folder")
        if idf.ndim != 1:
            raise ModelError(f"{folder / IDF_FILE}: must be a one-dimensional array")
        vocab = read_folder_json(folder, VOCAB_FILE, min(limit("text"), MiB + len(idf) * 1024),
                                 error=ModelError, what="the model folder")
        if not isinstance(vocab, dict) or len(vocab) != len(idf):
            raise ModelError(f"{folder}: the TF-IDF vocabulary and idf do not match")
        if not all(type(v) is int and 0 <= v < len(idf) for v in vocab.values()):
            raise ModelError(f"{folder / VOCAB_FILE}: columns must be integers 0..{len(idf) - 1}")
        vec.vocabulary_ = {str(k): int(v) for k, v in vocab.items()}
        vec.idf_ = idf
        try:
            with captured_fds() as said:
                trees = omikuji.Model.load(str(folder / TREES_DIR))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001  (a Rust panic is a BaseException)
            why = [line for line in said if "INFO" not in line] or (str(exc).splitlines() or [type(exc).__name__])
            raise ModelError(f"{folder / TREES_DIR}: not loadable omikuji trees ({why[-1].strip()[:300]})") from None
        return cls(manifest, vec, trees)
