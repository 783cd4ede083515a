"""Unpadded (variable-length) ModernBERT: no padding token is ever computed.

A batch of documents is flattened into one stream of ``T`` tokens (the sum of the documents'
lengths) with ``cu_seqlens`` (the cumulative lengths, ``[0, l0, l0+l1, ...]``) marking where each
document starts. Embeddings, layer norms, the QKV/output projections and the MLP (most of the work
at abstract lengths) run on ``(T, width)``; attention runs per document through a
variable-length kernel, the local (sliding-window) layers with a window of
``config.sliding_window`` tokens each side, inclusive, like transformers' mask.

Attention kernels (:data:`KERNELS`), chosen by :func:`select_kernel` by feature detection, so
that this module works with any torch from 2.4 and any transformers 5.x:

* ``flash_attn``: ``flash_attn.flash_attn_varlen_func`` where the package imports (CUDA, bf16/fp16);
* ``torch_varlen``: ``torch.nn.attention.varlen.varlen_attn`` (torch >= 2.10; used only where its
  signature has ``window_size``, needed by the local layers);
* ``aten_flash``: PyTorch's built-in FlashAttention-2 varlen op
  ``torch.ops.aten._flash_attention_forward`` / ``_backward`` (torch >= 2.4, the versions whose
  schema has ``window_size_left``) wrapped in an ``autograd.Function``: what ``varlen_attn`` calls
  underneath, for torches that do not have ``varlen_attn`` yet;
* ``sdpa_repad``: attention alone re-padded to ``(documents, longest)`` and run by
  ``scaled_dot_product_attention`` with a key-padding (and window) mask; every other layer stays
  unpadded. Any device, any dtype: the CPU path and the fallback for fp32 on CUDA;
* ``reference``: one explicit softmax per document (tests only).

The flash kernels need CUDA and bf16/fp16: :func:`select_kernel` returns ``None`` for fp32 on
CUDA and for a CPU (then ``auto`` callers keep transformers' padded SDPA forward).

Nothing here imports at module load beyond the standard library: torch is imported inside the
functions, so ``benchmarks/gpu`` can run with torch + transformers alone.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

KERNELS = ("flash_attn", "torch_varlen", "aten_flash", "sdpa_repad", "reference")
FAST_KERNELS = ("flash_attn", "torch_varlen", "aten_flash")  # true variable-length kernels


class UnsupportedEncoder(ValueError):
    """The encoder is not a ModernBERT of the layout this module knows (transformers 5.x)."""


# ----------------------------------------------------------------------------- feature detection


@functools.lru_cache(maxsize=1)
def available_kernels() -> dict[str, str]:
    """Each kernel this process can call, with where it comes from; missing ones name why."""
    import torch

    found: dict[str, str] = {}
    try:
        import flash_attn
        from flash_attn import flash_attn_varlen_func  # noqa: F401

        found["flash_attn"] = f"flash_attn {getattr(flash_attn, '__version__', '?')}"
    except Exception as exc:  # noqa: BLE001 (ImportError, or a broken CUDA extension)
        found["flash_attn"] = f"missing: {type(exc).__name__}"
    try:
        from torch.nn.attention.varlen import varlen_attn

        if "window_size" in inspect.signature(varlen_attn).parameters:
            found["torch_varlen"] = f"torch.nn.attention.varlen.varlen_attn (torch {torch.__version__})"
        else:
            found["torch_varlen"] = "missing: varlen_attn has no window_size (needed for local layers)"
    except ImportError:
        found["torch_varlen"] = f"missing: no torch.nn.attention.varlen in torch {torch.__version__}"
    try:
        schema = str(torch.ops.aten._flash_attention_forward.default._schema)
        bschema = str(torch.ops.aten._flash_attention_backward.default._schema)
        if "window_size_left" in schema and "window_size_left" in bschema:
            found["aten_flash"] = f"torch.ops.aten._flash_attention_forward (torch {torch.__version__})"
        else:
            found["aten_flash"] = "missing: aten._flash_attention_forward has no window_size_left"
    except (AttributeError, RuntimeError) as exc:
        found["aten_flash"] = f"missing: {type(exc).__name__}"
    found["sdpa_repad"] = "torch.nn.functional.scaled_dot_product_attention (re-padded attention only)"
    found["reference"] = "explicit softmax per document (tests)"
    return found


def kernel_available(name: str) -> bool:
    return not available_kernels().get(name, "missing").startswith("missing")


def select_kernel(device, dtype) -> str | None:
    """The fastest true variable-length kernel for ``device`` and compute ``dtype``, or None.

    Flash kernels need a CUDA device of compute capability >= 8.0 (A100, H100, H200) and
    bf16/fp16."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return None
    major, _ = torch.cuda.get_device_capability(device)
    if major < 8:
        return None
    for name in FAST_KERNELS:
        if kernel_available(name):
            return name
    return None


