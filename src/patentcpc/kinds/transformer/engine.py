"""The transformer kind's batching engine: fast batched forward passes of a
:class:`~patentcpc.kinds.transformer.model.TransformerCPCModel` (reused, as declared, by the ONNX kind
for its batching plan and by the transformer's throughput benchmark, :mod:`.bench`).

:func:`plan_batches`, :class:`BatchPredictor`, :func:`predict_logits`: documents are tokenized once,
sorted by length and cut into batches under a *token budget* (rows x longest row), so padding is
small and batch memory bounded; rows come back in input order. ``torch.inference_mode``, SDPA
attention, bf16 autocast on a GPU, optional ``torch.compile``, and on a CUDA GPU a padding-free path
for ModernBERT (the documents of a batch packed back to back, variable-length attention:
:mod:`patentcpc.kinds.transformer.unpadded`). How it runs is an
:class:`~patentcpc.inference_options.InferenceOptions`.

Turning scores into ranked codes and files is not the model's business:
:mod:`patentcpc.predictions` (ranking) and :mod:`patentcpc.streaming` (records, files).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np

from patentcpc.errors import ConfigError
from patentcpc.inference_options import InferenceOptions


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
                               and net.pooling == "cls" and not self.padding_free and net.views == "one"
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
        if net.views != "one":  # two parts a row, each embedded apart: padded batches
            if mode == "on":
                raise ConfigError("padding-free inference is not available for a model of transformer.views "
                                  "first_line")
            return None
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
