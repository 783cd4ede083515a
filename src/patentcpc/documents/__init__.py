"""Patent documents as people hold them (PDFs, scans) in, front-page records out (issue 31).

``pdf`` words with boxes from the text layer; ``ocr`` words from page images; ``layout`` segments,
columns, reading order and INID keys; ``template`` what a page is; ``fields`` key-value linking and the
assignment of values to fields; ``records`` the record and value repairs; ``reader`` files in, records
out, in bounded worker processes."""

from __future__ import annotations

from patentcpc.documents.reader import ReadOptions, expand_paths, iter_records, read_documents, read_one
from patentcpc.documents.records import DOC_TYPES, FIELDS, KEYS

__all__ = ["DOC_TYPES", "FIELDS", "KEYS", "ReadOptions", "expand_paths", "iter_records", "read_documents",
           "read_one"]
