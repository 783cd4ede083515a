"""Pages in: words with boxes from a PDF's text layer, page images for OCR, image files.

Library choice (issue 31): **pypdfium2** (Apache-2.0 / BSD bindings to Google's PDFium, the PDF engine
of Chrome). It opens a page lazily (a 250-page PDF is never parsed whole: only the pages asked for are
loaded), gives every character with its box in one C call each, renders pages for OCR, and is a single
binary wheel with no system dependency. pdfplumber (MIT, on pdfminer.six) gives the same words but is
pure Python and 10-50x slower per page, and parses more of the file up front; PyMuPDF is faster still
but AGPL-3.0, which an Apache-2.0 project cannot ship as a dependency.

Coordinates everywhere in :mod:`patentcpc.documents` are PDF points with the origin at the page's top
left corner and y growing downwards (image pixels are scaled back to points).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from patentcpc.errors import DataError

PDF_SUFFIXES = (".pdf",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MAX_PAGES_SCANNED = 6  # pages looked at to find a front page (a barcode cover sheet comes first)
MAX_OCR_PAGES = 3  # of which at most this many are OCRed
MAX_IMAGE_PIXELS = 60_000_000  # a decompression bomb is refused before it is decoded


@dataclass
class Word:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    conf: float = 1.0

    @property
    def h(self) -> float:
        return max(self.y1 - self.y0, 0.1)

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


@dataclass
class Page:
    index: int  # 0-based
    width: float
    height: float
    words: list[Word]
    source: str = "text"  # "text" (the PDF's text layer) or "ocr"


def _need_pdfium():
    try:
        import pypdfium2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DataError("pypdfium2", "reading PDFs needs pypdfium2: pip install 'patentcpc[pdf]'") from exc
    return pypdfium2


def sniff(path: Path) -> str:
    """``pdf`` or ``image`` by the file's first bytes (never by its name alone)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise DataError(path, "is empty (0 bytes)")
    if b"%PDF-" in head:
        return "pdf"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")):
        return "image"
    raise DataError(path, "is not a PDF or an image (PNG, JPEG, TIFF)")


class PdfFile:
    """An open PDF; pages are loaded one at a time, on demand."""

    def __init__(self, path: Path):
        pdfium = _need_pdfium()
        self.path = path
        try:
            self.doc = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as exc:
            msg = str(exc)
            if "password" in msg.lower():
                raise DataError(path, "is encrypted (password protected)") from exc
            raise DataError(path, f"is not a readable PDF ({msg.rstrip('.')})") from exc
        try:
            self.n_pages = len(self.doc)
        except Exception as exc:  # noqa: BLE001
            raise DataError(path, f"is not a readable PDF ({exc})") from exc
        if self.n_pages < 1:
            raise DataError(path, "has no pages")

    def close(self) -> None:
        self.doc.close()

    def text_page(self, i: int) -> Page:
        """The words of page ``i`` (0-based) from its text layer (maybe none)."""
        import pypdfium2.raw as raw

        page = self.doc[i]
        w, h = page.get_size()
        tp = page.get_textpage()
        n = tp.count_chars()
        words: list[Word] = []
        cur: list[str] = []
        box = [0.0, 0.0, 0.0, 0.0]
        last = None

        def flush():
            if cur:
                words.append(Word("".join(cur), box[0], box[1], box[2], box[3]))
            cur.clear()

        for k in range(min(n, 200_000)):
            cp = raw.FPDFText_GetUnicode(tp.raw, k)
            ch = chr(cp) if 0 < cp < 0x110000 else " "
            if ch.isspace() or ch in "\x00\ufffe\u00ad\x02":
                if ch in "\ufffe\u00ad\x02" and cur:
                    cur.append("\u00ad")  # a soft hyphen at a line end: rejoined later
                flush()
                last = None
                continue
            left, bottom, right, top = tp.get_charbox(k)
            y0, y1 = h - top, h - bottom
            if last is not None:
                gap = left - last[2]
                lh = max(last[3] - last[1], y1 - y0, 1.0)
                if abs((y0 + y1) / 2 - (last[1] + last[3]) / 2) > 0.6 * lh or gap > 0.35 * lh or gap < -lh:
                    flush()
            if not cur:
                box[:] = [left, y0, right, y1]
            else:
                box[:] = [min(box[0], left), min(box[1], y0), max(box[2], right), max(box[3], y1)]
            cur.append(ch)
            last = (left, y0, right, y1)
        flush()
        tp.close()
        page.close()
        return Page(i, w, h, words, "text")

    def is_scan(self, i: int) -> bool:
        """Whether page ``i`` is a scanned image (an image covers most of it), its text layer then
        being someone's OCR of that image."""
        import pypdfium2.raw as raw

        page = self.doc[i]
        try:
            w, h = page.get_size()
            for k, obj in enumerate(page.get_objects(filter=[raw.FPDF_PAGEOBJ_IMAGE], max_depth=2)):
                if k > 50:
                    break
                left, bottom, right, top = obj.get_bounds()
                if (right - left) * (top - bottom) >= 0.6 * w * h:
                    return True
            return False
        finally:
            page.close()

    def render(self, i: int, dpi: int = 200):
        """Page ``i`` as a greyscale PIL image and the points-per-pixel factor."""
        page = self.doc[i]
        scale = dpi / 72.0
        w, h = page.get_size()
        if w * h * scale * scale > MAX_IMAGE_PIXELS:
            scale = (MAX_IMAGE_PIXELS / (w * h)) ** 0.5
        img = page.render(scale=scale, grayscale=True).to_pil()
        page.close()
        return img, 1.0 / scale


def open_image(path: Path):
    """An image file's first frame as a greyscale PIL image; a decompression bomb is refused."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise DataError(path, f"image of {im.width}x{im.height} pixels is too large (a decompression bomb?)")
            im.seek(0)
            return im.convert("L")
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(path, "image is too large (a decompression bomb)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"is not a readable image ({exc})") from exc


def usable_text(page: Page) -> bool:
    """Whether the page has a text layer (else it is OCRed): a drawing sheet with a few labels has one."""
    n = sum(len(w.text) for w in page.words)
    return n >= 40


def file_size(path: Path) -> int:
    return os.stat(path).st_size
