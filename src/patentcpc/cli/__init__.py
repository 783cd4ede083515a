"""The ``patentcpc`` command line: a thin Typer layer over the library.

Every error a user can cause (bad data, bad options, a missing model) is a
:class:`~patentcpc.errors.PatentCPCError`: :func:`main` prints it on one line and exits with code 2,
without a traceback. Sub-modules register their commands on :data:`app`.
"""

from __future__ import annotations

import os
import sys

import click
import typer
from rich.console import Console

app = typer.Typer(
    name="patentcpc",
    help="Assign CPC codes to patent text: data, training, evaluation, prediction, serving, search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect and split patent datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console(stderr=True)
out = Console()

# Command modules (each registers on `app`); imported for their side effect.
from patentcpc.cli import core  # noqa: E402, F401

for _name in ("transformers", "serving", "retrieval", "llm"):
    import importlib.util as _util  # noqa: E402

    if _util.find_spec(f"patentcpc.cli.{_name}") is not None:
        __import__(f"patentcpc.cli.{_name}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    from patentcpc.errors import PatentCPCError  # noqa: PLC0415

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except PatentCPCError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except (OSError, MemoryError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
