"""Validation rules for settings values: each checks one value and says how to fix a bad one."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Int:
    min: int | None = None
    max: int | None = None
    odd: bool = False

    def check(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {value!r}"
        if self.min is not None and value < self.min:
            return f"must be at least {self.min}, got {value}"
        if self.max is not None and value > self.max:
            return f"must be at most {self.max}, got {value}"
        if self.odd and value % 2 == 0:
            return f"must be odd, got {value}"
        return None

    def describe(self):
        bounds = _bounds(self.min, self.max)
        return ("odd integer" if self.odd else "integer") + bounds


@dataclass(frozen=True)
class Float:
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False

    def check(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if self.min is not None and (value <= self.min if self.exclusive_min else value < self.min):
            return f"must be {'above' if self.exclusive_min else 'at least'} {self.min}, got {value}"
        if self.max is not None and value > self.max:
            return f"must be at most {self.max}, got {value}"
        return None

    def describe(self):
        if self.exclusive_min:
            return f"number > {self.min}" + ("" if self.max is None else f", <= {self.max}")
        return "number" + _bounds(self.min, self.max)


@dataclass(frozen=True)
class Bool:
    def check(self, value):
        return None if isinstance(value, bool) else f"must be True or False, got {value!r}"

    def describe(self):
        return "True or False"


@dataclass(frozen=True)
class Choice:
    options: tuple

    def check(self, value):
        return None if value in self.options else f"must be one of {', '.join(map(repr, self.options))}; got {value!r}"

    def describe(self):
        return " | ".join(map(repr, self.options))


@dataclass(frozen=True)
class Text:
    def check(self, value):
        return None if isinstance(value, str) and value else f"must be a non-empty string, got {value!r}"

    def describe(self):
        return "text"


def _bounds(low, high):
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""
