"""Key-value linking on a front page: INID keys, candidate values, and their assignment.

1. **Keys**: INID codes (``(54)``, ``[45]``, ``( 12 )``, OCR-garbled ``(Io)``, ``175)``) and the labels
   printed after them (``Inventors:``, ``Appl. No.:``), matched fuzzily; a label alone also makes a key.
2. **Regions**: a key's value is the text after it on its line segment, continued down its column until
   the next key (title, names, classification lists, abstract are read from their regions).
3. **Assignment** of the single-valued fields (publication number, publication date, application
   number, filing date): every typed candidate on the page (dates, numbers) is scored against every key
   by a linking scorer with text features (type compatibility, reading-order distance, inside the key's
   region) and layout features (same line to the right, just below in the same column, distance); the
   assignment of candidates to fields that maximises the total score is solved with
   :func:`scipy.optimize.linear_sum_assignment` (each candidate serves at most one field).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field

from patentcpc.documents import records as R
from patentcpc.documents.layout import Layout, Segment, inid_code
from patentcpc.documents.pdf import Word

CODE_FIELD = {"10": "number", "11": "number", "12": "doctype", "19": "office", "21": "appno", "22": "filed",
              "43": "pubdate", "44": "pubdate", "45": "pubdate", "51": "ipc", "52": "uscl", "54": "title",
              "57": "abstract", "71": "applicant", "72": "inventors", "75": "inventors", "76": "inventors",
              "73": "assignee"}
LABELS = {
    "number": ["patentno", "patentnumber", "pubno", "publicationno"],
    "pubdate": ["dateofpatent", "pubdate", "publicationdate"],
    "appno": ["applno", "applicationno", "appno"],
    "filed": ["filed", "pctfiled"],
    "ipc": ["intcl"],
    "uscl": ["uscl", "usc1"],
    "abstract": ["abstract"],
    "applicant": ["applicant", "applicants"],
    "inventors": ["inventor", "inventors"],
    "assignee": ["assignee", "assignees"],
    "other": ["notice", "referencescited", "fieldofclassification", "fieldofsearch", "priorpublicationdata",
              "relatedusapplicationdata", "foreignapplicationprioritydata", "attorney", "primaryexaminer",
              "assistantexaminer", "pctno", "pctpubno", "correspondenceaddress", "publicationclassification",
              "continued", "uspatentdocuments", "foreignpatentdocuments", "otherpublications", "usapplicationdata"],
}
# fields whose label alone (without an INID code) may open a key
LABEL_ONLY = {"abstract", "other", "inventors", "assignee", "applicant", "ipc"}
SINGLE = {"number": "pubnum", "pubdate": "date", "appno": "appnum", "filed": "date"}


@dataclass
class Key:
    field: str
    code: str | None
    seg: Segment
    start: int  # index of the key's first word in seg.words
    end: int  # index after the key's label
    score: float
    region: list[tuple[Segment, int, int]] = field(default_factory=list)  # (segment, from word, to word)
    continued: bool = False  # the value goes on on the next page ("(Continued)")

    @property
    def x(self) -> float:
        return self.seg.words[max(self.end - 1, self.start)].x1

    @property
    def y(self) -> float:
        return self.seg.words[self.start].cy

    def words(self) -> list[Word]:
        return [w for s, a, b in self.region for w in s.words[a:b]]

    def text(self) -> str:
        """The region's text; a word broken over two lines with a hyphen is rejoined."""
        out: list[str] = []
        for s, a, b in self.region:
            ws = [w.text for w in s.words[a:b]]
            if out and ws and out[-1].endswith("-") and len(out[-1]) > 2 and ws[0][:1].islower():
                out[-1] = out[-1][:-1] + "\u00ad"
            out += ws
        return R.clean_text(out)


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower().replace("1", "l").replace("|", "l"))


def _label(words: list[Word], i: int) -> tuple[str | None, int, float]:
    """The label starting at word ``i``: (field, words it spans, similarity)."""
    best: tuple[str | None, int, float] = (None, 0, 0.0)
    for span in (1, 2, 3, 4, 5):
        if i + span > len(words):
            break
        s = _squash("".join(w.text for w in words[i:i + span])).replace("l", "i")
        if not s:
            continue
        for f, labels in LABELS.items():
            for lab in labels:
                lab2 = lab.replace("l", "i")
                if len(s) > len(lab2) + 3:
                    continue
                if abs(len(s) - len(lab2)) > 0.25 * len(lab2) + 1:
                    continue
                sm = difflib.SequenceMatcher(None, s, lab2)
                if sm.real_quick_ratio() < 0.8 or sm.quick_ratio() < 0.8:
                    continue
                r = sm.ratio()
                if r > best[2] + 1e-9 and r >= 0.8:
                    best = (f, span, r)
    return best


