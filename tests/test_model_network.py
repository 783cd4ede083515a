"""The public head/embedding surface of encoder + head models (models.network.PooledHeadModel), which
the training code (training/head.py) uses instead of reaching into the nn.Module."""

import pytest

torch = pytest.importorskip("torch")

from patentcpc.models.network import pad_batch  # noqa: E402


def _model():
    from patentcpc.kinds.transformer.model import TransformerCPCModel

    return TransformerCPCModel.create(["A01B", "H01L", "G06F"], arch="bert-tiny", max_length=16, device="cpu")


def test_pad_batch_right_pads_and_masks():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_token_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_set_head_then_head_weights_round_trip():
    model = _model()
    w = torch.arange(3 * model.embedding_dim, dtype=torch.float32).reshape(3, -1) / 100
    b = torch.tensor([0.5, -1.0, 2.0])
    model.set_head(w, b)
    got_w, got_b = model.head_weights()
    torch.testing.assert_close(got_w, w)
    torch.testing.assert_close(got_b, b)
    model.set_head(bias=torch.zeros(3))  # bias only: the weight stays
    got_w, got_b = model.head_weights()
    torch.testing.assert_close(got_w, w)
    assert got_b.abs().sum() == 0


def test_network_state_is_a_copy_that_loads_back():
    model = _model()
    state = model.network_state()
    with torch.no_grad():
        for p in model.network.parameters():
            p.add_(1.0)
    name = "head.weight"
    assert not torch.equal(model.network.state_dict()[name], state[name])
    model.load_network_state(state)
    assert torch.equal(model.network.state_dict()[name], state[name])


def test_pooled_embeddings_match_embed_in_dataset_order():
    from datasets import Dataset

    model = _model()
    texts = ["a long text about plough tines and soil", "chip", "wafer etching"]
    enc = model.tokenize(texts)
    ds = Dataset.from_dict({"input_ids": enc["input_ids"], "length": [len(x) for x in enc["input_ids"]]})
    got = model.pooled_embeddings(ds, batch_size=2)
    assert got.shape == (3, model.embedding_dim)
    model.network.eval()
    with torch.no_grad():
        for i, row in enumerate(enc["input_ids"]):
            ids, mask = pad_batch([row], model.tokenizer.pad_token_id or 0)
            torch.testing.assert_close(got[i], model.network.embed(ids, mask)[0].float(), atol=1e-5, rtol=1e-4)


def test_an_encoder_without_sdpa_attention_loads_with_its_eager_attention(tmp_path, caplog):
    """MPNet (all-mpnet-base-v2) has no SDPA attention in transformers: asked for the default
    ``sdpa``, load_encoder falls back to its eager attention and says so; the weights are the
    folder's, and a named implementation it lacks is still an error."""
    import logging

    from transformers import MPNetConfig, MPNetModel

    from patentcpc.errors import ModelError
    from patentcpc.kinds.transformer.model import load_encoder

    torch.manual_seed(0)
    MPNetModel(MPNetConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=40)).save_pretrained(tmp_path / "mp")
    with caplog.at_level(logging.WARNING, logger="patentcpc.kinds.transformer.model"):
        enc = load_encoder(str(tmp_path / "mp"))
    assert enc.config._attn_implementation == "eager" and "no SDPA attention" in caplog.text
    saved = MPNetModel.from_pretrained(tmp_path / "mp", attn_implementation="eager").state_dict()
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in saved.items())
    with pytest.raises(ModelError, match="cannot load encoder"):
        load_encoder(str(tmp_path / "mp"), attn_implementation="flash_attention_2")
