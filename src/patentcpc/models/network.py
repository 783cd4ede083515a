"""The public surface of a model built as ``encoder -> pooled vector -> linear head`` (the
``transformer`` kind and the ``causal_lm`` kind's head mode), used by the training code
(:mod:`patentcpc.training.head`: probe start, WiSE-FT, head re-fit) instead of reaching into the
``nn.Module``.

A class mixing this in has ``network`` (an ``nn.Module`` with ``encoder``, ``embed(ids, mask)``
and ``head``, an ``nn.Linear``), ``tokenizer`` and ``device``.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def pad_batch(rows: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` (long tensors) of token id lists."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        n = len(row)
        ids[r, :n] = torch.as_tensor(row)
        mask[r, :n] = 1
    return ids, mask


class PooledHeadModel:
    """Mixin: embeddings, head weights and network state of an encoder + linear head model."""

    network: torch.nn.Module
    tokenizer: object
    device: torch.device
    # what the shared fine-tuning loop (patentcpc.training.finetune) may do with the model:
    config_checkpointing = False  # gradient checkpointing as transformer.gradient_checkpointing says
    wise_ft = False  # WiSE-FT interpolation with the pretrained start (transformer.wise_alpha)

    def check_attention(self, input_ids: Sequence[Sequence[int]], pad_id: int = 0, bf16: bool = False,
                        tol: float = 0.05) -> dict:
        """:func:`check_attention` on this model's encoder (one training batch)."""
        return check_attention(self.encoder, input_ids, pad_id, bf16=bf16, tol=tol)

    @property
    def encoder(self) -> torch.nn.Module:
        """The encoder (or decoder backbone) below the pooling and the head."""
        return self.network.encoder

    @property
    def embedding_dim(self) -> int:
        """Width of the pooled vector the head reads."""
        return int(self.network.head.in_features)

    @torch.no_grad()
    def pooled_embeddings(self, ds, batch_size: int = 64) -> torch.Tensor:
        """Pooled encoder output (float32, CPU) of every row of an encoded dataset (columns
        ``input_ids`` and ``length``; in its order), in batches sorted by length, the network in
        eval mode (its train/eval mode is restored afterwards)."""
        net = self.network
        was_training = net.training
        net.eval()
        pad = self.tokenizer.pad_token_id or 0
        order = np.argsort(np.asarray(ds["length"][:]), kind="stable")
        out = torch.zeros(len(ds), self.embedding_dim)
        device = next(net.parameters()).device
        cols = ds.select_columns(["input_ids"])
        import os

        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), desc="embedding", unit="doc", leave=False,
                   disable=os.environ.get("PATENTCPC_PROGRESS", "1") != "1" or len(order) < 1000)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = pad_batch(cols[idx.tolist()]["input_ids"], pad)  # one batched read, not row by row
            emb = net.embed(ids.to(device), mask.to(device))
            out[torch.as_tensor(idx)] = emb.float().cpu()
            bar.update(len(idx))
        bar.close()
        net.train(was_training)
        return out

    def head_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's (weight (L, H), bias (L,)), detached copies on the head's device."""
        head = self.network.head
        return head.weight.detach().clone(), head.bias.detach().clone()

    @property
    def head_device(self) -> torch.device:
        return self.network.head.weight.device

    @torch.no_grad()
    def set_head(self, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> None:
        """Overwrite the head's weight and/or bias (copied onto the head's device and dtype)."""
        head = self.network.head
        if weight is not None:
            head.weight.copy_(weight.to(head.weight.device))
        if bias is not None:
            head.bias.copy_(bias.to(head.bias.device))

    def network_state(self) -> dict[str, torch.Tensor]:
        """A detached copy of every weight of the network (encoder and head)."""
        return {k: v.detach().clone() for k, v in self.network.state_dict().items()}

    def load_network_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights such as :meth:`network_state` returns."""
        self.network.load_state_dict(state)

    def max_positions(self) -> int | None:
        """The encoder's longest input (``max_position_embeddings``), None if it does not say."""
        return getattr(self.encoder.config, "max_position_embeddings", None)

    def for_inference(self) -> None:
        """After training: eval mode, ``device`` where the weights are now."""
        self.network.eval()
        self.device = next(self.network.parameters()).device

    def save_weights(self, folder: Path) -> None:
        """Write the weights (no manifest) into ``folder``, as :meth:`CPCModel.save` does."""
        self._save_weights(folder)


def check_attention(encoder: torch.nn.Module, input_ids: Sequence[Sequence[int]], pad_id: int = 0, bf16: bool = False,
                    tol: float = 0.05) -> dict:
    """Numerics guard: run one batch through ``encoder`` as training will (its attention
    implementation, under bf16 autocast when ``bf16``) and through an fp32 eager-attention copy;
    warn when the relative L2 difference of the (unpadded) hidden states exceeds ``tol``.
    Returns {"implementation", "bf16", "relative_difference", "ok"}."""
    impl = str(getattr(encoder.config, "_attn_implementation", None) or "eager")
    device = next(encoder.parameters()).device
    rows = [list(x) for x in input_ids if len(x)]
    if not rows:
        return {"implementation": impl, "bf16": bf16, "relative_difference": None, "ok": True}
    width = max(len(x) for x in rows)
    ids = torch.tensor([x + [pad_id] * (width - len(x)) for x in rows], device=device)
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in rows], device=device)
    ref = copy.deepcopy(encoder).float().eval()
    try:
        ref.set_attn_implementation("eager")
    except (AttributeError, ValueError):
        ref.config._attn_implementation = "eager"
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            want = ref(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                got = encoder(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    finally:
        encoder.train(was_training)
        del ref
    keep = mask.bool()
    rel = float((got[keep] - want[keep]).norm() / want[keep].norm().clamp(min=1e-12))
    ok = bool(np.isfinite(rel) and rel <= tol)
    if not ok:
        msg = (f"attention check: {impl}{' + bf16' if bf16 else ''} differs from fp32 eager attention by "
               f"{rel:.3g} (relative, > {tol:g}) on a training batch; to pin fp32 eager attention use "
               "--set transformer.attn_implementation=eager --set transformer.precision=fp32")
        logging.getLogger(__name__).warning(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return {"implementation": impl, "bf16": bf16, "relative_difference": rel, "ok": ok}
