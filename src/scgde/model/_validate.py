"""Validation of choice arguments against their ``Literal`` types."""

from __future__ import annotations

from typing import get_args


def check_choice(name: str, value, choices) -> None:
    """Raise a ``ValueError`` naming ``name`` if ``value`` is not one of ``choices`` (a ``Literal`` or a sequence)."""
    allowed = get_args(choices) or tuple(choices)
    if value not in allowed:
        raise ValueError(f"Unknown {name}={value!r}; choose one of {list(allowed)}.")
