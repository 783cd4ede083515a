"""Prediction: scores -> ranked CPC codes with titles and hierarchy paths; fast batched transformer
inference; streaming files in, CSV / TSV / JSON Lines / Parquet out.

Read top to bottom:

* :func:`format_predictions`, :func:`predict_texts`, :func:`write_jsonl`:
  scores to ranked codes, for any model kind;
* :class:`InferenceOptions`, :func:`plan_batches`, :func:`predict_logits`: the transformer batch
  predictor. Documents are tokenized once, sorted by length and cut into batches under a *token
  budget* (rows x longest row), so padding is small and batch memory bounded; rows come back in
  input order. ``torch.inference_mode``, SDPA attention, bf16 autocast on a GPU, optional
  ``torch.compile``, and on a CUDA GPU a padding-free path for ModernBERT (the documents of a batch
  packed back to back, variable-length attention: :mod:`patentcpc.kinds.transformer.unpadded`);
* :func:`stream_predict`: a file of any size, chunk by chunk (constant memory), CSV, TSV, JSONL or
  Parquet out (by the output's extension), gold labels and hits carried when the input has labels.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from patentcpc.cpc import hierarchy_path, title
from patentcpc.errors import ConfigError
from patentcpc.metrics import top_k_indices

if TYPE_CHECKING:  # inference takes any model; it imports none (models.transformer imports this module)
    from patentcpc.models.base import CPCModel

# ----------------------------------------------------------------------------- formatting


def format_predictions(model: CPCModel, scores: np.ndarray, top_k: int = 5,
                       coverage: float | None = None) -> list[dict]:
    """For each row of ``scores``: at most ``top_k`` codes, best first, each with its score (a
    calibrated probability for a calibrated model) and ``assigned`` (score at or above the
    label's tuned threshold; the best code too unless it scores below the model's
    ``abstain_below``). ``labels`` lists the assigned codes; when it is empty, ``note`` says
    "no code assigned"; ``above_threshold`` is the same flag under its older name. ``coverage``
    (e.g. 0.9): each record also has ``label_set``, the conformal set at that coverage
    (:mod:`patentcpc.conformal`: ``codes`` and ``scores`` best first, ``size``, ``unsure``,
    ``coverage``)."""
    if top_k < 1:
        raise ConfigError("top_k must be >= 1")
    from patentcpc.predictions import NO_CODE, assigned_mask

    scores = np.asarray(scores)
    labels = model.labels
    # the one assignment rule (predictions.assigned_mask): thresholds, the best code unless below abstain_below
    above = assigned_mask(scores, model.thresholds, getattr(model, "abstain_below", 0.0))
    top = top_k_indices(scores, top_k) if len(scores) else np.zeros((0, 0), dtype=int)
    out = []
    for i in range(scores.shape[0]):
        chosen = sorted(top[i].tolist(), key=lambda j: -scores[i, j])[:top_k]
        preds = []
        for j in chosen:
            code = labels[j]
            assigned = bool(above[i, j])
            preds.append({
                "code": code,
                "score": round(float(scores[i, j]), 6),
                "assigned": assigned,
                "above_threshold": assigned,
                "title": title(code),
                "path": hierarchy_path(code),
            })
        rec = {"labels": [p["code"] for p in preds if p["assigned"]], "predictions": preds}
        if not rec["labels"]:
            rec["note"] = f"{NO_CODE}: no code scores high enough (best {preds[0]['score']:.3f})" if preds else NO_CODE
        out.append(rec)
    if coverage is not None:
        from patentcpc.conformal import label_sets

        for rec, s in zip(out, label_sets(model, scores, coverage), strict=True):
            rec["label_set"] = {**s.to_dict(), "scores": list(s.scores)}
    return out


LEGEND = ("score: the model's probability that the code applies; assigned (✓): probability at or above "
          "the code's threshold tuned on validation data (the best code too, unless it scores below the "
          "model's tuned minimum: then no code is assigned); "
          "at most --top-k codes, best first")


def predict_texts(model: CPCModel, texts: Sequence[str], top_k: int = 5, batch_size: int = 64,
                  coverage: float | None = None) -> list[dict]:
    """Predictions for raw texts (see :func:`format_predictions`)."""
    return format_predictions(model, model.scores(list(texts), batch_size=batch_size), top_k, coverage)


def write_jsonl(records: Iterator[dict], path: str | os.PathLike, progress=None) -> int:
    """Write records as JSON Lines atomically (a temporary file renamed at the end)."""
    from patentcpc.io import atomic_open

    n = 0
    with atomic_open(path, "w") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
            if progress is not None:
                progress(1)
    return n


# ----------------------------------------------------------------------------- batch predictor

AUTOCAST_MODES = ("auto", "bf16", "fp16", "off")
PADDING_FREE_MODES = ("auto", "on", "off")


@dataclass
class InferenceOptions:
    """How :func:`predict_logits` batches and runs a transformer.

    ``batch_size`` caps the documents of a batch, ``token_budget`` its padded tokens (rows x the
    longest row). ``autocast``: ``auto`` is bf16 on a GPU that has it and fp32 on a CPU.
    ``padding_free``: ``auto`` runs ModernBERT batches unpadded on a CUDA GPU where a
    variable-length attention kernel exists for the compute dtype (bf16/fp16; see
    :mod:`patentcpc.kinds.transformer.unpadded`), padded otherwise; ``on`` forces it (with no such kernel, e.g. on a
    CPU or in fp32, the layers run unpadded and attention alone is re-padded for SDPA: exact,
    a test path there, not a fast one); ``off``: padded batches. ``cls_last_layer``: with ``cls``
    pooling on ModernBERT (SDPA or eager attention, padded batches), the last layer computes only the [CLS] row
    (queries, attention output and MLP of one token; keys and values of all), which is all the head
    reads; off by default (it calls private transformers internals, and only with the versions
    :data:`CLS_SHORTCUT_TRANSFORMERS` names).
    """

    batch_size: int = 64
    token_budget: int = 16384
    autocast: str = "auto"
    compile: bool = False
    padding_free: str = "auto"
    cls_last_layer: bool = False  # private ModernBERT internals: opt in (see cls_shortcut_supported)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, not {self.batch_size}")
        if self.token_budget < 1:
            raise ConfigError(f"token_budget must be >= 1, not {self.token_budget}")
        if self.autocast not in AUTOCAST_MODES:
            raise ConfigError(f"autocast must be one of {', '.join(AUTOCAST_MODES)}, not '{self.autocast}'")
        if self.padding_free not in PADDING_FREE_MODES:
            raise ConfigError(f"padding_free must be one of {', '.join(PADDING_FREE_MODES)}, "
                              f"not '{self.padding_free}'")


def plan_batches(lengths: Sequence[int], batch_size: int, token_budget: int) -> list[np.ndarray]:
    """Indices of ``lengths`` cut into batches, longest first (an out-of-memory shows up at once).

    Each batch holds at most ``batch_size`` rows and, unless one row alone exceeds it,
    ``rows x longest <= token_budget``.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        rows = max(1, min(batch_size, token_budget // longest))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="doc", desc="predicting", file=sys.stderr, smoothing=0.1)


class BatchPredictor:
    """Runs a :class:`~patentcpc.kinds.transformer.model.TransformerCPCModel` on token-id lists."""

    def __init__(self, model, options: InferenceOptions | None = None):
        import torch

        self.model = model
        self.options = options or InferenceOptions()
        self.device = torch.device(model.device)
        self.pad_id = model.tokenizer.pad_token_id or 0
        net = model.network
        self.net = net
        self.embed_packed = net.embed_packed
        if self.options.compile:
            cached = getattr(model, "_patentcpc_compiled", None)
            if cached is None:
                cached = (torch.compile(net, dynamic=True), torch.compile(net.embed_packed, dynamic=True))
                model._patentcpc_compiled = cached
            self.net, self.embed_packed = cached
        self.autocast_dtype = self._autocast_dtype()
        self.padding_free = self._use_padding_free()
        enc = net.encoder
        self.cls_last_layer = (self.options.cls_last_layer and cls_shortcut_supported() and not self.options.compile
                               and net.pooling == "cls" and not self.padding_free
                               and getattr(enc.config, "model_type", "") == "modernbert"
                               and str(getattr(enc.config, "_attn_implementation", "")) in ("sdpa", "eager"))

    def _autocast_dtype(self):
        import torch

        mode = self.options.autocast
        if mode == "off" or self.device.type != "cuda":
            return None  # a CPU stays fp32 (exact, comparable with the naive loop)
        if mode == "fp16":
            return torch.float16
        if mode == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    def _use_padding_free(self) -> str | None:
        """None (padded batches), ``packed`` (one row through transformers' flash attention) or
        the kernel of :mod:`patentcpc.kinds.transformer.unpadded` that runs the batches unpadded."""
        mode = self.options.padding_free
        net = self.model.network
        enc = net.encoder
        model_type = getattr(enc.config, "model_type", "")
        attn = str(getattr(enc.config, "_attn_implementation", ""))
        if mode == "off" or model_type != "modernbert":
            if mode == "on" and model_type != "modernbert":
                raise ConfigError(f"padding-free inference supports ModernBERT only, not '{model_type}'")
            return None
        if attn.startswith("flash"):
            return "packed" if mode == "on" or self.device.type == "cuda" else None
        if attn not in ("sdpa", "eager"):
            if mode == "on":
                raise ConfigError(f"padding-free inference needs sdpa, eager or flash attention, not '{attn}'")
            return None
        kernel = net.unpadded_kernel(self.device, self.autocast_dtype or net.head.weight.dtype)
        if kernel is None and mode == "on":
            kernel = "sdpa_repad"  # unpadded layers, attention alone re-padded: any device and dtype
        return kernel

    def _autocast(self):
        import contextlib

        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def forward_padded(self, ids: Sequence[Sequence[int]]):
        """Logits (float32 tensor) of one batch padded to its longest row."""
        import torch

        width = max(len(x) for x in ids)
        batch = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for r, row in enumerate(ids):
            batch[r, : len(row)] = row
            mask[r, : len(row)] = 1
        input_ids = torch.from_numpy(batch).to(self.device, non_blocking=True)
        attention_mask = torch.from_numpy(mask).to(self.device, non_blocking=True)
        with self._autocast():
            if self.cls_last_layer:
                return modernbert_cls_logits(self.model.network, input_ids, attention_mask).float()
            return self.net(input_ids, attention_mask, None).float()

    def forward_unpadded(self, ids: Sequence[Sequence[int]]):
        """Logits of one batch with no padding at all: the documents packed back to back and run
        through :func:`patentcpc.kinds.transformer.unpadded.unpadded_hidden` (variable-length attention kernel
        ``self.padding_free``)."""
        import torch

        from patentcpc.kinds.transformer.unpadded import pack_layout

        flat = torch.tensor([t for row in ids for t in row], dtype=torch.long).to(self.device, non_blocking=True)
        cu, max_len, layout = pack_layout([len(x) for x in ids], self.device)
        net = self.model.network
        with self._autocast():
            pooled = self.embed_packed(flat, cu, max_len, layout, self.padding_free)
            return net.head(net.dropout(pooled)).float()

    def forward_packed(self, ids: Sequence[Sequence[int]]):
        """Logits of one batch packed into a single row (ModernBERT): no padding at all.

        Used when the encoder was loaded with ``attn_implementation="flash_attention_2"``
        (transformers' own varlen path; otherwise :meth:`forward_unpadded` does this job).
        ``position_ids`` restart at each document (rotary positions); the document boundaries go
        to the varlen kernels as ``cu_seq_lens``. Untested here (no GPU, no flash-attn).
        """
        import torch

        lens = torch.tensor([len(x) for x in ids], dtype=torch.long)
        starts = torch.cumsum(lens, 0) - lens
        flat = torch.tensor([t for row in ids for t in row], dtype=torch.long, device=self.device)[None]
        doc = torch.repeat_interleave(torch.arange(len(ids)), lens).to(self.device)
        positions = (torch.arange(flat.shape[1]) - torch.repeat_interleave(starts, lens)).to(self.device)[None]
        enc = self.model.network.encoder
        kwargs: dict = {"input_ids": flat, "position_ids": positions}
        # varlen flash attention: document boundaries as cumulative lengths (the encoder does
        # not hand position_ids to the attention functions)
        cu = torch.cat([starts, starts[-1:] + lens[-1:]]).to(self.device, torch.int32)
        kwargs.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=int(lens.max()),
                      max_length_k=int(lens.max()))
        net = self.model.network
        with self._autocast():
            hidden = enc(**kwargs).last_hidden_state[0]
            if net.pooling == "cls":
                pooled = hidden[starts.to(self.device)]
            else:
                sums = torch.zeros(len(ids), hidden.shape[-1], dtype=hidden.dtype, device=self.device)
                sums.index_add_(0, doc, hidden)
                pooled = sums / lens.to(self.device, hidden.dtype)[:, None]
            return net.head(pooled).float()

    def logits_from_ids(self, ids: Sequence[Sequence[int]], progress: bool | Callable[[int], None] = False,
                        embeddings: np.ndarray | None = None) -> np.ndarray:
        """Logits (len(ids), n_labels) in input order. ``embeddings``: an array (len(ids), width)
        that receives the pooled vectors the head reads, from the same forward passes."""
        import torch

        out = np.zeros((len(ids), len(self.model.labels)), dtype=np.float32)
        if not len(ids):
            return out
        pooled: list = []
        hook = None
        if embeddings is not None:
            hook = self.model.network.head.register_forward_pre_hook(lambda _m, args: pooled.append(args[0]))
        bar = _progress_bar(len(ids), progress is True)
        step = bar.update if bar is not None else (progress if callable(progress) else None)
        forward = {None: self.forward_padded, "packed": self.forward_packed}.get(self.padding_free,
                                                                                self.forward_unpadded)
        was_training = self.model.network.training
        self.model.network.eval()
        try:
            with torch.inference_mode():
                for idx in plan_batches([len(x) for x in ids], self.options.batch_size, self.options.token_budget):
                    out[idx] = forward([ids[i] for i in idx]).cpu().numpy()
                    if embeddings is not None:
                        embeddings[idx] = pooled.pop().float().cpu().numpy()
                    if step is not None:
                        step(len(idx))
        finally:
            if hook is not None:
                hook.remove()
            self.model.network.train(was_training)  # a trainer's evaluation leaves the mode as it was
            if bar is not None:
                bar.close()
        return out

    def logits(self, texts: Sequence[str], progress: bool | Callable[[int], None] = False,
               embeddings: np.ndarray | None = None) -> np.ndarray:
        """Logits (len(texts), n_labels); ``embeddings``: as :meth:`logits_from_ids`."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.model.labels)), dtype=np.float32)
        return self.logits_from_ids(self.model.tokenize(texts)["input_ids"], progress, embeddings)


# modernbert_cls_logits calls private ModernBERT internals of transformers 5.x (masking_utils, the
# layers' attention_type, rotary_emb's signature): other major versions take the full forward
CLS_SHORTCUT_TRANSFORMERS = (5, 6)  # major versions [from, to)


def cls_shortcut_supported() -> bool:
    """Whether the installed transformers is one :func:`modernbert_cls_logits` was written for."""
    try:
        from importlib.metadata import version

        major = int(version("transformers").split(".")[0])
    except (ImportError, ValueError):
        return False
    return CLS_SHORTCUT_TRANSFORMERS[0] <= major < CLS_SHORTCUT_TRANSFORMERS[1]


def modernbert_cls_logits(net, input_ids, attention_mask):
    """Logits of an ``EncoderClassifier`` over ModernBERT with ``cls`` pooling, the last layer
    run for the [CLS] position only (same numbers as the full forward, less work)."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from transformers.masking_utils import (
        create_bidirectional_mask,
        create_bidirectional_sliding_window_mask,
    )
    from transformers.models.modernbert.modeling_modernbert import apply_rotary_pos_emb

    enc = net.encoder
    hidden = enc.embeddings(input_ids=input_ids)
    kw = {"config": enc.config, "inputs_embeds": hidden, "attention_mask": attention_mask}
    masks = {"full_attention": create_bidirectional_mask(**kw),
             "sliding_attention": create_bidirectional_sliding_window_mask(**kw)}
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
    rope = {t: enc.rotary_emb(hidden, positions, t) for t in set(enc.config.layer_types)}
    for layer in enc.layers[:-1]:
        hidden = layer(hidden, attention_mask=masks[layer.attention_type],
                       position_embeddings=rope[layer.attention_type])
    last = enc.layers[-1]
    attn = last.attn
    bsz, seq, width = hidden.shape
    heads, dim = width // attn.head_dim, attn.head_dim
    x = last.attn_norm(hidden)
    w_q, w_kv = attn.Wqkv.weight[:width], attn.Wqkv.weight[width:]
    b_q, b_kv = (attn.Wqkv.bias[:width], attn.Wqkv.bias[width:]) if attn.Wqkv.bias is not None else (None, None)
    q = F.linear(x[:, :1], w_q, b_q).view(bsz, 1, heads, dim).transpose(1, 2)
    kv = F.linear(x, w_kv, b_kv).view(bsz, seq, 2, heads, dim)
    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
    cos, sin = rope[last.attention_type]
    q, _ = apply_rotary_pos_emb(q, q, cos[:, :1], sin[:, :1], unsqueeze_dim=1)
    k, _ = apply_rotary_pos_emb(k, k, cos, sin, unsqueeze_dim=1)
    mask = masks[last.attention_type]
    if mask is not None:
        mask = mask[:, :, :1, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=dim**-0.5)
    h0 = hidden[:, :1] + attn.Wo(out.transpose(1, 2).reshape(bsz, 1, width))
    h0 = h0 + last.mlp(last.mlp_norm(h0))
    pooled = enc.final_norm(h0)[:, 0]
    return net.head(net.dropout(pooled))


