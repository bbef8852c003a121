"""Choices: a setting that selects code is a member of a `Choice` enum, not a free string
(docs/design.md §4.7).

A `Choice` member is its string: it compares, hashes, formats and writes to JSON as its value,
so configs keep reading and writing the strings their files hold, while code branches on members
(`cfg.optimizer is Optimizer.LBFGS`) and a typo is refused where the value is given.
"""

from __future__ import annotations

import enum


class Choice(str, enum.Enum):
    """Subclass with members `NAME = "value"`; `Cls.of(value, what)` converts a string (or a
    member) and refuses anything else in one sentence naming `what` and the choices."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __hash__(self) -> int:  # as the string's, so that a member and its value are one dict key
        return hash(self.value)

    @classmethod
    def of(cls, value, what: str | None = None):
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{what or cls.__name__.lower()} must be one of {', '.join(cls.names())}, got {value!r}") from None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(m.value for m in cls)


__all__ = ["Choice"]
