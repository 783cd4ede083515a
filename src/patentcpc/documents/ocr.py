"""OCR for pages without a usable text layer: words with boxes from a page image.

Engines: **RapidOCR** (``rapidocr-onnxruntime``: PP-OCRv4 detection and recognition models shipped in the
wheel, ONNX Runtime on the CPU; pip alone, nothing downloaded at run time; the default) and **Tesseract**
(the ``tesseract`` program, e.g. Debian's ``tesseract-ocr``; used when asked for, or when RapidOCR is not
installed). RapidOCR's recogniser reads a whole text line and often drops the spaces between words
(``SYSTEMANDMETHOD``); its per-character boxes are used to put them back where the gap between two
characters is wide. Numbers in benchmarks/pdf.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess  # nosec B404 - runs the tesseract program found on PATH, with a fixed argument list
import tempfile
from pathlib import Path

from patentcpc.documents.pdf import Page, Word
from patentcpc.errors import DataError

_ENGINE = None


def available_engine(engine: str = "auto") -> str:
    if engine in ("auto", "rapidocr"):
        try:
            import rapidocr_onnxruntime  # noqa: F401

            return "rapidocr"
        except ImportError:
            if engine == "rapidocr":
                raise DataError("rapidocr", "OCR needs rapidocr-onnxruntime: pip install 'patentcpc[pdf]'") from None
    if engine in ("auto", "tesseract") and shutil.which("tesseract"):
        return "tesseract"
    raise DataError("ocr", "this page has no text layer and OCR needs an engine: pip install 'patentcpc[pdf]' "
                           "(RapidOCR) or install tesseract (apt-get install tesseract-ocr)")


def _rapid():
    global _ENGINE
    if _ENGINE is None:
        from rapidocr_onnxruntime import RapidOCR

        threads = int(os.environ.get("PATENTCPC_OCR_THREADS", "0")) or -1
        _ENGINE = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=threads)
    return _ENGINE


def _white_gaps(gray, box, min_run: float) -> list[tuple[float, int]]:
    """(centre x in image pixels, width) of the white column runs at least ``min_run`` wide inside a text box:
    the gaps between words, which the line recogniser does not always mark with a space."""

    x0, x1 = int(max(min(p[0] for p in box), 0)), int(min(max(p[0] for p in box), gray.shape[1]))
    y0, y1 = int(max(min(p[1] for p in box), 0)), int(min(max(p[1] for p in box), gray.shape[0]))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return []
    crop = gray[y0:y1, x0:x1].astype("float32")
    import numpy as np

    bg, fg = np.percentile(crop, 90), np.percentile(crop, 3)
    if bg - fg < 40:  # no contrast: no gaps to find
        return []
    # a column is ink where a pixel is well below the paper (noise and blur leave word gaps light)
    ink = (crop < bg - 0.45 * (bg - fg)).sum(axis=0) > 0
    gaps, run = [], 0
    for i, has_ink in enumerate(ink):
        if not has_ink:
            run += 1
            continue
        if run >= min_run and i - run > 0:
            gaps.append((x0 + i - run / 2, run))
        run = 0
    return gaps


def _rapid_words(img, scale: float) -> list[Word]:
    import numpy as np

    gray = np.asarray(img.convert("L"))
    # upright pages: no angle classifier (a page is deskewed as a whole, not line by line)
    res, _ = _rapid()(np.stack([gray] * 3, axis=-1), return_word_box=True, use_cls=False)
    words: list[Word] = []
    for item in res or []:
        box, text, conf = item[0], item[1], float(item[2])
        xs = [p[0] for p in box]
        ys = [p[1] for p in box]
        chars = item[3] if len(item) > 3 else None
        letters = item[4] if len(item) > 4 else None
        if not chars or not letters or len(chars) != len(letters):
            for t in text.split():
                words.append(Word(t, min(xs) * scale, min(ys) * scale, max(xs) * scale, max(ys) * scale, conf))
            continue
        height = max(ys) - min(ys)
        centres = [(min(p[0] for p in c) + max(p[0] for p in c)) / 2 for c in chars]
        breaks = set()
        min_run = max(0.2 * height, 3)
        for g, width in _white_gaps(gray, box, min_run):
            for i in range(len(centres) - 1):
                if centres[i] < g < centres[i + 1]:
                    # between two digits ("2016", "14/270,927") a narrow "1" leaves wide white: a
                    # space there needs a wider gap
                    numeric = all(c.isdigit() or c in ",./" for c in (letters[i], letters[i + 1]))
                    if not numeric or width >= 2 * min_run:
                        breaks.add(i)
                    break
        cur, cb = "", None
        for i, (cbox, ch) in enumerate(zip(chars, letters, strict=True)):
            cx0 = min(p[0] for p in cbox)
            cx1 = max(p[0] for p in cbox)
            if ch == " ":
                if cur:
                    words.append(Word(cur, cb[0] * scale, min(ys) * scale, cb[1] * scale, max(ys) * scale, conf))
                cur, cb = "", None
                continue
            cur += ch
            cb = [cx0, cx1] if cb is None else [cb[0], max(cb[1], cx1)]
            if i in breaks:
                words.append(Word(cur, cb[0] * scale, min(ys) * scale, cb[1] * scale, max(ys) * scale, conf))
                cur, cb = "", None
        if cur:
            words.append(Word(cur, cb[0] * scale, min(ys) * scale, cb[1] * scale, max(ys) * scale, conf))
    return words


def _tesseract_words(img, scale: float, source) -> list[Word]:
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "page.png"
        img.save(png)
        try:
            exe = shutil.which("tesseract") or "tesseract"
            r = subprocess.run([exe, str(png), "-", "--psm", "1", "tsv"],  # nosec B603 - no shell, fixed args
                               capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataError(source, f"tesseract failed ({exc})") from exc
    words = []
    for line in r.stdout.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) < 12 or parts[0] != "5" or not parts[11].strip():
            continue
        x, y, w, h = (float(v) for v in parts[6:10])
        words.append(Word(parts[11].strip(), x * scale, y * scale, (x + w) * scale, (y + h) * scale,
                          max(float(parts[10]), 0) / 100))
    return words


def skew_angle(img, max_angle: float = 4.0, step: float = 0.25) -> float:
    """The rotation (degrees) that makes the text lines of a page image horizontal: the angle whose
    rotated image has the sharpest row profile (the variance of the ink per row), on a small copy."""
    import numpy as np
    from PIL import Image

    small = img.convert("L")
    scale = 900 / max(small.width, 1)
    if scale < 1:
        small = small.resize((900, max(int(small.height * scale), 1)), Image.BILINEAR)
    arr = np.asarray(small, dtype=np.float32)
    ink = Image.fromarray(((arr < np.percentile(arr, 90) - 60) * 255).astype(np.uint8))
    best, best_score = 0.0, -1.0
    for angle in np.arange(-max_angle, max_angle + 1e-9, step):
        rows = np.asarray(ink.rotate(float(angle), resample=Image.NEAREST, fillcolor=0), dtype=np.float32).sum(1)
        score = float(rows.var())
        if score > best_score:
            best, best_score = float(angle), score
    return best


def ocr_image(img, pts_per_px: float, index: int, engine: str = "auto", source="image") -> Page:
    """The words of a page image (PIL); boxes scaled to points by ``pts_per_px``. A scan fed in
    askew (up to 4 degrees) is straightened first: boxes are then those of the straightened page."""
    from PIL import Image

    name = available_engine(engine)
    angle = skew_angle(img)
    if abs(angle) >= 0.3:
        img = img.convert("L").rotate(angle, resample=Image.BICUBIC, fillcolor=255, expand=False)
    words = _rapid_words(img, pts_per_px) if name == "rapidocr" else _tesseract_words(img, pts_per_px, source)
    return Page(index, img.width * pts_per_px, img.height * pts_per_px, words, "ocr")
