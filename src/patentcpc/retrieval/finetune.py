"""Contrastive fine-tuning of patent embedders (sentence-transformers on top of ``transformers``).

Training signals, alone or mixed with weights (see :func:`train_embedder`):

* ``multiview``: two text fields of the same patent are a positive pair (title <-> abstract,
  abstract <-> claims, ... every pair of fields the record has);
* ``cpc``: patents sharing CPC codes are positives; each anchor's positive is sampled with
  probability proportional to the Jaccard overlap of the two label sets (re-drawn every epoch), its
  hard negative comes from the same CPC section but shares no subclass (``cpc_loss: cosent`` trains
  on the graded Jaccard scores with CoSENT instead);
* ``citations``: (citing, cited) pairs from a TREC qrels file or a two-column CSV;
* ``classification``: a multi-label linear head on the pooled embedding, trained jointly with BCE
  (the "combined" fine-tuning of the embedding-benchmark literature).

Contrastive signals use ``MultipleNegativesRankingLoss`` (in-batch negatives plus the pair's hard
negative, when it has one) or, with ``cached: true``, ``CachedMultipleNegativesRankingLoss``
(GradCache: large batches in ``mini_batch_size`` chunks). Batches are packed so that no two pairs in a
batch share a patent or a CPC label: a patent of the same subclass is never an in-batch negative.

Mixing: every epoch each signal contributes ``weight x`` its number of batches (re-sampled when the
weight is above 1), and the steps of all signals are interleaved in a seeded random order.

The output folder is a sentence-transformers folder (``modules.json``, ``model.safetensors`` at the
root, so also a plain Hugging Face encoder folder) plus :data:`MANIFEST` recording the base model,
signals, weights, options, data and per-epoch losses; with ``classification`` the head is saved as
``classification_head.safetensors`` (labels in the manifest). It is written to a temporary folder
and moved into place; an existing folder is only replaced when patentcpc wrote it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from patentcpc.config import check_seed
from patentcpc.errors import ConfigError, DataError, ModelError

log = logging.getLogger(__name__)

SIGNALS = ("multiview", "cpc", "citations", "classification")
MANIFEST = "patentcpc_embedder.json"
HEAD_FILE = "classification_head.safetensors"


# --------------------------------------------------------------------------- options


@dataclass
class FinetuneOptions:
    """How an embedder is fine-tuned.

    Args:
        signals: signal -> sampling weight (see the module docstring), e.g. ``{"cpc": 1, "multiview": 1}``.
        epochs: passes over the signal data.
        max_steps: stop after this many optimizer steps (None: all epochs).
        batch_size: pairs (or texts, for classification) per step.
        lr: learning rate of the encoder (AdamW, linear warm-up then decay).
        head_lr: learning rate of the classification head.
        warmup_ratio: share of the steps spent warming up.
        weight_decay: AdamW weight decay.
        max_length: tokens kept per text during training.
        scale: inverse temperature of the ranking loss.
        hard_negatives: add a hard negative to each ``cpc`` pair (same section, other subclass).
        mine_negatives: pick hard negatives with the base model instead: the most similar patent that
            shares no label (``cpc`` and ``multiview``; costs one embedding pass over the corpus).
        cpc_loss: ``mnrl`` (sampled positives, in-batch negatives) or ``cosent`` (graded Jaccard scores).
        cached: use CachedMultipleNegativesRankingLoss (GradCache): the same loss and gradients, with
            the activations of only ``mini_batch_size`` texts held at a time (one more forward pass).
            None (default): on except on a CUDA GPU. Without it, one ``cpc`` step of 32 pairs with
            hard negatives at 256 tokens held 11.8 GB on a CPU (benchmarks/tour.md); with it, 2.2 GB.
        mini_batch_size: chunk size of the cached loss.
        open_batches: batches filled at once when packing label-disjoint batches (more: fewer shared
            labels in a batch, but smaller batches when a subclass is frequent).
        views: text fields used by ``multiview`` (default: title, abstract, claims, description present).
        level: CPC level of the labels (``cpc`` overlap and ``classification`` head).
        seed: seeds Python, NumPy and torch.
        device: torch device (default: cuda when available, else cpu).
    """

    signals: dict = field(default_factory=lambda: {"cpc": 1.0, "multiview": 1.0})
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 2e-5
    head_lr: float = 1e-3
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 256
    scale: float = 20.0
    hard_negatives: bool = True
    mine_negatives: bool = False
    cpc_loss: str = "mnrl"
    cached: bool | None = None  # None: GradCache except on a CUDA GPU (bounded memory on a laptop)
    mini_batch_size: int = 8
    open_batches: int = 4
    views: list[str] | None = None
    level: str = "subclass"
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.signals, str):
            self.signals = parse_signals(self.signals)
        if not self.signals:
            raise ConfigError("give at least one training signal (" + ", ".join(SIGNALS) + ")")
        for name, w in self.signals.items():
            if name not in SIGNALS:
                raise ConfigError(f"unknown signal '{name}': use {', '.join(SIGNALS)}")
            if not isinstance(w, (int, float)) or w <= 0:
                raise ConfigError(f"the weight of signal '{name}' must be a positive number, not {w!r}")
        if set(self.signals) == {"classification"}:
            raise ConfigError("classification trains a head jointly: combine it with a contrastive signal "
                              "(cpc, multiview or citations)")
        if self.epochs <= 0:
            raise ConfigError(f"epochs must be > 0, not {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, not {self.max_steps}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2 (in-batch negatives), not {self.batch_size}")
        if self.lr <= 0 or self.head_lr <= 0:
            raise ConfigError("learning rates must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), not {self.warmup_ratio}")
        if self.max_length < 8:
            raise ConfigError(f"max_length must be >= 8, not {self.max_length}")
        check_seed(self.seed, "--seed")
        if self.cpc_loss not in ("mnrl", "cosent"):
            raise ConfigError(f"cpc_loss must be mnrl or cosent, not '{self.cpc_loss}'")
        if self.mini_batch_size < 1:
            raise ConfigError(f"mini_batch_size must be >= 1, not {self.mini_batch_size}")
        if isinstance(self.views, str):
            self.views = [v.strip() for v in self.views.split(",") if v.strip()]


def parse_signals(signals: str, weights: str | None = None) -> dict[str, float]:
    """``"cpc,multiview"`` (+ ``"2,1"``) or ``"cpc:2,multiview:1"`` -> ``{"cpc": 2.0, "multiview": 1.0}``."""
    names, given = [], []
    for part in (p.strip() for p in signals.split(",") if p.strip()):
        name, _, w = part.partition(":")
        names.append(name.strip().lower())
        given.append(w.strip() or None)
    if weights:
        ws = [w.strip() for w in weights.split(",") if w.strip()]
        if len(ws) != len(names):
            raise ConfigError(f"--signal-weights has {len(ws)} value(s) for {len(names)} signal(s)")
        given = ws
    out: dict[str, float] = {}
    for name, w in zip(names, given, strict=True):
        if name not in SIGNALS:
            raise ConfigError(f"unknown signal '{name}': use {', '.join(SIGNALS)}")
        if name in out:
            raise ConfigError(f"signal '{name}' is given twice")
        try:
            out[name] = float(w) if w is not None else 1.0
        except ValueError:
            raise ConfigError(f"the weight of signal '{name}' must be a number, not '{w}'") from None
        if out[name] <= 0:
            raise ConfigError(f"the weight of signal '{name}' must be > 0, not {w}")
    if not out:
        raise ConfigError("give at least one training signal (" + ", ".join(SIGNALS) + ")")
    return out


# --------------------------------------------------------------------------- the corpus and its pairs


@dataclass
class Corpus:
    """Patents for training: the joined text view, labels and every text field on its own."""

    ids: list[str]
    texts: list[str]
    labels: list[list[str]]
    fields: dict[str, list[str | None]] = field(default_factory=dict)
    source: str = "<data>"  # the file it was read from, for messages

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(self.texts) != n or len(self.labels) != n or any(len(v) != n for v in self.fields.values()):
            raise ValueError("ids, texts, labels and fields must have one entry per patent")
        self._sets = [frozenset(ls) for ls in self.labels]

    def __len__(self) -> int:
        return len(self.ids)

    def label_sets(self) -> list[frozenset]:
        return self._sets


@dataclass(frozen=True)
class Pair:
    """A training example: anchor, positive, optional hard negative, a graded score, the patents
    (ids) and CPC labels involved (used to keep conflicting pairs out of one batch)."""

    anchor: str
    positive: str
    negative: str | None = None
    score: float = 1.0
    ids: tuple[str, ...] = ()
    labels: frozenset = frozenset()
    anchor_index: int = -1
    positive_field: str | None = None


def corpus_from_records(records: Sequence[dict], fields: Sequence[str] = ("title", "abstract", "claims"),
                        id_key: str = "id", label_key: str = "labels") -> Corpus:
    """A :class:`Corpus` from dicts (unit tests, library use): text view = present fields joined by newline."""
    ids, texts, labels = [], [], []
    per_field: dict[str, list[str | None]] = {f: [] for f in fields}
    for n, r in enumerate(records):
        ids.append(str(r.get(id_key, n)))
        vals = {f: (str(r[f]).strip() or None) if r.get(f) is not None else None for f in fields}
        for f in fields:
            per_field[f].append(vals[f])
        texts.append("\n".join(v for v in vals.values() if v))
        labels.append(list(r.get(label_key) or []))
    return Corpus(ids, texts, labels, {f: v for f, v in per_field.items() if any(x for x in v)})


def load_corpus(source: str, *, text_fields: Sequence[str] | None = None, views: Sequence[str] | None = None,
                label_field: str | None = None, id_field: str | None = None, level: str = "subclass",
                on_bad_row: str = "error", split: str = "train") -> Corpus:
    """Load ``source`` (any format patentcpc reads) with its joined view and each text field separately."""
    from patentcpc.data import VIEW_FIELD_ALIASES, VIEW_FIELDS, _find_column, column_key, load_data, read_raw

    data = load_data(source, text_fields=text_fields, label_field=label_field, id_field=id_field, level=level,
                     on_bad_row=on_bad_row, split=split, require_labels=False)
    ids, texts, labels = data.ids, data.texts, data.labels
    if len(set(ids)) != len(ids):
        raise DataError(source, "patent ids are not unique; name a unique id column with --id-field")
    columns = read_raw(source, split).column_names
    keys: dict[str, str] = {}
    for c in columns:
        keys.setdefault(column_key(c), c)
    if views:
        wanted = [(v, v if v in columns else _find_column(keys, VIEW_FIELD_ALIASES.get(v, (v,)))) for v in views]
        missing = [v for v, c in wanted if c is None]
        if missing:
            raise DataError(source, f"has no field(s) {', '.join(missing)} for multiview (columns: "
                                    f"{', '.join(columns)})")
    else:
        wanted = [(f, _find_column(keys, VIEW_FIELD_ALIASES[f])) for f in VIEW_FIELDS]
    fields: dict[str, list[str | None]] = {}
    index = {i: n for n, i in enumerate(ids)}
    for name, col in wanted:
        if col is None:
            continue
        part = load_data(source, text_fields=[col], label_field=label_field, id_field=id_field, level=level,
                         on_bad_row="skip", split=split, require_labels=False)
        vals: list[str | None] = [None] * len(ids)
        for i, t in zip(part.ids, part.texts, strict=True):
            if i in index and t.strip():
                vals[index[i]] = t
        fields[name] = vals
    return Corpus(ids, texts, labels, fields, str(source))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _sections(labels: frozenset) -> set[str]:
    return {c[:1] for c in labels if c}


def multiview_pairs(corpus: Corpus, views: Sequence[str] | None = None) -> list[Pair]:
    """One pair per patent and pair of its present fields (in field order: title -> abstract, ...)."""
    names = [v for v in (views or list(corpus.fields)) if v in corpus.fields]
    if len(names) < 2:
        return []
    sets = corpus.label_sets()
    pairs = []
    for i, pid in enumerate(corpus.ids):
        present = [(f, corpus.fields[f][i]) for f in names if corpus.fields[f][i]]
        for (_, a), (fb, b) in combinations(present, 2):
            if a != b:
                pairs.append(Pair(a, b, None, 1.0, (pid,), sets[i], i, fb))
    return pairs


def _label_postings(sets: Sequence[frozenset]) -> dict[str, list[int]]:
    postings: dict[str, list[int]] = {}
    for i, s in enumerate(sets):
        for c in s:
            postings.setdefault(c, []).append(i)
    return postings


def cpc_pairs(corpus: Corpus, rng: np.random.Generator, hard_negatives: bool = True) -> list[Pair]:
    """One pair per labelled patent: a positive drawn with probability proportional to the Jaccard
    overlap of the label sets, and (``hard_negatives``) a negative from the same CPC section sharing
    no label (any patent sharing no label when the section has none)."""
    sets = corpus.label_sets()
    postings = _label_postings(sets)
    by_section: dict[str, list[int]] = {}
    for i, s in enumerate(sets):
        for sec in _sections(s):
            by_section.setdefault(sec, []).append(i)
    labelled = [i for i, s in enumerate(sets) if s]
    pairs = []
    for i in labelled:
        s = sets[i]
        cands = sorted({j for c in s for j in postings[c] if j != i and corpus.texts[j] != corpus.texts[i]})
        if not cands:
            continue
        w = np.array([jaccard(s, sets[j]) for j in cands])
        j = cands[int(rng.choice(len(cands), p=w / w.sum()))]
        neg = None
        neg_id = ()
        if hard_negatives:
            pool = sorted({k for sec in _sections(s) for k in by_section.get(sec, ()) if not (sets[k] & s)})
            if not pool:
                pool = [k for k in labelled if not (sets[k] & s)]
            if pool:
                k = pool[int(rng.integers(len(pool)))]
                neg, neg_id = corpus.texts[k], (corpus.ids[k],)
        pairs.append(Pair(corpus.texts[i], corpus.texts[j], neg, float(w[cands.index(j)]),
                          (corpus.ids[i], corpus.ids[j], *neg_id), s | sets[j], i, None))
    return pairs


def read_citation_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(citing, cited) id pairs from TREC qrels (``qid 0 docid rel``; rel > 0 kept) or a two-column
    CSV/TSV (a header row is allowed)."""
    import csv

    p = Path(path)
    if not p.exists():
        raise DataError(p, "file not found")
    lines = p.read_text(encoding="utf-8").splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    out: list[tuple[str, str]] = []
    if len(first.split()) == 4 and "," not in first and "\t" not in first.strip():
        for n, ln in enumerate(lines, 1):
            parts = ln.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise DataError(p, f"expected 'query_id 0 doc_id relevance', got {len(parts)} fields", row=n)
            try:
                rel = float(parts[3])
            except ValueError:
                raise DataError(p, f"relevance '{parts[3]}' is not a number", row=n) from None
            if rel > 0:
                out.append((parts[0], parts[2]))
    else:
        delim = "\t" if "\t" in first else ","
        for n, row in enumerate(csv.reader(lines, delimiter=delim), 1):
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) < 2:
                raise DataError(p, "expected two columns: citing id, cited id", row=n)
            out.append((row[0].strip(), row[1].strip()))
    if not out:
        raise DataError(p, "has no citation pairs")
    return out


