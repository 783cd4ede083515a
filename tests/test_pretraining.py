"""Patent tokenizers and MLM pretraining: tokenizer -> random-init pretrain -> train, end to end."""

from __future__ import annotations

import json

import pytest

from patentcpc.errors import ConfigError, ModelError


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_tokenizer_train_makes_a_loadable_tokenizer(tiny_jsonl, tmp_path, kind):
    from transformers import AutoTokenizer

    from patentcpc.data import load_data
    from patentcpc.tokenization import train_tokenizer

    data = load_data(tiny_jsonl)
    train_tokenizer(data, tmp_path / "tok", vocab_size=300, kind=kind, min_frequency=1)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    ids = tok("A semiconductor transistor on silicon")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.mask_token_id is not None and tok.pad_token_id is not None
    assert tok.unk_token_id not in ids[1:-1]  # words of the training texts are in the vocabulary
    with pytest.raises(ConfigError):
        train_tokenizer(data, tmp_path / "bad", vocab_size=300, kind="unigram")


def test_pretrain_config_and_nan_guard():
    from patentcpc.pretraining import PretrainConfig, _nan_guard

    with pytest.raises(ConfigError):
        PretrainConfig()
    with pytest.raises(ConfigError):
        PretrainConfig(arch="modernbert-tiny", mlm_probability=1.5)
    guard = _nan_guard()

    class State:
        global_step = 3

    guard.on_log(None, State(), None, logs={"loss": 2.5})
    with pytest.raises(ModelError):
        guard.on_log(None, State(), None, logs={"loss": float("nan")})


@pytest.mark.slow
def test_tokenizer_then_pretrain_then_train_end_to_end(tiny_jsonl, tmp_path):
    from patentcpc.cli import main
    from patentcpc.config import TrainConfig, resolve
    from patentcpc.registry import load_model, train_model

    tok, pre = tmp_path / "tok", tmp_path / "pre"
    for argv in (["tokenizer", "train", "--data", str(tiny_jsonl), "--vocab-size", "300", "--min-frequency", "1",
                  "--output", str(tok)],
                 ["pretrain", "--arch", "modernbert-tiny", "--tokenizer", str(tok), "--data", str(tiny_jsonl),
                  "--output", str(pre), "--max-steps", "3", "--batch-size", "8", "--max-length", "32"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert not exc.code, argv
    assert (pre / "model.safetensors").exists() and (pre / "tokenizer.json").exists()
    assert json.loads((pre / "config.json").read_text())["model_type"] == "modernbert"

    cfg = resolve(TrainConfig, None, {"model": str(pre)},
                  ["transformer.epochs=1", "transformer.batch_size=8", "transformer.max_length=32"])
    train_model(cfg, str(tiny_jsonl), None, tmp_path / "clf")
    model = load_model(tmp_path / "clf")
    assert model.manifest.extra["base_model"] == str(pre)
    assert model.scores(["Plough tines"]).shape == (1, len(model.labels))


@pytest.mark.slow
def test_pretrain_masking_rate_depends_on_the_model(tiny_jsonl, tmp_path):
    from patentcpc.data import load_data
    from patentcpc.pretraining import PretrainConfig, pretrain

    data = load_data(tiny_jsonl)
    summary = pretrain(PretrainConfig(arch="bert-tiny", max_steps=1, batch_size=4, max_length=32), data,
                       tmp_path / "bert")
    assert summary["mlm_probability"] == 0.15 and summary["model_type"] == "bert"
    assert summary["train_loss"] == pytest.approx(summary["train_loss"])  # finite
