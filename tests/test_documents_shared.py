"""patentcpc read on the shared real patent PDFs (../shared/data/patent-pdfs): the text-layer PDFs
against labels.json, without OCR (seconds). The full benchmark with OCR: benchmarks/pdf_bench.py."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration

EXACT = ["doc_type", "publication_number", "kind", "publication_date", "application_number", "filing_date"]


@pytest.fixture
def pdfs(shared_data):
    folder = shared_data / "patent-pdfs"
    if not (folder / "labels.json").exists():
        pytest.skip("../shared/data/patent-pdfs is not available")
    pytest.importorskip("pypdfium2")
    return folder


def test_text_layer_pdfs_match_their_labels(pdfs):
    from patentcpc.documents.reader import ReadOptions, read_one

    labels = {x["file"]: x for x in json.loads((pdfs / "labels.json").read_text())}
    hits = total = 0
    titles = 0
    for name, lab in sorted(labels.items()):
        path = pdfs / name
        try:
            rec = read_one(path, ReadOptions(ocr="never"))
        except Exception:  # noqa: BLE001 - the image-only PDFs need OCR
            continue
        for f in EXACT:
            if lab.get(f) and f not in lab.get("_skip", []):
                total += 1
                hits += (rec[f] or "").replace(" ", "") == lab[f].replace(" ", "")
        titles += bool(lab.get("title")) and (rec["title"] or "").lower() == lab["title"].lower()
    assert total >= 90 and hits / total >= 0.97, (hits, total)
    assert titles >= 14
