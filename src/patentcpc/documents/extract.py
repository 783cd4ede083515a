"""A front page's record: classify the page, then fill each field from its key (with the template's
expectations) and repair the values."""

from __future__ import annotations

import re

from patentcpc.documents import records as R
from patentcpc.documents.fields import Key, assign, find_candidates, find_keys
from patentcpc.documents.layout import Layout, build
from patentcpc.documents.pdf import Page
from patentcpc.documents.template import DOC_TYPE, classify


def _ev(page: int, bbox, conf: float) -> dict:
    return {"page": page, "bbox": bbox, "confidence": round(max(min(conf, 1.0), 0.0), 3)}


def _bbox(words) -> list[float] | None:
    if not words:
        return None
    return [round(min(w.x0 for w in words), 1), round(min(w.y0 for w in words), 1),
            round(max(w.x1 for w in words), 1), round(max(w.y1 for w in words), 1)]


def analyse(page: Page):
    layout = build(page)
    keys = find_keys(layout)
    template, sim, _ = classify(layout, keys)
    return layout, keys, template, sim


def extract(page: Page, layout: Layout, keys: list[Key], template: str, sim: float, use: str = "both") -> dict:
    """The front-page fields of ``page`` (already classified as ``template``)."""
    rec: dict = {f: None for f in R.FIELDS}
    for f in R.LIST_FIELDS:
        rec[f] = []
    ev: dict = {}
    pno = page.index + 1
    conf_ocr = 0.85 if page.source == "ocr" else 1.0
    rec["doc_type"] = DOC_TYPE[template]
    rec["front_page"] = pno
    ev["doc_type"] = _ev(pno, None, sim)
    by: dict[str, list[Key]] = {}
    for k in keys:
        by.setdefault(k.field, []).append(k)

    def first(f: str) -> Key | None:
        ks = by.get(f) or []
        return max(ks, key=lambda k: (len(k.words()) > 0, k.score)) if ks else None

    # a grant's publication date is (45); its (43) is the earlier publication of the application
    if template != "us-application" and any(k.code in ("45", "44") for k in keys):
        for k in keys:
            if k.code == "43":
                k.field = "other"
    # single-valued fields: the assignment
    cands = find_candidates(layout)
    got = assign(keys, cands, layout, use)
    if "number" in got:
        c, s, _k = got["number"]
        number, kind = c.value, c.extra
        if not kind:  # the barcode line at the top carries the kind code
            for o in cands:
                if o.kind == "pubnum" and o.value == number and o.extra:
                    kind = o.extra
                    break
        rec["publication_number"], rec["kind"] = number, kind
        ev["publication_number"] = _ev(pno, c.bbox, conf_ocr * min(s / 2, 1))
    else:  # no key: the barcode line
        top = [o for o in cands if o.kind == "pubnum" and o.extra and o.words[0].y0 < page.height * 0.2]
        if top:
            c = min(top, key=lambda o: o.words[0].y0)
            rec["publication_number"], rec["kind"] = c.value, c.extra
            ev["publication_number"] = _ev(pno, c.bbox, 0.6 * conf_ocr)
    for f, out in (("pubdate", "publication_date"), ("appno", "application_number"), ("filed", "filing_date")):
        if f in got:
            c, s, _k = got[f]
            rec[out] = c.value
            ev[out] = _ev(pno, c.bbox, conf_ocr * min(s / 2, 1))
    if rec["publication_number"] and not rec["kind"]:
        year = int((rec["publication_date"] or "2001")[:4])
        if template == "us-application":
            rec["kind"] = "A1"
        elif template == "us-grant-pre2001" or year < 2001:
            rec["kind"] = "A"
    if rec["publication_number"] and not rec["publication_number"].startswith("US"):
        rec["doc_type"] = "other-office"  # the number names another office (an OCR without its script)
    if rec["publication_number"] and rec["kind"]:
        if rec["publication_number"].startswith("US") and rec["kind"] == "A" and template == "us-application":
            rec["kind"] = "A1"
        rec["publication_number"] = rec["publication_number"] + rec["kind"]

    # region fields
    k = first("title")
    if k and k.words():
        title = k.text().strip(" .,;:")
        rec["title"] = title or None
        ev["title"] = _ev(pno, _bbox(k.words()), conf_ocr * 0.9)
    k = first("inventors")
    if k and k.words():
        names = [R.first_name(e) for e in R.split_people(k.text())]
        rec["inventors"] = [n for n in names if n]
        ev["inventors"] = _ev(pno, _bbox(k.words()), conf_ocr * 0.85)
    for f in ("applicant", "assignee"):
        k = first(f)
        if k and k.words():
            entries = R.split_people(k.text())
            name = R.first_name(entries[0]) if entries else None
            rec[f] = name
            ev[f] = _ev(pno, _bbox(k.words()), conf_ocr * 0.85)
    page_syms = R.find_symbols(" ".join(s.text for s in layout.segments))
    context = R.resolve_symbols([p for p in page_syms if p[1] and p[3] and "?" not in p[0]], [])
    continued, tails = [], {}
    k = first("ipc")
    if k and k.words():
        rec["ipc"] = R.resolve_symbols(R.find_symbols(k.text()), context)
        ev["ipc"] = _ev(pno, _bbox(k.words()), conf_ocr * 0.9)
        if k.continued:
            continued.append("ipc")
            tails["ipc"] = _dangling(k.text())
    k = first("uscl")
    if k and k.words():
        cpc = cpc_symbols(k.text(), context)
        if cpc is not None:
            rec["cpc"] = cpc
            ev["cpc"] = _ev(pno, _bbox(k.words()), conf_ocr * 0.9)
        if k.continued:
            continued.append("cpc")
            tails["cpc"] = _dangling(k.text())
    k = first("abstract")
    if k and k.words():
        abstract = re.sub(r"^A\s?BSTRACT\b\s*", "", k.text())
        if abstract and not re.search(r"[.!?)]\s*$", abstract) and not any(
                re.match(r"^[\dIl]+\s*Claims?,", s.text) for s in layout.segments):
            continued.append("abstract")  # a long abstract goes on on the next page
        rec["abstract"] = abstract or None
        ev["abstract"] = _ev(pno, _bbox(k.words()), conf_ocr * 0.9)
    if rec["title"]:
        vocab = set(re.findall(r"[a-z]+", (rec["abstract"] or "").lower()))
        rec["title"] = R.split_run_together(rec["title"], vocab)
    rec["evidence"] = ev
    rec["_continued"] = continued
    rec["_tails"] = tails
    return rec


