"""Training a patent vocabulary with the ``tokenizers`` library.

``patentcpc tokenizer train --data F --vocab-size V --output DIR`` writes a Hugging Face fast
tokenizer folder (``tokenizer.json`` + ``tokenizer_config.json``) that ``AutoTokenizer`` loads and
that a random-init ``--arch`` model uses (``--tokenizer DIR``). Two kinds:

* ``wordpiece`` (BERT style: lower-cased, ``[CLS] text [SEP]``);
* ``bpe`` (byte-level BPE as ModernBERT uses, cased, the same special tokens).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from patentcpc.errors import ConfigError

SPECIAL = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
           "mask_token": "[MASK]"}
KINDS = ("wordpiece", "bpe")


def _texts(data, batch_size: int = 1000) -> Iterator[list[str]]:
    for batch in data.dataset.iter(batch_size=batch_size):
        yield batch["text"]


def train_tokenizer(data, output: str | os.PathLike, vocab_size: int = 32_000, kind: str = "wordpiece",
                    min_frequency: int = 2, max_length: int = 8192):
    """Train a tokenizer on the texts of ``data`` (a :class:`~patentcpc.data.PatentData`), save
    it to ``output`` (atomically) and return it as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if kind not in KINDS:
        raise ConfigError(f"tokenizer kind must be one of {', '.join(KINDS)}, not '{kind}'")
    if vocab_size < 100:
        raise ConfigError(f"--vocab-size must be at least 100, not {vocab_size}")
    specials = list(SPECIAL.values())
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=specials)
    else:
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_texts(data), trainer=trainer, length=len(data))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, **SPECIAL)
    from patentcpc.models.artifact import atomic_dir

    with atomic_dir(output, kind="tokenizer") as tmp:
        fast.save_pretrained(str(tmp))
    return fast


def tokenizer_stats(tokenizer, texts: list[str]) -> dict:
    """Vocabulary size and mean tokens per document (to compare vocabularies)."""
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]
    return {"vocab_size": len(tokenizer), "n_docs": len(texts),
            "mean_tokens": sum(lengths) / len(lengths) if lengths else 0.0}


def is_tokenizer_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / "tokenizer.json").exists()
