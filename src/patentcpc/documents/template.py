"""What a page is: template prototypes and cosine similarity over text + layout features (the KIE
paper's classifier). Templates: a modern US grant, a pre-2001 US grant, a US application, another
office's front page, and not a front page."""

from __future__ import annotations

import math
import re

from patentcpc.documents.layout import Layout

FEATURES = (
    "phrase_application",  # "Patent Application Publication"
    "label_pubno",  # "Pub. No."
    "phrase_us_patent",  # "United States Patent"
    "label_patno",  # "Patent No."
    "label_patnumber",  # "Patent Number" (before 2001)
    "label_dateofpatent",
    "label_pubdate",
    "cjk",  # share of CJK characters
    "other_office",  # another office's name
    "inid_keys",  # INID keys found / 12
    "inid_left",  # layout: share of the keys in the left column
    "inid_top",  # layout: share of the keys in the top half
    "two_columns",  # layout: share of segments inside one column
    "abstract",
    "bracket_style",  # [11] style codes or codes without brackets (before 2001)
)

# the prototypes: the feature vector a clean page of each template has
PROTOTYPES = {
    "us-grant": dict(phrase_us_patent=1, label_patno=1, label_dateofpatent=1, inid_keys=1, inid_left=0.7,
                     inid_top=0.8, two_columns=1, abstract=1),
    "us-grant-pre2001": dict(phrase_us_patent=1, label_patnumber=1, label_dateofpatent=1, inid_keys=0.8,
                             inid_left=0.7, inid_top=0.8, two_columns=1, abstract=1, bracket_style=1),
    "us-application": dict(phrase_application=1, label_pubno=1, label_pubdate=1, inid_keys=1, inid_left=0.7,
                           inid_top=0.8, two_columns=1, abstract=1),
    "other-office": dict(cjk=1, other_office=1, inid_keys=0.6, inid_left=0.6, inid_top=0.7, two_columns=0.8,
                         abstract=0.3),
    "not-front-page": dict(two_columns=1, inid_keys=0.05, inid_left=0.1, inid_top=0.1),
}
DOC_TYPE = {"us-grant": "us-grant", "us-grant-pre2001": "us-grant", "us-application": "us-application",
            "other-office": "other-office", "not-front-page": "not-front-page"}


def _has(text: str, pattern: str) -> float:
    return 1.0 if re.search(pattern, text, re.I) else 0.0


def features(layout: Layout, keys) -> list[float]:
    segs = layout.segments
    text = " ".join(s.text for s in segs)
    squashed = re.sub(r"[^a-z]", "", text.lower())
    n_chars = max(len(text), 1)
    cjk = sum(1 for c in text if "\u4e00" <= c <= "\u9fff") / n_chars
    inid = [k for k in keys if k.code]
    distinct = {k.code for k in inid}
    f = {
        "phrase_application": _has(squashed, "patentapp[il1]icationpub[il1]ication"),
        "label_pubno": _has(squashed, r"pubno"),
        "phrase_us_patent": _has(squashed, r"unitedstat[ec]spatent(?!app)"),
        "label_patno": _has(squashed, r"patentno"),
        "label_patnumber": _has(squashed, r"patentnumber"),
        "label_dateofpatent": _has(squashed, r"dateofpatent"),
        "label_pubdate": _has(squashed, r"pubdate"),
        "cjk": min(cjk * 5, 1.0),
        "other_office": _has(text, r"中华人民共和国|国家知识产权局|European Patent|Europäisches|World Intellectual|"
                                   r"Japan Patent Office|特許庁|Offic?e europ"),
        "inid_keys": min(len(distinct) / 12, 1.0),
        "inid_left": sum(1 for k in inid if k.seg.col == 0) / max(len(inid), 1),
        "inid_top": sum(1 for k in inid if k.y < layout.page.height / 2) / max(len(inid), 1),
        "two_columns": sum(1 for s in segs if s.col in (0, 1)) / max(len(segs), 1),
        "abstract": 1.0 if any(k.field == "abstract" for k in keys) else 0.0,
        "bracket_style": 1.0 if re.search(r"\[\s?(11|45|54|21|22)\s?\]", text) or (
            re.search(r"(?<![\(\d])(11|45)\)?\s+(Patent Number|Date of Patent)", text)) else 0.0,
    }
    return [float(f[name]) for name in FEATURES]


def _cos(a: list[float], b: list[float]) -> float:
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb) if na and nb else 0.0


def classify(layout: Layout, keys) -> tuple[str, float, dict[str, float]]:
    """(template, similarity, similarity to each prototype)."""
    v = features(layout, keys)
    sims = {t: _cos(v, [float(p.get(n, 0.0)) for n in FEATURES]) for t, p in PROTOTYPES.items()}
    if not layout.segments or len({k.code for k in keys if k.code}) < 3:
        sims["not-front-page"] = max(sims["not-front-page"], 1.0)
    best = max(sims, key=sims.get)
    return best, sims[best], sims
