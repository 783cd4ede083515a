"""Checks of user-given values that must fail early, on one line: a pydantic error as text, the
``--port``, ``--device`` and ``--text`` options. Light to import (pydantic only when needed)."""

from __future__ import annotations

import re

from patentcpc.errors import ConfigError

DEVICE_CHOICES = "cpu, cuda, cuda:N, mps, auto"
_DEVICE_RE = re.compile(r"^(cpu|cuda|cuda:\d{1,3}|mps|auto)$")


def validation_message(exc, known: list[str] | None = None) -> str:
    """The first error of a pydantic ``ValidationError`` as ``key 'a.b': problem (got value)``."""
    errors = exc.errors(include_url=False)
    if not errors:
        return str(exc).splitlines()[0]
    err = errors[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    msg = err.get("msg", "invalid value")
    kind = err.get("type", "")
    if kind == "extra_forbidden" and known:
        return f"key '{loc}' is not allowed (known keys: {', '.join(known)})"
    if kind == "missing":
        return f"key '{loc}' is missing"
    got = err.get("input")
    shown = repr(got)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    where = f"key '{loc}': " if loc else ""
    more = f" ({len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where}{msg}, not {shown}{more}"


def check_port(port: int, option: str = "--port") -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{option} must be a TCP port in 1..65535, not {port!r}")
    return port


def check_device(device: str | None, option: str = "--device") -> str | None:
    """``None`` (and ``auto``) mean: the model's default (a GPU when there is one)."""
    if device is None:
        return None
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise ConfigError(f"{option} must be one of {DEVICE_CHOICES}, not {device!r}")
    return None if device == "auto" else device


def check_text(text: str, option: str = "--text") -> str:
    """Refuse text that is not valid Unicode (lone surrogates: what Python makes of bytes in argv
    that are not UTF-8) or that holds NUL characters."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{option}: not valid UTF-8 text (bad character at position {exc.start})") from None
    if "\x00" in text:
        raise ConfigError(f"{option}: holds a NUL character at position {text.index(chr(0))}")
    return text