def _dangling(text: str) -> str:
    """A subclass at the very end of a value, its group printed on the next page (``...; G06N``)."""
    m = re.search(r"\b([A-HY][0-9OoIl]{2}[A-Z])\s*$", text)
    return m.group(1) + " " if m else ""


def cpc_symbols(text: str, context: list[str], require_label: bool = True) -> list[str] | None:
    """The CPC symbols of a (52) value: after its ``CPC`` label, before ``USPC``; None without a label
    (a (52) that prints only U.S. classes)."""
    m = re.search(r"\bC\s?P\s?C\b", text)
    if not m and require_label:
        return None
    body = re.split(r"\bU\s?S\s?P\s?C\b", text[m.end() if m else 0:])[0]
    return R.resolve_symbols(R.find_symbols(body), context)


def continuation(page: Page, rec: dict) -> None:
    """Add the (51) and (52) symbols that a front page continues on the next page."""
    layout = build(page)
    keys = find_keys(layout)
    context = rec["ipc"] + rec["cpc"]
    tails = rec.get("_tails") or {}
    for k in keys:
        if k.field == "ipc" and "ipc" in rec["_continued"]:
            text = tails.get("ipc", "") + k.text()
            rec["ipc"] += [s for s in R.resolve_symbols(R.find_symbols(text), context) if s not in rec["ipc"]]
        if k.field == "uscl" and "cpc" in rec["_continued"]:
            text = tails.get("cpc", "") + re.sub(r"^.*?\bC\s?P\s?C\b", "", k.text())
            more = cpc_symbols(text, context, require_label=False) or []
            rec["cpc"] += [s for s in more if s not in rec["cpc"]]
    if "abstract" in rec["_continued"] and rec["abstract"]:
        # the lines above "N Claims, M Drawing Sheets" in that column, below the page's header
        end = next((s for s in layout.segments if re.match(r"^[\dIl]+\s*Claims?,", s.text)), None)
        if end is not None:
            top = max((s.line for s in layout.segments if re.search(r"\bPage\s+\d|\bUS\s?[\d,]{9,}", s.text)),
                      default=-1)
            lines = [s for s in layout.segments if s.col == end.col and top < s.line < end.line]
            lines.sort(key=lambda s: s.line)
            if lines and not any(_starts_key(s, keys) for s in lines):
                more = R.clean_text([w.text for s in lines for w in s.words])
                rec["abstract"] = R.clean_text([rec["abstract"], more])


def _starts_key(seg, keys) -> bool:
    return any(k.seg is seg for k in keys)