# ----------------------------------------------------------------------------- attention kernels


def _aten_flash_function():
    import torch

    class _AtenFlashVarlen(torch.autograd.Function):
        """FlashAttention-2 varlen from aten, forward + backward (no dropout)."""

        @staticmethod
        def forward(ctx, q, k, v, cu, max_len, scale, window):  # noqa: ANN001, ANN205
            out, lse, rng, unused, _ = torch.ops.aten._flash_attention_forward(
                q, k, v, cu, cu, max_len, max_len, 0.0, False, False,
                scale=scale, window_size_left=window, window_size_right=window)
            ctx.save_for_backward(q, k, v, out, lse, cu, rng, unused)
            ctx.max_len, ctx.scale, ctx.window = max_len, scale, window
            return out

        @staticmethod
        def backward(ctx, grad):  # noqa: ANN001, ANN205
            q, k, v, out, lse, cu, rng, unused = ctx.saved_tensors
            dq, dk, dv = torch.ops.aten._flash_attention_backward(
                grad.contiguous(), q, k, v, out, lse, cu, cu, ctx.max_len, ctx.max_len, 0.0, False, rng, unused,
                scale=ctx.scale, window_size_left=ctx.window, window_size_right=ctx.window)
            return dq, dk, dv, None, None, None, None

    return _AtenFlashVarlen


@functools.lru_cache(maxsize=1)
def _aten_flash():
    return _aten_flash_function()


def _band_mask(lens, width: int, window: int | None, device):
    """(docs, 1, width, width) bool: key inside the document (and within ``window``)."""
    import torch

    pos = torch.arange(width, device=device)
    keep = (pos[None, :] < lens[:, None])[:, None, None, :]  # (B, 1, 1, L) key padding
    if window is not None:
        keep = keep & ((pos[:, None] - pos[None, :]).abs() <= window)[None, None]
    return keep


def varlen_attention(q, k, v, cu_seqlens, max_len: int, window: int | None, scale: float, kernel: str,
                     dropout: float = 0.0, layout=None):
    """Attention of packed ``q, k, v`` (T, heads, dim) within each document -> (T, heads, dim).

    ``window``: keys at most ``window`` positions away each side (None: the whole document).
    ``layout``: ``(lens, batch_index, position)`` from :func:`pack_layout` (needed by the
    re-padding kernels)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    if dropout and kernel not in ("flash_attn", "sdpa_repad", "reference"):
        raise ValueError(f"attention dropout is not supported by the '{kernel}' kernel")
    if kernel == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len, dropout_p=dropout,
                                      softmax_scale=scale, causal=False,
                                      window_size=(window, window) if window is not None else (-1, -1))
    if kernel == "torch_varlen":
        from torch.nn.attention.varlen import varlen_attn

        return varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len, scale=scale,
                           window_size=(window, window) if window is not None else (-1, -1))
    if kernel == "aten_flash":
        w = window if window is not None else -1
        return _aten_flash().apply(q, k, v, cu_seqlens, max_len, scale, w)
    if layout is None:
        raise ValueError(f"kernel '{kernel}' needs the batch layout")
    lens, row, col = layout
    if kernel == "reference":
        out = torch.empty_like(q)
        bounds = cu_seqlens.tolist()
        for s, e in zip(bounds[:-1], bounds[1:], strict=True):
            qd, kd, vd = (x[s:e].transpose(0, 1).float() for x in (q, k, v))  # (H, n, D)
            scores = qd @ kd.transpose(1, 2) * scale
            if window is not None:
                pos = torch.arange(e - s, device=q.device)
                scores = scores.masked_fill((pos[:, None] - pos[None, :]).abs() > window, float("-inf"))
            probs = F.dropout(scores.softmax(-1), dropout) if dropout else scores.softmax(-1)
            out[s:e] = (probs @ vd).transpose(0, 1).to(q.dtype)
        return out
    if kernel != "sdpa_repad":
        raise ValueError(f"unknown attention kernel '{kernel}' (known: {', '.join(KERNELS)})")
    n_docs, heads, dim = len(lens), q.shape[1], q.shape[2]

    def pad(x):
        buf = x.new_zeros(n_docs, max_len, heads, dim)
        buf[row, col] = x
        return buf.transpose(1, 2)  # (B, H, L, D)

    mask = _band_mask(lens, max_len, window, q.device)
    out = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=mask, dropout_p=dropout, scale=scale)
    return out.transpose(1, 2)[row, col]


# ----------------------------------------------------------------------------- the layer loop


def pack_layout(lengths: Sequence[int], device):
    """``(cu_seqlens int32 (B+1,), max_len, (lens, batch_index, position))`` of documents of
    ``lengths`` packed back to back (position restarts at 0 in each document)."""
    import torch

    lens = torch.as_tensor(list(lengths), dtype=torch.long)
    if len(lens) == 0 or int(lens.min()) < 1:
        raise ValueError("every document needs at least one token")
    cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(lens, 0)
    row = torch.repeat_interleave(torch.arange(len(lens)), lens)
    col = torch.arange(int(cu[-1])) - torch.repeat_interleave(cu[:-1].long(), lens)
    to = {"device": device, "non_blocking": True}
    return cu.to(**to), int(lens.max()), (lens.to(**to), row.to(**to), col.to(**to))


def check_encoder(encoder) -> None:
    """Raise :class:`UnsupportedEncoder` unless ``encoder`` is a transformers 5.x ModernBertModel."""
    cfg = getattr(encoder, "config", None)
    if getattr(cfg, "model_type", "") != "modernbert":
        raise UnsupportedEncoder(f"unpadded attention supports ModernBERT only, not "
                                 f"'{getattr(cfg, 'model_type', type(encoder).__name__)}'")
    layer = encoder.layers[0] if len(getattr(encoder, "layers", [])) else None
    if (not hasattr(encoder, "rotary_emb") or layer is None or not hasattr(layer, "attention_type")
            or not hasattr(layer.attn, "Wqkv")):
        raise UnsupportedEncoder("this ModernBERT implementation is not the transformers 5.x layout "
                                 "(rotary_emb on the model, attention_type on the layers)")


def _rotate(x, cos, sin):
    """Rotary embedding of ``x`` (T, H, D) with ``cos``/``sin`` (T, D), computed in fp32 like
    transformers' ``apply_rotary_pos_emb``."""
    import torch

    xf = x.float()
    half = xf.shape[-1] // 2
    rotated = torch.cat((-xf[..., half:], xf[..., :half]), dim=-1)
    return (xf * cos[:, None] + rotated * sin[:, None]).to(x.dtype)


