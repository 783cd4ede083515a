"""Training an ensemble (``patentcpc train --model ensemble``): members fitted on a training part,
weights, calibrator and thresholds on a held-out part (:func:`patentcpc.models.ensemble.fit_ensemble`),
then the members re-fitted on all the data. The model kind itself is
:class:`patentcpc.models.ensemble.EnsembleCPCModel`."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from patentcpc.errors import ConfigError
from patentcpc.models.base import CPCModel
from patentcpc.models.ensemble import fit_ensemble, with_members
from patentcpc.results import TrainResult

log = logging.getLogger(__name__)


def _member_cfg(cfg, spec: str):
    return dataclasses.replace(cfg, model=spec, ensemble=dataclasses.replace(cfg.ensemble, members=[]),
                               explain=dataclasses.replace(cfg.explain, index=False))


def _write_part(data, path: Path) -> str:
    from patentcpc.inference import write_jsonl  # noqa: PLC0415

    write_jsonl(({"id": r["id"], "text": r["text"], "cpc_ids": ",".join(r["labels"])} for r in data.dataset), path)
    return str(path)


def train_members(cfg, specs: Sequence[str], data_path: str, work: Path, tag: str) -> list[CPCModel]:
    """Train one model per member spec on ``data_path`` (each with its own calibration)."""
    from patentcpc.training import train_model  # noqa: PLC0415

    members = []
    for i, spec in enumerate(specs):
        if spec == "ensemble":
            raise ConfigError("an ensemble member cannot itself be an ensemble")
        log.info("ensemble: training member %d (%s) on %s", i, spec, tag)
        out = work / f"{tag}-member-{i}"
        members.append(train_model(_member_cfg(cfg, spec), data_path, None, out).model)
    return members


def train_ensemble(cfg, data: str | None, eval_data: str | None = None, output: str | os.PathLike | None = None,
                   **_: object):
    """``patentcpc train --model ensemble``; see the module docstring. Returns a TrainResult."""
    from patentcpc.config import to_dict  # noqa: PLC0415
    from patentcpc.data import load_data, split_data  # noqa: PLC0415
    from patentcpc.io import check_output_dir  # noqa: PLC0415
    from patentcpc.training import evaluate_model  # noqa: PLC0415

    specs = [s.strip() for s in cfg.ensemble.members if s.strip()]
    if len(specs) < 2:
        raise ConfigError("--model ensemble needs --members with at least two comma-separated member specs "
                          "(e.g. tfidf,sentence-transformers/all-MiniLM-L6-v2)")
    if not data:
        raise ConfigError("--data is required to train an ensemble")
    if output is None:
        raise ConfigError("--output is required to train an ensemble")
    check_output_dir(output, "model", [data, eval_data])  # before the work
    full = load_data(data, **cfg.data.load_kwargs())
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.members-"))
    try:
        if eval_data:
            held = load_data(eval_data, **cfg.data.load_kwargs(), preferred_text_fields=full.text_fields)
            part_path = _write_part(full, work / "all.jsonl")
        else:
            part, held = split_data(full, (1 - cfg.ensemble.valid_fraction, cfg.ensemble.valid_fraction), cfg.seed)
            part_path = _write_part(part, work / "part.jsonl")
        members = train_members(cfg, specs, part_path, work, "part")
        train_info = {"source": str(data), "n_docs": len(full), "fingerprint": full.fingerprint(),
                      "n_skipped": full.n_skipped, "eval_source": str(eval_data) if eval_data else "split",
                      "n_eval_docs": len(held)}
        model = fit_ensemble(members, held, cfg, specs, {
            "label_level": cfg.data.level, "text_view": full.text_view, "training_data": train_info,
            "config": to_dict(cfg), "extra": {"model_name": "ensemble"}})
        metrics_held = evaluate_model(model, held)
        if cfg.ensemble.refit and not eval_data:
            members = train_members(cfg, specs, _write_part(full, work / "all.jsonl"), work, "all")
            model = with_members(model, members)
        model.manifest.extra["ensemble"]["refit_on_all"] = bool(cfg.ensemble.refit and not eval_data)
        if cfg.explain.index:
            from patentcpc.explain import ExplainIndex  # noqa: PLC0415

            model.explain_index = ExplainIndex.build(full, cfg.explain.snippet_chars)
        metrics: dict = {}
        if eval_data:
            metrics = metrics_held
            model.manifest.metrics = {"eval_data": str(eval_data), "thresholds_tuned_on_this_data": True, **metrics}
        else:
            model.manifest.metrics = {"eval_data": "held-out split (before the members' re-fit)",
                                      "thresholds_tuned_on_this_data": True, **metrics_held}
        model.save(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return TrainResult(model, metrics, str(out), None)
