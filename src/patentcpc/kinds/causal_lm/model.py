"""Decoder-only (causal) LLM classifiers with LoRA adapters: the ``causal_lm`` model kind.

Two modes (``llm.mode``):

* ``head``: the backbone's hidden state of the last non-padding token (or the mean over tokens)
  -> dropout -> a multi-label linear head, trained with any patentcpc loss (the trainer of
  :mod:`patentcpc.training.finetune`);
* ``instruction``: a causal LM trained on ``prompt -> " H04L, H04W" <eos>`` with the loss on the
  response tokens; a code's score is its sequence probability given the prompt (the code's tokens
  followed by a separator or end), computed for every label in batches that share the prompt's
  KV cache; :meth:`CausalLMCPCModel.generate` decodes greedily, constrained by a prefix tree
  (:class:`CodeTrie`) over the codes' token ids, so it only emits codes of the label set.

Folder layout (beside ``manifest.json``)::

    adapter/            LoRA adapters (peft: adapter_config.json + adapter_model.safetensors)
    head.safetensors    the classification head (head mode)
    tokenizer/          tokenizer files
    base/               only for a random-init ``--arch`` base or a merged export: config.json +
                        model.safetensors; otherwise the manifest names the base's hub id (or
                        folder) and revision, and the base is not copied

Loading never runs code from a folder or the hub: ``trust_remote_code`` is always off and weights
come from safetensors only.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from patentcpc.errors import ConfigError, ModelError
from patentcpc.folder_files import check_folder_tree, read_folder_json
from patentcpc.models.artifact import Manifest
from patentcpc.models.base import CPCModel
from patentcpc.models.network import PooledHeadModel, pad_batch
from patentcpc.numeric import pool, sigmoid

ADAPTER_DIR = "adapter"
BASE_DIR = "base"
TOKENIZER_DIR = "tokenizer"
HEAD_FILE = "head.safetensors"

# Random-init presets (keyword arguments of the transformers config class); "tiny" for tests and
# CPU benchmarks, "qwen3-0.6b" is Qwen3-0.6B's shape for GPU memory/throughput benchmarks.
LLM_ARCH_PRESETS: dict[str, dict] = {
    "llama-tiny": {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "intermediate_size": 128},
    "qwen3-tiny": {"model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128},
    "qwen3-0.6b": {"model_type": "qwen3", "hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16,
                   "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 3072},
}

_ATTN_MLP = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Default LoRA target modules per family (attention and MLP projections, as in QLoRA).
LORA_TARGETS: dict[str, list[str]] = {
    **{t: _ATTN_MLP for t in ("llama", "qwen2", "qwen3", "mistral", "mixtral", "gemma", "gemma2", "gemma3",
                              "gemma3_text", "qwen2_moe", "qwen3_moe", "olmo", "olmo2", "granite")},
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
}
DECODER_TYPES = frozenset(LORA_TARGETS) | {"gpt2", "gpt_neox", "falcon", "starcoder2", "stablelm", "cohere",
                                           "smollm3", "exaone", "deepseek_v3", "gpt_oss", "ministral"}
ENCODER_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "modernbert", "distilbert", "electra", "deberta",
                           "deberta-v2", "mpnet", "albert", "camembert", "ernie", "neobert"})


# ----------------------------------------------------------------------------- what is a decoder


def config_is_decoder(cfg: dict) -> bool:
    """Whether a ``config.json`` mapping describes a decoder-only model (``is_decoder``, a
    ``*ForCausalLM`` architecture, or a decoder family's ``model_type``), encoders excluded."""
    model_type = str(cfg.get("model_type", ""))
    if model_type in ENCODER_TYPES or cfg.get("is_encoder_decoder"):
        return False
    if model_type in DECODER_TYPES or cfg.get("is_decoder"):
        return True
    return any(str(a).endswith("ForCausalLM") for a in cfg.get("architectures") or [])


def claims(model: str | None, arch: str | None) -> bool:
    """Whether a training run of ``--model model`` / ``--arch arch`` makes this kind (the registry
    asks once per run): an LLM ``--arch`` preset, else a ``--model`` that is one or a decoder."""
    if arch:
        return arch in LLM_ARCH_PRESETS
    return is_decoder_spec(model)


def is_decoder_spec(spec: str | None) -> bool:
    """Whether ``--model``/``--arch`` ``spec`` names a decoder: an LLM preset, a folder whose
    ``config.json`` (or ``base/``) is a decoder's, or a hub id whose config is (looked up without
    running code; False when it cannot be read)."""
    if not spec:
        return False
    if spec in LLM_ARCH_PRESETS:
        return True
    folder = Path(spec)
    for cfg_file in (folder / "config.json", folder / BASE_DIR / "config.json"):
        if cfg_file.is_file():
            try:
                cfg = read_folder_json(cfg_file.parent, cfg_file.name)
                return isinstance(cfg, dict) and config_is_decoder(cfg)
            except ModelError:
                return False
    if folder.exists() or spec.count("/") != 1:
        return False
    from patentcpc.hub import check_hub

    check_hub(spec)  # an unreachable hub: one line with a hint in seconds, not a minute of retries
    try:
        from transformers import AutoConfig

        return config_is_decoder(AutoConfig.from_pretrained(spec, trust_remote_code=False).to_dict())
    except Exception:  # noqa: BLE001 - offline, unknown id, unknown type: not a decoder we can use
        return False


# ----------------------------------------------------------------------------- building blocks


def check_quantization(load_in: str) -> None:
    """Refuse 4-bit/8-bit loading where bitsandbytes cannot run (no CUDA, or not installed)."""
    if load_in == "none":
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"llm.load_in={load_in} needs a CUDA GPU (bitsandbytes); this machine has none "
                          "(use llm.load_in=none)")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(f"llm.load_in={load_in} needs bitsandbytes: pip install 'patentcpc[qlora]'") from None


