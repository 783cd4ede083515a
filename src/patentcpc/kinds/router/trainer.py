"""Training a router (``patentcpc train --model router --members ENCODER,LLM``): members trained (or
taken from folders) on a training part, the routing threshold tuned on the validation part for
``router.share``. The model kind itself is :class:`patentcpc.kinds.router.model.RouterCPCModel`."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

from patentcpc.errors import ConfigError
from patentcpc.kinds.router import KIND
from patentcpc.kinds.router.model import MEMBERS_DIR, RouterCPCModel, tune_threshold
from patentcpc.models.artifact import Manifest


def _member_folder(spec: str) -> bool:
    return (Path(spec) / "manifest.json").is_file()


def train_router(cfg, data: str | None, eval_data: str | None = None, output: str | os.PathLike | None = None,
                 **_: object):
    """Train (or take) the two members on the training part of ``data``, tune the routing threshold
    on the validation part (``eval_data``, else a ``router.valid_fraction`` split) for
    ``router.share``, evaluate router and members there, and save the router folder."""
    from patentcpc.config import to_dict
    from patentcpc.data import (
        load_data,
        load_for_model,
        pin_view_settings,
        split_data,
    )
    from patentcpc.io import write_jsonl
    from patentcpc.metrics import evaluate_scores
    from patentcpc.registry import (
        load_model,
        train_model,
    )
    from patentcpc.results import TrainResult

    rcfg = cfg.router
    if not rcfg.members:
        raise ConfigError("--model router needs --members ENCODER,LLM (two model specs or model folders)")
    if output is None:
        raise ConfigError("--output is required to train a router")
    if not data:
        raise ConfigError("--data is required to train a router")
    full = load_data(data, **cfg.data.load_kwargs())
    cfg = pin_view_settings(cfg, full.text_view)  # the members read a whole-text copy of --data
    if eval_data:
        train, valid = full, load_data(eval_data, **cfg.data.load_kwargs(), preferred_text_fields=full.text_fields)
    else:
        train, valid = split_data(full, (1 - rcfg.valid_fraction, rcfg.valid_fraction), cfg.seed)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.router-build-"))
    try:
        train_file = build / "train.jsonl"
        write_jsonl(({"id": r["id"], "text": r["text"], "cpc_ids": ",".join(r["labels"])} for r in train.dataset),
                    train_file)
        members = []
        for i, spec in enumerate(rcfg.members):
            if _member_folder(spec):
                members.append(load_model(spec))
                continue
            member_data = dataclasses.replace(cfg.data, text_fields=None, label_field=None, id_field=None)
            member_cfg = dataclasses.replace(cfg, model=spec, data=member_data,
                                             router=dataclasses.replace(rcfg, members=None))
            members.append(train_model(member_cfg, str(train_file), None, build / MEMBERS_DIR / str(i)).model)
        labels = list(dict.fromkeys([*members[0].labels, *members[1].labels]))
        counts = Counter(c for labs in train.labels for c in labs)
        rare = sorted(c for c in members[0].labels if counts[c] < rcfg.rare_count)
        train_info = {"source": str(data), "n_docs": len(train), "fingerprint": train.fingerprint(),
                      "n_skipped": full.n_skipped, "eval_source": str(eval_data) if eval_data else "split",
                      "n_eval_docs": len(valid)}
        manifest = Manifest(kind=RouterCPCModel.kind, labels=labels, label_level=cfg.data.level,
                            text_view=full.text_view, score_type="margin", threshold=0.0,
                            training_data=train_info, config=to_dict(cfg, KIND.config),
                            extra={"members": list(rcfg.members), "share_target": rcfg.share,
                                   "rare_count": rcfg.rare_count, "rare_labels": rare, "route_threshold": None})
        router = RouterCPCModel(manifest, members)
        valid = load_for_model(eval_data, cfg.data, router) if eval_data else valid
        margins0 = router.member_margins(0, valid.texts)
        manifest.extra["route_threshold"] = tune_threshold(margins0, labels, set(rare), rcfg.share)
        scores = router.scores(valid.texts)
        metrics = {**evaluate_scores(scores, valid.labels, labels, router.thresholds), **router.routing_report()}
        for i, m in enumerate(members):  # each member alone, for the cost/accuracy trade-off
            alone = evaluate_scores(m.scores(valid.texts), valid.labels, m.labels, m.thresholds)
            metrics.update({f"member{i}_{k}": alone[k] for k in ("precision@1", "f1@1", "micro_f1") if k in alone})
        manifest.metrics = {"eval_data": str(eval_data) if eval_data else "validation split",
                            "route_threshold_tuned_on_this_data": True, **metrics}
        from patentcpc.training.guard import check_model

        check_model(router, None, valid.labels, None, cfg.guard, what="the validation data", scores=scores)
        router.save(output)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return TrainResult(router, metrics, str(output))
