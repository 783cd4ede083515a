"""Training an ensemble (``patentcpc train --model ensemble``).

The weights, the ensemble's calibrator and its thresholds must be tuned on member predictions for
documents the members were not trained on (:func:`patentcpc.kinds.ensemble.model.fit_ensemble`). Three
ways, in order of preference:

- ``--eval-data``: the members are trained on all of ``--data``, tuned on that file;
- cross-fitting (``ensemble.folds`` >= 2, up to ``ensemble.crossfit_max_docs`` documents): each
  member is trained once per fold without it and predicts it, so every document of ``--data``
  is a tuning document; then the members are trained on all of ``--data``;
- a held-out part (``ensemble.valid_fraction``), the members re-fitted on all of ``--data``
  afterwards (``ensemble.refit``).

With ``ensemble.bagging``, cross-fitting keeps the fold models: each member is saved as the
mean of its fold models and its all-data model (:func:`patentcpc.kinds.ensemble.model.bag`).

Each encoder member's neighbour vote is built from the documents that member was trained on.
The model kind itself is :class:`patentcpc.kinds.ensemble.model.EnsembleCPCModel`."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from patentcpc.errors import ConfigError
from patentcpc.io import atomic_write_text
from patentcpc.kinds.ensemble.model import EnsembleCPCModel, bag, fit_ensemble_scored, label_counts, with_members
from patentcpc.kinds.ensemble.neighbours import NeighbourVote
from patentcpc.models.base import CPCModel
from patentcpc.results import TrainResult

log = logging.getLogger(__name__)


def _member_cfg(cfg, spec: str):
    return dataclasses.replace(cfg, model=spec, ensemble=dataclasses.replace(cfg.ensemble, members=[]),
                               explain=dataclasses.replace(cfg.explain, index=False))


def _write_part(texts: Sequence[str], gold: Sequence[Sequence[str]], path: Path) -> str:
    from patentcpc.io import write_jsonl

    write_jsonl(({"id": str(i), "text": t, "cpc_ids": ",".join(g)} for i, (t, g) in enumerate(zip(texts, gold,
                                                                                                   strict=True))),
                path)
    return str(path)


def train_members(cfg, specs: Sequence[str], data_path: str, work: Path, tag: str) -> list[CPCModel]:
    """Train one model per member spec on ``data_path`` (each with its own calibration). A member
    already complete in ``work`` (a run killed later, same data and configuration) is reused."""
    from patentcpc.registry import load_model, select, train_model

    members = []
    for i, spec in enumerate(specs):
        member_cfg = _member_cfg(cfg, spec)
        if member_cfg.model == "ensemble":
            raise ConfigError("an ensemble member cannot itself be an ensemble")
        select(member_cfg).require("member", f"ensemble member {spec}")
        out = work / f"{tag}-member-{i}"
        if (out / "manifest.json").exists():
            log.info("ensemble: member %d (%s) on %s was trained before this run was stopped: reused", i, spec, tag)
            members.append(load_model(out))
            continue
        log.info("ensemble: training member %d (%s) on %s", i, spec, tag)
        shutil.rmtree(out, ignore_errors=True)  # a member stopped half-way (inside our work folder) starts again
        members.append(train_model(member_cfg, data_path, None, out).model)
    return members


def work_folder(out: Path, stamp: dict) -> Path:
    """``.<output name>.ensemble-work`` beside the output, with ``RUN.json`` = ``stamp`` (data
    fingerprint and configuration). Kept when a run stops early, so the next run with the same
    stamp reuses its finished members; a stale one of ours is emptied; a folder of that name that
    patentcpc did not write is refused."""
    from patentcpc.io import OutputError

    work = out.parent / f".{out.name}.ensemble-work"
    marker = work / "RUN.json"
    if work.exists() or work.is_symlink():
        if work.is_symlink() or not marker.is_file():
            raise OutputError(f"{work}: exists and was not written by patentcpc; remove it or choose another --output")
        try:
            same = json.loads(marker.read_text(encoding="utf-8")) == json.loads(json.dumps(stamp))
        except (OSError, ValueError):
            same = False
        if same:
            log.info("ensemble: resuming in %s", work)
            return work
        shutil.rmtree(work)
    work.mkdir(parents=True)
    atomic_write_text(marker, json.dumps(stamp, sort_keys=True))
    return work


def neighbour_votes(cfg, members: Sequence[CPCModel], texts: Sequence[str],
                    gold: Sequence[Sequence[str]]) -> list[NeighbourVote | None]:
    """Each encoder member's neighbour vote over the documents it was trained on (a seeded subset
    of at most ``ensemble.neighbours_max_docs``); None for the other members or when off."""
    ens = cfg.ensemble
    if not ens.neighbours or not any(hasattr(m, "scores_and_embeddings") for m in members):
        return [None] * len(members)
    keep = np.arange(len(texts))
    if len(keep) > ens.neighbours_max_docs:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(keep, ens.neighbours_max_docs, replace=False))
    texts, gold = [texts[i] for i in keep], [gold[i] for i in keep]
    votes = []
    for m in members:
        if hasattr(m, "scores_and_embeddings"):
            log.info("ensemble: embedding %d training documents for the neighbour vote of %s", len(texts), m.kind)
            votes.append(NeighbourVote.build(m.scores_and_embeddings(texts)[1], gold, ens.neighbours_k,
                                             ens.neighbours_temperature))
        else:
            votes.append(None)
    return votes


def crossfit_inputs(cfg, specs: Sequence[str], full, work: Path
                    ) -> tuple[list[np.ndarray], list, list[str], np.ndarray]:
    """Cross-fitted inputs: ``ensemble.folds`` stratified folds of ``full``; for each, the members
    (and their neighbour votes) trained without it score it. Returns (each input's scores on all
    documents, aligned on ``labels``; the documents' gold codes in the same order; ``labels``;
    each document's fold)."""
    from patentcpc.data import split_data
    from patentcpc.models.artifact import Manifest

    k = cfg.ensemble.folds
    parts = split_data(full, (1 / k,) * k, cfg.seed)
    trained = []
    for i, part in enumerate(parts):
        rest = [p for j, p in enumerate(parts) if j != i]
        texts = [t for p in rest for t in p.texts]
        codes = [g for p in rest for g in p.labels]
        log.info("ensemble: fold %d of %d (%d training, %d held-out documents)", i + 1, k, len(texts), len(part))
        members = train_members(cfg, specs, _write_part(texts, codes, work / f"fold{i}.jsonl"), work, f"fold{i}")
        trained.append((members, neighbour_votes(cfg, members, texts, codes)))
    # the columns: every code of the data and every code a member knows (the scheme model knows the
    # whole scheme, not only the codes of these patents)
    labels = sorted({c for g in full.labels for c in g} | {c for members, _ in trained for m in members
                                                           for c in m.labels})
    inputs: list[list[np.ndarray]] = []
    gold: list = []
    fold: list[int] = []
    for i, (part, (members, votes)) in enumerate(zip(parts, trained, strict=True)):
        scorer = EnsembleCPCModel(Manifest(kind="ensemble", labels=labels), members, [1.0] * len(members), specs,
                                  votes, [1.0] * len(members))
        inputs.append(scorer.inputs(part.texts))
        gold += part.labels
        fold += [i] * len(part)
    return [np.concatenate(cols) for cols in zip(*inputs, strict=True)], gold, labels, np.asarray(fold)


def _train_on_all(cfg, specs, full, work: Path) -> list[CPCModel]:
    return train_members(cfg, specs, _write_part(full.texts, full.labels, work / "all.jsonl"), work, "all")


def _fit_with_eval_data(cfg, specs, full, work, fields, eval_data: str):
    from patentcpc.data import load_data
    from patentcpc.metrics import evaluate_scores

    held = load_data(eval_data, **cfg.data.load_kwargs(), preferred_text_fields=full.text_fields)
    members = _train_on_all(cfg, specs, full, work)
    model, scores = fit_ensemble_scored(members, held, cfg, specs, fields,
                                        neighbours=neighbour_votes(cfg, members, full.texts, full.labels),
                                        counts=label_counts(full.labels))
    return model, evaluate_scores(scores, held.labels, model.labels, model.thresholds)


def on_labels(oof: Sequence[np.ndarray], gold: Sequence[Sequence[str]], labels: Sequence[str], fold: np.ndarray,
              union: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`crossfit_inputs`' output on the saved members' labels ``union``: (each input's
    scores on those columns, the stacker's frequency feature, i.e. each document's ``log1p`` label
    counts in the data its fold members were trained on)."""
    from patentcpc.calibration import multi_hot

    index = {c: j for j, c in enumerate(labels)}
    cols = np.array([index[c] for c in union])
    y = multi_hot(gold, union)
    per_fold = {f: y[fold == f].sum(0) for f in set(fold.tolist())}
    held_counts = np.log1p(y.sum(0)[None, :] - np.stack([per_fold[f] for f in fold.tolist()]))
    return [x[:, cols] for x in oof], held_counts


def _fit_crossfitted(cfg, specs, full, work, fields):
    from patentcpc.metrics import evaluate_scores

    oof, gold, labels, fold = crossfit_inputs(cfg, specs, full, work)
    members = _train_on_all(cfg, specs, full, work)
    union = EnsembleCPCModel.union_labels(members)
    inputs, held_counts = on_labels(oof, gold, labels, fold, union)
    k = cfg.ensemble.folds  # counts: the saved members' label counts, scaled to the folds' mean training size
    model, scores = fit_ensemble_scored(members, SimpleNamespace(labels=gold), cfg, specs, fields,
                                        neighbours=neighbour_votes(cfg, members, full.texts, full.labels),
                                        inputs=inputs, held_counts=held_counts,
                                        counts=label_counts(full.labels, (k - 1) / k), folds=fold)
    metrics = evaluate_scores(scores, gold, model.labels, model.thresholds)
    if cfg.ensemble.bagging:  # each member: the mean of its fold models and its all-data model
        from patentcpc.registry import load_model

        bags = [bag([load_model(work / f"fold{f}-member-{i}") for f in range(cfg.ensemble.folds)] + [m], spec)
                for i, (spec, m) in enumerate(zip(specs, members, strict=True))]
        model = with_members(model, bags, model.neighbours)
    return model, metrics


def _fit_held_out(cfg, specs, full, work, fields):
    from patentcpc.data import split_data
    from patentcpc.metrics import evaluate_scores

    ens = cfg.ensemble
    part, held = split_data(full, (1 - ens.valid_fraction, ens.valid_fraction), cfg.seed)
    members = train_members(cfg, specs, _write_part(part.texts, part.labels, work / "part.jsonl"), work, "part")
    model, scores = fit_ensemble_scored(members, held, cfg, specs, fields,
                                        neighbours=neighbour_votes(cfg, members, part.texts, part.labels),
                                        counts=label_counts(part.labels))
    metrics = evaluate_scores(scores, held.labels, model.labels, model.thresholds)
    if ens.refit:
        members = _train_on_all(cfg, specs, full, work)
        model = with_members(model, members, neighbour_votes(cfg, members, full.texts, full.labels),
                             label_counts(full.labels, len(part) / max(len(full), 1)))
    return model, metrics


def train_ensemble(cfg, data: str | None, eval_data: str | None = None, output: str | os.PathLike | None = None,
                   **_: object):
    """``patentcpc train --model ensemble``; see the module docstring. Returns a TrainResult."""
    from patentcpc.config import to_dict
    from patentcpc.data import load_data
    from patentcpc.io import check_output_dir

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
    from patentcpc.data import pin_view_settings

    cfg = pin_view_settings(cfg, full.text_view)  # the members read whole-text copies of --data
    ens = cfg.ensemble
    crossfit = not eval_data and ens.folds >= 2 and len(full) <= ens.crossfit_max_docs
    refit = crossfit or (ens.refit and not eval_data)
    how = str(eval_data) if eval_data else (f"cross-fitted, {ens.folds} folds" if crossfit else "held-out split")
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fingerprint, config = full.fingerprint(), to_dict(cfg)
    work = work_folder(out, {"fingerprint": fingerprint, "config": config,
                             "eval_data": str(eval_data) if eval_data else None})
    fields = {"label_level": cfg.data.level, "text_view": full.text_view, "config": config,
              "extra": {"model_name": "ensemble"},
              "training_data": {"source": str(data), "n_docs": len(full), "fingerprint": fingerprint,
                                "n_skipped": full.n_skipped, "eval_source": how}}
    fit = (partial(_fit_with_eval_data, eval_data=eval_data) if eval_data
           else _fit_crossfitted if crossfit else _fit_held_out)
    from patentcpc.training.head import remember_embeddings

    with remember_embeddings():  # every fold's encoder member embeds its label documents with one pretrained encoder
        model, metrics = fit(cfg, specs, full, work, fields)
    model.manifest.extra["ensemble"].update(tuned_on=how, refit_on_all=refit, bagged=crossfit and ens.bagging)
    if cfg.explain.index:
        from patentcpc.explain import ExplainIndex

        model.explain_index = ExplainIndex.build(full, cfg.explain.snippet_chars)
    model.manifest.metrics = {"eval_data": how + (" (the members before the final training)" if refit else ""),
                              "thresholds_tuned_on_this_data": True, **metrics}
    from patentcpc.training.guard import check_model

    check_model(model, None, [], None, cfg.guard)  # its calibration map must rise with the score
    model.save(out)
    shutil.rmtree(work, ignore_errors=True)  # only once saved: a run that stops early keeps its finished members
    return TrainResult(model, metrics if eval_data else {}, str(out), None,
                       measured_on=f"{eval_data} (the weights, calibration and thresholds were tuned on it: "
                                   "optimistic)")
