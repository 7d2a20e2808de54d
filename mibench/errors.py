"""User-facing errors: every failure a user can fix is a `MIBenchError` with one clear message.

The CLI prints `error: <message>` and exits non-zero; tracebacks are reserved for bugs.
"""

from __future__ import annotations

from pathlib import Path


class MIBenchError(Exception):
    """A problem the user can fix; the message names what is wrong, where, and how to fix it."""

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None,
                 fix: str | None = None):
        self.path = str(path) if path is not None else None
        self.field = field
        self.fix = fix
        self.reason = message
        parts = []
        if self.path:
            parts.append(self.path)
        if field:
            parts.append(f"field '{field}'")
        prefix = ": ".join(parts)
        text = f"{prefix}: {message}" if prefix else message
        if fix:
            text += f" — fix: {fix}"
        super().__init__(text)


class CardError(MIBenchError):
    """A YAML card is missing, malformed, or has an invalid field."""


class RegistryError(MIBenchError):
    """An unknown registered name (carries a 'did you mean' suggestion)."""


class DataError(MIBenchError):
    """A dataset folder or file is missing or malformed."""


class CheckpointError(MIBenchError):
    """A checkpoint is missing, corrupt, unsafe, or does not match its card."""


class AttackError(MIBenchError):
    """An attack was configured or accessed incorrectly (e.g. a label-only attack asked for logits)."""


class QueryBudgetExceeded(AttackError):
    """A label-only attack exceeded its target query budget."""
