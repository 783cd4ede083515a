"""The public surface of a model built as ``encoder -> pooled vector -> linear head`` (the
``transformer`` kind and the ``causal_lm`` kind's head mode), used by the training code
(:mod:`patentcpc.training.head`: probe start, WiSE-FT, head re-fit) instead of reaching into the
``nn.Module``.

A class mixing this in has ``network`` (an ``nn.Module`` with ``encoder``, ``embed(ids, mask)``
and ``head``, an ``nn.Linear``), ``tokenizer`` and ``device``.
"""

from __future__ import annotations

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
        import os  # noqa: PLC0415

        from tqdm.auto import tqdm  # noqa: PLC0415

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
