"""benchmarks/pdf.md: `patentcpc read` on the shared patent PDFs (../shared/data/patent-pdfs).

    python benchmarks/pdf_bench.py fields  [--ocr auto|never] [--features both|text|layout] [--out recs.jsonl]
    python benchmarks/pdf_bench.py linking     # the linking scorer: text / layout / both features
    python benchmarks/pdf_bench.py workers     # text-layer folder, 1 vs 2 worker processes
    python benchmarks/pdf_bench.py ocr         # RapidOCR vs Tesseract on the image-only pages

Field scores come from the shared score.py (the hidden check's rules)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "patent-pdfs"
LABELS = DATA / "labels.json"


def score(records: Path) -> str:
    r = subprocess.run([sys.executable, str(DATA / "score.py"), str(LABELS), str(records)], capture_output=True,
                       text=True, check=True)
    return r.stdout


def read_all(ocr: str, features: str, out: Path, files=None, engine: str = "auto") -> list[tuple[str, float, str]]:
    from patentcpc.documents.reader import ReadOptions, read_one

    opts = ReadOptions(ocr=ocr, features=features, engine=engine)
    times = []
    with open(out, "w") as fh:
        for f in files or sorted(DATA.glob("*.pdf")):
            t = time.perf_counter()
            try:
                rec = read_one(f, opts)
            except Exception as exc:  # noqa: BLE001
                print(f"  {f.name}: {exc}", file=sys.stderr)
                continue
            dt = time.perf_counter() - t
            times.append((f.name, dt, rec["evidence"].get("text_source", "")))
            fh.write(json.dumps(rec) + "\n")
    return times


def cmd_fields(args) -> None:
    out = Path(args.out)
    times = read_all(args.ocr, args.features, out)
    print(score(out))
    for kind in ("text", "ocr"):
        ts = [t for _n, t, s in times if s == kind]
        if ts:
            print(f"{kind}: {len(ts)} documents, {sum(ts) / len(ts):.2f} s per document (max {max(ts):.2f})")


def cmd_linking(args) -> None:
    """Accuracy of the four single-valued fields the assignment links (number, publication date,
    application number, filing date) on the text-layer PDFs, per feature set."""
    labels = {Path(x["file"]).name: x for x in json.loads(LABELS.read_text())}
    fields = ["publication_number", "publication_date", "application_number", "filing_date"]
    for use in ("text", "layout", "both"):
        out = Path(f"/tmp/pdf_linking_{use}.jsonl")
        read_all("never", use, out)
        hits = total = 0
        for line in out.read_text().splitlines():
            rec = json.loads(line)
            lab = labels[Path(rec["file"]).name]
            for f in fields:
                if lab.get(f) and f not in (lab.get("_skip") or []):
                    total += 1
                    hits += (rec.get(f) or "").replace(" ", "") == lab[f].replace(" ", "")
        print(f"{use}: records after the assignment {hits}/{total} = {hits / max(total, 1):.3f}; "
              f"key-by-key top-1 link (no assignment): typed {_top1(use, labels, True)}, "
              f"untyped {_top1(use, labels, False)}")


def _top1(use: str, labels: dict, typed: bool) -> str:
    """Each key of the four fields linked to its best-scoring candidate alone (no assignment, no
    one-candidate-per-field constraint): the linking scorer's own accuracy."""
    from patentcpc.documents.extract import analyse
    from patentcpc.documents.fields import SINGLE, find_candidates, link_score
    from patentcpc.documents.pdf import PdfFile

    gold_of = {"number": "publication_number", "pubdate": "publication_date", "appno": "application_number",
               "filed": "filing_date"}
    hits = total = 0
    for f in sorted(DATA.glob("*.pdf")):
        lab = labels[f.name]
        pdf = PdfFile(f)
        page = pdf.text_page(0)
        pdf.close()
        layout, keys, template, _sim = analyse(page)
        if template == "not-front-page":
            continue
        if template != "us-application" and any(k.code in ("45", "44") for k in keys):
            keys = [k for k in keys if k.code != "43"]
        cands = find_candidates(layout)
        pos_of = {id(w): i for i, w in enumerate(layout.words)}
        for k in keys:
            if k.field not in SINGLE or not lab.get(gold_of[k.field]):
                continue
            scored = [(link_score(k, c, layout, pos_of, use, typed), c) for c in cands]
            scored = [x for x in scored if x[0] > -1e9]
            if not scored:
                continue
            total += 1
            best = max(scored, key=lambda x: x[0])[1]
            gold = lab[gold_of[k.field]].replace(" ", "")
            value = best.value + (best.extra or "") if k.field == "number" else best.value
            hits += value == gold or (k.field == "number" and gold.startswith(best.value))
    return f"{hits}/{total} = {hits / max(total, 1):.3f}"


def cmd_workers(args) -> None:
    from patentcpc.documents.reader import ReadOptions, iter_records

    files = [f for f in sorted(DATA.glob("*.pdf")) if f.name not in ("CN104766014B.pdf", "US11762912.pdf",
                                                                      "US12110498.pdf")]
    for workers in (1, 2):
        t = time.perf_counter()
        n = sum(1 for _ in iter_records(files, ReadOptions(ocr="never"), workers))
        dt = time.perf_counter() - t
        print(f"workers={workers}: {n} documents in {dt:.1f} s ({n / dt:.2f} docs/s)")


def cmd_ocr(args) -> None:
    files = [DATA / n for n in ("CN104766014B.pdf", "US11762912.pdf", "US12110498.pdf")]
    for engine in ("rapidocr", "tesseract"):
        out = Path(f"/tmp/pdf_ocr_{engine}.jsonl")
        times = read_all("auto", "both", out, files, engine)
        print(engine, [f"{n}: {t:.1f}s" for n, t, _s in times])
        print(score(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["fields", "linking", "workers", "ocr"])
    ap.add_argument("--ocr", default="auto")
    ap.add_argument("--features", default="both")
    ap.add_argument("--out", default="/tmp/pdf_records.jsonl")
    args = ap.parse_args()
    {"fields": cmd_fields, "linking": cmd_linking, "workers": cmd_workers, "ocr": cmd_ocr}[args.what](args)


if __name__ == "__main__":
    main()