def citation_pairs(corpus: Corpus, pairs: Sequence[tuple[str, str]], source: str = "<citations>") -> list[Pair]:
    """Pairs whose both patents are in the corpus (a header row or unknown ids are dropped)."""
    index = {pid: i for i, pid in enumerate(corpus.ids)}
    sets = corpus.label_sets()
    out = []
    for a, b in pairs:
        i, j = index.get(a), index.get(b)
        if i is None or j is None or i == j:
            continue
        out.append(Pair(corpus.texts[i], corpus.texts[j], None, 1.0, (a, b), sets[i] | sets[j], i, None))
    if not out:
        raise DataError(source, "no citation pair has both patents in the training data (match the ids of --data)")
    return out


def classification_examples(corpus: Corpus) -> tuple[list[str], list[int], np.ndarray]:
    """(label vocabulary, indices of labelled patents, multi-hot matrix of those patents)."""
    vocab = sorted({c for s in corpus.labels for c in s})
    col = {c: n for n, c in enumerate(vocab)}
    rows = [i for i, s in enumerate(corpus.labels) if s]
    y = np.zeros((len(rows), len(vocab)), dtype=np.float32)
    for r, i in enumerate(rows):
        for c in corpus.labels[i]:
            y[r, col[c]] = 1.0
    return vocab, rows, y


