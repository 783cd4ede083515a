"""Does synthetic data help, beyond volume? Arms on the same splits and seeds:

* ``real-only``: the real training data;
* ``duplicate-to-match@P``: the real data plus, for every synthetic document of mix ``P``, a
  random real document of the same source label: the same size *and* the same label
  distribution as the mix, so only the synthetic content differs;
* ``focal``: real-only with the focal loss (model kinds that train with a loss: transformers);
* ``mix@P``: real + synthetic, shuffled, where ``P`` is the real share of the training set
  (the synthetic budget ``n_real * (1 - P) / P`` goes to the rarest labels first);
* ``curriculum@P`` (loss-trained kinds): synthetic first (stage 1), then the real data starting
  from the stage-1 encoder (stage 2).

Each seed generates its own synthetic pool (filtered for exact and near duplicates of the real
training and evaluation texts) and trains every arm. Metrics on ``eval_data``: F1@1, micro- and
macro-F1 (the model's thresholds), rare-label F1 (macro-F1 over labels with at most ``rare_max``
real training documents that occur in the evaluation data) and a label-overlap retrieval nDCG@10
(every evaluation document queries the others by the cosine of the model's score vectors;
relevance = Jaccard grade of the label sets, :func:`patentcpc.retrieval.evaluation.label_overlap_qrels`).
Also: each arm's paired gain over its duplicate-to-match control, and per mix the correlation
between per-label MMD^2 (real vs synthetic) and per-label F1 gain over that control.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from patentcpc.errors import ConfigError
from patentcpc.numeric import l2_normalize

log = logging.getLogger(__name__)

METRICS = ("f1@1", "micro_f1", "macro_f1", "rare_f1", "ndcg@10")


@dataclass
class ExperimentOptions:
    model: str | None = "tfidf"  # None: the config file's (or the default transformer)
    arch: str | None = None  # random-init transformer preset (transformer.arch); wins over ``model``
    tokenizer: str | None = None  # tokenizer for ``arch`` (transformer.tokenizer)
    seeds: int = 3
    real_shares: tuple[float, ...] = (0.5, 0.3, 0.2)
    rare_max: int = 5
    filter_duplicates: bool = True
    config_file: str | None = None
    overrides: list[str] = field(default_factory=list)
    generate: object = None  # GenerateOptions (target/budget/seed are set per mix and seed)
    audit: object = None  # AuditOptions
    keep_work: bool = False

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, not {self.seeds}")
        if len(self.real_shares) < 1 or any(not 0 < p < 1 for p in self.real_shares):
            raise ConfigError("--real-shares must be fractions in (0, 1), e.g. 0.5,0.3,0.2")


# --------------------------------------------------------------------------- evaluation


def rare_f1(pred: np.ndarray, gold: Sequence[Sequence[str]], vocab: Sequence[str], rare: set[str]) -> float:
    """Macro-F1 over the rare labels that occur in ``gold`` (never predicted: F1 0)."""
    from patentcpc.metrics import per_label_report

    rows = [r for r in per_label_report(pred, gold, vocab) if r["label"] in rare and r["support"] > 0]
    return float(np.mean([r["f1"] for r in rows])) if rows else 0.0


def retrieval_ndcg(scores: np.ndarray, gold: Sequence[Sequence[str]], level: str = "subclass") -> float:
    """nDCG@10 of label-overlap retrieval among the evaluation documents, by the cosine of the
    model's score vectors (each document queries the others)."""
    from patentcpc.retrieval.evaluation import evaluate_retrieval, label_overlap_qrels

    ids = [str(i) for i in range(len(gold))]
    qrels = label_overlap_qrels(ids, gold, level)
    if not qrels:
        return 0.0
    x = np.asarray(scores, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    x = l2_normalize(x)
    return evaluate_retrieval(x @ x.T, ids, ids, qrels, metrics=("ndcg@10",))["ndcg@10"]


def evaluate_arm(model, texts: Sequence[str], gold: Sequence[Sequence[str]], rare: set[str],
                 level: str = "subclass") -> tuple[dict, dict[str, float]]:
    """(summary metrics, per-label F1) of a trained model on the evaluation data."""
    from patentcpc.metrics import binarize, evaluate_scores, per_label_report

    scores = model.scores(list(texts))
    m = evaluate_scores(scores, gold, model.labels, model.thresholds)
    pred = binarize(scores, model.thresholds)
    per_label = {r["label"]: r["f1"] for r in per_label_report(pred, gold, model.labels) if r["support"] > 0}
    out = {"f1@1": m["f1@1"], "micro_f1": m["micro_f1"], "macro_f1": m["macro_f1"],
           "rare_f1": rare_f1(pred, gold, model.labels, rare), "ndcg@10": retrieval_ndcg(scores, gold, level)}
    return out, per_label


# --------------------------------------------------------------------------- training


def _write_csv(path: Path, texts: Sequence[str], labels: Sequence[Sequence[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "cpc_ids"])
        for t, ls in zip(texts, labels, strict=True):
            w.writerow([t, ",".join(ls)])
    return path


def train_arm(cfg, texts: Sequence[str], labels: Sequence[Sequence[str]], work: Path, name: str,
              eval_data: str | None):
    """Train ``cfg.model`` on in-memory data through :func:`patentcpc.registry.train_model`
    (a CSV in ``work``); transformers validate (and tune thresholds) on ``eval_data``."""
    from patentcpc.registry import select, train_model

    data = _write_csv(work / f"{name}.csv", texts, labels)
    if not select(cfg).reads("transformer"):  # no fine-tuning loop inside: in memory, no validation
        return train_model(cfg, str(data)).model
    return train_model(cfg, str(data), eval_data, work / f"{name}-model").model


def _curriculum(cfg, syn_texts, syn_labels, real_texts, real_labels, work: Path, name: str, eval_data: str | None):
    """Stage 1 on the synthetic documents, stage 2 on the real ones from the stage-1 encoder."""
    from patentcpc.kinds.transformer.model import ENCODER_DIR

    train_arm(cfg, syn_texts, syn_labels, work, f"{name}-stage1", eval_data)
    stage2 = dataclasses.replace(cfg, model=str(work / f"{name}-stage1-model" / ENCODER_DIR),
                                 transformer=dataclasses.replace(cfg.transformer, arch=None))
    return train_arm(stage2, real_texts, real_labels, work, f"{name}-stage2", eval_data)


# --------------------------------------------------------------------------- the experiment


def _share_name(p: float) -> str:
    return f"{round(p * 100):d}%"


def _corr(x: Sequence[float], y: Sequence[float]) -> dict:
    from scipy.stats import pearsonr, spearmanr

    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return {"pearson_r": None, "spearman_rho": None, "n_labels": len(x)}
    return {"pearson_r": float(pearsonr(x, y)[0]), "spearman_rho": float(spearmanr(x, y)[0]), "n_labels": len(x)}


def run_experiment(train_source: str, eval_source: str, options: ExperimentOptions, output: str | os.PathLike,
                   generator=None, data_kwargs: dict | None = None,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Run every arm for every seed; write ``results.json``, ``results.md``, ``results.png`` and
    the first seed's ``audit/`` to ``output``; return the results."""
    from patentcpc.config import TrainConfig, resolve
    from patentcpc.data import load_data, pin_view_settings
    from patentcpc.io import atomic_dir, check_interrupted, check_output_dir
    from patentcpc.registry import select
    from patentcpc.synth.audit import AuditOptions, audit_rows, write_report
    from patentcpc.synth.generators import GenerateOptions, generate_synthetic, label_infos

    say = progress or (lambda s: log.info(s))
    o = options
    gen_opts = o.generate or GenerateOptions()
    aud_opts = o.audit or AuditOptions()
    cli: dict = {"model": o.model} if o.model else {}
    tr = {k: v for k, v in (("arch", o.arch), ("tokenizer", o.tokenizer)) if v is not None}
    if tr:
        cli["transformer"] = tr
    cfg0 = resolve(TrainConfig, o.config_file, cli, o.overrides)
    kind = select(cfg0)
    if cfg0.transformer.arch and not kind.reads("transformer"):
        raise ConfigError(f"transformer.arch '{cfg0.transformer.arch}' is a transformer preset and --model "
                          f"'{cfg0.model}' a {kind.name} model: give one of them")
    loss_kind = kind.reads("transformer")  # the loss arms set transformer.loss
    # before the work: only a new or empty folder, or an earlier experiment, is replaced
    final = check_output_dir(output, "synth-experiment", [train_source, eval_source, o.config_file])
    dk = dict(data_kwargs or cfg0.data.load_kwargs())
    train = load_data(train_source, **dk)
    ev = load_data(eval_source, **dk)
    cfg0 = pin_view_settings(cfg0, train.text_view)  # the arms read whole-text copies of the data
    level = dk.get("level", "subclass")
    texts, labels = train.texts, train.labels
    ev_texts, ev_labels = ev.texts, ev.labels
    n_real = len(texts)
    counts: dict[str, int] = {}
    for ls in labels:
        for c in ls:
            counts[c] = counts.get(c, 0) + 1
    rare = {c for c, n in counts.items() if n <= o.rare_max}
    shares = sorted(set(o.real_shares), reverse=True)
    budgets = {p: int(round(n_real * (1 - p) / p)) for p in shares}
    fields = ("title",) if train.text_fields == ["text"] or "abstract" not in train.text_fields else gen_opts.fields
    infos = label_infos(sorted(counts)) if gen_opts.generator != "recombine" or gen_opts.mask_labels else {}

    # the whole output folder (the first seed's audit/, the results) appears at once, when complete:
    # an error or Ctrl-C leaves nothing at ``output``
    with atomic_dir(final, kind="synth-experiment") as out:
        work = Path(tempfile.mkdtemp(dir=out, prefix=".synth-work-"))
        runs: dict[str, list[dict]] = {}
        per_label_f1: dict[str, list[dict[str, float]]] = {}
        mmd_by_seed: list[dict[str, float]] = []
        pool_info: list[dict] = []
        skipped = []
        if not loss_kind:
            skipped = [{"name": "focal", "reason": f"model kind '{cfg0.model}' does not train with a loss"},
                       {"name": "curriculum", "reason": f"model kind '{cfg0.model}' trains on the whole set at once: "
                                                        "order cannot matter"}]
        try:
            for s in range(o.seeds):
                seed = cfg0.seed + s
                cfg = dataclasses.replace(cfg0, seed=seed)
                rng = random.Random(seed)
                say(f"seed {seed}: generating {max(budgets.values())} synthetic documents ({gen_opts.generator})")
                g = dataclasses.replace(gen_opts, target="budget", budget=max(budgets.values()), seed=seed,
                                        fields=fields, labels=None)
                rows, summary = generate_synthetic(texts, labels, g, generator, infos)
                report, kept = audit_rows(rows, texts, labels, ev_texts, aud_opts, infos or {})
                if not o.filter_duplicates:
                    kept = rows
                if s == 0:
                    write_report(report, out / "audit")
                mmd_by_seed.append({c: v["mmd2"] for c, v in report["fidelity"]["per_label"].items()
                                    if v["mmd2"] is not None})
                pool_info.append({"seed": seed, "generated": len(rows), "kept": len(kept),
                                  "duplicates": report["duplicates"],
                                  "mmd2_overall": report["fidelity"]["mmd2_overall"]})
                pool: dict[str, list[dict]] = {}
                for r in kept:
                    pool.setdefault(r["source_label"], []).append(r)
                real_by: dict[str, list[int]] = {}
                for i, ls in enumerate(labels):
                    for c in ls:
                        real_by.setdefault(c, []).append(i)

                def record(name: str, model, seed=seed) -> None:
                    check_interrupted()  # Ctrl-C that a library swallowed: stop before the next arm
                    metrics, pl = evaluate_arm(model, ev_texts, ev_labels, rare, level)
                    loss = ((getattr(model.manifest, "config", None) or {}).get("transformer") or {}).get("loss") \
                        if loss_kind else None  # the loss the trained model's resolved config records
                    runs.setdefault(name, []).append({"seed": seed, **metrics, "loss": loss})
                    per_label_f1.setdefault(name, []).append(pl)
                    say(f"seed {seed} {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

                record("real-only", train_arm(cfg, texts, labels, work, f"s{seed}-real", eval_source))
                if loss_kind:
                    focal = dataclasses.replace(cfg, transformer=dataclasses.replace(cfg.transformer, loss="focal"))
                    record("focal", train_arm(focal, texts, labels, work, f"s{seed}-focal", eval_source))
                from patentcpc.synth.generators import plan_targets

                for p in shares:
                    alloc = plan_targets(counts, "budget", budget=budgets[p])
                    syn = [r for c in sorted(alloc) for r in pool.get(c, [])[: alloc[c]]]
                    syn_t, syn_l = [r["text"] for r in syn], [[r["source_label"]] for r in syn]
                    dup_idx = [rng.choice(real_by[r["source_label"]]) for r in syn]
                    tag = _share_name(p)
                    d_t = texts + [texts[i] for i in dup_idx]
                    d_l = labels + [labels[i] for i in dup_idx]
                    order = list(range(len(d_t)))
                    rng.shuffle(order)
                    record(f"duplicate-to-match@{tag}", train_arm(cfg, [d_t[i] for i in order], [d_l[i] for i in order],
                                                                  work, f"s{seed}-dup{tag}", eval_source))
                    m_t, m_l = texts + syn_t, labels + syn_l
                    order = list(range(len(m_t)))
                    rng.shuffle(order)
                    record(f"mix@{tag}", train_arm(cfg, [m_t[i] for i in order], [m_l[i] for i in order], work,
                                                   f"s{seed}-mix{tag}", eval_source))
                    if loss_kind and syn:
                        record(f"curriculum@{tag}", _curriculum(cfg, syn_t, syn_l, texts, labels, work,
                                                                f"s{seed}-cur{tag}", eval_source))
                    runs[f"mix@{tag}"][-1]["n_synthetic"] = len(syn)
        finally:
            if not o.keep_work:
                shutil.rmtree(work, ignore_errors=True)

        results = summarize(runs, per_label_f1, mmd_by_seed, shares, loss_kind)
        results.update({"model": cfg0.model, "generator": gen_opts.generator, "strategy": gen_opts.strategy,
                        "train": str(train_source), "eval": str(eval_source), "n_real": n_real,
                        "n_eval": len(ev_texts), "n_labels": len(counts), "n_rare_labels": len(rare),
                        "n_rare_labels_in_eval": len(rare & {c for ls in ev_labels for c in ls}),
                        "rare_max": o.rare_max, "seeds": [cfg0.seed + s for s in range(o.seeds)],
                        "synthetic_budgets": {_share_name(p): budgets[p] for p in shares},
                        "pools": pool_info, "skipped_arms": skipped, "filter_duplicates": o.filter_duplicates})
        write_results(results, out)
    return results


def summarize(runs: dict[str, list[dict]], per_label_f1: dict[str, list[dict]], mmd_by_seed: list[dict],
              shares: Sequence[float], loss_kind: bool) -> dict:
    """Mean/std per arm, paired gain over the matched duplicate-to-match arm, fidelity-gain correlation."""
    first_dup = f"duplicate-to-match@{_share_name(shares[0])}"
    arms = []
    for name, rs in runs.items():
        ref = (f"duplicate-to-match@{name.split('@')[1]}" if "@" in name else first_dup)
        row: dict = {"name": name, "n_seeds": len(rs)}
        for m in METRICS:
            v = np.array([r[m] for r in rs], dtype=np.float64)
            row[m] = float(v.mean())
            row[f"{m}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        if rs[-1].get("loss"):
            row["loss"] = rs[-1]["loss"]
        if "n_synthetic" in rs[-1]:
            row["n_synthetic"] = int(np.mean([r.get("n_synthetic", 0) for r in rs]))
        if not name.startswith("duplicate-to-match") or name != ref:
            base = {r["seed"]: r for r in runs.get(ref, [])}
            row["gain_reference"] = ref
            for m in METRICS:
                d = [r[m] - base[r["seed"]][m] for r in rs if r["seed"] in base]
                row[f"gain_{m}"] = float(np.mean(d)) if d else None
                row[f"gain_{m}_std"] = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
        arms.append(row)
    order = {"real-only": 0, "focal": 1}
    kinds = {"duplicate-to-match": 0, "mix": 1, "curriculum": 2}  # per mix: control, shuffled, curriculum
    arms.sort(key=lambda a: (order.get(a["name"], 2), -float(a["name"].split("@")[1].rstrip("%"))
                             if "@" in a["name"] else 0.0, kinds.get(a["name"].split("@")[0], 3), a["name"]))
    corr = {}
    mmd_mean: dict[str, list[float]] = {}
    for d in mmd_by_seed:
        for c, v in d.items():
            mmd_mean.setdefault(c, []).append(v)
    for p in shares:
        tag = _share_name(p)
        mix, dup = per_label_f1.get(f"mix@{tag}", []), per_label_f1.get(f"duplicate-to-match@{tag}", [])
        xs, ys = [], []
        for c, vals in sorted(mmd_mean.items()):
            gains = [a[c] - b[c] for a, b in zip(mix, dup, strict=False) if c in a and c in b]
            if gains:
                xs.append(float(np.mean(vals)))
                ys.append(float(np.mean(gains)))
        corr[f"mix@{tag}"] = _corr(xs, ys)
    return {"arms": arms, "fidelity_gain_correlation": corr,
            "fidelity_gain_note": "correlation over labels between per-label MMD^2 (real vs synthetic; higher = "
                                  "less faithful) and the per-label F1 gain of the mix over its duplicate-to-match arm"}


def _f(v, std=None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def results_markdown(res: dict) -> str:
    lines = [f"# Synthetic-data experiment: {res['model']} + {res['generator']}", "",
             f"Train {res['train']} ({res['n_real']} docs, {res['n_labels']} labels, {res['n_rare_labels']} rare "
             f"(<= {res['rare_max']} docs), {res['n_rare_labels_in_eval']} of them in the eval data); eval "
             f"{res['eval']} ({res['n_eval']} docs); seeds {res['seeds']}; mean ± std over seeds.", "",
             "| arm | synthetic | F1@1 | micro-F1 | macro-F1 | rare-F1 | nDCG@10 | gain F1@1 | gain micro-F1 | "
             "gain rare-F1 | vs |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in res["arms"]:
        lines.append(f"| {a['name']} | {a.get('n_synthetic', 0)} | " + " | ".join(
            _f(a[m], a[f"{m}_std"]) for m in METRICS) + " | " + " | ".join(
            _f(a.get(f"gain_{m}")) for m in ("f1@1", "micro_f1", "rare_f1")) + f" | {a.get('gain_reference', '')} |")
    for s in res.get("skipped_arms", []):
        lines.append(f"\nSkipped arm `{s['name']}`: {s['reason']}.")
    lines += ["", "Fidelity vs gain (" + res["fidelity_gain_note"] + "):", "",
              "| mix | Pearson r | Spearman rho | labels |", "|---|---|---|---|"]
    for k, v in res["fidelity_gain_correlation"].items():
        lines.append(f"| {k} | {_f(v['pearson_r'])} | {_f(v['spearman_rho'])} | {v['n_labels']} |")
    lines += ["", "Synthetic pools per seed (after exact/near-duplicate filtering against train and eval):", ""]
    lines += [f"- seed {p['seed']}: generated {p['generated']}, kept {p['kept']}, duplicates {p['duplicates']}, "
              f"MMD^2 overall {_f(p['mmd2_overall'])}" for p in res["pools"]]
    return "\n".join(lines) + "\n"


def write_results(res: dict, out: Path) -> list[Path]:
    from patentcpc.models.artifact import atomic_write_text
    from patentcpc.plots import _plt, _save

    atomic_write_text(out / "results.json", json.dumps(res, indent=2))
    atomic_write_text(out / "results.md", results_markdown(res))
    plt = _plt()
    arms = res["arms"]
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(arms)), 4.5))
    width = 0.8 / len(METRICS)
    x = np.arange(len(arms))
    for j, m in enumerate(METRICS):
        ax.bar(x + (j - len(METRICS) / 2 + 0.5) * width, [a[m] for a in arms], width,
               yerr=[a[f"{m}_std"] for a in arms], capsize=2, label=m)
    ax.set_xticks(x, [a["name"] for a in arms], rotation=30, ha="right")
    ax.set_ylabel("score (mean ± std over seeds)")
    ax.set_title(f"{res['model']} + {res['generator']} synthetic data")
    ax.legend(fontsize=8)
    return [out / "results.json", out / "results.md", _save(fig, out / "results.png")]
