"""The classification head of an encoder (or decoder) classifier around fine-tuning:

* a probe start (``head_init: probe``): the head fitted as a one-vs-rest logistic regression on the
  frozen pooled embeddings before fine-tuning ("LP-FT", Kumar et al., ICLR 2022);
* WiSE-FT (Wortsman et al., CVPR 2022): the fine-tuned weights interpolated with that start;
* the class-balanced re-fit of the head on the final embeddings (``refit_head``).

Everything goes through the model's public methods (:class:`~patentcpc.models.network.PooledHeadModel`:
``pooled_embeddings``, ``set_head``, ``network_state``, ...).

The head fits of one run embed the same rows with the same encoder more than once: the probe start
and WiSE-FT's start (both the pretrained encoder), the head re-fit and the re-fit on all data (the
same fine-tuned encoder), and, in a cross-fitted ensemble, every fold's fine-tune embeds its label
documents with the same pretrained encoder. Inside :func:`remember_embeddings` (a fine-tuning run,
a whole ensemble training), :func:`pooled_embeddings` therefore remembers rows by (encoder state,
row tokens) for the last few encoder states (:data:`MEMO_STATES`, at most :data:`MEMO_MAX_BYTES`
in all), so each is embedded once; when the outermost block ends, they are forgotten.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from patentcpc.config import TransformerConfig
from patentcpc.training.batches import dense_rows

MEMO_STATES = 3  # encoder states remembered (the pretrained one, the latest fine-tuned ones)
MEMO_MAX_BYTES = 256 * 2**20  # embeddings remembered in all; a larger dataset is embedded, not remembered
_MEMO: OrderedDict[tuple, dict[bytes, torch.Tensor]] = OrderedDict()
_depth = 0  # open remember_embeddings blocks


@contextmanager
def remember_embeddings() -> Iterator[None]:
    """Within this block (nested blocks share it), :func:`pooled_embeddings` remembers what it
    embedded; when the outermost block ends, everything is forgotten."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            _MEMO.clear()


def encoder_state(model) -> tuple:
    """A fingerprint of what a pooled embedding depends on: the network's class, pooling, views
    and attention settings, and the dtype, device, sum and sum of squares of every floating-point
    parameter and buffer outside the head (the head does not change an embedding)."""
    net = model.network
    named = [(n, t) for n, t in (*net.named_parameters(), *net.named_buffers())
             if not n.startswith("head.") and t.is_floating_point()]
    with torch.no_grad():
        sums = torch.stack([s for _, t in named for s in (t.float().sum(), t.float().square().sum())]
                           ).cpu().tolist() if named else []
    first = named[0][1] if named else None
    return (type(net).__name__, str(getattr(net, "pooling", "")), str(getattr(net, "views", "")),
            str(getattr(net, "_attention", "")),
            str(first.dtype) if first is not None else "", str(first.device) if first is not None else "",
            tuple(n for n, _ in named), tuple(sums))


def _row_key(ids) -> bytes:
    return hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16).digest()


def pooled_embeddings(model, ds, batch_size: int = 64) -> torch.Tensor:
    """Frozen pooled encoder output of every row of an encoded dataset (in order); inside
    :func:`remember_embeddings`, rows embedded before by the same encoder state are not embedded
    again (see the module docstring)."""
    max_rows = MEMO_MAX_BYTES // (4 * max(int(model.embedding_dim), 1))
    if _depth == 0 or len(ds) == 0 or len(ds) > max_rows:
        return model.pooled_embeddings(ds, batch_size)
    state = encoder_state(model)
    rows = [_row_key(ids) for ids in ds["input_ids"]]
    memo = _MEMO.pop(state, {})
    missing = [i for i, r in enumerate(rows) if r not in memo]
    if missing:
        new = model.pooled_embeddings(ds if len(missing) == len(ds) else ds.select(missing), batch_size)
        memo.update((rows[i], v) for i, v in zip(missing, new, strict=True))
    out = torch.stack([memo[r] for r in rows])
    _MEMO[state] = memo  # the most recent state last
    while len(_MEMO) > MEMO_STATES or (len(_MEMO) > 1 and sum(map(len, _MEMO.values())) > max_rows):
        _MEMO.popitem(last=False)  # the oldest state first
    if len(memo) > max_rows:
        _MEMO.clear()
    return out


