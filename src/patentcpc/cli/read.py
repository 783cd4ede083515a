"""``patentcpc read``: patent PDFs and scans in, one front-page record per document out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patentcpc.cli import app, console, out


@app.command("read")
def read(
    paths: Annotated[list[str], typer.Argument(help="PDF / PNG / JPEG / TIFF files, folders or glob patterns.")],
    output: Annotated[Path, typer.Option("--output", help="Records: .jsonl or .csv (lists joined with '; ').")],
    on_bad_row: Annotated[str | None, typer.Option(
        "--on-bad-row", help="error (default: stop at the first unreadable file, exit 2) or skip it.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes (0: one per CPU, at most 4).")] = 0,
    ocr: Annotated[str, typer.Option(
        "--ocr", help="auto: OCR a scan's front page and pages without a text layer (the text layer fills "
                      "what OCR misses); text: keep text layers, OCR only pages without one or whose record "
                      "looks broken (fast); always; never.")] = "auto",
    ocr_engine: Annotated[str, typer.Option("--ocr-engine", help="auto, rapidocr or tesseract.")] = "auto",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds allowed per file.")] = 300.0,
    memory_mb: Annotated[int, typer.Option(
        "--memory-mb", help="Address space allowed per worker process (MB; OCR reserves about 2 GB).")] = 4096,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Read patent front pages into records: number, kind, dates, title, names, IPC/CPC, abstract (issue 31).

    Each file is read in a worker process with a time and memory bound; a file that cannot be read is
    one line naming it (exit 2), or with --on-bad-row skip a warning and the run goes on."""
    import os

    from patentcpc.documents.reader import ReadOptions, expand_paths, iter_records
    from patentcpc.documents.writer import record_writer
    from patentcpc.errors import ConfigError, DataError
    from patentcpc.io import check_output_file

    on_bad_row = on_bad_row or "error"
    if on_bad_row not in ("error", "skip"):
        raise ConfigError(f"--on-bad-row must be error or skip, not '{on_bad_row}'")
    if ocr not in ("auto", "text", "always", "never"):
        raise ConfigError(f"--ocr must be auto, text, always or never, not '{ocr}'")
    if ocr_engine not in ("auto", "rapidocr", "tesseract"):
        raise ConfigError(f"--ocr-engine must be auto, rapidocr or tesseract, not '{ocr_engine}'")
    if timeout <= 0 or memory_mb < 256 or workers < 0:
        raise ConfigError("--timeout must be > 0, --memory-mb >= 256 and --workers >= 0")
    suffix = output.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise ConfigError(f"{output}: --output must end in .jsonl or .csv")
    files = expand_paths(paths)
    if not files:
        raise DataError(" ".join(paths), "holds no PDF or image file")
    check_output_file(output, files)
    opts = ReadOptions(ocr=ocr, engine=ocr_engine, timeout_s=timeout, memory_mb=memory_mb)
    n_workers = workers or max(1, min(os.cpu_count() or 1, 4))
    n_ok = n_bad = 0
    first_bad = None
    with record_writer(output) as write:
        for name, rec, err in iter_records(files, opts, n_workers, progress=not quiet):
            if err is not None:
                if on_bad_row == "error":
                    raise DataError(name, err[len(name) + 2:] if err.startswith(name + ": ") else err)
                n_bad += 1
                first_bad = first_bad or err
                console.print(f"[yellow]skipped:[/] {err}", highlight=False, soft_wrap=True, markup=True)
                continue
            write(rec)
            n_ok += 1
        if n_ok == 0:
            raise DataError(" ".join(paths), f"no document could be read (first: {first_bad})")
    skipped = f", skipped {n_bad}" if n_bad else ""
    out.print(f"wrote {n_ok} record(s) to {output}{skipped}", highlight=False)
