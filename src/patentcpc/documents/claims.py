"""The first claim of a full document: the claims section is found from the end of the PDF backwards
(text layer only; a claims page without one is not OCRed), then read in column order."""

from __future__ import annotations

import re

from patentcpc.documents import records as R
from patentcpc.documents.layout import build

_MARKER = re.compile(r"(claimed\s+is|is\s+claimed|I\s+claim|We\s+claim|claims?\s+(?:is|are)|CLAIMS)\s*:?", re.I)
_CLAIM1 = re.compile(r"(?:claimed\s+is|is\s+claimed|I\s+claim|We\s+claim|claims?\s+(?:is|are)|CLAIMS)\s*:?\s*"
                     r"1\s*[.,]\s*(?P<body>.+?)(?=\s2\s*[.,]\s*(?:The|A|An)\b|\Z)", re.I | re.S)
MAX_PAGES_BACK = 250
MAX_CLAIM_CHARS = 4000


def first_claim(pdf, front_index: int) -> tuple[str, int] | None:
    """(claim 1's text, 1-based page) or None where the document has no claims in its text layer."""
    n = pdf.n_pages
    for i in range(n - 1, max(front_index, n - 1 - MAX_PAGES_BACK), -1):
        page = pdf.doc[i]
        tp = page.get_textpage()
        raw = tp.get_text_range()
        tp.close()
        page.close()
        if not _MARKER.search(raw):
            continue
        text = _reading_order(pdf, i)
        if i + 1 < n:
            text += " " + _reading_order(pdf, i + 1)
        m = _CLAIM1.search(text)
        if m:
            body = re.sub(r"\s+", " ", m.group("body")).strip()[:MAX_CLAIM_CHARS]
            return body, i + 1
    return None


def _reading_order(pdf, index: int) -> str:
    layout = build(pdf.text_page(index))
    words = []
    for s in layout.segments:
        ws = [w.text for w in s.words]
        # line numbers printed in the margin between the columns (5, 10, 15, ...)
        ws = [w for w in ws if not (w.isdigit() and int(w) % 5 == 0 and len(w) <= 2)]
        if words and ws and words[-1].endswith("-") and ws[0][:1].islower():
            words[-1] = words[-1][:-1] + "\u00ad"
        words += ws
    return R.clean_text(words)
