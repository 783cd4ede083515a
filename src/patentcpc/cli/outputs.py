"""What every command writes, in one table: the output guard (:func:`patentcpc.io.guard_outputs`)
is applied to each command from here, so that no command checks (or forgets to check) its outputs
on its own.

Each entry: the command's path (``"synth generate"``) and one :class:`~patentcpc.io.OutputSpec`
per option that names a path it writes. The guard refuses, before any work: a folder that is not
empty and not a patentcpc output of that kind, an output that is (or, for a folder, holds) any
other path the command was given, two outputs at one path; and removes what a failed or
interrupted command put at an output path that held nothing before.

A command with an option named like an output (:data:`OUTPUT_OPTIONS`) that is missing from the
table still gets the strictest guard (its output may be neither a folder patentcpc did not write nor
one of its inputs), and ``tests/test_safety_outputs.py`` fails until it is listed here.
"""

from __future__ import annotations

import typer

from patentcpc.io import OutputSpec, writes

#: Option names that name a path a command writes.
OUTPUT_OPTIONS = ("--output", "--output-dir", "--plots-dir", "--report", "--filtered", "--model-dir")

OUTPUTS: dict[str, tuple[OutputSpec, ...]] = {
    "data stats": (OutputSpec("plots_dir", "--plots-dir", "plots", by_file=True),),
    "data split": (OutputSpec("output", "--output", "splits"),),
    "train": (OutputSpec("output", "--output", "model", training=True),),
    "evaluate": (OutputSpec("report", "--report"), OutputSpec("plots_dir", "--plots-dir", "plots", by_file=True)),
    "predict": (OutputSpec("output", "--output"),),
    "predict-batch": (OutputSpec("output", "--output"),),
    "quickstart": (OutputSpec("model_dir", "--model-dir", "model"),),
    "pretrain": (OutputSpec("output", "--output", "encoder"),),
    "tokenizer train": (OutputSpec("output", "--output", "tokenizer"),),
    "bench": (OutputSpec("output", "--output"),),
    "export": (OutputSpec("output", "--output", "model"),),  # export --merge
    "export onnx": (OutputSpec("output", "--output", in_input_folder=True),),  # it checks the model's files
    "export merged": (OutputSpec("output", "--output", "model"),),
    "embed": (OutputSpec("output", "--output"),),
    "index build": (OutputSpec("output", "--output", "index"),),
    "benchmark-embeddings": (OutputSpec("output_dir", "--output-dir", "benchmark", by_file=True),
                             OutputSpec("report", "--report")),
    "train-embeddings": (OutputSpec("output", "--output", "encoder"),),
    "synth generate": (OutputSpec("output", "--output"),),
    "synth audit": (OutputSpec("output", "--output", "synth-audit"), OutputSpec("filtered", "--filtered")),
    "synth experiment": (OutputSpec("output", "--output", "synth-experiment"),),
    "read": (OutputSpec("output", "--output", in_input_folder=True),),  # records beside the PDFs it reads
}

#: The guard of an output option missing from :data:`OUTPUTS`: the file rule, so the path may not be
#: an existing folder (of the user's or not) nor one of the command's inputs.
_UNLISTED_KIND = "file"


def _option_params(callback) -> dict[str, str]:
    """``{option name: parameter}`` of a command function's options."""
    from typer.models import OptionInfo
    from typer.utils import get_params_from_function

    found = {}
    for name, meta in get_params_from_function(callback).items():
        info = meta.default
        if isinstance(info, OptionInfo):
            decls = info.param_decls or ()
            for decl in decls:
                for opt in str(decl).split("/"):
                    if opt.startswith("--"):
                        found[opt] = name
            if not decls:
                found["--" + name.replace("_", "-")] = name
    return found


def _guard(path: str, callback):
    specs = OUTPUTS.get(path)
    if specs is None:  # not listed: the strictest guard for whatever looks like an output
        options = _option_params(callback)
        specs = tuple(OutputSpec(options[o], o, _UNLISTED_KIND) for o in OUTPUT_OPTIONS if o in options)
    if not specs or getattr(callback, "__patentcpc_outputs__", None) is not None:
        return callback
    return writes(*specs)(callback)


def commands(app: typer.Typer, prefix: str = ""):
    """Every command function of ``app`` and its sub-apps (group callbacks too), as
    ``(path, holder, attribute)``: ``getattr(holder, attribute)`` is the function."""
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        yield f"{prefix}{name}", info, "callback"
    for group in app.registered_groups:
        sub = group.typer_instance
        path = f"{prefix}{group.name}"
        if sub.registered_callback is not None and sub.registered_callback.callback is not None:
            yield path, sub.registered_callback, "callback"
        yield from commands(sub, f"{path} ")


def install(app: typer.Typer) -> dict[str, tuple[OutputSpec, ...]]:
    """Wrap every command of ``app`` in the output guard; returns ``{command: outputs}``."""
    seen: dict[str, tuple[OutputSpec, ...]] = {}
    for path, holder, attr in commands(app):
        guarded = _guard(path, getattr(holder, attr))
        setattr(holder, attr, guarded)
        seen[path] = getattr(guarded, "__patentcpc_outputs__", ())
    return seen  # (the test checks that the table names exactly the commands that write)