def conflict_free_batches(pairs: Sequence[Pair], batch_size: int, rng: np.random.Generator,
                          max_open: int = 64) -> list[list[Pair]]:
    """Shuffle and pack pairs into batches in which no two pairs share a patent id or a text, and as
    far as possible no CPC label (so few in-batch negatives are really positives). A pair that fits
    no open batch opens a new one while fewer than ``max_open`` are open; otherwise it joins the open
    batch sharing the fewest labels with it (a frequent subclass would else cap the batch size)."""
    order = rng.permutation(len(pairs))
    open_: list[tuple[list[Pair], set, set]] = []
    done: list[list[Pair]] = []
    for n in order:
        p = pairs[int(n)]
        keys = set(p.ids) | {p.anchor, p.positive} | ({p.negative} if p.negative else set())
        for slot in open_:
            batch, used_keys, used_labels = slot
            if not (keys & used_keys) and not (p.labels & used_labels):
                batch.append(p)
                used_keys |= keys
                used_labels |= p.labels
                if len(batch) >= batch_size:
                    open_.remove(slot)
                    done.append(batch)
                break
        else:
            fits = [slot for slot in open_ if not (keys & slot[1])]
            if len(open_) >= max_open and fits:  # best effort: the open batch sharing the fewest labels
                slot = min(fits, key=lambda sl: len(p.labels & sl[2]))
                slot[0].append(p)
                slot[1].update(keys)
                slot[2].update(p.labels)
                if len(slot[0]) >= batch_size:
                    open_.remove(slot)
                    done.append(slot[0])
                continue
            open_.append(([p], set(keys), set(p.labels)))
            if len(open_) > max_open:
                done.append(open_.pop(0)[0])
    done.extend(b for b, _, _ in open_)
    return [b for b in done if len(b) >= 2]


