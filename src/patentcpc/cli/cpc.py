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
    import textwrap  # noqa: PLC0415

    from patentcpc.cpc import (  # noqa: PLC0415
        dot_ancestors,
        full_ancestors,
        parse_symbol_list,
        title,
        title_note,
        title_source,
    )

    symbols = [sym for arg in codes for sym in parse_symbol_list(arg)]
    width = max(40, min(out.width, 120))
    for sym in dict.fromkeys(symbols):
        out.print(f"[bold]{sym}[/] ({sym.depth})", highlight=False)
        chain = full_ancestors(str(sym))
        for depth, code in enumerate(chain):
            text = title(code)
            source = title_source(code)
            if text is None:
                text = f"({title_note(code)})"
            elif source == "IPC" and code[0] != "Y":
                text += " (IPC title)"
            prefix = f"  {'  ' * depth}{code:<{max(12 - 2 * depth, 1)}} "
            lines = textwrap.wrap(text, width=max(20, width - len(prefix)), break_long_words=False,
                                  break_on_hyphens=False) or [""]
            out.print(prefix + lines[0], highlight=False, soft_wrap=True)
            for line in lines[1:]:
                out.print(" " * len(prefix) + line, highlight=False, soft_wrap=True)
        if sym.depth == "group" and sym.subgroup not in (None, "00") and dot_ancestors(str(sym)) is None:
            note = ("(the dot-level subgroups between the main group and this subgroup are not in the IPC "
                    "scheme data; set PATENTCPC_SCHEME to a CPC title list for them)")
            for line in textwrap.wrap(note, width=width - 2):
                out.print("  " + line, highlight=False, soft_wrap=True)
