"""In-domain vs out-of-domain: how a (fine-tuned) embedder changes each metric against a baseline.

:func:`transfer_report` takes the benchmark rows (:func:`patentcpc.retrieval.benchmark.run_benchmark`)
of the in-domain data and of an out-of-domain file, and for every model other than the baseline,
every text view and every metric gives the baseline value, the model's value and the change (absolute
and relative). A model fine-tuned on one landscape that gains in-domain but loses out-of-domain shows
up as a positive in-domain and a negative out-of-domain change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from patentcpc.errors import ConfigError

DEFAULT_METRICS = ("ndcg@10", "map@100", "recall@100", "hybrid_ndcg@10", "knn_f1@1", "probe_f1@1",
                   "nmi_subclass")


def transfer_report(in_rows: Sequence[dict], out_rows: Sequence[dict], baseline: str,
                    metrics: Sequence[str] = DEFAULT_METRICS, in_name: str = "in-domain",
                    out_name: str = "out-of-domain") -> dict:
    """``{"baseline", "domains", "rows": [{model, domain, view, metric, baseline, value, delta, relative}]}``."""
    rows = []
    for domain, data in ((in_name, in_rows), (out_name, out_rows)):
        base = {r["view"]: r for r in data if r.get("model") == baseline}
        if not base:
            raise ConfigError(f"the baseline '{baseline}' has no {domain} results")
        for r in data:
            if r.get("model") in (baseline, "bm25") or "@" in str(r.get("model", "")).rsplit("/", 1)[-1]:
                continue
            b = base.get(r["view"])
            if b is None:
                continue
            for m in metrics:
                if not isinstance(r.get(m), (int, float)) or not isinstance(b.get(m), (int, float)):
                    continue
                delta = float(r[m]) - float(b[m])
                rows.append({"model": r["model"], "domain": domain, "view": r["view"], "metric": m,
                             "baseline": float(b[m]), "value": float(r[m]), "delta": delta,
                             "relative": delta / float(b[m]) if b[m] else None})
    return {"baseline": baseline, "domains": [in_name, out_name], "rows": rows}


def _short(spec: str) -> str:
    from patentcpc.retrieval.benchmark import _short as short

    return short(spec)


def format_markdown(report: dict, sources: dict | None = None) -> str:
    """A markdown table per model: metric x (view) with baseline, value and change in each domain."""
    lines = [f"# Transfer report (baseline: `{_short(report['baseline'])}`)", ""]
    if sources:
        lines += [f"- {k}: `{v}`" for k, v in sources.items()] + [""]
    models = list(dict.fromkeys(r["model"] for r in report["rows"]))
    if not models:
        lines.append("(no model besides the baseline)")
    for model in models:
        lines += [f"## `{_short(model)}`", "",
                  "| domain | view | metric | baseline | model | change | change % |",
                  "|---|---|---|---:|---:|---:|---:|"]
        for r in report["rows"]:
            if r["model"] != model:
                continue
            rel = f"{100 * r['relative']:+.1f}%" if r["relative"] is not None else ""
            lines.append(f"| {r['domain']} | {r['view']} | {r['metric']} | {r['baseline']:.4f} | {r['value']:.4f} | "
                         f"{r['delta']:+.4f} | {rel} |")
        lines.append("")
    return "\n".join(lines)


def write_report(report: dict, path: str | os.PathLike, sources: dict | None = None) -> Path:
    """The report as ``.json`` or ``.md`` (by suffix), written atomically."""
    path = Path(path)
    if path.suffix.lower() not in (".json", ".md"):
        raise ConfigError(f"{path}: the transfer report is written as .md or .json")
    text = (json.dumps({**report, "sources": sources or {}}, indent=2) if path.suffix.lower() == ".json"
            else format_markdown(report, sources))
    from patentcpc.io import atomic_write_text

    atomic_write_text(path, text + "\n")
    return path
