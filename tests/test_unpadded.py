"""Unpadded ModernBERT (patentcpc.kinds.transformer.unpadded): the code paths that run on a CPU against transformers'
padded SDPA forward, fp32, tight tolerance; forward and gradients."""

from __future__ import annotations

import pytest
import torch

from patentcpc.errors import ModelError
from patentcpc.kinds.transformer import unpadded
from patentcpc.kinds.transformer.model import EncoderClassifier

LENGTHS = [37, 5, 21, 1, 30, 12]  # > the window (8 each side) and shorter; one 1-token document


def tiny_net(pooling: str = "cls", model_type: str = "modernbert") -> EncoderClassifier:
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    if model_type == "modernbert":
        cfg = AutoConfig.for_model("modernbert", vocab_size=97, hidden_size=32, num_hidden_layers=4,
                                   num_attention_heads=2, intermediate_size=48, local_attention=16,
                                   global_attn_every_n_layers=2, pad_token_id=0, cls_token_id=1, sep_token_id=2,
                                   bos_token_id=1, eos_token_id=2)
    else:
        cfg = AutoConfig.for_model("bert", vocab_size=97, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=48, pad_token_id=0)
    enc = AutoModel.from_config(cfg, attn_implementation="sdpa")
    net = EncoderClassifier(enc, 7, pooling, dropout=0.0)
    with torch.no_grad():  # random but not tiny weights, so that attention matters
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


def padded_batch(lengths=LENGTHS):
    g = torch.Generator().manual_seed(1)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, n in enumerate(lengths):
        ids[r, :n] = torch.randint(3, 97, (n,), generator=g)
        mask[r, :n] = 1
    return ids, mask


def test_sliding_window_matters_in_this_fixture():
    """The fixture must exercise the local layers' window: documents longer than it."""
    net = tiny_net()
    assert net.encoder.config.sliding_window == 8
    assert max(LENGTHS) > 2 * net.encoder.config.sliding_window + 1
    assert "sliding_attention" in net.encoder.config.layer_types


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("kernel", ["reference", "sdpa_repad"])
def test_unpadded_forward_matches_padded_sdpa(pooling, kernel):
    net = tiny_net(pooling)
    ids, mask = padded_batch()
    with torch.no_grad():
        padded = net(ids, mask, None)
        unpadded_out = net(ids, mask, kernel)
    assert unpadded_out.shape == padded.shape == (len(LENGTHS), 7)
    assert padded.abs().max() > 1e-2  # not trivially zero
    torch.testing.assert_close(unpadded_out, padded, atol=2e-5, rtol=1e-4)


def test_wrong_window_is_detected():
    """The comparison above can fail: attention over whole documents in the local layers differs."""
    net = tiny_net()
    ids, mask = padded_batch()
    with torch.no_grad():
        padded = net(ids, mask, None)
        net.encoder.config.sliding_window = 10_000
        wide = net(ids, mask, "reference")
    assert (wide - padded).abs().max() > 1e-3


def test_unpadded_gradients_match_padded():
    """Training: the same loss and the same gradients through the unpadded layer loop."""
    torch.manual_seed(0)
    target = (torch.rand(len(LENGTHS), 7) > 0.7).float()
    grads = {}
    for kernel in (None, "sdpa_repad", "reference"):
        net = tiny_net("mean").train()
        ids, mask = padded_batch()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(ids, mask, kernel), target)
        loss.backward()
        grads[kernel] = (loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
    ref_loss, ref = grads[None]
    assert ref["encoder.layers.1.attn.Wqkv.weight"].abs().max() > 0
    for kernel in ("sdpa_repad", "reference"):
        loss, g = grads[kernel]
        torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-5)
        assert g.keys() == ref.keys()
        for name in ref:
            torch.testing.assert_close(g[name], ref[name], atol=1e-5, rtol=1e-4, msg=f"{kernel} {name}")