def mine_hard_negatives(pairs: Sequence[Pair], corpus: Corpus, embed: Callable[[list[str]], np.ndarray]
                        ) -> list[Pair]:
    """Replace each pair's negative with the patent most similar to its anchor (under ``embed``, the
    base model) that shares no label and no id with the pair; its text is taken from the positive's
    field (so title -> abstract pairs get an abstract as negative)."""
    from dataclasses import replace

    vecs = embed(corpus.texts)
    sets = corpus.label_sets()
    index = {pid: i for i, pid in enumerate(corpus.ids)}
    out = []
    for p in pairs:
        if p.anchor_index < 0:
            out.append(p)
            continue
        sims = vecs @ vecs[p.anchor_index]
        banned = {index[i] for i in p.ids if i in index}
        for k in np.argsort(-sims):
            k = int(k)
            if k in banned or (sets[k] & p.labels) or (not sets[k] and p.labels):
                continue
            text = corpus.fields[p.positive_field][k] if p.positive_field in corpus.fields else corpus.texts[k]
            if text:
                out.append(replace(p, negative=text, ids=(*p.ids, corpus.ids[k])))
                break
        else:
            out.append(p)
    return out


# --------------------------------------------------------------------------- the model


def _losses_module():
    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 5
        from sentence_transformers import losses
    return losses


