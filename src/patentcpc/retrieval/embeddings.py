"""Document embeddings: any Hugging Face encoder or sentence-transformers folder -> unit vectors.

A *model spec* names where vectors come from:

* a local folder or hub id of a Hugging Face encoder, or a sentence-transformers folder (its
  ``modules.json``, pooling config and ``max_seq_length`` are honoured);
* ``arch:NAME``: a random-init encoder from :data:`patentcpc.kinds.transformer.model.ARCH_PRESETS`
  (a floor for benchmarks, seeded so that it is reproducible);
* ``lsa`` or ``lsa:DIM``: TF-IDF + truncated SVD fitted on the corpus being embedded (a classical
  baseline; the only spec that needs :meth:`Embedder.fit`).

Transformer embeddings are ``mean`` or ``cls`` pooled over the last hidden state, L2 normalized,
computed in batches of texts of similar length (sorted by token count, then put back in order).
Mean pooling + normalization of ``transformers.AutoModel`` reproduces sentence-transformers.

Saved embeddings are ``.npz`` (arrays ``embeddings`` float32, ``ids`` unicode, ``meta`` a JSON
string) or ``.parquet`` (columns ``id``, ``embedding``; meta in the schema metadata), written
atomically and read without unpickling.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from patentcpc.errors import ConfigError, DataError, ModelError
from patentcpc.numeric import l2_normalize, pool

POOLINGS = ("mean", "cls", "last")  # last: the last non-padding token (decoder-only models)


@dataclass
class EmbedOptions:
    """How texts become vectors.

    Args:
        pooling: ``mean`` or ``cls``; None takes a sentence-transformers folder's own pooling, else mean.
        normalize: L2-normalize the vectors (cosine similarity = inner product).
        batch_size: texts per forward pass.
        max_length: tokens kept per text; None: the model's ``max_seq_length``, else at most 512.
        device: torch device (default: cuda when available, else cpu).
        seed: random-init seed for ``arch:`` specs.
        lsa_dim: SVD dimensions of ``lsa`` (overridden by ``lsa:DIM``).
        truncate_dim: keep the first N components (Matryoshka truncation), re-normalized.
        query_prefix: text put before every query (not documents); None: the model's own where it
            expects one (Qwen3-Embedding's instruction), else none.
    """

    pooling: str | None = None
    normalize: bool = True
    batch_size: int = 32
    max_length: int | None = None
    device: str | None = None
    seed: int = 0
    lsa_dim: int = 256
    truncate_dim: int | None = None
    query_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, not '{self.pooling}'")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, not {self.batch_size}")
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"max_length must be >= 2, not {self.max_length}")
        if self.lsa_dim < 1:
            raise ConfigError(f"lsa_dim must be >= 1, not {self.lsa_dim}")
        if self.truncate_dim is not None and self.truncate_dim < 1:
            raise ConfigError(f"truncate_dim must be >= 1, not {self.truncate_dim}")


class Embedder:
    """Texts -> float32 matrix. ``fit`` is a no-op except for corpus-fitted baselines."""

    name: str = "embedder"
    needs_fit: bool = False

    def fit(self, texts: Sequence[str]) -> Embedder:
        return self

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"model": self.name}

    query_prefix: str = ""

    def encode_queries(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Vectors of search queries: :meth:`encode` of ``query_prefix + text``."""
        return self.encode([self.query_prefix + t for t in texts], progress=progress)


class TransformerEmbedder(Embedder):
    """A Hugging Face encoder with mean or CLS pooling."""

    def __init__(self, name: str, encoder, tokenizer, pooling: str, normalize: bool, max_length: int,
                 batch_size: int, device: str | None = None):
        import torch

        self.name, self.encoder, self.tokenizer = name, encoder, tokenizer
        self.pooling, self.normalize, self.max_length, self.batch_size = pooling, normalize, max_length, batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.encoder.to(self.device).eval()

    @property
    def dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    def describe(self) -> dict:
        return {"model": self.name, "pooling": self.pooling, "normalize": self.normalize,
                "max_length": self.max_length, "dim": self.dim}

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        import torch

        texts = [t if t.strip() else " " for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=False)["input_ids"]
        order = np.argsort([-len(x) for x in ids], kind="stable")  # longest first: padding waste is small
        batches = [order[i: i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        bar = None
        if progress:  # on stderr, counted in documents, with an ETA (shown in logs and pipes too)
            import sys

            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), unit="doc", desc=f"embedding with {Path(self.name).name}", file=sys.stderr,
                       smoothing=0.1)
        with torch.inference_mode():
            for idx in batches:
                enc = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
                mask = enc["attention_mask"].to(self.device)
                hidden = self.encoder(input_ids=enc["input_ids"].to(self.device), attention_mask=mask).last_hidden_state
                pooled = pool(hidden, mask, self.pooling)
                out[idx] = pooled.float().cpu().numpy()
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        return l2_normalize(out) if self.normalize else out


class LSAEmbedder(Embedder):
    """TF-IDF (word 1-2 grams, sublinear tf) + truncated SVD, fitted on the corpus."""

    needs_fit = True

    def __init__(self, dim: int = 256, normalize: bool = True, seed: int = 0):
        self.dim, self.normalize, self.seed = dim, normalize, seed
        self.name = f"lsa:{dim}"
        self._pipe = None

    def fit(self, texts: Sequence[str]) -> LSAEmbedder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1, max_features=200_000,
                                stop_words="english")
        n_terms = len(tfidf.fit(texts).vocabulary_)
        dim = max(1, min(self.dim, len(texts) - 1, n_terms - 1))
        self._pipe = make_pipeline(tfidf, TruncatedSVD(dim, random_state=self.seed)).fit(texts)
        return self

    def describe(self) -> dict:
        return {"model": self.name, "normalize": self.normalize}

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if self._pipe is None:
            raise ModelError("the lsa embedder must be fitted on a corpus first")
        x = self._pipe.transform(list(texts)).astype(np.float32)
        return l2_normalize(x) if self.normalize else x


