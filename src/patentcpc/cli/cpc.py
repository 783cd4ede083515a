"""``patentcpc cpc``: parse CPC symbols, show their hierarchy with titles."""

from __future__ import annotations

from typing import Annotated

import typer

from patentcpc.cli import app, out


@app.command()
def cpc(codes: Annotated[list[str], typer.Argument(
        help="CPC symbols in any published form; one argument may hold a list: 'H04L,H04W', "
             "'G06F 16/00; H04L 9/32'.")]) -> None:
    """Parse CPC symbols and show their full hierarchy with titles (and where a title is the IPC's)."""
    import textwrap

    from patentcpc.cpc import (
        _user_scheme,
        dot_ancestors,
        full_ancestors,
        parse_symbol_list,
        title,
        title_note,
        title_source,
    )

    symbols = [sym for arg in codes for sym in parse_symbol_list(arg)]
    width = max(40, min(out.width, 120))
    mixed = _user_scheme() is not None  # CPC titles from a scheme file: mark the lines whose title is the IPC's
    sources: set[str] = set()
    undotted = False
    for sym in dict.fromkeys(symbols):
        out.print(f"[bold]{sym}[/] ({depth_name(sym)})", highlight=False)
        chain = full_ancestors(str(sym))
        for depth, code in enumerate(chain):
            text = title(code)
            source = title_source(code)
            if text is None:
                text = f"({title_note(code)})"
            elif source == "IPC" and code[0] != "Y":
                sources.add("IPC")
                if mixed:
                    text += " (IPC title)"
            prefix = f"  {'  ' * depth}{code:<{max(12 - 2 * depth, 1)}} "
            lines = textwrap.wrap(text, width=max(20, width - len(prefix)), break_long_words=False,
                                  break_on_hyphens=False) or [""]
            out.print(prefix + lines[0], highlight=False, soft_wrap=True)
            for line in lines[1:]:
                out.print(" " * len(prefix) + line, highlight=False, soft_wrap=True)
        if sym.depth == "group" and sym.subgroup not in (None, "00") and dot_ancestors(str(sym)) is None:
            if title(str(sym)) is None:  # not in the IPC: a CPC breakdown, usually below subgroups not shown
                note = ("(not in the IPC scheme data: the subgroups between its main group and it are not "
                        "shown; set PATENTCPC_SCHEME to a CPC title list for them)")
                for line in textwrap.wrap(note, width=width - 2):
                    out.print("  " + line, highlight=False, soft_wrap=True)
            else:
                undotted = True
    legend = []
    if sources:
        legend.append("titles so marked are the IPC's wording (the CPC title list has none for them)" if mixed else
                      "titles: the IPC scheme's wording for the codes CPC shares with it (the CPC's own titles "
                      "differ in places; PATENTCPC_SCHEME=CPCTitleList/ adds them)")
    if undotted:
        legend.append("the IPC scheme data has no dot levels: a subgroup is shown right under its main group, "
                      "without any subgroups between them")
    for line in legend:
        out.print(f"[dim]{line}[/]", highlight=False, soft_wrap=True)


def depth_name(sym) -> str:
    """``section``, ``class``, ``subclass``, ``main group`` (``/00``) or ``subgroup``."""
    if sym.depth != "group":
        return sym.depth
    return "main group" if sym.subgroup in (None, "00") else "subgroup"