def _require_st():
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise ModelError("train-embeddings needs sentence-transformers: pip install 'patentcpc[embeddings]'") from None


def load_sentence_transformer(spec: str, device: str | None = None, max_length: int | None = None):
    """A ``SentenceTransformer`` for a local sentence-transformers folder, a plain Hugging Face
    encoder folder (mean pooling + normalization added) or a hub id."""
    _require_st()
    import torch
    from sentence_transformers import SentenceTransformer, models

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    folder = Path(spec)
    try:
        if folder.is_dir() and not (folder / "modules.json").exists():
            word = models.Transformer(spec, max_seq_length=max_length or 512)
            dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
            pool = models.Pooling(dim(), pooling_mode="mean")
            model = SentenceTransformer(modules=[word, pool, models.Normalize()], device=dev)
        else:
            model = SentenceTransformer(spec, device=dev)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load encoder '{spec}': {str(exc).splitlines()[0]}") from None
    if max_length:
        model.max_seq_length = max_length
    return model


def embedding_dim(model) -> int:
    fn = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(fn())


def _features(model, texts: Sequence[str]) -> dict:
    fn = getattr(model, "preprocess", None) or model.tokenize
    feats = fn(list(texts))
    return {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in feats.items()}


class _Head:
    """A linear multi-label head on the sentence embedding."""

    def __init__(self, dim: int, vocab: list[str], device):
        import torch

        self.vocab = vocab
        self.linear = torch.nn.Linear(dim, len(vocab)).to(device)

    def loss(self, emb, y):
        import torch

        return torch.nn.functional.binary_cross_entropy_with_logits(self.linear(emb), y)


