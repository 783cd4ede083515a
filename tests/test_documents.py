"""patentcpc read / read_documents (issue 31): records from generated front pages, value repairs,
hostile files, the command line. The shared real PDFs: test_documents_shared.py (integration)."""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import pytest

pytest.importorskip("pypdfium2")
pytest.importorskip("reportlab")
sys.path.insert(0, str(Path(__file__).parent))

from documents_pages import GRANT, grant_pdf  # noqa: E402
from patentcpc.documents import KEYS, read_documents, read_one  # noqa: E402
from patentcpc.documents import records as R  # noqa: E402
from patentcpc.documents.layout import inid_code  # noqa: E402
from patentcpc.errors import DataError  # noqa: E402

SCORED = ["publication_number", "kind", "publication_date", "title", "applicant", "assignee", "inventors",
          "application_number", "filing_date", "ipc", "cpc", "abstract"]


@pytest.fixture(scope="module")
def grant(tmp_path_factory) -> Path:
    return grant_pdf(tmp_path_factory.mktemp("pdf") / "grant.pdf")


def test_text_layer_front_page_gives_every_field(grant):
    rec = read_one(grant)
    assert list(rec) == list(KEYS)
    assert rec["doc_type"] == "us-grant" and rec["front_page"] == 1 and rec["pages"] == 2
    for f in SCORED:
        assert rec[f] == GRANT[f], f
    ev = rec["evidence"]["title"]
    assert ev["page"] == 1 and len(ev["bbox"]) == 4 and 0 < ev["confidence"] <= 1
    assert rec["evidence"]["publication_date"]["bbox"][0] > 300  # right column, beside (45)


def test_linking_feature_sets_each_find_the_dates(grant):
    from patentcpc.documents.reader import ReadOptions

    for use in ("text", "layout", "both"):
        rec = read_one(grant, ReadOptions(features=use))
        assert rec["filing_date"] == "2014-05-06", use
        assert rec["publication_date"] == "2016-01-26", use


def test_first_claim_of_a_full_document(tmp_path):
    from documents_pages import CLAIM_1

    rec = read_one(grant_pdf(tmp_path / "full.pdf", extra_pages=2, claims=True))
    assert rec["pages"] == 4 and rec["first_claim"] == CLAIM_1
    assert rec["evidence"]["first_claim"]["page"] == 4


@pytest.mark.parametrize("token,code", [("(Io)", "10"), ("( 12 )", "12"), ("[45]", "45"), ("76)", "76"),
                                        ("175)", "75"), ("(S4)", "54"), ("(2l)", "21"), ("(*)", "*")])
def test_inid_codes_survive_ocr_confusions(token, code):
    assert inid_code(token) == code


def test_inid_code_rejects_other_numbers():
    assert inid_code("(99)") is None and inid_code("(2006.01)") is None and inid_code("(a)") is None


@pytest.mark.parametrize("text,iso", [("Jan. 22, 2013", "2013-01-22"), ("Sep.19,2023", "2023-09-19"),
                                      ("Dec. 1 , 2017", "2017-12-01"), ("Dcc. 18, 2009", "2009-12-18"),
                                      ("2017.12.01", "2017-12-01"), ("Feb. 3O, 2OO9", None)])
def test_dates_are_repaired(text, iso):
    m = R.DATE_RE.search(text)
    assert (R.parse_date(m) if m else None) == iso


@pytest.mark.parametrize("text,num", [("US 8,357,371 B2", ("US8357371", "B2")),
                                      ("US 2009/0043621 A1", ("US20090043621", "A1")),
                                      ("USOO8112418B2", ("US8112418", "B2")),
                                      ("US 20110268745AI", ("US20110268745", "A1")),
                                      ("8.427,103", ("US8427103", None))])
def test_publication_numbers_are_normalised(text, num):
    assert R.publication_number(R.PUBNUM_RE.search(text)) == num


@pytest.mark.parametrize("text,symbols", [
    ("A 61K39/395 (2006.01) C07K 16/00", ["A61K 39/395", "C07K 16/00"]),
    ("B25J 9/16 ( 2006.01 ) B25 ) 3/00 ( 2006.01 )", ["B25J 9/16", "B25J 3/00"]),
    ("H02J 770003 ( 2013.01 ) ; B60L 58/20", ["H02J 7/0003", "B60L 58/20"]),
    ("A6 IK3I/66 (2006.01); Y02T 10/70 (2013.01)", ["A61K 31/66", "Y02T 10/70"]),
])
def test_classification_symbols_are_repaired(text, symbols):
    assert R.resolve_symbols(R.find_symbols(text), []) == symbols