def fit_probe(x: torch.Tensor, y: torch.Tensor, C: float = 10.0, max_iter: int = 200,
              balanced: bool = False, dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None,
              row_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One-vs-rest L2 logistic regression ``sum(weight * logloss) + ||W||^2 / (2C)`` fitted with
    L-BFGS (deterministic); weight 1, or with ``balanced`` ``n / (2 n_pos)`` on a label's positives
    and ``n / (2 n_neg)`` on its negatives (scikit-learn's ``class_weight="balanced"``). In
    ``dtype`` (float32: half the memory and time of float64) on ``device`` (default: x's).
    ``row_weight``: a weight per row (label documents weigh less than patents); counts, priors and
    the balance are then weighted sums. Returns (weight (L, H), bias (L,)) float32 on the CPU."""
    n, h = x.shape
    device = torch.device(device) if device is not None else x.device
    xd, yd = x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
    w = torch.zeros(y.shape[1], h, dtype=dtype, device=device, requires_grad=True)
    sample_w, norm = None, n
    if row_weight is None:
        prior = yd.mean(0).clamp(1e-4, 1 - 1e-4)
        if balanced:
            n_pos = yd.sum(0).clamp(min=1)
            sample_w = torch.where(yd > 0, n / (2 * n_pos), n / (2 * (n - n_pos).clamp(min=1)))
    else:
        rw = row_weight.to(device=device, dtype=dtype)[:, None]
        total = float(rw.sum())
        n_pos = (rw * yd).sum(0)
        prior = (n_pos / total).clamp(1e-4, 1 - 1e-4)
        sample_w = rw.expand_as(yd)
        if balanced:
            sample_w = rw * torch.where(yd > 0, total / (2 * n_pos.clamp(min=1e-6)),
                                        total / (2 * (total - n_pos).clamp(min=1e-6)))
        norm = total
    b = torch.log(prior / (1 - prior)).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")
    from tqdm.auto import tqdm

    # L-BFGS evaluates the loss at most max_iter * 5 / 4 times (torch's default max_eval)
    bar = tqdm(total=max_iter * 5 // 4, desc=f"fitting the head ({y.shape[1]} labels, {n} documents)",
               unit="eval", leave=False, disable=os.environ.get("PATENTCPC_PROGRESS", "1") != "1")

    def closure():
        bar.update(1)
        opt.zero_grad()
        logits = xd @ w.T + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, yd, weight=sample_w, reduction="sum")
                + (w * w).sum() / (2 * C)) / norm
        loss.backward()
        return loss

    opt.step(closure)
    bar.close()
    return w.detach().float().cpu(), b.detach().float().cpu()


def fit_head(model, ds, y, tcfg: TransformerConfig, refit: bool = False, extra=None) -> None:
    """Fit the head as a logistic-regression probe on the (frozen) pooled embeddings of ``ds``: with
    ``probe_C`` / ``probe_class_weight``, or for the re-fit after fine-tuning (``refit``) with
    ``refit_C`` / ``refit_class_weight``; on at most ``probe_max_docs`` documents, float32, on the
    model's device. ``y``: the labels of ``ds``, dense or SciPy sparse (made dense for the sample).
    ``extra``: ``(dataset, labels)`` of label documents (``transformer.label_docs``), embedded by the
    same encoder and fitted with the patents, each row weighing ``label_docs_weight``."""
    rows = None
    if tcfg.probe_max_docs and len(ds) > tcfg.probe_max_docs:  # bounded memory on large corpora
        rows = np.sort(np.random.default_rng(0).choice(len(ds), tcfg.probe_max_docs, replace=False))
        ds = ds.select(rows)
    y = torch.as_tensor(dense_rows(y, rows))
    x = pooled_embeddings(model, ds, tcfg.eval_batch_size)
    row_weight = None
    if extra is not None:
        extra_ds, extra_y = extra
        x = torch.cat([x, pooled_embeddings(model, extra_ds, tcfg.eval_batch_size)])
        extra_y = torch.as_tensor(dense_rows(extra_y, None), dtype=y.dtype)
        row_weight = torch.cat([torch.ones(len(y)), torch.full((len(extra_y),), float(tcfg.label_docs_weight))])
        y = torch.cat([y, extra_y])
    C, weight = (tcfg.refit_C, tcfg.refit_class_weight) if refit else (tcfg.probe_C, tcfg.probe_class_weight)
    w, b = fit_probe(x, y, C, balanced=weight == "balanced", device=model.head_device, row_weight=row_weight)
    model.set_head(w, b)


def wise_start(model, base_model: str, ds, y: np.ndarray, tcfg: TransformerConfig,
               extra=None) -> dict[str, torch.Tensor]:
    """Load WiSE-FT's starting point into ``model`` and return a copy of its weights: the pretrained
    encoder ``base_model`` with a probe head fitted on its frozen embeddings of ``ds`` (the LP-FT start)."""
    model.load_pretrained_encoder(base_model)
    fit_head(model, ds, y, tcfg, extra=extra)
    return model.network_state()


def interpolate_weights(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                        alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * start + alpha * tuned`` for every floating-point tensor (others from ``tuned``)."""
    return {k: ((1 - alpha) * start[k] + alpha * v) if v.is_floating_point() else v for k, v in tuned.items()}


def wise_interpolate(model, base_model: str, ds, y: np.ndarray, tcfg: TransformerConfig, extra=None) -> None:
    """WiSE-FT (Wortsman et al., CVPR 2022): replace the fine-tuned weights by
    ``(1 - a) * start + a * fine-tuned`` (:func:`wise_start`), ``a = tcfg.wise_alpha``."""
    tuned = model.network_state()
    start = wise_start(model, base_model, ds, y, tcfg, extra)
    model.load_network_state(interpolate_weights(start, tuned, tcfg.wise_alpha))


def init_head(model, ds, y: np.ndarray, tcfg: TransformerConfig, extra=None) -> None:
    """Initialize the classification head as ``tcfg.head_init`` says."""
    if tcfg.head_init == "random":
        return
    if tcfg.head_init == "prior":
        prior = torch.as_tensor(np.asarray(y.mean(0), dtype=np.float32).ravel()).clamp(1e-4, 1 - 1e-4)
        model.set_head(bias=torch.log(prior / (1 - prior)))
        return
    fit_head(model, ds, y, tcfg, extra=extra)
