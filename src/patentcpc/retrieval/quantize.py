"""Smaller embeddings: Matryoshka-style truncation and int8 / binary quantization.

* ``truncate``: keep the first ``dim`` components and L2-normalize again (exact for Matryoshka-trained
  models, an approximation for others; the benchmark shows how much it costs).
* ``int8``: per-dimension min/max calibration into 256 buckets (sentence-transformers'
  ``quantize_embeddings`` scheme; the calibration ranges are stored with the vectors).
* ``binary``: the sign bit of each component, packed 8 per byte (``ubinary``).

Stored vectors are searched asymmetrically: the query stays float32 and is scored against the
decoded documents (:func:`dequantize`: int8 bucket centres, binary +-1/sqrt(dim)), which ranks
the same as rescoring in sentence-transformers' quantization examples.
"""

from __future__ import annotations

import numpy as np

from patentcpc.errors import ConfigError
from patentcpc.numeric import l2_normalize

PRECISIONS = ("float32", "int8", "binary")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not '{precision}'")
    return precision


def truncate(vectors: np.ndarray, dim: int | None, normalize: bool = True) -> np.ndarray:
    """The first ``dim`` components (all when None), L2-normalized again when ``normalize``."""
    x = np.asarray(vectors, dtype=np.float32)
    if dim is None or dim >= x.shape[1]:
        return x
    if dim < 1:
        raise ConfigError(f"truncate dim must be >= 1, not {dim}")
    x = x[:, :dim]
    if normalize:
        x = l2_normalize(x)
    return np.ascontiguousarray(x, dtype=np.float32)


def calibrate(vectors: np.ndarray) -> np.ndarray:
    """int8 calibration ranges: a (2, dim) float32 array of per-dimension minima and maxima."""
    x = np.asarray(vectors, dtype=np.float32)
    return np.stack([x.min(axis=0), x.max(axis=0)]).astype(np.float32)


def quantize(vectors: np.ndarray, precision: str, ranges: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray | None]:
    """(codes, int8 ranges or None): float32 as is, int8 (bucketed per dimension), binary (packed
    sign bits, uint8). Uses sentence-transformers' ``quantize_embeddings`` when it is installed."""
    check_precision(precision)
    x = np.asarray(vectors, dtype=np.float32)
    if precision == "float32":
        return x, None
    if precision == "int8":
        ranges = calibrate(x) if ranges is None else np.asarray(ranges, dtype=np.float32)
    try:
        from sentence_transformers.quantization import quantize_embeddings
    except ImportError:
        quantize_embeddings = None
    if precision == "int8":
        if quantize_embeddings is not None:
            return np.asarray(quantize_embeddings(x, "int8", ranges=ranges), dtype=np.int8), ranges
        steps = _steps(ranges)
        return ((x - ranges[0]) / steps - 128).astype(np.int8), ranges
    if quantize_embeddings is not None:
        return np.asarray(quantize_embeddings(x, "ubinary"), dtype=np.uint8), None
    return np.packbits(x > 0, axis=-1), None


def _steps(ranges: np.ndarray) -> np.ndarray:
    steps = (ranges[1] - ranges[0]) / 255
    return np.where(steps > 0, steps, 1e-12).astype(np.float32)


def dequantize(codes: np.ndarray, precision: str, ranges: np.ndarray | None = None, dim: int | None = None
               ) -> np.ndarray:
    """Approximate float32 vectors of ``codes`` for scoring (see the module docstring)."""
    check_precision(precision)
    if precision == "float32":
        return np.asarray(codes, dtype=np.float32)
    if precision == "int8":
        if ranges is None:
            raise ConfigError("int8 vectors need their calibration ranges")
        ranges = np.asarray(ranges, dtype=np.float32)
        return ((np.asarray(codes, dtype=np.float32) + 128.0 + 0.5) * _steps(ranges) + ranges[0]).astype(np.float32)
    bits = np.unpackbits(np.asarray(codes, dtype=np.uint8), axis=-1)
    d = dim or bits.shape[1]
    bits = bits[:, :d].astype(np.float32)
    return ((2.0 * bits - 1.0) / np.sqrt(d)).astype(np.float32)


def bytes_per_vector(dim: int, precision: str) -> int:
    """Storage of one vector: 4 dim (float32), dim (int8), ceil(dim / 8) (binary)."""
    check_precision(precision)
    return {"float32": 4 * dim, "int8": dim, "binary": (dim + 7) // 8}[precision]


def compress(vectors: np.ndarray, dim: int | None, precision: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Truncate then quantize: (decoded float32 vectors used for scoring, stored codes, int8 ranges)."""
    x = truncate(vectors, dim)
    codes, ranges = quantize(x, precision)
    return dequantize(codes, precision, ranges, x.shape[1]), codes, ranges