def _quantization_config(load_in: str):
    from transformers import BitsAndBytesConfig

    if load_in == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16)
    return BitsAndBytesConfig(load_in_8bit=True)


def default_dtype(precision: str = "auto") -> torch.dtype | None:
    """bf16 weights on a GPU that has it (precision auto/bf16), else the checkpoint's / fp32."""
    if precision == "fp32":
        return None
    has_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not has_bf16:
        raise ConfigError("transformer.precision bf16 needs a GPU with bf16 support")
    return torch.bfloat16 if has_bf16 else None


def build_base_from_arch(arch: str, tokenizer, causal_lm: bool, max_position_embeddings: int = 2048,
                         dtype: torch.dtype | None = None):
    """A random-init decoder from :data:`LLM_ARCH_PRESETS`, sized to ``tokenizer``'s vocabulary."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    if arch not in LLM_ARCH_PRESETS:
        raise ModelError(f"unknown LLM --arch '{arch}' (presets: {', '.join(LLM_ARCH_PRESETS)})")
    kw = dict(LLM_ARCH_PRESETS[arch])
    model_type = kw.pop("model_type")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = _eos_id(tokenizer)
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=pad, bos_token_id=bos,
                                  eos_token_id=eos, max_position_embeddings=max_position_embeddings,
                                  tie_word_embeddings=False, **kw)
    cls = AutoModelForCausalLM if causal_lm else AutoModel
    model = cls.from_config(config, attn_implementation="sdpa")
    return model.to(dtype) if dtype is not None else model


def load_base(spec: str, causal_lm: bool, revision: str | None = None, dtype: torch.dtype | None = None,
              load_in: str = "none"):
    """A pretrained decoder (hub id or folder): safetensors only, no remote code."""
    from transformers import AutoModel, AutoModelForCausalLM

    kwargs: dict = {"trust_remote_code": False, "use_safetensors": True, "attn_implementation": "sdpa"}
    if revision:
        kwargs["revision"] = revision
    if load_in != "none":
        check_quantization(load_in)
        kwargs["quantization_config"] = _quantization_config(load_in)
        kwargs["device_map"] = {"": torch.cuda.current_device()}
        kwargs["dtype"] = torch.bfloat16
    elif dtype is not None:
        kwargs["dtype"] = dtype
    cls = AutoModelForCausalLM if causal_lm else AutoModel
    from safetensors import SafetensorError

    try:
        return cls.from_pretrained(spec, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # a bad config or weights file
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ModelError(f"cannot load decoder '{spec}': {msg}") from None


def load_tokenizer(spec: str):
    from patentcpc.kinds.transformer.model import load_tokenizer as _load

    tok = _load(spec, trust_remote_code=False)
    if tok.pad_token_id is None:  # most decoders have no pad token: pad with eos (masked anyway)
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    tok.padding_side = "right"
    return tok


def _eos_id(tokenizer) -> int:
    for tid in (tokenizer.eos_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id):
        if tid is not None:
            return int(tid)
    raise ModelError("the tokenizer has no eos, sep or pad token to end a response with")


def lora_targets(model_type: str, configured: list[str] | None):
    if configured:
        return "all-linear" if configured == ["all-linear"] else list(configured)
    return LORA_TARGETS.get(model_type, "all-linear")


def add_lora(base, lora_cfg, model_type: str, gradient_checkpointing: bool = False, quantized: bool = False):
    """Wrap ``base`` in peft LoRA adapters (base weights frozen)."""
    from peft import LoraConfig, get_peft_model

    if quantized:
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=gradient_checkpointing,
                                               gradient_checkpointing_kwargs={"use_reentrant": False})
    elif gradient_checkpointing:
        enable_checkpointing(base)
    config = LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                        target_modules=lora_targets(model_type, lora_cfg.target_modules), bias="none")
    return get_peft_model(base, config)


def enable_checkpointing(model) -> None:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last non-padding token, for left- or right-padded batches."""
    return pool(hidden, attention_mask, "last")