def find_keys(layout: Layout) -> list[Key]:
    keys: list[Key] = []
    for seg in layout.segments:
        ws = seg.words
        i = 0
        while i < len(ws):
            code, span = None, 0
            for n in (3, 2, 1):
                if i + n <= len(ws):
                    joined = "".join(w.text for w in ws[i:i + n])
                    c = inid_code(joined)
                    if c:
                        code, span = c, n
                        break
            j = i + span
            if not code and i > 0:
                i += 1
                continue
            lab, lspan, lsim = _label(ws, j) if j < len(ws) else (None, 0, 0.0)
            f_code = CODE_FIELD.get(code, "other") if code else None
            if code:
                bracketed = any(ch in "([{)]}" for ch in "".join(w.text for w in ws[i:j]))
                if not bracketed and lab is None:
                    i += 1
                    continue
                f = f_code
                score = 1.0
                if lab is not None and lab != f_code and lab != "other" and (f_code in ("other", None)):
                    f = lab  # the label overrules a garbled code
                end = j + (lspan if lab is not None else 0)
                keys.append(Key(f, code, seg, i, _skip_colon(ws, end), score + 0.5 * lsim))
                i = end
                continue
            if lab is not None and i == 0 and lab in LABEL_ONLY and lsim >= 0.85:
                keys.append(Key(lab, None, seg, i, _skip_colon(ws, i + lspan), 0.6 * lsim))
                i += lspan
                continue
            i += 1
    _regions(layout, keys)
    return keys


def _skip_colon(ws: list[Word], end: int) -> int:
    while end < len(ws) and re.fullmatch(r"[:;.,\-_…]+", ws[end].text):
        end += 1
    if end < len(ws) and re.fullmatch(r"\.{2,}.*|CPC", ws[end].text):
        end += 1
    return end


def _regions(layout: Layout, keys: list[Key]) -> None:
    by_seg: dict[int, list[Key]] = {}
    for k in keys:
        by_seg.setdefault(id(k.seg), []).append(k)
    starts = {id(k.seg) for k in keys if k.start <= 1}
    lh = layout.line_height
    for k in keys:
        same = sorted(by_seg[id(k.seg)], key=lambda x: x.start)
        nxt = [x.start for x in same if x.start > k.start]
        stop = nxt[0] if nxt else len(k.seg.words)
        k.region = [(k.seg, k.end, stop)]
        if nxt:
            continue
        col = k.seg.col
        below = sorted((s for s in layout.segments if s.col == col and s.line > k.seg.line
                        and s.x1 > k.seg.x0 - 2 * lh), key=lambda s: (s.line, s.x0))
        last = k.seg
        max_gap = 2.6 * lh
        ran_off = True
        for s in below:
            if id(s) in starts:
                ran_off = False
                k.continued = bool(re.fullmatch(r"\W*Cont[il1]nued\W*", s.text.replace(" ", ""), re.I))
                break
            if s.y0 - last.y1 > max_gap:
                # a wide gap: the value ended, unless nothing but a drawing follows in this column
                ran_off = not any(id(o) in starts for o in below if o.line > s.line)
                break
            if re.match(r"^[\dIl]+\s*Claims?,", s.text):
                ran_off = False
                break
            k.region.append((s, 0, len(s.words)))
            last = s
        if ran_off and col == 0 and k.field in ("ipc", "uscl", "inventors", "assignee", "applicant", "title"):
            # the left column flows on at the top of the right one, below the header
            header = [x.seg.line for x in keys if x.seg.col == 1 and x.field in ("number", "pubdate")]
            top = max(header) if header else -1
            for s in sorted((s for s in layout.segments if s.col == 1 and s.line > top), key=lambda s: s.line):
                if id(s) in starts:
                    k.continued = bool(re.fullmatch(r"\W*Cont[il1]nued\W*", s.text.replace(" ", ""), re.I))
                    break
                k.region.append((s, 0, len(s.words)))


# ----------------------------------------------------------------------------- candidates


