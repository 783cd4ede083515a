"""Patent PDFs and scans as a dataset: one row per document for ``load_data`` (and so ``train``,
``evaluate``, ``predict``, ``predict-batch``): the text view title + abstract (+ first claim), the
labels from the printed CPC, else the IPC."""

from __future__ import annotations

import os
from pathlib import Path

from patentcpc.documents.pdf import IMAGE_SUFFIXES, PDF_SUFFIXES
from patentcpc.errors import DataError

DOCUMENT_SUFFIXES = PDF_SUFFIXES + IMAGE_SUFFIXES


def is_documents(source: str | os.PathLike) -> bool:
    """A PDF or image file, or a folder holding some (and no dataset of its own)."""
    path = Path(source)
    if path.is_file():
        return path.suffix.lower() in DOCUMENT_SUFFIXES
    if path.is_dir():
        return any(p.suffix.lower() in DOCUMENT_SUFFIXES for p in path.rglob("*") if p.is_file())
    return False


def document_row(rec: dict) -> dict:
    labels = rec.get("cpc") or rec.get("ipc") or []
    return {"id": rec.get("publication_number") or Path(str(rec.get("file"))).stem,
            "title": rec.get("title") or "", "abstract": rec.get("abstract") or "",
            "claims": rec.get("first_claim") or "", "cpc": "; ".join(labels),
            "printed_ipc": "; ".join(rec.get("ipc") or []), "file": str(rec.get("file"))}


def documents_dataset(source: str | os.PathLike, on_bad_row: str = "error", workers: int | None = None):
    """(datasets.Dataset, bad rows: row -> (problem, None)) of the documents at ``source``."""
    import datasets

    from patentcpc.documents.reader import ReadOptions, expand_paths, iter_records

    files = expand_paths([source])
    if not files:
        raise DataError(source, "holds no PDF or image file")
    workers = workers or max(1, min(os.cpu_count() or 1, 4))
    rows, bad = [], {}
    for i, (name, rec, err) in enumerate(iter_records(files, ReadOptions(), workers, progress=True), start=1):
        if err is not None:
            if on_bad_row == "error":
                raise DataError(name, err[len(name) + 2:] if err.startswith(name + ": ") else err)
            bad[i] = (err, None)
            rows.append(document_row({"file": name}))
            continue
        rows.append(document_row(rec))
    if not any(r["claims"] for r in rows):
        for r in rows:
            del r["claims"]
    return datasets.Dataset.from_list(rows), bad