def embedding_backbone(spec: str | None, arch: str | None, seed: int = 0):
    """The ``embedding_backbone`` capability (``patentcpc embed``/``search`` on a decoder): the
    decoder without its LM head, from an LLM ``arch`` preset (random init, MiniLM's tokenizer) or a
    hub id / folder. Returns (module, tokenizer, default pooling ``last``, query prefix or None)."""
    from patentcpc.kinds.transformer.model import default_tokenizer_path

    if arch is not None:
        tok = load_tokenizer(default_tokenizer_path())
        torch.manual_seed(seed)
        base = build_base_from_arch(arch, tok, causal_lm=False)
        name = arch
    else:
        tok = load_tokenizer(spec)
        base = load_base(spec, causal_lm=False, dtype=default_dtype())
        name = spec
    prefix = QWEN3_EMBEDDING_PREFIX if "qwen3-embedding" in str(name).lower() else None
    return base, tok, "last", prefix


# Qwen3-Embedding's instruction for queries (documents get none)
QWEN3_EMBEDDING_PREFIX = "Instruct: Given a patent search query, retrieve relevant patents\nQuery:"


class DecoderClassifier(nn.Module):
    """decoder (LoRA) -> last-token or mean pooled vector -> dropout -> linear -> one logit per label.

    The backbone is called ``encoder`` so that :class:`~patentcpc.models.network.PooledHeadModel`
    (probe head, pooled embeddings) works unchanged."""

    def __init__(self, backbone: nn.Module, n_labels: int, pooling: str = "last", dropout: float = 0.1):
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ModelError(f"pooling must be 'last' or 'mean', not '{pooling}'")
        self.encoder = backbone
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.config.hidden_size, n_labels)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *_: object,
              **__: object) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "last":
            pooled = last_token_pool(hidden, attention_mask)
        else:
            pooled = pool(hidden, attention_mask, "mean")
        return pooled.to(self.head.weight.dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *_: object, **__: object) -> torch.Tensor:
        return self.head(self.dropout(self.embed(input_ids, attention_mask)))


# ----------------------------------------------------------------------------- the code trie


class CodeTrie:
    """Prefix tree over the labels' token id sequences: which tokens may follow a prefix, and
    which prefixes are complete codes."""

    def __init__(self, sequences: Sequence[Sequence[int]]):
        self.children: dict[tuple[int, ...], set[int]] = {}
        self.codes: dict[tuple[int, ...], int] = {}
        for j, seq in enumerate(sequences):
            seq = tuple(int(t) for t in seq)
            if not seq:
                raise ModelError(f"label {j} has no tokens")
            if seq in self.codes:
                raise ModelError(f"labels {self.codes[seq]} and {j} have the same tokens")
            self.codes[seq] = j
            for i in range(len(seq)):
                self.children.setdefault(seq[:i], set()).add(seq[i])

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        return sorted(self.children.get(tuple(prefix), ()))

    def code(self, prefix: Sequence[int]) -> int | None:
        return self.codes.get(tuple(prefix))