def test_pack_layout():
    cu, max_len, (lens, row, col) = unpadded.pack_layout([3, 1, 2], "cpu")
    assert cu.tolist() == [0, 3, 4, 6] and cu.dtype == torch.int32 and max_len == 3
    assert row.tolist() == [0, 0, 0, 1, 2, 2] and col.tolist() == [0, 1, 2, 0, 0, 1]
    with pytest.raises(ValueError):
        unpadded.pack_layout([3, 0], "cpu")


def test_kernel_selection_on_cpu():
    found = unpadded.available_kernels()
    assert set(found) == set(unpadded.KERNELS)
    assert not found["sdpa_repad"].startswith("missing")
    assert unpadded.select_kernel("cpu", torch.bfloat16) is None
    net = tiny_net()
    assert net.attention == "auto" and net.unpadded_kernel(torch.device("cpu")) is None  # CPU: padded
    net.attention = "sdpa_repad"
    assert net.unpadded_kernel(torch.device("cpu")) == "sdpa_repad"
    with pytest.raises(ModelError):
        net.attention = "bogus"
    with pytest.raises(ModelError):
        tiny_net(model_type="bert").attention = "reference"


def test_auto_picks_a_fast_kernel_on_cuda_bf16(monkeypatch):
    """The selection logic on a (pretended) H100: a fast kernel for bf16, none for fp32."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(unpadded, "available_kernels",
                        lambda: {"flash_attn": "missing: x", "torch_varlen": "missing: y", "aten_flash": "ok"})
    assert unpadded.select_kernel("cuda", torch.bfloat16) == "aten_flash"
    assert unpadded.select_kernel("cuda", torch.float32) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert unpadded.select_kernel("cuda", torch.bfloat16) is None


def test_aten_flash_wrapper_plumbing(monkeypatch):
    """The autograd wrapper around aten's FlashAttention varlen op (CUDA-only) hands cu_seqlens,
    scale and window to forward and backward as the op's schema wants: checked with stand-in ops
    that compute the reference attention on the CPU."""
    def ref(q, k, v, cu, scale, window):
        lens = (cu[1:] - cu[:-1]).long()
        layout = (lens, None, None)
        return unpadded.varlen_attention(q, k, v, cu, int(lens.max()), None if window < 0 else window, scale,
                                         "reference", layout=layout)

    seen = {}

    def fake_forward(q, k, v, cu_q, cu_k, max_q, max_k, dropout, causal, debug, *, scale, window_size_left,
                     window_size_right):
        assert cu_q is cu_k and max_q == max_k and dropout == 0.0 and not causal and not debug
        assert window_size_left == window_size_right
        seen["forward"] = (scale, window_size_left, max_q)
        out = ref(q, k, v, cu_q, scale, window_size_left)
        return out, torch.zeros(1), torch.tensor([7]), torch.tensor([8]), torch.zeros(0)

    def fake_backward(grad, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, dropout, causal, rng, unused, *, scale,
                      window_size_left, window_size_right):
        assert rng.item() == 7 and unused.item() == 8 and window_size_left == window_size_right
        seen["backward"] = (scale, window_size_left)
        with torch.enable_grad():
            qkv = [x.detach().requires_grad_() for x in (q, k, v)]
            return torch.autograd.grad(ref(*qkv, cu_q, scale, window_size_left), qkv, grad)

    monkeypatch.setattr(torch.ops.aten, "_flash_attention_forward", fake_forward)
    monkeypatch.setattr(torch.ops.aten, "_flash_attention_backward", fake_backward)
    torch.manual_seed(0)
    cu, max_len, layout = unpadded.pack_layout([5, 11, 3], "cpu")
    q, k, v = (torch.randn(19, 2, 8, requires_grad=True) for _ in range(3))
    for window in (None, 2):
        got = unpadded.varlen_attention(q, k, v, cu, max_len, window, 0.3, "aten_flash")
        want = unpadded.varlen_attention(q, k, v, cu, max_len, window, 0.3, "sdpa_repad", layout=layout)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        g_got = torch.autograd.grad(got.square().sum(), (q, k, v))
        g_want = torch.autograd.grad(want.square().sum(), (q, k, v))
        for a, b in zip(g_got, g_want, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        w = -1 if window is None else window
        assert seen == {"forward": (0.3, w, 11), "backward": (0.3, w)}
