"""Generated patent front pages for the documents tests (reportlab): a modern US grant and a US
application in the two-column INID layout, with a text layer, or rasterised with noise, blur and
rotation for OCR."""

from __future__ import annotations

from pathlib import Path

GRANT = {
    "publication_number": "US9241474B2", "kind": "B2", "publication_date": "2016-01-26",
    "title": "ANIMAL HARNESS WITH A CALMING PULSATING DEVICE", "applicant": "Robert L. Thorne",
    "assignee": "Acme Pet Products, Inc.", "inventors": ["Robert L. Thorne", "Mary Ann Smith"],
    "application_number": "14/270,927", "filing_date": "2014-05-06", "ipc": ["A01K 27/00", "A01K 1/02"],
    "cpc": ["A01K 1/0272", "A01K 27/002", "A01K 27/003"],
    "abstract": ("An animal harness for an animal includes a loop of webbing, which encircles the back, neck and "
                 "shoulder of the animal. A pouch is affixed to the loop. A pulsating device is disposed within "
                 "the pouch and transmits pulses to the animal through the chest to calm the animal during "
                 "transport."),
}

HEADER_GRANT = [("(12) United States Patent", 0), ("Thorne et al.", 0)]


def _lines_grant(rec: dict) -> tuple[list[str], list[str]]:
    left = [
        "(54) " + rec["title"][:30], "       " + rec["title"][30:],
        "(71) Applicant: Robert L. Thorne, Belleville, MI (US)",
        "(72) Inventors: Robert L. Thorne, Belleville, MI",
        "        (US); Mary Ann Smith, Detroit, MI (US)",
        "(73) Assignee: Acme Pet Products, Inc., Troy, MI",
        "        (US)",
        "(*) Notice: Subject to any disclaimer, the term of this",
        "        patent is extended under 35 U.S.C. 154(b) by 0 days.",
        "(21) Appl. No.: 14/270,927",
        "(22) Filed: May 6, 2014",
        "(65) Prior Publication Data",
        "        US 2015/0320011 A1 Nov. 12, 2015",
        "(51) Int. Cl.",
        "        A01K 27/00 (2006.01)",
        "        A01K 1/02 (2006.01)",
        "(52) U.S. Cl.",
        "        CPC A01K 1/0272 (2013.01); A01K 27/002",
        "        (2013.01); A01K 27/003 (2013.01)",
        "(58) Field of Classification Search",
        "        CPC A01K 15/02; A01K 27/00",
    ]
    words = rec["abstract"].split()
    body, line = [], ""
    for w in words:
        if len(line) + len(w) > 52:
            body.append(line)
            line = w
        else:
            line = (line + " " + w).strip()
    body.append(line)
    right = ["(56) References Cited", "U.S. PATENT DOCUMENTS", "5,749,324 A * 5/1998 Moore",
             "Primary Examiner - Yvonne Abbott", "(57) ABSTRACT", *body, "10 Claims, 3 Drawing Sheets"]
    return left, right


CLAIM_1 = "An animal harness comprising a loop of webbing, a pouch affixed to the loop and a pulsating device."


def grant_pdf(path: Path, rec: dict = GRANT, extra_pages: int = 1, claims: bool = False) -> Path:
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=letter)
    w, h = letter
    c.setFont("Helvetica", 9)
    c.drawString(w / 2 + 20, h - 40, "US009241474B2")
    c.setFont("Helvetica-Bold", 14)
    c.drawString(60, h - 75, "(12) United States Patent")
    c.setFont("Helvetica", 10)
    c.drawString(75, h - 92, "Thorne et al.")
    c.drawString(w / 2 + 10, h - 75, "(10) Patent No.: US 9,241,474 B2")
    c.drawString(w / 2 + 10, h - 92, "(45) Date of Patent: Jan. 26, 2016")
    left, right = _lines_grant(rec)
    c.setFont("Helvetica", 8.5)
    y = h - 125
    for line in left:
        c.drawString(60, y, line)
        y -= 12
    y = h - 125
    for line in right:
        c.drawString(w / 2 + 10, y, line)
        y -= 12
    c.showPage()
    for i in range(extra_pages):
        c.setFont("Helvetica", 10)
        c.drawString(72, h - 72, f"Sheet {i + 1} of the drawings")
        c.showPage()
    if claims:
        c.setFont("Helvetica", 10)
        cut = CLAIM_1.index(" a pouch")
        lines = ["What is claimed is:", "1. " + CLAIM_1[:cut], CLAIM_1[cut + 1:],
                 "2. The harness of claim 1, wherein the", "device pulses at a rate of one pulse a second."]
        for k, line in enumerate(lines):
            c.drawString(60, h - 100 - 14 * k, line)
        c.showPage()
    c.save()
    return path


def raster(pdf: Path, out: Path, noise: float = 8.0, blur: float = 0.6, angle: float = 0.7,
           crop_top: float = 0.45) -> Path:
    """The first page rendered at 200 dpi, cropped to its top part, with noise, blur and a rotation."""
    import numpy as np
    import pypdfium2 as pdfium
    from PIL import Image, ImageFilter

    doc = pdfium.PdfDocument(str(pdf))
    img = doc[0].render(scale=200 / 72, grayscale=True).to_pil().convert("L")
    doc.close()
    img = img.crop((0, 0, img.width, int(img.height * crop_top)))
    img = img.rotate(angle, fillcolor=255, resample=Image.BICUBIC).filter(ImageFilter.GaussianBlur(blur))
    rng = np.random.default_rng(0)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, noise, (img.height, img.width))
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(out, dpi=(200, 200))
    return out
