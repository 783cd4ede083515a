"""Writing records: JSONL (one object per line, every key) or CSV (lists joined with ``; ``, the
evidence as one JSON column), atomically."""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from patentcpc.documents.records import KEYS, LIST_FIELDS


def csv_row(rec: dict) -> dict:
    row = {}
    for k in KEYS:
        v = rec.get(k)
        if k in LIST_FIELDS:
            v = "; ".join(v or [])
        elif k == "evidence":
            v = json.dumps(v or {}, ensure_ascii=False)
        row[k] = "" if v is None else v
    return row


@contextlib.contextmanager
def record_writer(path: str | Path) -> Iterator[Callable[[dict], None]]:
    """A function that writes one record; the file appears only when the block ends without error."""
    from patentcpc.io import atomic_open

    path = Path(path)
    with atomic_open(path, "w", newline="") as fh:
        if path.suffix.lower() == ".csv":
            w = csv.DictWriter(fh, fieldnames=list(KEYS))
            w.writeheader()
            yield lambda rec: w.writerow(csv_row(rec))
        else:
            yield lambda rec: fh.write(json.dumps({k: rec.get(k) for k in KEYS}, ensure_ascii=False) + "\n")
