"""The model kinds: one description per kind, one registry the rest of patentcpc asks.

A kind is declared once, by a :class:`Kind` in its own package (``patentcpc/kinds/<name>/__init__.py``
for the built-in kinds, or a third-party package registered through the ``patentcpc.kinds``
entry-point group): its name, the ``--model`` names and the hub ids / ``--arch`` presets that select
it, its model class, its trainer, the configuration sections it reads and what it can do
(:data:`CAPABILITIES`). Code outside a kind's package asks this module: :func:`select` (which kind
a training run makes: decided once per run, with at most one hub look-up), :func:`get` /
:func:`kind_of` (the kind of a manifest or a model), :meth:`Kind.require` (a capability, or the
same one-line error everywhere), :func:`load_model` and :func:`train_model`.

Classes and functions are named by ``"module:attribute"`` strings and imported only when used, so
``import patentcpc.registry`` stays light. It is the one place where patentcpc loads a module by
a string, and only from this registry: nothing in a model folder chooses code (a manifest names a
kind; the kind must be registered by an installed package).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from patentcpc.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from patentcpc.config import TrainConfig
    from patentcpc.models.base import CPCModel
    from patentcpc.results import TrainResult

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "patentcpc.kinds"
_PACKAGE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")  # a PEP 508 name, nothing else

# the built-in kinds, in the order selection asks them (each package's __init__ holds its ``KIND``)
BUILTIN_PACKAGES = ("linear", "scheme", "omikuji", "transformer", "onnx", "causal_lm", "ensemble", "router")

# capability -> what a user asked for (the refusal: "a 'linear' model cannot <this>")
CAPABILITIES: dict[str, str] = {
    "train": "be trained by patentcpc train",
    "resume": "resume training (train --resume): it trains in one go; use --overwrite to replace the model",
    "onnx_export": "be exported to ONNX (export onnx)",
    "merge": "merge a LoRA adapter into its base model (export merged)",
    "bench": "be benchmarked by patentcpc bench (it compares transformer batching)",
    "inference_options": "use the transformer batching options (--compile, --autocast, --onnx, --token-budget)",
    "device": "run on another device (--device)",
    "explain_index": "keep an explanation index of its training documents (explain.index)",
    "member": "be a member of an ensemble or a router",
    "embedding_backbone": "give an embedding model (patentcpc embed, search, train-embeddings)",
}


@dataclasses.dataclass(frozen=True)
class Kind:
    """One model kind.

    ``name``: the manifest's ``kind``. ``model``: ``"module:Class"`` of its
    :class:`~patentcpc.models.base.CPCModel` subclass. ``trainer``: ``"module:function"`` called as
    ``(cfg, data, eval_data, output, **kwargs) -> TrainResult`` (``None``: not trainable).
    ``names``: the ``--model`` values that select it (``tfidf``). ``claims``: ``"module:function"``
    ``(model, arch) -> bool``, for kinds chosen by what a hub id, folder or ``--arch`` preset is
    (asked in registration order after the names, at most once per run). ``fallback``: the kind of
    any other ``--model`` (the transformer). ``config``: the :class:`~patentcpc.config.TrainConfig`
    sections it reads (saved with the model). ``capabilities``: names from :data:`CAPABILITIES`,
    each ``True`` or the ``"module:function"`` that does it. ``needs_data``: trains only from
    labelled ``--data``. ``progress``: its training shows its own progress (else the CLI shows a
    spinner). ``package``: the distribution to install for it.
    """

    name: str
    model: str
    trainer: str | None = None
    names: tuple[str, ...] = ()
    claims: str | None = None
    fallback: bool = False
    config: tuple[str, ...] = ()
    capabilities: Mapping[str, bool | str] = dataclasses.field(default_factory=dict)
    needs_data: bool = True
    progress: bool = True
    package: str = "patentcpc"
    description: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.capabilities) - set(CAPABILITIES))
        if unknown:
            raise ValueError(f"kind {self.name!r}: unknown capabilities {unknown} (known: {', '.join(CAPABILITIES)})")
        if self.trainer is None and "train" in self.capabilities:
            raise ValueError(f"kind {self.name!r}: 'train' without a trainer")
        caps = dict(self.capabilities)
        if self.trainer is not None:
            caps.setdefault("train", self.trainer)
        object.__setattr__(self, "capabilities", caps)

    def can(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}")
        return bool(self.capabilities.get(capability))

    def require(self, capability: str, where: str | None = None) -> Kind:
        """This kind, if it has ``capability``; else the one-line error every caller gives."""
        if not self.can(capability):
            able = [k.name for k in kinds().values() if k.can(capability)]
            prefix = f"{where}: " if where else ""
            raise ModelError(f"{prefix}a '{self.name}' model cannot {CAPABILITIES[capability]}"
                             + (f" (kinds that can: {', '.join(able)})" if able else ""))
        return self

    def hook(self, capability: str, where: str | None = None) -> Callable:
        """The function that does ``capability`` for this kind (one-line error when it has none)."""
        target = self.require(capability, where).capabilities[capability]
        if not isinstance(target, str):
            raise ValueError(f"kind {self.name!r}: capability {capability!r} names no function")
        return _resolve(target)

    def reads(self, section: str) -> bool:
        """Whether this kind's training reads the configuration section ``section`` (``transformer``:
        an encoder or decoder inside, trained with the fine-tuning loop's settings)."""
        return section in self.config

    def model_class(self) -> type[CPCModel]:
        return _resolve(self.model)

    def train(self, cfg: TrainConfig, data: str | None, eval_data: str | None = None,
              output: str | os.PathLike | None = None, **kwargs) -> TrainResult:
        if kwargs.get("resume"):
            self.require("resume", str(output) if output is not None else None)
        if cfg.explain.index:
            self.require("explain_index", "explain.index")
        if cfg.options and "options" not in self.config:  # read by no one: refused, not silently ignored
            raise ConfigError(f"options.{next(iter(cfg.options))}: a '{self.name}' model takes no options (that "
                              "section holds the settings of a model kind from another package)")
        if cfg.transformer.recipe == "probe" and "transformer" not in self.config:  # probe:tfidf
            log.warning("transformer.recipe probe (probe:%s) does not apply to a '%s' model: it is trained as it "
                        "always is", cfg.model, self.name)
        return self.hook("train")(cfg, data, eval_data, output, **kwargs)