def _sentence_transformers_config(folder: Path) -> dict:
    """Encoder sub-folder, pooling, normalization and max length of a sentence-transformers folder."""
    from patentcpc.folder_files import read_folder_json

    where = {"error": ModelError, "what": "the embedding model folder"}  # bounded reads, nothing outside it
    cfg = {"encoder_dir": folder, "pooling": None, "normalize": False, "max_length": None}
    modules = read_folder_json(folder, "modules.json", **where)
    if not isinstance(modules, list) or not all(isinstance(m, dict) and isinstance(m.get("type", ""), str)
                                                and isinstance(m.get("path", ""), str) for m in modules):
        raise ModelError(f"{folder / 'modules.json'}: must be a list of {{type, path}} objects")
    for mod in modules:
        kind, rel = mod.get("type", ""), mod.get("path", "")
        if os.path.isabs(rel) or ".." in Path(rel).parts:
            raise ModelError(f"{folder / 'modules.json'}: module path '{rel}' leaves the folder")
        sub = folder / rel
        if kind.endswith("Transformer"):
            cfg["encoder_dir"] = sub
        elif kind.endswith("Pooling") and (sub / "config.json").exists():
            pool = read_folder_json(folder, Path(rel) / "config.json", **where)
            cfg["pooling"] = "cls" if isinstance(pool, dict) and pool.get("pooling_mode_cls_token") else "mean"
        elif kind.endswith("Normalize"):
            cfg["normalize"] = True
    for place in (cfg["encoder_dir"], folder):
        if (place / "sentence_bert_config.json").exists():
            sb = read_folder_json(folder, (place / "sentence_bert_config.json").relative_to(folder), **where)
            max_length = sb.get("max_seq_length") if isinstance(sb, dict) else None
            cfg["max_length"] = max_length if type(max_length) is int and max_length > 0 else None
            break
    return cfg


class TruncatedEmbedder(Embedder):
    """Another embedder's vectors cut to their first ``dim`` components (and re-normalized)."""

    def __init__(self, inner: Embedder, dim: int, normalize: bool = True):
        self.inner, self.dim, self.normalize = inner, dim, normalize
        self.name, self.needs_fit = inner.name, inner.needs_fit

    def fit(self, texts: Sequence[str]) -> TruncatedEmbedder:
        self.inner.fit(texts)
        return self

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        from patentcpc.retrieval.quantize import truncate

        return truncate(self.inner.encode(texts, progress=progress), self.dim, self.normalize)

    def describe(self) -> dict:
        return {**self.inner.describe(), "dim": self.dim, "truncate_dim": self.dim}


def load_embedder(spec: str, options: EmbedOptions | None = None) -> Embedder:
    """An :class:`Embedder` for a model spec (see the module docstring), truncated when
    ``options.truncate_dim`` is set."""
    opts = options or EmbedOptions()
    embedder = _load_embedder(spec, opts)
    if opts.truncate_dim:
        return TruncatedEmbedder(embedder, opts.truncate_dim, opts.normalize)
    return embedder