def test_a_lost_slash_goes_where_the_page_prints_the_symbol():
    assert R.resolve_symbols(R.find_symbols("H04B 17345"), ["H04B 17/345"]) == ["H04B 17/345"]


def test_names_keep_corporate_suffixes_and_drop_places():
    assert R.first_name("Regeneron Pharmaceuticals, Inc., Tarrytown, NY (US)") == "Regeneron Pharmaceuticals, Inc."
    assert R.first_name("Gerald William Duffy, Jr., Dover, MA (US)") == "Gerald William Duffy, Jr."
    assert R.first_name("Garry L. Harris, 5250 S. Hardy Dr., Tempe, Ariz. 85283") == "Garry L. Harris"


# ----------------------------------------------------------------------------- hostile files


def _png_bomb(path: Path) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, grant) -> dict[str, Path]:
    from reportlab.pdfgen import canvas

    d = tmp_path_factory.mktemp("hostile")
    files = {"empty": d / "empty.pdf", "text": d / "notes.pdf", "truncated": d / "truncated.pdf",
             "encrypted": d / "encrypted.pdf", "bomb": d / "bomb.png", "blank": d / "blank.pdf",
             "deep": d / "deep.pdf"}
    nested = b"[" * 100_000 + b"]" * 100_000  # an object nested 100,000 deep
    files["deep"].write_bytes(
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R /Deep " + nested + b" >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n"
        b"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R /Size 4 >>\n%%EOF\n")
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a PDF at all\n" * 20)
    data = grant.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 3])
    c = canvas.Canvas(str(files["encrypted"]), encrypt="secret")
    c.drawString(72, 720, "(12) United States Patent")
    c.save()
    _png_bomb(files["bomb"])
    c = canvas.Canvas(str(files["blank"]))
    for i in range(3000):  # thousands of pages, none a front page: only the first few are looked at
        c.drawString(72, 720, f"Sheet {i} of the drawings, nothing else on this page; a long line of words.")
        c.showPage()
    c.save()
    return files


@pytest.mark.parametrize("kind,message", [("empty", "empty"), ("text", "not a PDF"), ("truncated", "PDF"),
                                          ("encrypted", "encrypted"), ("bomb", "too large"),
                                          ("blank", "no patent front page"), ("deep", "")])
def test_hostile_files_get_one_line_naming_the_file(hostile, kind, message):
    with pytest.raises(DataError) as err:
        read_one(hostile[kind])
    text = str(err.value)
    assert str(hostile[kind]) in text and message in text and "\n" not in text


@pytest.mark.slow
def test_a_file_over_its_time_bound_is_one_line_and_the_run_goes_on(tmp_path, grant):
    pytest.importorskip("rapidocr_onnxruntime")
    from PIL import Image

    from documents_pages import raster
    from patentcpc.documents.reader import ReadOptions, iter_records

    page = Image.open(raster(grant, tmp_path / "page.png", crop_top=1.0))
    tall = Image.new("L", (page.width, 4 * page.height), 255)  # four pages of text in one image: OCR takes
    for k in range(4):  # well over the 2 s bound (one page alone can take under 2 s on a quiet machine)
        tall.paste(page, (0, k * page.height))
    scan = tmp_path / "scan.png"
    tall.save(scan, dpi=(200, 200))
    out = list(iter_records([scan, grant], ReadOptions(timeout_s=2), workers=1))
    assert out[0][1] is None and "took longer than 2 s" in out[0][2] and str(scan) in out[0][2]
    assert out[1][1] is not None  # the worker pool was replaced; the next file is read


def test_read_documents_skips_bad_files_in_worker_processes(hostile, grant):
    recs = read_documents([grant, hostile["empty"], hostile["text"]], workers=2, on_error="skip")
    assert [r["publication_number"] for r in recs] == ["US9241474B2"]
    with pytest.raises(DataError, match="empty"):
        read_documents([grant, hostile["empty"]], workers=1)


