"""Exceptions that the CLI turns into a one-line message and a non-zero exit code."""

from __future__ import annotations


class PatentCPCError(Exception):
    """Base class of every error patentcpc reports to a user (no traceback in the CLI)."""


class DataError(PatentCPCError):
    """Bad input data: names the file, and where known the row and the field."""

    def __init__(self, source: str, problem: str, row: int | None = None, field: str | None = None):
        self.source, self.problem, self.row, self.field = str(source), problem, row, field
        where = [self.source]
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(": ".join(where) + ": " + problem)


class CPCError(PatentCPCError, ValueError):
    """A string that is not a CPC symbol."""


class ModelError(PatentCPCError):
    """A model folder that cannot be loaded or a model option that cannot work."""


class ConfigError(PatentCPCError, ValueError):
    """An invalid configuration value."""


class TrainingError(PatentCPCError):
    """A training run whose model fails the check before saving (see :mod:`patentcpc.training.guard`)."""