def _load_embedder(spec: str, options: EmbedOptions | None = None) -> Embedder:
    opts = options or EmbedOptions()
    spec = spec.strip()
    if not spec:
        raise ModelError("empty model spec")
    if spec == "lsa" or spec.startswith("lsa:"):
        dim = opts.lsa_dim
        if ":" in spec:
            try:
                dim = int(spec.split(":", 1)[1])
            except ValueError:
                raise ModelError(f"bad model spec '{spec}': use lsa:DIM with an integer DIM") from None
        return LSAEmbedder(dim, opts.normalize, opts.seed)
    if os.path.isdir(spec):  # a local folder: no link out of it, no special or oversized file (transformers
        # reads safetensors only here, so a download's pickle weights beside them are left alone)
        from patentcpc.folder_files import check_folder_tree

        check_folder_tree(spec, what="the embedding model folder", refuse_pickle=False)
    arch = spec[5:] if spec.startswith("arch:") else None
    folder = Path(spec)
    st = _sentence_transformers_config(folder) if arch is None and (folder / "modules.json").exists() else None
    source = None if arch is not None else str(st["encoder_dir"]) if st else spec
    # the model kind that trains this spec builds its backbone (an encoder, or a decoder: registry.select_model)
    from patentcpc.registry import select_model

    build = select_model(source, arch).hook("embedding_backbone", spec)
    module, tok, default_pooling, prefix = build(source, arch, opts.seed)
    limit = getattr(module.config, "max_position_embeddings", 512) or 512
    if default_pooling == "last":  # a decoder
        max_length = opts.max_length or min(512, limit)
    elif arch is not None:
        max_length = opts.max_length or 512
    else:
        max_length = opts.max_length or (st and st["max_length"]) or min(int(tok.model_max_length or 512), 512, limit)
    pooling = opts.pooling or (st and st["pooling"]) or default_pooling
    emb = TransformerEmbedder(spec, module, tok, pooling, opts.normalize, int(max_length), opts.batch_size,
                              opts.device)
    if default_pooling == "last":  # decoders: an instruction before queries where the model wants one
        emb.query_prefix = opts.query_prefix if opts.query_prefix is not None else (prefix or "")
    return emb


# --------------------------------------------------------------------------- saving / loading

EMBEDDING_SUFFIXES = (".npz", ".parquet")


def check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in EMBEDDING_SUFFIXES:
        raise ConfigError(f"{path}: embeddings are saved as .npz or .parquet, not '{path.suffix or '(none)'}'")
    return suffix


def save_embeddings(path: str | os.PathLike, ids: Sequence[str], vectors: np.ndarray, meta: dict | None = None) -> Path:
    """Write ``vectors`` (one row per id) with their ids and ``meta`` to .npz or .parquet, atomically.
    float vectors are stored as float32; int8 / uint8 codes (quantized embeddings) as they are."""
    path = Path(path)
    suffix = check_suffix(path)
    vectors = np.asarray(vectors)
    if vectors.dtype not in (np.int8, np.uint8):
        vectors = vectors.astype(np.float32)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ValueError(f"{len(ids)} ids but embeddings of shape {vectors.shape}")
    from patentcpc.io import atomic_path

    meta_json = json.dumps(meta or {})
    with atomic_path(path) as tmp:
        if suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez(fh, embeddings=vectors, ids=np.array([str(i) for i in ids], dtype=str),
                         meta=np.array(meta_json))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
            table = pa.table({"id": pa.array([str(i) for i in ids], pa.string()), "embedding": emb})
            table = table.replace_schema_metadata({"patentcpc": meta_json})
            pq.write_table(table, tmp)
    return path


def load_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray, dict]:
    """(ids, matrix, meta) from a file written by :func:`save_embeddings`: float32, or the int8 / uint8
    codes of quantized embeddings (``meta["precision"]`` says which)."""
    path = Path(path)
    suffix = check_suffix(path)
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return [str(i) for i in z["ids"]], _stored(z["embeddings"]), json.loads(str(z["meta"]))
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(b"patentcpc", b"{}"))
        col = table.column("embedding").combine_chunks()
        dim = col.type.list_size if hasattr(col.type, "list_size") else len(col[0])
        vectors = _stored(np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(-1, dim))
        return table.column("id").to_pylist(), vectors, meta
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(path, f"not an embeddings file ({str(exc).splitlines()[0]})") from None


def _stored(x: np.ndarray) -> np.ndarray:
    return x if x.dtype in (np.int8, np.uint8) else x.astype(np.float32)


def embed_data(embedder: Embedder, texts: Sequence[str], progress: bool = False) -> np.ndarray:
    """Fit the embedder on ``texts`` when it needs fitting, then embed them."""
    if embedder.needs_fit:
        embedder.fit(texts)
    return embedder.encode(texts, progress=progress)


def options_dict(options: EmbedOptions) -> dict:
    return asdict(options)