# ----------------------------------------------------------------------------- the command


def _cli(args: list[str]) -> int:
    from patentcpc.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code


def test_read_command_writes_jsonl_and_csv(tmp_path, grant, capsys):
    out = tmp_path / "recs.jsonl"
    assert _cli(["read", str(grant), "--output", str(out), "--quiet", "--workers", "1"]) == 0
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["file"] == str(grant) and rec["title"] == GRANT["title"]
    csv_out = tmp_path / "recs.csv"
    assert _cli(["read", str(grant.parent), "--output", str(csv_out), "--quiet", "--workers", "1"]) == 0
    import csv

    (row,) = list(csv.DictReader(csv_out.open()))
    assert row["inventors"] == "Robert L. Thorne; Mary Ann Smith" and row["cpc"].count("; ") == 2


def test_read_command_bad_file_exit_2_and_skip(tmp_path, grant, hostile, capsys):
    out = tmp_path / "recs.jsonl"
    code = _cli(["read", str(grant), str(hostile["text"]), "--output", str(out), "--quiet", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and str(hostile["text"]) in err and "Traceback" not in err and not out.exists()
    code = _cli(["read", str(grant), str(hostile["text"]), "--output", str(out), "--quiet", "--workers", "1",
                 "--on-bad-row", "skip"])
    assert code == 0 and len(out.read_text().splitlines()) == 1


def test_read_command_refuses_bad_output_and_missing_input(tmp_path, grant, capsys):
    assert _cli(["read", str(grant), "--output", str(tmp_path / "x.txt"), "--quiet"]) == 2
    assert _cli(["read", str(tmp_path / "missing.pdf"), "--output", str(tmp_path / "x.jsonl"), "--quiet"]) == 2
    assert _cli(["read", str(grant), "--output", str(grant), "--quiet"]) == 2
    assert _cli(["read", str(grant), "--output", str(tmp_path / "x.jsonl"), "--ocr", "sometimes"]) == 2


def test_load_data_reads_a_folder_of_pdfs(tmp_path, grant):
    from patentcpc.data import load_data

    folder = tmp_path / "pdfs"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(grant.read_bytes())
    data = load_data(folder)
    assert data.text_fields == ["title", "abstract"] and data.label_field == "cpc"
    (row,) = list(data.dataset)
    assert row["id"] == "US9241474B2" and row["labels"] == ["A01K"] and "ANIMAL HARNESS" in row["text"]
    (folder / "b.pdf").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_data(folder)
    assert load_data(folder, on_bad_row="skip").n_skipped == 1


@pytest.mark.slow
def test_ocr_reads_a_noisy_rotated_scan(tmp_path, grant):
    """A scan (PNG, 200 dpi) of the page's top with noise, blur and a 0.7 degree rotation: OCR words
    with boxes, then the same key-value linking."""
    pytest.importorskip("rapidocr_onnxruntime")
    from documents_pages import raster

    png = raster(grant, tmp_path / "scan.png", crop_top=0.36)
    rec = read_one(png)
    assert rec["evidence"]["text_source"] == "ocr" and rec["pages"] == 1
    assert rec["publication_number"] == "US9241474B2" and rec["publication_date"] == "2016-01-26"
    assert rec["application_number"] == "14/270,927" and rec["filing_date"] == "2014-05-06"
    assert rec["title"] == GRANT["title"] and rec["inventors"] == GRANT["inventors"]


def test_service_reads_an_uploaded_pdf(linear_model, grant):
    from fastapi.testclient import TestClient

    from patentcpc.serving import ServeConfig, create_app

    with TestClient(create_app(linear_model, ServeConfig())) as client:
        r = client.post("/read?top_k=3", content=grant.read_bytes(), headers={"content-type": "application/pdf"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["record"]["publication_number"] == "US9241474B2" and body["record"]["file"] == "upload"
        assert body["printed"] == ["A01K"] and len(body["predictions"]) >= 1
        assert "A01K" in body["disagreement"]["printed_not_predicted"]  # the tiny model knows no A01K
        bad = client.post("/read", content=b"not a pdf", headers={"content-type": "application/pdf"})
        assert bad.status_code == 422 and "not a PDF" in bad.json()["error"]["message"]
        assert "/tmp" not in bad.text