@dataclass
class FinetuneResult:
    model: object
    history: list[dict]
    n_examples: dict[str, int]
    steps: int
    seconds: float
    head: object | None = None


def _contrastive_loss(model, opts: FinetuneOptions, signal: str):
    losses = _losses_module()
    if signal == "cpc" and opts.cpc_loss == "cosent":
        return losses.CoSENTLoss(model)
    cached = opts.cached if opts.cached is not None else getattr(model.device, "type", "cpu") != "cuda"
    if cached:
        return losses.CachedMultipleNegativesRankingLoss(model, scale=opts.scale, mini_batch_size=opts.mini_batch_size,
                                                         show_progress_bar=False)
    return losses.MultipleNegativesRankingLoss(model, scale=opts.scale)


def _batch_inputs(model, batch: list[Pair], cosent: bool):
    """(features per column, labels) for a contrastive batch."""
    import torch

    if cosent:  # graded pairs: (anchor, positive, jaccard) and (anchor, negative, 0)
        a, b, s = [], [], []
        for p in batch:
            a.append(p.anchor)
            b.append(p.positive)
            s.append(p.score)
            if p.negative:
                a.append(p.anchor)
                b.append(p.negative)
                s.append(0.0)
        return [_features(model, a), _features(model, b)], torch.tensor(s, dtype=torch.float32, device=model.device)
    cols = [[p.anchor for p in batch], [p.positive for p in batch]]
    if all(p.negative for p in batch):
        cols.append([p.negative for p in batch])
    return [_features(model, c) for c in cols], None


def build_signal_pairs(corpus: Corpus, opts: FinetuneOptions, rng: np.random.Generator,
                       citations: Sequence[tuple[str, str]] | None = None, citations_source: str = "<citations>"
                       ) -> dict[str, list[Pair]]:
    """The pairs of every contrastive signal of ``opts`` (cpc pairs are re-drawn per epoch by the trainer)."""
    out: dict[str, list[Pair]] = {}
    if "multiview" in opts.signals:
        out["multiview"] = multiview_pairs(corpus, opts.views)
        if not out["multiview"]:
            raise DataError(corpus.source, "multiview needs at least two text fields per record (e.g. title and "
                                      f"abstract); the data has {', '.join(corpus.fields) or 'none'}")
    if "cpc" in opts.signals:
        out["cpc"] = cpc_pairs(corpus, rng, opts.hard_negatives)
        if not out["cpc"]:
            raise DataError(corpus.source, "cpc needs patents that share CPC labels; none do")
    if "citations" in opts.signals:
        if citations is None:
            raise ConfigError("the citations signal needs a citation file (--citations)")
        out["citations"] = citation_pairs(corpus, citations, citations_source)
    return out