def _resolve(target: str) -> Any:
    """``"module:attribute"`` -> the object (the registry's one string import)."""
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@functools.cache
def kinds() -> dict[str, Kind]:
    """Every registered kind by name: the built-in ones, then installed ``patentcpc.kinds`` entry
    points (each names a :class:`Kind`; one that fails to load is skipped with a warning)."""
    found: dict[str, Kind] = {}
    for package in BUILTIN_PACKAGES:
        kind = importlib.import_module(f"patentcpc.kinds.{package}").KIND
        found[kind.name] = kind
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            kind = ep.load()
            kind = kind() if callable(kind) and not isinstance(kind, Kind) else kind
        except Exception as exc:  # a broken plugin must not break the built-in kinds
            log.warning("model kind entry point %r (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        if not isinstance(kind, Kind):
            log.warning("model kind entry point %r (%s) is not a patentcpc.registry.Kind", ep.name, ep.value)
            continue
        if kind.name in found:
            log.warning("model kind entry point %r: kind %r is already registered; ignored", ep.name, kind.name)
            continue
        taken = set(kind.names) & {n for k in found.values() for n in (k.name, *k.names)}
        if taken or kind.fallback:  # a plugin never takes over a --model name or the fallback
            log.warning("model kind entry point %r: %s; ignored", ep.name,
                        f"--model {', '.join(sorted(taken))} already selects another kind" if taken
                        else "only a built-in kind can be the fallback")
            continue
        found[kind.name] = kind
    return found


def get(name: str, package: str | None = None, where: str | None = None) -> Kind:
    """The kind called ``name``; unknown: one line naming the package to install (``package``, from
    the manifest of a model a third-party kind wrote) or the known kinds."""
    registered = kinds()
    if name in registered:
        return registered[name]
    prefix = f"{where}: " if where else ""
    if isinstance(package, str) and package != "patentcpc" and _PACKAGE_NAME.match(package):
        # the folder says which package wrote it (its manifest is data: only a plain package name is shown)
        raise ModelError(f"{prefix}model kind '{name}' is not installed: the folder says it comes from the "
                         f"package {package} (pip install {package})")
    raise ModelError(f"{prefix}unknown model kind '{name}' (known: {', '.join(registered)})")


def kind_of(model: CPCModel | str) -> Kind:
    """The kind of a loaded model (or a kind name)."""
    return get(model if isinstance(model, str) else model.kind)


def model_names() -> dict[str, str]:
    """``--model`` name -> kind name, for the kinds chosen by a name (``tfidf`` -> ``linear``)."""
    return {n: k.name for k in kinds().values() for n in k.names}


def select(cfg: TrainConfig) -> Kind:
    """The kind a training run of ``cfg`` makes: a name (``tfidf``, ``ensemble``, ...), else the
    first kind that claims the hub id / folder / ``--arch`` preset, else the fallback kind."""
    return select_model(cfg.model, cfg.transformer.arch)


def select_model(model: str | None, arch: str | None = None) -> Kind:
    """:func:`select` for a ``--model`` / ``--arch`` pair."""
    return get(_select(model, arch))


@functools.lru_cache(maxsize=64)
def _select(model: str | None, arch: str | None) -> str:  # one hub look-up per (model, arch) and process
    names = model_names()
    if model in names:
        return names[model]
    if model in kinds() and not arch:  # a kind's own name is not a model to start from (no hub look-up)
        spelled = [n for n, k in names.items() if k == model]
        raise ConfigError(f"--model {model}: '{model}' is the name of a model kind, not a model to train"
                          + (f"; train it with --model {' or '.join(spelled)}" if spelled else
                             "; give a model folder, a Hugging Face id or --arch"))
    registered = kinds().values()
    for kind in registered:
        if kind.claims and _resolve(kind.claims)(model, arch):
            return kind.name
    fallback = [k for k in registered if k.fallback]
    if not fallback:
        raise ConfigError(f"--model {model}: no model kind trains it")
    return fallback[0].name


# ----------------------------------------------------------------------------- loading and training


def load_model(path: str | os.PathLike, onnx_file: str | os.PathLike | None = None, **kwargs) -> CPCModel:
    """Load a patentcpc model folder (any kind). ``onnx_file``: run a transformer folder as that
    exported ONNX graph (the ``onnx`` kind, e.g. ``MODEL/onnx/model.onnx``). Other keyword
    arguments go to the kind's loader (``device``, ``dtype`` for transformers, ``threads`` for ONNX).

    The folder is data: its manifest names a kind, which must be registered; the whole folder is
    checked first (no pickle-family file, no link out, no special or oversized file)."""
    from patentcpc.folder_files import check_folder_file
    from patentcpc.models.artifact import check_no_code_files, read_manifest

    manifest = read_manifest(path)
    check_no_code_files(path)
    kind = _manifest_kind(manifest, path)
    if onnx_file is not None:  # the folder of an exported kind (or of an onnx model itself)
        if kind.name != "onnx":
            kind.require("onnx_export", os.fspath(path))
        check_folder_file(Path(onnx_file).parent, Path(onnx_file).name, what="its folder")
        model = get("onnx").model_class().load(path, manifest, onnx_file=onnx_file, **kwargs)
    else:
        model = kind.model_class().load(path, manifest, **kwargs)
    model.source_path = os.fspath(path)  # where its optional files (explain/) are read from
    return model


def kind_of_folder(path: str | os.PathLike) -> Kind:
    """The registered kind of a model folder, from its manifest alone (nothing else is loaded): for
    commands that must refuse a kind before loading a possibly large model."""
    from patentcpc.models.artifact import read_manifest

    return _manifest_kind(read_manifest(path), path)


def _manifest_kind(manifest, path: str | os.PathLike) -> Kind:
    """The kind a folder's manifest names (unregistered: one line, with the package it records)."""
    return get(manifest.kind, package=manifest.extra.get("kind_package"), where=os.fspath(path))


def train_model(cfg: TrainConfig, data: str | None, eval_data: str | None = None,
                output: str | os.PathLike | None = None, **trainer_kwargs) -> TrainResult:
    """Train the model ``cfg.model`` describes, evaluate it on ``eval_data`` if given, save it to
    ``output`` (atomically) if given. ``trainer_kwargs`` go to the kind's trainer (``resume``,
    ``callbacks`` for transformers)."""
    return select(cfg).train(cfg, data, eval_data, output, **trainer_kwargs)


__all__ = ["CAPABILITIES", "ENTRY_POINT_GROUP", "Kind", "get", "kind_of", "kind_of_folder", "kinds", "load_model",
           "model_names", "select", "select_model", "train_model"]