def predict_logits(model, texts: Sequence[str], batch_size: int = 64, progress: bool = False,
                   options: InferenceOptions | None = None, embeddings: np.ndarray | None = None) -> np.ndarray:
    """Logits of a :class:`~patentcpc.kinds.transformer.model.TransformerCPCModel` for ``texts``.

    Documents are sorted by token length and batched under a token budget so that padding is
    small; output rows are in input order. ``options`` (default: the model's
    ``inference_options`` attribute if set, else :class:`InferenceOptions` with ``batch_size``).
    ``embeddings``: an array (len(texts), width) that receives the pooled vectors the head reads.
    """
    if options is None:
        options = getattr(model, "inference_options", None) or InferenceOptions(batch_size=batch_size)
    return BatchPredictor(model, options).logits(texts, progress, embeddings)


# ----------------------------------------------------------------------------- streaming

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet",
                  ".csv": "csv", ".tsv": "tsv", ".tab": "tsv"}
LIST_SEPARATOR = ";"
TITLE_SEPARATOR = " | "  # code titles hold commas and semicolons
ROW_ID_COLUMN = "row"  # the id column's name where the input has none: ids are row numbers 1, 2, ...
SNIPPET_COLUMN = "snippet"  # the title column's name where the input has none: the text's start
SNIPPET_CHARS = 80


