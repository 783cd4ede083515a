"""Typed configuration: dataclasses validated in ``__post_init__``, loadable from YAML and
overridable from the command line (``--set linear.C=0.5``). The resolved configuration is saved
with every model (``config.yaml`` and the manifest)."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from patentcpc.cpc import LEVELS
from patentcpc.errors import ConfigError

T = TypeVar("T")


@dataclass
class DataConfig:
    """How records are read.

    Args:
        text_fields: fields joined into the text view, in order (default: ``text``, else
            ``title,abstract``, whatever exists).
        label_field: the label column (default: auto-detected: cpc_ids, labels, cpc, ...).
        id_field: the id column (default: auto-detected, else the row number).
        level: CPC level of the labels: section, class, subclass or group.
        on_bad_row: ``error`` stops at the first bad row, ``skip`` drops and counts bad rows.
        hf_split: the split to read from a Hugging Face dataset.
    """

    text_fields: list[str] | None = None
    label_field: str | None = None
    id_field: str | None = None
    level: str = "subclass"
    on_bad_row: str = "error"
    hf_split: str = "train"

    def __post_init__(self) -> None:
        if isinstance(self.text_fields, str):
            self.text_fields = [f.strip() for f in self.text_fields.split(",") if f.strip()]
        if self.level not in LEVELS:
            raise ConfigError(f"data.level must be one of {', '.join(LEVELS)}, not '{self.level}'")
        if self.on_bad_row not in ("error", "skip"):
            raise ConfigError(f"data.on_bad_row must be 'error' or 'skip', not '{self.on_bad_row}'")

    def load_kwargs(self) -> dict:
        return {"text_fields": self.text_fields, "label_field": self.label_field, "id_field": self.id_field,
                "level": self.level, "on_bad_row": self.on_bad_row, "split": self.hf_split}


@dataclass
class LinearConfig:
    """TF-IDF + one-vs-rest linear classifier.

    Args:
        classifier: ``svc`` (LinearSVC, margins) or ``logreg`` (logistic regression, probabilities).
        C: inverse regularization strength.
        ngram_max: word n-grams from 1 to this.
        min_df: minimum document frequency of a term.
        max_features: vocabulary cap (None: no cap).
        sublinear_tf: use 1 + log(tf).
        class_weight: None or ``balanced``.
    """

    classifier: str = "svc"
    C: float = 0.5
    ngram_max: int = 1
    min_df: int = 1
    max_features: int | None = 500_000
    sublinear_tf: bool = True
    class_weight: str | None = "balanced"

    def __post_init__(self) -> None:
        if self.classifier not in ("svc", "logreg"):
            raise ConfigError(f"linear.classifier must be 'svc' or 'logreg', not '{self.classifier}'")
        if self.C <= 0:
            raise ConfigError(f"linear.C must be > 0, not {self.C}")
        if self.ngram_max < 1 or self.min_df < 1:
            raise ConfigError("linear.ngram_max and linear.min_df must be >= 1")
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"linear.class_weight must be null or 'balanced', not '{self.class_weight}'")


@dataclass
class TrainConfig:
    """Everything ``patentcpc train`` needs. ``model`` is ``tfidf``, ``scheme`` (cold start from
    the IPC scheme) or a transformer (hub id or local folder, default ModernBERT-base)."""

    model: str = "answerdotai/ModernBERT-base"
    data: DataConfig = field(default_factory=DataConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    seed: int = 42

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model must not be empty")


# --------------------------------------------------------------------------- generic helpers


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type (Optional, list, bool, int, float, str, dataclass)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        errors = []
        for a in args:
            try:
                return _coerce(value, a, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping")
        return from_dict(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list")
        return [_coerce(v, item, where) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    if tp in (int, float):
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number ({tp.__name__}), not {value!r}") from None
        if tp is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{where} must be an integer, not {value!r}")
        return out
    if tp is str:
        return str(value)
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a nested mapping; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where != "config" else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def load_yaml(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return data


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``a.b=value`` strings (value parsed as YAML) to a nested mapping (a copy)."""
    import copy  # noqa: PLC0415

    out = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set takes key=value, not '{item}'")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
        node[parts[-1]] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    """Recursive dict merge (``extra`` wins); None values in ``extra`` are ignored."""
    out = dict(base)
    for k, v in extra.items():
        if v is None:
            continue
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve(cls: type[T], config_file: str | None = None, cli: dict | None = None,
            overrides: list[str] | None = None) -> T:
    """Defaults <- YAML file <- explicit CLI flags <- ``--set`` overrides."""
    data: dict = load_yaml(config_file) if config_file else {}
    data = merge(data, cli or {})
    data = apply_overrides(data, overrides)
    return from_dict(cls, data)