@dataclass
class Candidate:
    kind: str  # "date", "pubnum", "appnum"
    value: str
    extra: str | None  # a kind code for publication numbers
    words: list[Word]
    pos: int  # reading-order index of the first word

    @property
    def bbox(self) -> list[float]:
        return [round(min(w.x0 for w in self.words), 1), round(min(w.y0 for w in self.words), 1),
                round(max(w.x1 for w in self.words), 1), round(max(w.y1 for w in self.words), 1)]


def _stream(words: list[Word]) -> tuple[str, list[int]]:
    text, owner = [], []
    for i, w in enumerate(words):
        if text:
            text.append(" ")
            owner.append(i)
        text.append(w.text)
        owner.extend([i] * len(w.text))
    return "".join(text), owner


def find_candidates(layout: Layout) -> list[Candidate]:
    words = layout.words
    text, owner = _stream(words)
    out: list[Candidate] = []

    def span(m: re.Match) -> list[Word]:
        a, b = owner[m.start()], owner[max(m.end() - 1, m.start())]
        return words[a:b + 1]

    for m in R.DATE_RE.finditer(text):
        v = R.parse_date(m)
        if v:
            out.append(Candidate("date", v, None, span(m), owner[m.start()]))
    for m in R.PUBNUM_RE.finditer(text):
        v = R.publication_number(m)
        if v:
            out.append(Candidate("pubnum", v[0], v[1], span(m), owner[m.start()]))
    for m in R.APPNUM_RE.finditer(text):
        v = R.application_number(m)
        if v:
            out.append(Candidate("appnum", v, None, span(m), owner[m.start()]))
    return out


# ----------------------------------------------------------------------------- the linking scorer

FEATURES = ("both", "text", "layout")


def link_score(key: Key, cand: Candidate, layout: Layout, pos_of: dict[int, int], use: str = "both",
               typed: bool = True) -> float:
    """How likely ``cand`` is the value of ``key``: text features (reading-order distance, inside the
    key's region) and layout features (same line to the right, below in the same column, distance).
    ``typed``: a candidate of another type than the field's (a date for a number) is ruled out."""
    if typed and SINGLE.get(key.field) != cand.kind:
        return -math.inf
    lh = layout.line_height
    # text: reading order
    kpos = pos_of.get(id(key.seg.words[max(key.end - 1, key.start)]), 0)
    gap = cand.pos - kpos
    in_region = any(w in key.words() for w in cand.words[:1])
    t = (1.0 if in_region else 0.0) + (math.exp(-max(gap - 1, 0) / 6.0) if gap > 0 else 0.0)
    # layout: geometry
    c0 = cand.words[0]
    dx, dy = c0.x0 - key.x, c0.cy - key.y
    if abs(dy) < 0.6 * lh and dx > -0.5 * lh:
        g = 1.0 * math.exp(-dx / (40 * lh))
    elif dy > 0 and c0.x0 > key.seg.x0 - 2 * lh and (c0.x0 < layout.mid) == (key.seg.x0 < layout.mid):
        g = 0.8 * math.exp(-dy / (2.5 * lh))
    else:
        g = 0.3 * math.exp(-math.hypot(dx, dy) / (20 * lh))
    g += 0.2 * math.exp(-math.hypot(dx, dy) / (5 * lh))
    if use == "text":
        return t
    if use == "layout":
        return g
    return t + g


def assign(keys: list[Key], cands: list[Candidate], layout: Layout, use: str = "both") -> dict[str, tuple]:
    """The assignment of candidates to the single-valued fields that maximises the total link score."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    pos_of = {id(w): i for i, w in enumerate(layout.words)}
    fields = sorted({k.field for k in keys if k.field in SINGLE})
    if not fields or not cands:
        return {}
    score = np.full((len(fields), len(cands)), -1e6)
    best_key: dict[tuple[int, int], Key] = {}
    for fi, f in enumerate(fields):
        for k in (k for k in keys if k.field == f):
            for ci, c in enumerate(cands):
                s = link_score(k, c, layout, pos_of, use)
                if s > score[fi, ci] and s > 0.05:
                    score[fi, ci] = s
                    best_key[fi, ci] = k
    rows, cols = linear_sum_assignment(-score)
    out = {}
    for r, c in zip(rows, cols, strict=True):
        if score[r, c] > 0:
            out[fields[r]] = (cands[c], float(score[r, c]), best_key[r, c])
    return out