@dataclass
class StreamStats:
    n_docs: int
    seconds: float
    output: str

    @property
    def docs_per_s(self) -> float:
        return self.n_docs / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"n_docs": self.n_docs, "seconds": round(self.seconds, 3),
                "docs_per_s": round(self.docs_per_s, 2), "output": self.output}


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"{path}: output must end in .csv, .tsv, .jsonl or .parquet")
    return OUTPUT_FORMATS[suffix]


def _parquet_schema(with_gold: bool = False):
    import pyarrow as pa

    node = pa.struct([("code", pa.string()), ("title", pa.string())])
    pred = pa.struct([("code", pa.string()), ("score", pa.float64()), ("assigned", pa.bool_()),
                      ("above_threshold", pa.bool_()), ("title", pa.string()), ("path", pa.list_(node))])
    fields = [("id", pa.string()), ("title", pa.string()), ("labels", pa.list_(pa.string())),
              ("predictions", pa.list_(pred))]
    if with_gold:
        fields += [("gold", pa.list_(pa.string())), ("hits", pa.list_(pa.string())),
                   ("assigned_hits", pa.list_(pa.string()))]
    return pa.schema(fields)


def _write_parquet(chunks: Iterator[list[dict]], path: Path, with_gold: bool = False) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from patentcpc.io import atomic_path

    schema = _parquet_schema(with_gold)
    n = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for records in chunks:
            writer.write_table(pa.Table.from_pylist(records, schema=schema))
            n += len(records)
    return n


