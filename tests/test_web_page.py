"""The web page at ``/`` and the offline ``/docs``: every asset ships in the package (no CDN).

The browser tests drive Debian's chromium through selenium against a real ``patentcpc serve`` on
127.0.0.1, with every host name other than 127.0.0.1 made unresolvable (the network is closed to
the page). They skip only where chromium is missing *and* ``CI`` is unset: in CI they must run.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from patentcpc.serving import STATIC_DIR, ServeConfig, create_app


@pytest.fixture(scope="module")
def client(linear_model):
    with TestClient(create_app(linear_model, ServeConfig(max_wait_ms=0))) as c:
        yield c


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def _refs(html: str) -> list[str]:
    p = _Refs()
    p.feed(html)
    return p.refs + re.findall(r"url:\s*'([^']+)'", html)


def _is_local(ref: str) -> bool:
    return not re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//", ref, re.I) and not ref.lower().startswith("http")


def test_page_and_its_assets_are_local(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    refs = _refs(r.text)
    assert "static/app.js" in refs and "static/app.css" in refs
    assert all(_is_local(x) for x in refs), refs
    for ref in refs:
        if ref.startswith("static/"):
            asset = client.get("/" + ref)
            assert asset.status_code == 200 and asset.content, ref
    script = (STATIC_DIR / "app.js").read_text()
    assert "http://" not in script and "https://" not in script


def test_docs_use_only_bundled_swagger_assets(client):
    r = client.get("/docs")
    assert r.status_code == 200
    refs = _refs(r.text)
    assert all(_is_local(x) for x in refs), refs
    assert {"/static/swagger-ui/swagger-ui-bundle.js", "/static/swagger-ui/swagger-ui.css",
            "/openapi.json"} <= set(refs)
    js = client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"] and b"SwaggerUIBundle" in js.content
    css = client.get("/static/swagger-ui/swagger-ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert '"validatorUrl": null' in r.text  # no badge from the online validator
    assert "Apache License" in (STATIC_DIR / "swagger-ui" / "LICENSE").read_text()
    assert client.get("/redoc").status_code == 404  # (ReDoc would need a CDN)


# ----------------------------------------------------------------------------- the real browser


def _browser_paths() -> tuple[str | None, str | None]:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    return browser, shutil.which("chromedriver")


@pytest.fixture(scope="module")
def server(tmp_path_factory, linear_model):
    from test_service_safety import _start_server, _stop

    folder = tmp_path_factory.mktemp("web") / "model"
    linear_model.save(folder)
    proc, url = _start_server(folder, "--max-wait-ms", "0", "--max-docs", "2")
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    browser_bin, driver_bin = _browser_paths()
    if browser_bin is None or driver_bin is None:
        if os.environ.get("CI"):
            pytest.fail("CI: chromium and chromium-driver must be installed (.ci/run installs them)")
        pytest.skip("chromium / chromium-driver not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser_bin
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1000",
                 # the network is closed: no name but 127.0.0.1 resolves
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=driver_bin, log_output=subprocess.DEVNULL), options=opts)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _resources(driver) -> list[str]:
    return driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")


@pytest.mark.slow
def test_page_classifies_a_pasted_abstract_and_a_csv(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    _wait(browser, lambda d: "Model: linear" in d.find_element(By.ID, "model-info").text)
    browser.find_element(By.ID, "title").send_keys("Soil working implement")
    browser.find_element(By.ID, "abstract").send_keys("A plough with adjustable soil working tines for tractors.")
    browser.find_element(By.ID, "classify").click()
    rows = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results tr.prediction"))
    codes = [r.find_element(By.CSS_SELECTOR, "td.code").text for r in rows]
    assert codes[0] == "A01B" and len(codes) >= 5, codes
    first = rows[0].text
    assert "A01B" in first and "A01" in rows[0].find_element(By.CSS_SELECTOR, ".path").text
    assert re.search(r"\b0\.\d{3}\b", rows[0].find_element(By.CSS_SELECTOR, "td.score").text)

    # the results as CSV
    browser.find_element(By.ID, "download").click()
    target = browser.downloads / "patentcpc-predictions.csv"
    deadline = time.monotonic() + 15
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    rows_out = list(csv.DictReader(target.open(encoding="utf-8")))
    assert rows_out[0]["codes"].split(";")[:1] == ["A01B"] and len(rows_out[0]["scores"].split(";")) == len(codes)

    # a CSV upload: three rows (sent in two requests of at most two documents), ids carried through
    path = tmp_path / "export.csv"
    path.write_text('Publication Number,Title,Abstract\nUS-1-A,Transistor,"Semiconductor transistor with a gate '
                    'oxide layer on silicon"\nUS-2-B,Router,Routing digital data packets between network nodes\n'
                    'US-3-C,Harrow,"Harrow for breaking up soil clods, in agriculture"\n', encoding="utf-8")
    browser.find_element(By.ID, "csv-file").send_keys(str(path))
    browser.find_element(By.ID, "classify-csv").click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .doc")) == 3)
    docs = browser.find_elements(By.CSS_SELECTOR, "#results .doc")
    heads = [d.find_element(By.TAG_NAME, "h3").text for d in docs]
    tops = [d.find_element(By.CSS_SELECTOR, "td.code").text for d in docs]
    assert heads == ["Document US-1-A", "Document US-2-B", "Document US-3-C"] and tops == ["H01L", "H04L", "A01B"]
    assert all(x.startswith(server) for x in _resources(browser)), _resources(browser)
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


@pytest.mark.slow
def test_docs_render_with_the_network_closed(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/docs")
    ops = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock-summary-path"))
    paths = {o.text.replace("\u200b", "") for o in ops}
    assert {"/predict", "/health", "/labels"} <= paths, paths
    assert "patentcpc" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    assert all(x.startswith(server) for x in _resources(browser)), _resources(browser)


@pytest.mark.slow
def test_page_reads_and_classifies_a_patent_pdf(server, browser, tmp_path):
    """Issue 31: a PDF uploaded on the page comes back as its front-page record beside the predicted
    codes, with the codes it prints compared to them (an auditor's view)."""
    pytest.importorskip("reportlab")
    pytest.importorskip("pypdfium2")
    from selenium.webdriver.common.by import By

    from documents_pages import GRANT, grant_pdf

    pdf = grant_pdf(tmp_path / "grant.pdf")
    browser.get(server + "/")
    _wait(browser, lambda d: "Model: linear" in d.find_element(By.ID, "model-info").text)
    browser.find_element(By.ID, "pdf-file").send_keys(str(pdf))
    browser.find_element(By.ID, "classify-pdf").click()
    fields = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results dl.record dd"), timeout=120)
    record = {f.get_attribute("data-field"): f.text for f in fields}
    assert record["publication_number"] == GRANT["publication_number"], record
    assert record["title"].lower() == GRANT["title"].lower()
    assert browser.find_elements(By.CSS_SELECTOR, "#results tr.prediction")  # the model's codes beside it
    audit = browser.find_element(By.CSS_SELECTOR, "#results p.audit").text
    assert "A01K" in audit, audit  # printed, and not a code this tiny model knows: a disagreement
    assert browser.find_element(By.CSS_SELECTOR, "#results h3").text == f"Document {GRANT['publication_number']}"
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
