"""The centroid model: a text's TF-IDF vector against one centroid per label.

A label's centroid is the mean of the L2-normalised TF-IDF vectors of its training documents,
normalised again; a text's raw scores are the softmax of its cosine similarities to the centroids
at ``temperature``. The folder holds data only (beside patentcpc's ``manifest.json`` and
``config.yaml``), read back through :mod:`patentcpc.folder_files` (size limits, no links out)::

    centroid.json     {"format": 1, "temperature": ..., "ngram_max": ...}
    vocabulary.json   {"term": column, ...}
    idf.npy           (terms,) float32
    centroids.npy     (labels, terms) float32, row i belongs to manifest.labels[i]
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from patentcpc.errors import ConfigError, ModelError
from patentcpc.folder_files import limit, load_npy, read_folder_json
from patentcpc.models.base import CPCModel


@dataclasses.dataclass(frozen=True)
class CentroidOptions:
    """The kind's settings: ``options`` of the training configuration (``--set options.temperature=0.1``)."""

    temperature: float = 0.05  # softmax temperature of the cosine similarities
    ngram_max: int = 1  # word n-grams from 1 to this
    max_features: int = 100_000  # vocabulary cap (the centroids are dense: labels x terms)

    def __post_init__(self) -> None:
        for name, low, high in (("temperature", 1e-4, 100.0), ("ngram_max", 1, 3), ("max_features", 1, 10**7)):
            value, whole = getattr(self, name), isinstance(low, int)
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) \
                    or not low <= value <= high:
                raise ConfigError(f"options.{name} must be {'an integer' if whole else 'a number'} in {low}..{high}, "
                                  f"not {value!r}")

    @classmethod
    def from_config(cls, options: dict) -> CentroidOptions:
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"options: unknown option(s) {', '.join(map(str, unknown))} of the centroid kind "
                              f"(known: {', '.join(known)})")
        return cls(**options)


def vectorizer(ngram_max: int, max_features: int | None = None, vocabulary: dict | None = None):
    """scikit-learn's TF-IDF (sublinear tf, l2-normalised rows), to fit or with a saved vocabulary."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, ngram_max), max_features=max_features, vocabulary=vocabulary,
                           sublinear_tf=True, strip_accents="unicode", dtype=np.float32)


class CentroidCPCModel(CPCModel):
    kind = "centroid"

    def __init__(self, manifest, tfidf, centroids: np.ndarray, temperature: float):
        super().__init__(manifest)
        self.tfidf, self.centroids, self.temperature = tfidf, centroids, float(temperature)

    def raw_scores(self, texts, batch_size: int = 4096, progress: bool = False) -> np.ndarray:
        # CPCModel.scores (what predict, evaluate and the service use) applies the calibrator to these
        cosine = np.asarray(self.tfidf.transform(list(texts)) @ self.centroids.T, dtype=np.float64)
        z = np.exp((cosine - cosine.max(axis=1, keepdims=True)) / self.temperature)
        return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)

    def _save_weights(self, folder: Path) -> None:
        settings = {"format": 1, "temperature": self.temperature, "ngram_max": self.tfidf.ngram_range[1]}
        (folder / "centroid.json").write_text(json.dumps(settings) + "\n", encoding="utf-8")
        vocabulary = {term: int(j) for term, j in self.tfidf.vocabulary_.items()}
        (folder / "vocabulary.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
        np.save(folder / "idf.npy", self.tfidf.idf_.astype(np.float32), allow_pickle=False)
        np.save(folder / "centroids.npy", np.ascontiguousarray(self.centroids, dtype=np.float32), allow_pickle=False)

    @classmethod
    def load(cls, path, manifest, **kwargs) -> CentroidCPCModel:
        settings = read_folder_json(path, "centroid.json")
        vocabulary = read_folder_json(path, "vocabulary.json", limit("text"))
        idf, centroids = load_npy(path, "idf.npy"), load_npy(path, "centroids.npy", mmap=True)
        try:
            ok = settings["format"] == 1 and float(settings["temperature"]) > 0 and settings["ngram_max"] in (1, 2, 3)
        except (KeyError, TypeError, ValueError):
            ok = False
        n_terms = len(vocabulary) if isinstance(vocabulary, dict) else -1
        ok = ok and n_terms > 0 and all(type(j) is int for j in vocabulary.values()) \
            and sorted(vocabulary.values()) == list(range(n_terms))
        if not ok or idf.shape != (n_terms,) or centroids.shape != (len(manifest.labels), n_terms):
            raise ModelError(f"{path}: not a centroid model folder of this version (centroid.json, vocabulary.json, "
                             f"idf.npy and centroids.npy disagree)")
        tfidf = vectorizer(settings["ngram_max"], vocabulary=vocabulary)
        tfidf.idf_ = idf
        return cls(manifest, tfidf, centroids, settings["temperature"])