def table_columns(id_name: str = "id", title_name: str = "title", with_gold: bool = False) -> list[str]:
    """The CSV/TSV header (see :func:`table_row`)."""
    return [id_name, title_name, "codes", "titles", "scores", "assigned"] + (
        ["gold", "hits", "assigned_hits"] if with_gold else [])


def table_row(rec: dict, id_name: str = "id", with_gold: bool = False, title_name: str = "title") -> dict[str, str]:
    """One prediction record as a flat CSV/TSV row: ``id_name`` (the input's id column, or
    :data:`ROW_ID_COLUMN` with row numbers 1, 2, ... where it has none), ``title_name`` (the
    input's title, or the text's first characters under :data:`SNIPPET_COLUMN`), ``codes`` and
    ``scores`` (``;``-separated, best first, in the same order), ``titles`` (the codes' titles,
    `` | ``-separated, same order), ``assigned`` (the codes at or above their threshold) and, with
    gold labels, ``gold``, ``hits`` (the gold codes among the top-k ``codes``: the hits of P@k and
    R@k in :mod:`patentcpc.metrics`) and ``assigned_hits`` (the gold codes among ``assigned``)."""
    preds = rec["predictions"]
    row = {id_name: rec["id"], title_name: rec.get("title") or "",
           "codes": LIST_SEPARATOR.join(p["code"] for p in preds),
           "titles": TITLE_SEPARATOR.join((p.get("title") or "").replace("|", "/") for p in preds),
           "scores": LIST_SEPARATOR.join(f"{p['score']:.4f}" for p in preds),
           "assigned": LIST_SEPARATOR.join(rec["labels"])}
    if with_gold:
        row["gold"] = LIST_SEPARATOR.join(rec.get("gold", []))
        row["hits"] = LIST_SEPARATOR.join(rec.get("hits", []))
        row["assigned_hits"] = LIST_SEPARATOR.join(rec.get("assigned_hits", []))
    return row