def unpadded_hidden(encoder, input_ids, cu_seqlens, max_len: int, layout, kernel: str):
    """Last hidden states (T, width) of ModernBERT ``encoder`` over packed ``input_ids`` (T,).

    The same modules and weights as ``encoder.forward``, run over the packed tokens; attention
    through :func:`varlen_attention` with ``kernel``."""
    check_encoder(encoder)
    cfg = encoder.config
    _, _, positions = layout
    hidden = encoder.embeddings(input_ids=input_ids[None])  # (1, T, W): embeddings expect a batch
    rope = {t: encoder.rotary_emb(hidden, positions[None], t) for t in set(cfg.layer_types)}
    hidden = hidden[0]
    rope = {t: (cos[0], sin[0]) for t, (cos, sin) in rope.items()}
    total, width = hidden.shape
    for layer in encoder.layers:
        attn = layer.attn
        heads, dim = width // attn.head_dim, attn.head_dim
        qkv = attn.Wqkv(layer.attn_norm(hidden)).view(total, 3, heads, dim)
        q, k, v = qkv.unbind(dim=1)
        cos, sin = rope[layer.attention_type]
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        window = int(cfg.sliding_window) if layer.attention_type == "sliding_attention" else None
        dropout = float(attn.attention_dropout) if attn.training else 0.0
        out = varlen_attention(q.contiguous(), k.contiguous(), v.contiguous(), cu_seqlens, max_len, window,
                               dim**-0.5, kernel, dropout, layout)
        hidden = hidden + attn.out_drop(attn.Wo(out.reshape(total, width)))
        hidden = hidden + layer.mlp(layer.mlp_norm(hidden))
    return encoder.final_norm(hidden)


def unpad(input_ids, attention_mask):
    """Packed ids (T,), cu_seqlens, max_len and layout of a right-padded batch (rows of
    ``attention_mask`` are 1s then 0s, as tokenizers pad)."""
    lengths = attention_mask.sum(1).tolist()
    cu, max_len, layout = pack_layout(lengths, input_ids.device)
    _, row, col = layout
    return input_ids[row, col], cu, max_len, layout


def pool_packed(hidden, cu_seqlens, layout, pooling: str):
    """(docs, width): the first token of each document (``cls``) or the mean of its tokens."""
    import torch

    lens, row, _ = layout
    if pooling == "cls":
        return hidden[cu_seqlens[:-1].long()]
    sums = torch.zeros(len(lens), hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
    sums.index_add_(0, row, hidden)
    return sums / lens.to(hidden.dtype)[:, None]


def autocast_dtype(device):
    """The dtype matmuls run in on ``device`` right now (autocast's, else None)."""
    import torch

    dev = torch.device(device).type
    try:
        if torch.is_autocast_enabled(dev):
            return torch.get_autocast_dtype(dev)
    except (TypeError, AttributeError):  # torch < 2.4: no device argument, no get_autocast_dtype
        if dev == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
    return None
