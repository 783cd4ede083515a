"""``read_documents``: files in, one record per document out; each file in a worker process with a
time and a memory bound, so a hostile file cannot hang the run or eat the machine."""

from __future__ import annotations

import glob
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from patentcpc.documents import records as R
from patentcpc.documents.pdf import IMAGE_SUFFIXES, MAX_OCR_PAGES, MAX_PAGES_SCANNED, PDF_SUFFIXES, Page
from patentcpc.errors import DataError

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MEMORY_MB = 4096  # address space (RLIMIT_AS): OCR's ONNX Runtime reserves ~2 GB of it


@dataclass
class ReadOptions:
    # auto: OCR the front page of a scan (its text layer is someone's OCR: RapidOCR reads better) and
    # pages without a text layer; text: keep a text layer, OCR only pages without one or whose record
    # looks broken (fast); always; never
    ocr: str = "auto"
    engine: str = "auto"  # auto, rapidocr, tesseract
    max_pages: int = MAX_PAGES_SCANNED
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    features: str = "both"  # the linking scorer's features (benchmarks): both, text, layout
    threads: int = 0  # OCR threads per worker (0: the CPUs shared out between the workers)


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files, folders (their PDFs and images, sorted) and glob patterns, in the order given."""
    out: list[Path] = []
    for p in paths:
        s = os.fspath(p)
        if any(ch in s for ch in "*?[") and not os.path.exists(s):
            hits = sorted(glob.glob(s, recursive=True))
            if not hits:
                raise DataError(s, "matches no file")
            out += [Path(h) for h in hits if Path(h).is_file()]
            continue
        path = Path(s)
        if path.is_dir():
            wanted = PDF_SUFFIXES + IMAGE_SUFFIXES
            out += sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in wanted)
            continue
        if not path.exists():
            raise DataError(s, "no such file or folder")
        out.append(path)
    return out


def _pages(path: Path, opts: ReadOptions) -> Iterator[Page]:
    """The pages to look at, in order: text layer, or OCR where the text layer is not usable."""
    from patentcpc.documents.pdf import PdfFile, open_image, sniff, usable_text

    kind = sniff(path)
    if kind == "image":
        from patentcpc.documents.ocr import ocr_image

        img = open_image(path)
        dpi = (img.info.get("dpi") or (200, 200))[0] or 200
        yield ocr_image(img, 72.0 / float(dpi), 0, opts.engine, path)
        return
    pdf = PdfFile(path)
    n_ocr = 0
    try:
        for i in range(min(pdf.n_pages, opts.max_pages)):
            page = pdf.text_page(i) if opts.ocr != "always" else None
            if page is None or (opts.ocr != "never" and not usable_text(page)):
                if opts.ocr == "never" and page is not None:
                    yield page
                    continue
                if n_ocr >= MAX_OCR_PAGES:
                    return
                n_ocr += 1
                from patentcpc.documents.ocr import ocr_image

                img, pts_per_px = pdf.render(i)
                yield ocr_image(img, pts_per_px, i, opts.engine, path)
            else:
                yield page
    finally:
        pdf.pages = None
        pdf.close()


def _is_scan(path: Path, index: int) -> bool:
    from patentcpc.documents.pdf import PdfFile, sniff

    if sniff(path) != "pdf":
        return False
    pdf = PdfFile(path)
    try:
        return pdf.is_scan(index)
    finally:
        pdf.close()


def poor(fields: dict) -> bool:
    """Whether a record read from a text layer looks worse than OCR would do: a core field missing, or
    an Int. Cl. value with no symbol in it, or inventors that are not names."""
    core = ("publication_number", "publication_date", "application_number", "filing_date", "title")
    if fields.get("doc_type") not in ("us-grant", "us-application"):
        return False
    if any(not fields.get(f) for f in core):
        return True
    if "ipc" in fields.get("evidence", {}) and not fields.get("ipc"):
        return True
    return any(not re.fullmatch(r"[^\W\d_][\w'.,\- ]+", n) for n in fields.get("inventors") or [])


def _page_at(path: Path, index: int, opts: ReadOptions, force_ocr: bool = False) -> Page | None:
    """Page ``index`` alone (a front page's continuation, or a page read again with OCR)."""
    from patentcpc.documents.pdf import PdfFile, usable_text

    pdf = PdfFile(path)
    try:
        page = pdf.text_page(index) if opts.ocr != "always" and not force_ocr else None
        if page is not None and (usable_text(page) or opts.ocr == "never"):
            return page
        if opts.ocr == "never":
            return None
        from patentcpc.documents.ocr import ocr_image

        img, pts_per_px = pdf.render(index)
        return ocr_image(img, pts_per_px, index, opts.engine, path)
    finally:
        pdf.close()


def _add_first_claim(path: Path, front_index: int, fields: dict) -> None:
    from patentcpc.documents.claims import first_claim
    from patentcpc.documents.pdf import PdfFile, sniff

    if sniff(path) != "pdf":
        return
    pdf = PdfFile(path)
    try:
        found = first_claim(pdf, front_index)
    finally:
        pdf.close()
    if found:
        fields["first_claim"] = found[0]
        fields["evidence"]["first_claim"] = {"page": found[1], "bbox": None, "confidence": 0.8}


def n_pages(path: Path) -> int:
    from patentcpc.documents.pdf import PdfFile, sniff

    if sniff(path) == "image":
        return 1
    pdf = PdfFile(path)
    try:
        return pdf.n_pages
    finally:
        pdf.close()


def read_one(path: str | os.PathLike, opts: ReadOptions | None = None, name: str | None = None) -> dict:
    """The record of one document, read in this process. A file that is not a front-page document
    raises :class:`DataError` (one line naming the file)."""
    from patentcpc.documents.extract import analyse, extract

    opts = opts or ReadOptions()
    path = Path(path)
    name = name or os.fspath(path)
    t0 = time.perf_counter()
    total = n_pages(path)
    best = None
    for page in _pages(path, opts):
        layout, keys, template, sim = analyse(page)
        if template != "not-front-page":
            best = (page, layout, keys, template, sim)
            break
    if best is None:
        raise DataError(name, f"no patent front page in its first {min(total, opts.max_pages)} page(s)")
    fields = extract(*best, use=opts.features)
    ocred = best[0].source == "ocr"
    if not ocred and (opts.ocr == "auto" and _is_scan(path, best[0].index) or
                      opts.ocr in ("auto", "text") and poor(fields)):
        # a text layer worse than OCR (an old scan's garbled layer): read the page again with OCR
        page = _page_at(path, best[0].index, opts, force_ocr=True)
        layout, keys, template, sim = analyse(page)
        if template != "not-front-page":
            again = extract(page, layout, keys, template, sim, use=opts.features)
            vocab = set(re.findall(r"[a-z]+", " ".join(x["abstract"] or "" for x in (again, fields)).lower()))
            again["title"] = R.fuse_words(again.get("title"), fields.get("title"), vocab)
            for k, v in fields.items():
                if again.get(k) in (None, [], "") and k != "evidence":
                    again[k] = v
            fields, ocred = again, True
            best = (page, layout, keys, template, sim)
    if fields.get("_continued") and best[0].index + 1 < total:
        from patentcpc.documents.extract import continuation

        nxt = _page_at(path, best[0].index + 1, opts, force_ocr=ocred)
        if nxt is not None:
            continuation(nxt, fields)
    fields.pop("_continued", None)
    fields.pop("_tails", None)
    if total > 2 and not fields.get("first_claim"):
        _add_first_claim(path, best[0].index, fields)
    rec = R.empty_record(name)
    rec.update(fields)
    rec["file"] = name
    rec["pages"] = total
    rec["evidence"]["seconds"] = round(time.perf_counter() - t0, 3)
    rec["evidence"]["text_source"] = best[0].source
    return rec


# ----------------------------------------------------------------------------- worker processes


def _limit_memory(mb: int) -> None:
    try:
        import resource

        limit = int(mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not on this platform
        pass


def _worker(path: str, name: str, opts: ReadOptions) -> tuple[str, dict | str]:
    _limit_memory(opts.memory_mb)
    if opts.threads:
        os.environ["PATENTCPC_OCR_THREADS"] = str(opts.threads)
    try:
        return "ok", read_one(path, opts, name)
    except DataError as exc:
        return "error", str(exc)
    except MemoryError:
        return "error", f"{name}: needs more than {opts.memory_mb} MB of memory to read"
    except Exception as exc:  # noqa: BLE001 - a hostile file may break the parser in any way
        text = str(exc)
        if "alloc" in text.lower() or "memory" in text.lower():
            return "error", f"{name}: needs more than {opts.memory_mb} MB of memory to read (--memory-mb)"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Traceback")]
        msg = lines[-1] if lines else type(exc).__name__
        return "error", f"{name}: cannot be read ({type(exc).__name__}: {msg})"


def _init_worker() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def iter_records(paths: Sequence[str | os.PathLike], opts: ReadOptions | None = None, workers: int = 1,
                 progress: bool = False) -> Iterator[tuple[str, dict | None, str | None]]:
    """(name, record, None) or (name, None, error line) per file, in input order. Each file is read in
    a worker process (``workers`` of them) under ``opts.timeout_s`` seconds and ``opts.memory_mb``."""
    import concurrent.futures as cf
    import multiprocessing as mp

    opts = opts or ReadOptions()
    files = [(os.fspath(p), os.fspath(p)) for p in paths]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), unit="doc", desc="read", disable=len(files) < 2)
    ctx = mp.get_context("spawn" if os.name != "posix" else "forkserver")
    workers = max(1, min(workers, len(files) or 1))
    if not opts.threads:
        from dataclasses import replace

        opts = replace(opts, threads=max(1, (os.cpu_count() or 1) // workers))
    pool = _new_pool(ctx, workers)
    try:
        pending: dict = {}
        it = iter(files)
        results: dict[int, tuple] = {}
        nxt_out = 0
        idx = 0

        def submit():
            nonlocal idx
            try:
                path, name = next(it)
            except StopIteration:
                return False
            pending[pool.submit(_worker, path, name, opts)] = (idx, name, None)
            idx += 1
            return True

        for _ in range(workers * 2):
            if not submit():
                break
        while pending:
            done, _ = cf.wait(list(pending), timeout=1.0, return_when=cf.FIRST_COMPLETED)
            now = time.monotonic()
            for fut in done:
                i, name, _t = pending.pop(fut)
                try:
                    status, value = fut.result()
                except Exception as exc:  # noqa: BLE001 - the worker died (memory, a crash)
                    status, value = "error", f"{name}: the reader process died ({type(exc).__name__})"
                    pool = _restart(pool, pending, ctx, workers)
                results[i] = (name, value if status == "ok" else None, value if status != "ok" else None)
                submit()
            for fut, (i, name, t) in list(pending.items()):
                if t is None:  # the clock starts when a worker takes the file, not while it queues
                    if fut.running():
                        pending[fut] = (i, name, now)
                    continue
                if now - t > opts.timeout_s and not fut.done():
                    # a file over its time bound: the pool is replaced, the others resubmitted
                    results[i] = (name, None, f"{name}: took longer than {opts.timeout_s:g} s to read")
                    del pending[fut]
                    pool = _restart(pool, pending, ctx, workers)
                    for f2, (j, n2, _t2) in list(pending.items()):
                        del pending[f2]
                        path = next(p for p, q in files if q == n2)
                        pending[pool.submit(_worker, path, n2, opts)] = (j, n2, None)
                    submit()
                    break
            while nxt_out in results:
                name, rec, err = results.pop(nxt_out)
                nxt_out += 1
                if bar is not None:
                    bar.update(1)
                yield name, rec, err
    finally:
        _kill(pool)
        if bar is not None:
            bar.close()


def _kill(pool) -> None:
    procs = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=5)


def _restart(pool, pending, ctx, workers):

    _kill(pool)
    return _new_pool(ctx, workers)


#: a worker process is replaced after this many files (what OCR's runtime keeps does not pile up)
FILES_PER_WORKER = 25


def _new_pool(ctx, workers: int):
    import concurrent.futures as cf

    extra = {"max_tasks_per_child": FILES_PER_WORKER} if sys.version_info >= (3, 11) else {}
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, **extra)


def read_documents(paths: str | os.PathLike | Sequence[str | os.PathLike], *, workers: int | None = None,
                   on_error: str = "raise", ocr: str = "auto", engine: str = "auto",
                   timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB,
                   progress: bool = False) -> list[dict]:
    """Read patent documents (PDF, PNG, JPEG, TIFF; files, folders, globs) into front-page records.

    One record per document with the keys :data:`patentcpc.documents.records.KEYS`. ``on_error``:
    ``raise`` (a :class:`DataError` naming the first bad file) or ``skip`` (bad files left out).
    Every file is read in a worker process bounded by ``timeout_s`` and ``memory_mb``."""
    if on_error not in ("raise", "skip"):
        raise DataError("on_error", f"must be 'raise' or 'skip', not '{on_error}'")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = expand_paths(paths)
    opts = ReadOptions(ocr=ocr, engine=engine, timeout_s=timeout_s, memory_mb=memory_mb)
    workers = workers or min(os.cpu_count() or 1, 4)
    out = []
    for name, rec, err in iter_records(files, opts, workers, progress):
        if err is not None:
            if on_error == "raise":
                raise DataError(name, err[len(name) + 2:] if err.startswith(name + ": ") else err)
            continue
        out.append(rec)
    return out