def snippet(text: str, n: int = SNIPPET_CHARS) -> str:
    """The first ``n`` characters of ``text`` on one line (an ellipsis where cut)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= n else flat[: n - 1].rstrip() + "…"


def _write_table(records: Iterator[dict], path: Path, delimiter: str, id_name: str, with_gold: bool,
                 title_name: str = "title") -> int:
    """CSV/TSV, one row per document, written atomically."""
    import csv

    from patentcpc.io import atomic_open

    columns = table_columns(id_name, title_name, with_gold)
    n = 0
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, delimiter=delimiter)
        writer.writeheader()
        for rec in records:
            writer.writerow(table_row(rec, id_name, with_gold, title_name))
            n += 1
    return n


def has_gold(data) -> bool:
    """Whether ``data`` (a PatentData) came with a label column: its labels go to the output."""
    return getattr(data, "label_field", None) is not None


def iter_prediction_chunks(model: CPCModel, data, top_k: int = 5, chunk_size: int = 4096,
                           options: InferenceOptions | None = None,
                           progress: Callable[[int], None] | None = None,
                           coverage: float | None = None) -> Iterator[list[dict]]:
    """Lists of ``{"id", "title", "labels", "predictions"}``, one per chunk of ``data`` (a
    PatentData): only one chunk of texts, token ids and scores is in memory at a time. ``title``
    is the input's title column where ``data`` carries one (``load_data(carry_title=True)``),
    else the text's first characters. When ``data`` has gold labels, each record also has
    ``gold``, ``hits`` (the gold codes among the top-k predictions, as the metrics count them) and
    ``assigned_hits`` (the gold codes among the assigned ``labels``)."""
    opts = options or InferenceOptions()
    gold = has_gold(data)
    for batch in data.dataset.iter(batch_size=chunk_size):
        texts = batch["text"]
        scores = model.predict_scores(texts, options=opts)
        results = format_predictions(model, scores, top_k, coverage)
        titles = batch["_title"] if "_title" in batch else [snippet(t) for t in texts]
        records = [{"id": str(doc_id), "title": doc_title, **res}
                   for doc_id, doc_title, res in zip(batch["id"], titles, results, strict=True)]
        if gold:
            for rec, labels in zip(records, batch["labels"], strict=True):
                top = {p["code"] for p in rec["predictions"]}
                rec["gold"] = list(labels)
                rec["hits"] = [code for code in labels if code in top]
                rec["assigned_hits"] = [code for code in labels if code in rec["labels"]]
        yield records
        if progress is not None:
            progress(len(texts))


def stream_predict(model: CPCModel, data, output: str | os.PathLike, top_k: int = 5, chunk_size: int = 4096,
                   options: InferenceOptions | None = None, progress: bool = False,
                   coverage: float | None = None) -> StreamStats:
    """Predict every document of ``data`` (a PatentData, e.g. from
    :func:`patentcpc.training.load_for_model`, memory-mapped Arrow) and write ``output``
    atomically, chunk by chunk, showing docs/s when ``progress``. The format follows the extension:
    ``.jsonl`` and ``.parquet`` hold every prediction with its title and path; ``.csv`` and ``.tsv``
    one row per document (see :func:`table_row`), the id and title under the input's own column
    names (``row`` with row numbers where the input has no id column, ``snippet`` where it has no
    title)."""
    if top_k < 1:
        raise ConfigError("top_k must be >= 1")
    if chunk_size < 1:
        raise ConfigError("chunk_size must be >= 1")
    fmt = output_format(output)
    if coverage is not None and fmt != "jsonl":
        raise ConfigError(f"{output}: label sets (coverage) are written to a .jsonl output")
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    bar = _progress_bar(len(data), progress)
    t0 = time.perf_counter()
    try:
        chunks = iter_prediction_chunks(model, data, top_k, chunk_size, options, bar.update if bar else None,
                                        coverage)
        gold = has_gold(data)
        if fmt == "parquet":
            n = _write_parquet(chunks, path, gold)
        elif fmt in ("csv", "tsv"):
            id_name = getattr(data, "id_field", None) or ROW_ID_COLUMN
            title_name = getattr(data, "title_field", None) or SNIPPET_COLUMN
            if title_name == id_name:
                title_name = SNIPPET_COLUMN
            n = _write_table((rec for chunk in chunks for rec in chunk), path, "\t" if fmt == "tsv" else ",",
                             id_name, gold, title_name)
        else:
            n = write_jsonl((rec for chunk in chunks for rec in chunk), path)
    finally:
        if bar is not None:
            bar.close()
    return StreamStats(n, time.perf_counter() - t0, str(path))
