"""Layout: words -> line segments -> columns and reading order; INID keys found robustly.

A segment is a run of words on one line with no wide gap (a two-column front page gives two segments
per line). Reading order: the header band first, then the left column top to bottom, then the right one.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from dataclasses import dataclass, field

from patentcpc.documents.pdf import Page, Word


@dataclass
class Segment:
    words: list[Word]
    col: int = 0  # 0 left, 1 right, -1 spanning
    order: int = 0
    line: int = 0  # the line's rank from the top

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def x0(self) -> float:
        return min(w.x0 for w in self.words)

    @property
    def x1(self) -> float:
        return max(w.x1 for w in self.words)

    @property
    def y0(self) -> float:
        return min(w.y0 for w in self.words)

    @property
    def y1(self) -> float:
        return max(w.y1 for w in self.words)

    @property
    def bbox(self) -> list[float]:
        return [round(self.x0, 1), round(self.y0, 1), round(self.x1, 1), round(self.y1, 1)]


@dataclass
class Layout:
    page: Page
    segments: list[Segment]
    line_height: float
    mid: float
    words: list[Word] = field(default_factory=list)  # in reading order

    def column(self, col: int) -> list[Segment]:
        return [s for s in self.segments if s.col == col]


def build(page: Page) -> Layout:
    # dot leaders ("Int. Cl. ........ B60R 22/00") only join a label to its value: dropped
    words = [Word(unicodedata.normalize("NFKC", w.text), w.x0, w.y0, w.x1, w.y1, w.conf) for w in page.words]
    words = [w for w in words if w.text.strip() and not re.fullmatch(r"[.…·,:\-_ ]{3,}", w.text)]
    if not words:
        return Layout(page, [], 10.0, page.width / 2)
    # the line height of real words (a drawing's specks and dot leaders would make it tiny)
    textual = [w.h for w in words if sum(c.isalnum() for c in w.text) >= 3]
    lh = statistics.median(textual or [w.h for w in words])
    words = _attach_punctuation(_unglue(words), lh)
    mid = _gutter(words, page.width)
    # lines, column by column: a word joins the line whose vertical centre is nearest
    lines: list[tuple[int, list[Word], float]] = []
    for col in (0, 1):
        part = [w for w in words if ((w.x0 + w.x1) / 2 >= mid) == bool(col)]
        for line, centre in _group_lines(part, lh):
            lines.append((col, line, centre))
    order = sorted(range(len(lines)), key=lambda i: lines[i][2])
    segs: list[Segment] = []
    for rank, li in enumerate(order):
        col, line, _c = lines[li]
        line.sort(key=lambda w: w.x0)
        cur = [line[0]]
        for w in line[1:]:
            if w.x0 - cur[-1].x1 > 14 * lh:
                segs.append(Segment(cur, col=col, line=rank))
                cur = [w]
            else:
                cur.append(w)
        segs.append(Segment(cur, col=col, line=rank))
    # the header band: spanning segments above the first two-column line come first
    segs.sort(key=lambda s: (s.col != -1, s.col, s.line, s.x0))
    for i, s in enumerate(segs):
        s.order = i
    flat = [w for s in segs for w in s.words]
    return Layout(page, segs, lh, mid, flat)


def _group_lines(words: list[Word], lh: float) -> list[tuple[list[Word], float]]:
    words = sorted(words, key=lambda w: (w.cy, w.x0))
    lines: list[list[Word]] = []
    centres: list[float] = []
    for w in words:
        best, dist = None, 0.45 * lh
        for li in range(max(0, len(lines) - 8), len(lines)):
            d = abs(centres[li] - w.cy)
            if d <= dist and not any(_overlap_x(w, o) for o in lines[li][-3:]):
                best, dist = li, d
        if best is None:
            lines.append([w])
            centres.append(w.cy)
        else:
            lines[best].append(w)
            full = [o.cy for o in lines[best] if o.h >= 0.7 * lh] or [o.cy for o in lines[best]]
            centres[best] = sum(full) / len(full)
    return list(zip(lines, centres, strict=True))


def _gutter(words: list[Word], width: float) -> float:
    """The x of the gap between the two columns: where the fewest words cross, near the middle."""
    import numpy as np

    n = int(width) + 1
    cover = np.zeros(n)
    for w in words:
        if len(w.text) >= 2:
            cover[max(int(w.x0), 0):min(int(w.x1) + 1, n)] += 1
    lo, hi = int(0.38 * width), int(0.62 * width)
    if hi <= lo:
        return width / 2
    smooth = np.convolve(cover, np.ones(5) / 5, mode="same")[lo:hi]
    best = np.flatnonzero(smooth <= smooth.min() + 1e-9)
    return float(lo + best[len(best) // 2])


def _overlap_x(a: Word, b: Word) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 0.7 * min(a.x1 - a.x0, b.x1 - b.x0, 1e9)


_GLUED = re.compile(r"^([\(\[{][^\s\)\]}]{1,3}[\)\]}])(\S.*)$|^(\w[\w.]+:)([^\W\d_]\S*)$")


def _unglue(words: list[Word]) -> list[Word]:
    """OCR glues an INID code or a label to what follows (``(45)授权公告日``, ``Applicants:Jeffrey``):
    split such a word, its box shared out by the characters."""
    out: list[Word] = []
    for w in words:
        m = _GLUED.match(w.text)
        if not m:
            out.append(w)
            continue
        a, b = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        cut = w.x0 + (w.x1 - w.x0) * len(a) / len(w.text)
        out += [Word(a, w.x0, w.y0, cut, w.y1, w.conf), Word(b, cut, w.y0, w.x1, w.y1, w.conf)]
    return out


def _attach_punctuation(words: list[Word], lh: float) -> list[Word]:
    """Small punctuation (``,`` ``.`` ``;`` ``:``) joins the word before it: its box sits between lines."""
    out: list[Word] = []
    for w in words:
        prev = out[-1] if out else None
        if (prev is not None and len(w.text) <= 2 and all(c in ",.;:'\"" for c in w.text)
                and -0.3 * lh <= w.x0 - prev.x1 < 1.2 * lh and abs(w.cy - prev.cy) < lh):
            prev.text += w.text
            prev.x1 = max(prev.x1, w.x1)
            continue
        out.append(Word(w.text, w.x0, w.y0, w.x1, w.y1, w.conf))
    return out


# ----------------------------------------------------------------------------- INID keys

# OCR confusions of digits inside an INID code
_DIGIT = str.maketrans({"I": "1", "l": "1", "i": "1", "|": "1", "!": "1", "L": "1", "O": "0", "o": "0", "D": "0",
                        "Q": "0", "S": "5", "s": "5", "Z": "2", "z": "2", "B": "8", "G": "6", "b": "6", "T": "7",
                        "?": "7", "A": "4", "g": "9", "q": "9"})
INID_CODES = {"10", "11", "12", "19", "21", "22", "30", "43", "44", "45", "51", "52", "54", "56", "57", "58", "60",
              "62", "63", "64", "65", "66", "67", "71", "72", "73", "74", "75", "76", "86", "87", "*"}
_INID = re.compile(r"^[\(\[\{|lI1]?\s*([0-9IlioOSZzBGbTDQ|!?Agq]{2}|\*)\s*[\)\]\}|1lI]?$")
_INID_IN = re.compile(r"[\(\[\{]\s*([0-9IlioOSZzBGbTDQ|!?Agq]\s?[0-9IlioOSZzBGbTDQ|!?Agq]|\*)\s*[\)\]\}]")


def inid_code(token: str) -> str | None:
    """The INID code a token spells (``(Io)`` -> ``10``, ``[45]``, ``( 12 )``, ``76)``), else None."""
    t = token.strip().replace(" ", "")
    if not t or len(t) > 5:
        return None
    m = _INID.match(t)
    if not m:
        return None
    bracketed = t[0] in "([{" or t[-1] in ")]}"
    code = m.group(1).translate(_DIGIT)
    if code not in INID_CODES:
        return None
    if not bracketed and not t[:2].isdigit():
        return None
    return code