# ----------------------------------------------------------------------------- the model kind


class CausalLMCPCModel(PooledHeadModel, CPCModel):
    """A decoder-only LLM classifier (``head`` or ``instruction`` mode) with LoRA adapters.

    ``manifest.extra``: ``mode``, ``pooling``, ``max_length``, ``base_model`` (hub id / folder,
    None for a stored base), ``base_revision``, ``arch``, ``model_type``, ``lora`` (the adapter
    settings, None without adapters), ``load_in``, ``prompt``, ``max_codes``, ``merged``.
    """

    kind = "causal_lm"

    def __init__(self, manifest: Manifest, network: nn.Module, tokenizer, device: str | None = None):
        super().__init__(manifest)
        self.network = network
        self.tokenizer = tokenizer
        quantized = manifest.extra.get("load_in", "none") != "none" and torch.cuda.is_available()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if not quantized:
            self.network.to(self.device)
        self._code_ids: list[list[int]] | None = None
        self._trie: CodeTrie | None = None

    # ----------------------------------------------------------------- construction
    @classmethod
    def create(cls, labels: list[str], model: str | None = None, arch: str | None = None,
               tokenizer: str | None = None, llm_cfg=None, lora_cfg=None, max_length: int = 512,
               dropout: float = 0.1, precision: str = "auto", manifest_fields: dict | None = None,
               device: str | None = None) -> CausalLMCPCModel:
        """A new classifier on a pretrained decoder ``model`` or a random-init ``arch`` preset."""
        from patentcpc.config import LLMConfig, LoRAConfig
        from patentcpc.kinds.transformer.model import default_tokenizer_path

        llm_cfg = llm_cfg or LLMConfig()
        lora_cfg = lora_cfg or LoRAConfig()
        check_quantization(llm_cfg.load_in)
        causal = llm_cfg.mode == "instruction"
        dtype = default_dtype(precision)
        revision = None
        if arch:
            if llm_cfg.load_in != "none":
                raise ConfigError("llm.load_in quantizes pretrained weights: not for a random-init --arch")
            tok = load_tokenizer(tokenizer or default_tokenizer_path())
            base = build_base_from_arch(arch, tok, causal, max(2048, max_length), dtype)
        else:
            if not model:
                raise ModelError("give a decoder --model (hub id or folder) or an LLM --arch preset")
            tok = load_tokenizer(tokenizer or model)
            base = load_base(model, causal, dtype=dtype, load_in=llm_cfg.load_in)
            revision = getattr(base.config, "_commit_hash", None)
        model_type = base.config.model_type
        quantized = llm_cfg.load_in != "none"
        if llm_cfg.lora:
            backbone = add_lora(base, lora_cfg, model_type, llm_cfg.gradient_checkpointing, quantized)
        else:
            if quantized:
                raise ConfigError("a quantized base can only be trained with LoRA adapters (llm.lora=true)")
            if llm_cfg.gradient_checkpointing:
                enable_checkpointing(base)
            backbone = base
        network = backbone if causal else DecoderClassifier(backbone, len(labels), llm_cfg.pooling, dropout)
        fields = dict(manifest_fields or {})
        extra = {"mode": llm_cfg.mode, "pooling": llm_cfg.pooling, "max_length": max_length,
                 "base_model": None if arch else model, "base_revision": revision, "arch": arch,
                 "model_type": model_type, "load_in": llm_cfg.load_in, "merged": False,
                 "lora": ({"r": lora_cfg.r, "alpha": lora_cfg.alpha, "dropout": lora_cfg.dropout,
                           "target_modules": lora_targets(model_type, lora_cfg.target_modules)}
                          if llm_cfg.lora else None),
                 "prompt": llm_cfg.prompt, "max_codes": llm_cfg.max_codes, "score_chunk": llm_cfg.score_chunk,
                 **fields.pop("extra", {})}
        score_type = "probability"
        manifest = Manifest(kind=cls.kind, labels=list(labels), score_type=score_type, threshold=0.5, extra=extra,
                            **fields)
        return cls(manifest, network, tok, device)

    @property
    def mode(self) -> str:
        return str(self.manifest.extra.get("mode", "head"))

    @property
    def max_length(self) -> int:
        return int(self.manifest.extra.get("max_length", 512))

    def backbone(self) -> nn.Module:
        """The decoder (peft-wrapped when it has adapters)."""
        return self.network if self.mode == "instruction" else self.network.encoder

    # ----------------------------------------------------------------- head mode
    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict:
        return self.tokenizer(list(texts), truncation=True, max_length=max_length or self.max_length, padding=False)

    def _head_logits(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Head-mode logits in input order: the transformer engine's batching plan (longest documents
        first) with ``batch_size`` documents a batch and no token budget, each batch padded to its
        longest row (:func:`~patentcpc.models.network.pad_batch`)."""
        from patentcpc.kinds.transformer.engine import plan_batches

        ids = self.tokenize([t if t.strip() else " " for t in texts])["input_ids"]
        out = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        pad = self.tokenizer.pad_token_id or 0
        was_training = self.network.training
        self.network.eval()
        try:
            # no token budget (sys.maxsize): fixed batches of batch_size rows, as this kind has always run
            for idx in plan_batches([len(x) for x in ids], batch_size, token_budget=sys.maxsize):
                batch, mask = pad_batch([ids[i] for i in idx], pad)
                logits = self.network(batch.to(self.device), mask.to(self.device))
                out[idx] = logits.float().cpu().numpy()
        finally:
            self.network.train(was_training)
        return out

    # ----------------------------------------------------------------- instruction mode
    @property
    def eos_id(self) -> int:
        return _eos_id(self.tokenizer)

    @property
    def sep_ids(self) -> list[int]:
        return list(self.tokenizer(",", add_special_tokens=False)["input_ids"])

    def code_ids(self) -> list[list[int]]:
        """Each label's token ids in a response (with its leading space)."""
        if self._code_ids is None:
            self._code_ids = [list(self.tokenizer(" " + c, add_special_tokens=False)["input_ids"])
                              for c in self.labels]
        return self._code_ids

    def trie(self) -> CodeTrie:
        if self._trie is None:
            self._trie = CodeTrie(self.code_ids())
        return self._trie

    def prompt_ids(self, text: str) -> list[int]:
        """The prompt's token ids; the document is truncated so that prompt + response fit."""
        template = str(self.manifest.extra.get("prompt", "{text}"))
        before, after = template.split("{text}", 1)
        tok = self.tokenizer
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
        head = ([bos] if bos is not None else []) + tok(before, add_special_tokens=False)["input_ids"]
        tail = tok(after, add_special_tokens=False)["input_ids"]
        budget = self.max_length - len(head) - len(tail) - self.response_budget()
        body = tok(text, add_special_tokens=False, truncation=True, max_length=max(budget, 1))["input_ids"]
        return head + body[: max(budget, 1)] + tail

    def response_budget(self) -> int:
        longest = max((len(c) for c in self.code_ids()), default=1)
        n = int(self.manifest.extra.get("max_codes", 5))
        return n * (longest + len(self.sep_ids)) + 1

    def response_ids(self, codes: Sequence[str]) -> list[int]:
        """`` C1, C2, ...`` + eos as token ids (codes outside the label set are skipped)."""
        index = {c: j for j, c in enumerate(self.labels)}
        ids: list[int] = []
        cols = [index[c] for c in codes if c in index][: int(self.manifest.extra.get("max_codes", 5))]
        for n, j in enumerate(cols):
            if n:
                ids += self.sep_ids
            ids += self.code_ids()[j]
        return ids + [self.eos_id]

    def _lm(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, past=None,
            use_cache: bool = False):
        return self.network(input_ids=input_ids, attention_mask=attention_mask, past_key_values=past,
                            use_cache=use_cache)

    @torch.no_grad()
    def label_logprobs(self, text: str) -> np.ndarray:
        """log P(code tokens, then ',' or end | prompt) for every label: the prompt runs once, its
        KV cache is repeated for chunks of labels that run their (padded) code tokens."""
        codes = self.code_ids()
        prompt = torch.as_tensor([self.prompt_ids(text)], device=self.device)
        out = self._lm(prompt, use_cache=True)
        first = torch.log_softmax(out.logits[0, -1].float(), -1)
        ends = [self.sep_ids[0], self.eos_id]
        result = np.zeros(len(codes), dtype=np.float64)
        chunk = int(self.manifest.extra.get("score_chunk", 256))
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(codes), chunk):
            rows = codes[start : start + chunk]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long, device=self.device)
            mask = torch.zeros((len(rows), prompt.shape[1] + width), dtype=torch.long, device=self.device)
            mask[:, : prompt.shape[1]] = 1
            for r, seq in enumerate(rows):
                ids[r, : len(seq)] = torch.as_tensor(seq)
                mask[r, prompt.shape[1] : prompt.shape[1] + len(seq)] = 1
            past = copy.deepcopy(out.past_key_values)
            past.batch_repeat_interleave(len(rows))
            logp = torch.log_softmax(self._lm(ids, mask, past).logits.float(), -1)  # (rows, width, vocab)
            for r, seq in enumerate(rows):
                total = first[seq[0]]
                for t in range(1, len(seq)):
                    total = total + logp[r, t - 1, seq[t]]
                total = total + torch.logsumexp(logp[r, len(seq) - 1, ends], 0)
                result[start + r] = float(total)
        return result

    def _instruction_scores(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        was_training = self.network.training
        self.network.eval()
        try:
            for i, text in enumerate(texts):
                out[i] = np.exp(self.label_logprobs(text))
        finally:
            self.network.train(was_training)
        return out

    @torch.inference_mode()
    def generate(self, texts: Sequence[str], max_codes: int | None = None) -> list[list[str]]:
        """Greedy decoding constrained by the code trie: after the prompt only label tokens, after a
        complete code only ',' or end; returns each document's codes (valid labels, no repeats)."""
        if self.mode != "instruction":
            raise ModelError("generate() needs an instruction-mode model (llm.mode=instruction)")
        trie, sep, eos = self.trie(), self.sep_ids, self.eos_id
        limit = max_codes or int(self.manifest.extra.get("max_codes", 5))
        results = []
        self.network.eval()
        for text in texts:
            ids = self.prompt_ids(text)
            codes: list[str] = []
            prefix: list[int] = []
            while True:
                logits = self._lm(torch.as_tensor([ids], device=self.device)).logits[0, -1]
                allowed = trie.allowed(prefix)
                j = trie.code(prefix)
                if j is not None:  # a complete code: end it (or continue a longer one)
                    allowed = allowed + [sep[0], eos]
                choice = allowed[int(torch.argmax(logits[torch.as_tensor(allowed, device=logits.device)]))]
                if j is not None and choice in (sep[0], eos):
                    if self.labels[j] not in codes:
                        codes.append(self.labels[j])
                    prefix = []
                    if choice == eos or len(codes) >= limit:
                        break
                    ids = ids + sep
                    continue
                prefix.append(choice)
                ids = ids + [choice]
            results.append(codes)
        return results

    # ----------------------------------------------------------------- scores
    @torch.inference_mode()
    def raw_scores(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Head mode: sigmoid probabilities. Instruction mode: each code's sequence probability."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.labels)))
        if self.mode == "instruction":
            return self._instruction_scores(texts, progress)
        return sigmoid(self._head_logits(texts, batch_size).astype(np.float64))

    # ----------------------------------------------------------------- persistence
    def _save_weights(self, folder: Path) -> None:
        from safetensors.torch import save_file

        backbone = self.backbone()
        has_adapter = hasattr(backbone, "peft_config")
        if has_adapter:
            backbone.save_pretrained(folder / ADAPTER_DIR, safe_serialization=True)
        if not self.manifest.extra.get("base_model") or not has_adapter:  # random-init or fully trained base
            base = backbone.get_base_model() if has_adapter else backbone
            _save_base(base, folder / BASE_DIR)
        self.tokenizer.save_pretrained(folder / TOKENIZER_DIR)
        if self.mode == "head":
            state = {k: v.detach().float().cpu().contiguous() for k, v in self.network.head.state_dict().items()}
            save_file(state, str(folder / HEAD_FILE))

    def save_merged(self, path: str | os.PathLike) -> None:
        """Write a model folder whose ``base/`` holds the base with the adapters merged in (a plain
        transformers folder), plus head, tokenizer and manifest; it loads without peft."""
        from patentcpc.models.artifact import atomic_dir, write_manifest

        backbone = self.backbone()
        if not hasattr(backbone, "peft_config"):
            raise ModelError("this model has no LoRA adapters to merge")
        if self.manifest.extra.get("load_in", "none") != "none" and torch.cuda.is_available():
            raise ModelError("load the model without quantization to merge its adapters")
        merged = backbone.merge_and_unload()
        if self.mode == "instruction":
            self.network = merged
        else:
            self.network.encoder = merged
        self.manifest.extra.update(merged=True, merged_from=self.manifest.extra.get("base_model"))
        with atomic_dir(path) as tmp:
            self._save_weights(tmp)
            write_manifest(tmp, self.manifest)

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, device: str | None = None,
             dtype: torch.dtype | None = None, **_: object) -> CausalLMCPCModel:
        from safetensors.torch import load_file

        folder = Path(path)
        extra = manifest.extra
        mode = extra.get("mode", "head")
        causal = mode == "instruction"
        if not (folder / TOKENIZER_DIR).is_dir() or (mode == "head" and not (folder / HEAD_FILE).exists()):
            raise ModelError(f"{folder}: incomplete causal_lm model (needs {TOKENIZER_DIR}/"
                             f"{' and ' + HEAD_FILE if mode == 'head' else ''})")
        tok = load_tokenizer(str(folder / TOKENIZER_DIR))
        dtype = dtype if dtype is not None else default_dtype("auto")
        load_in = extra.get("load_in", "none") if torch.cuda.is_available() else "none"
        if (folder / BASE_DIR).is_dir():
            base = load_base(str(folder / BASE_DIR), causal, dtype=dtype)
        elif extra.get("base_model"):
            if Path(str(extra["base_model"])).is_dir():  # a local base: the same checks (transformers
                # itself loads safetensors only, so a snapshot's pickle files beside them are left alone)
                check_folder_tree(str(extra["base_model"]), what="the base model folder", refuse_pickle=False)
            base = load_base(str(extra["base_model"]), causal, revision=extra.get("base_revision"), dtype=dtype,
                             load_in=load_in)
        else:
            raise ModelError(f"{folder}: no {BASE_DIR}/ and no base_model in the manifest")
        backbone = base
        if (folder / ADAPTER_DIR).is_dir() and not extra.get("merged"):
            from peft import PeftModel

            try:  # the folder passed check_no_code_files: adapter weights are safetensors
                backbone = PeftModel.from_pretrained(base, str(folder / ADAPTER_DIR), is_trainable=False)
            except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
                raise ModelError(f"{folder / ADAPTER_DIR}: not a loadable adapter "
                                 f"({(str(exc).splitlines() or [type(exc).__name__])[0][:200]})") from None
        if causal:
            network = backbone
        else:
            network = DecoderClassifier(backbone, len(manifest.labels), extra.get("pooling", "last"), 0.0)
            from safetensors import SafetensorError

            try:
                network.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
            except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as exc:
                raise ModelError(f"{folder / HEAD_FILE}: not a loadable head "
                                 f"({(str(exc).splitlines() or [type(exc).__name__])[0][:200]})") from None
        network.eval()
        return cls(manifest, network, tok, device)


def _save_base(base: nn.Module, folder: Path) -> None:
    """config.json + model.safetensors of a (possibly adapter-injected) base, without adapters."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in base.state_dict().items():
        if "lora_" in k:
            continue
        state[k.replace(".base_layer.", ".")] = v.detach().cpu().contiguous().clone()
    base.config.save_pretrained(folder)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