def train_embedder(model_spec: str, corpus: Corpus, options: FinetuneOptions | None = None,
                   citations: Sequence[tuple[str, str]] | None = None, citations_source: str = "<citations>",
                   progress: bool = False, say: Callable[[str], None] | None = None) -> FinetuneResult:
    """Fine-tune ``model_spec`` on ``corpus`` with the signals of ``options`` (see the module docstring)."""
    import torch

    opts = options or FinetuneOptions()
    say = say or log.info
    random.seed(opts.seed)
    np.random.seed(opts.seed)
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    pairs = build_signal_pairs(corpus, opts, rng, citations, citations_source)  # data errors before the model loads
    if "classification" in opts.signals and not classification_examples(corpus)[1]:
        raise DataError(corpus.source, "classification needs labelled patents")
    model = load_sentence_transformer(model_spec, opts.device, opts.max_length)
    if opts.mine_negatives:
        say("mining hard negatives with the base model")
        model.eval()

        def _embed(texts):
            return model.encode(list(texts), batch_size=opts.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)

        for name in ("multiview", "cpc"):
            if name in pairs:
                pairs[name] = mine_hard_negatives(pairs[name], corpus, _embed)
    losses = {name: _contrastive_loss(model, opts, name) for name in pairs}
    head = None
    cls_rows: list[int] = []
    if "classification" in opts.signals:
        vocab, cls_rows, y_all = classification_examples(corpus)
        if not cls_rows:
            raise DataError(corpus.source, "classification needs labelled patents")
        head = _Head(embedding_dim(model), vocab, model.device)
    n_examples = {name: len(p) for name, p in pairs.items()}
    if head is not None:
        n_examples["classification"] = len(cls_rows)

    def epoch_schedule(epoch_rng, redraw: bool) -> list[tuple[str, object]]:
        steps: list[tuple[str, object]] = []
        for name, weight in opts.signals.items():
            if name == "classification":
                order = epoch_rng.permutation(len(cls_rows))
                batches = [order[i:i + opts.batch_size] for i in range(0, len(order), opts.batch_size)]
            else:
                src = cpc_pairs(corpus, epoch_rng, opts.hard_negatives) if (
                    name == "cpc" and redraw and not opts.mine_negatives) else pairs[name]
                batches = conflict_free_batches(src, opts.batch_size, epoch_rng, opts.open_batches)
            if not batches:  # e.g. no pair drawn for this signal this epoch: nothing to schedule
                continue
            take = max(1, int(round(weight * len(batches))))
            idx = [int(i) for i in epoch_rng.permutation(len(batches))]
            while len(idx) < take:
                idx += [int(i) for i in epoch_rng.permutation(len(batches))]
            steps += [(name, batches[i]) for i in idx[:take]]
        return [steps[int(i)] for i in epoch_rng.permutation(len(steps))]

    steps_done = [0]
    full_epochs = int(np.ceil(opts.epochs))
    first = epoch_schedule(np.random.default_rng([opts.seed, 0]), False)
    per_epoch = len(first)
    total = int(round(per_epoch * opts.epochs))
    if opts.max_steps:
        total = min(total, opts.max_steps)
    total = max(total, 1)
    params = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": opts.lr,
               "weight_decay": opts.weight_decay}]
    if head is not None:
        params.append({"params": list(head.linear.parameters()), "lr": opts.head_lr, "weight_decay": 0.0})
    optim = torch.optim.AdamW(params)
    warm = int(opts.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: (s + 1) / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    history: list[dict] = []
    t0 = time.perf_counter()
    model.train()
    bar = None
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]train-embeddings"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                       TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
        task = bar.add_task("steps", total=total, info="")
        bar.start()
    try:
        for epoch in range(full_epochs):
            schedule = first if epoch == 0 else epoch_schedule(np.random.default_rng([opts.seed, epoch]), True)
            sums: dict[str, list[float]] = {}
            for name, batch in schedule:
                if steps_done[0] >= total:
                    break
                if name == "classification":
                    rows = [cls_rows[int(i)] for i in batch]
                    emb = model(_features(model, [corpus.texts[i] for i in rows]))["sentence_embedding"]
                    y = torch.tensor(y_all[np.asarray(batch)], device=model.device)
                    loss = head.loss(emb, y)
                else:
                    feats, labels = _batch_inputs(model, batch, name == "cpc" and opts.cpc_loss == "cosent")
                    loss = losses[name](feats, labels)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for g in params for p in g["params"]], 1.0)
                optim.step()
                sched.step()
                optim.zero_grad(set_to_none=True)
                steps_done[0] += 1
                sums.setdefault(name, []).append(float(loss.detach()))
                if bar is not None:
                    bar.update(task, advance=1, info=f"epoch {epoch + 1} {name} loss {sums[name][-1]:.4f}")
                if steps_done[0] % max(1, total // 10) == 0 and (bar is None or not bar.console.is_terminal):
                    say(f"step {steps_done[0]}/{total} ({time.perf_counter() - t0:.0f}s): {name} loss "
                        f"{sums[name][-1]:.4f}")
            history.append({"epoch": epoch + 1, **{f"loss_{k}": float(np.mean(v)) for k, v in sums.items()},
                            "steps": steps_done[0]})
            say(f"epoch {epoch + 1}: " + ", ".join(f"{k} loss {np.mean(v):.4f}" for k, v in sums.items()))
            if steps_done[0] >= total:
                break
    finally:
        if bar is not None:
            bar.stop()
    model.eval()
    return FinetuneResult(model, history, n_examples, steps_done[0], time.perf_counter() - t0, head)


def contrastive_loss(model, pairs: Sequence[Pair], scale: float = 20.0, batch_size: int = 32) -> float:
    """Mean MultipleNegativesRankingLoss of ``pairs`` (in order, no gradient): for checks and tests."""
    import torch

    loss_fn = _losses_module().MultipleNegativesRankingLoss(model, scale=scale)
    was_training = model.training
    model.eval()
    vals = []
    with torch.no_grad():
        for i in range(0, len(pairs), batch_size):
            batch = list(pairs[i:i + batch_size])
            if len(batch) < 2:
                continue
            feats, _ = _batch_inputs(model, batch, cosent=False)
            vals.append(float(loss_fn(feats, None)))
    model.train(was_training)
    return float(np.mean(vals)) if vals else float("nan")


# --------------------------------------------------------------------------- saving


def is_patentcpc_embedder(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def save_embedder(result: FinetuneResult, folder: str | os.PathLike, base_model: str, options: FinetuneOptions,
                  data_info: dict | None = None) -> Path:
    """Write the fine-tuned model (sentence-transformers folder, safetensors) and :data:`MANIFEST`
    atomically; an existing ``folder`` is replaced only when patentcpc wrote it."""
    from patentcpc.io import atomic_dir

    folder = Path(folder)
    with atomic_dir(folder, kind="encoder") as tmp:  # never over a folder patentcpc did not write
        result.model.save(str(tmp), create_model_card=False, safe_serialization=True)
        head_info = None
        if result.head is not None:
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in result.head.linear.state_dict().items()}
            save_file(state, str(tmp / HEAD_FILE))
            head_info = {"file": HEAD_FILE, "labels": result.head.vocab, "level": options.level}
        from patentcpc import __version__

        manifest = {
            "format": 1, "kind": "patentcpc-embedder", "patentcpc_version": __version__,
            "base_model": base_model, "signals": dict(options.signals), "options": asdict(options),
            "data": data_info or {}, "examples": result.n_examples, "steps": result.steps,
            "train_seconds": round(result.seconds, 2), "history": result.history,
            "embedding_dim": embedding_dim(result.model),
            "classification_head": head_info,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder


def read_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise DataError(folder, f"not a patentcpc embedder (no {MANIFEST})")
    from patentcpc.folder_files import read_folder_json

    return read_folder_json(folder, MANIFEST, error=DataError, what="the embedder folder")
