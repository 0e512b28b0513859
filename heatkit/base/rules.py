"""Validation rules for settings values: each checks one value and says how to fix a bad one."""
from __future__ import annotations

import math
from dataclasses import dataclass


class Rule:
    def check(self, value) -> str | None:
        """None if `value` is allowed, else what is wrong with it."""
        raise NotImplementedError

    def normalize(self, value):
        """The value as stored, once it has passed `check`."""
        return value


@dataclass(frozen=True)
class Int(Rule):
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


@dataclass(frozen=True)
class Float(Rule):
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False

    def check(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if self.min is not None and (value <= self.min if self.exclusive_min else value < self.min):
            return f"must be {'above' if self.exclusive_min else 'at least'} {self.min}, got {value}"
        if self.max is not None and value > self.max:
            return f"must be at most {self.max}, got {value}"
        return None

    def normalize(self, value):
        return float(value)


@dataclass(frozen=True)
class Bool(Rule):
    def check(self, value):
        return None if isinstance(value, bool) else f"must be True or False, got {value!r}"


@dataclass(frozen=True)
class Choice(Rule):
    options: tuple

    def check(self, value):
        return None if value in self.options else f"must be one of {', '.join(map(repr, self.options))}; got {value!r}"


@dataclass(frozen=True)
class Text(Rule):
    def check(self, value):
        return None if isinstance(value, str) and value else f"must be a non-empty string, got {value!r}"


@dataclass(frozen=True)
class IndexOrKey(Rule):
    """A position (an integer from 0) or a key (a non-empty string)."""

    def check(self, value):
        if isinstance(value, str) and value or isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return None
        return f"must be an index from 0 or a key, got {value!r}"


@dataclass(frozen=True)
class PixelValue(Rule):
    """A value in the image's pixel space, as a user sees the image: 0 is black, 1 white, and
    "mean" the preprocessing's mean color (mid-gray, 0.5, where the preprocessing has none). The
    run gives it to a method in the model's input space (Model.input_value), converted once."""

    def check(self, value):
        if value == "mean" or not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= 1:
            return None
        return f'must be a pixel value from 0 (black) to 1 (white), or "mean"; got {value!r}'

    def normalize(self, value):
        return value if value == "mean" else float(value)


@dataclass(frozen=True)
class Optional(Rule):
    """None, or a value that passes `rule`."""

    rule: Rule

    def check(self, value):
        return None if value is None else self.rule.check(value)

    def normalize(self, value):
        return None if value is None else self.rule.normalize(value)


@dataclass(frozen=True)
class ListOf(Rule):
    """A non-empty list (or tuple) of values that pass `rule`, of `length` values where given."""

    rule: Rule
    length: int | None = None

    def check(self, value):
        if not isinstance(value, (list, tuple)) or not value:
            return f"must be a non-empty list, got {value!r}"
        if self.length is not None and len(value) != self.length:
            return f"must be a list of {self.length} values, got {value!r}"
        return next((problem for problem in map(self.rule.check, value) if problem), None)

    def normalize(self, value):
        return [self.rule.normalize(item) for item in value]


@dataclass(frozen=True)
class ChoiceOrFolder(Rule):
    """One of `options`, or the path of an existing folder."""

    options: tuple

    def check(self, value):
        from pathlib import Path

        if value in self.options or (isinstance(value, str) and Path(value).is_dir()):
            return None
        return f"must be one of {', '.join(map(repr, self.options))} or an existing folder; got {value!r}"


@dataclass(frozen=True)
class Mask(Rule):
    """A feature mask's spec: "pixels", "patch:N" (N x N squares) or "superpixels", of the
    `kinds` a method takes."""

    kinds: tuple = ("pixels", "patch", "superpixels")

    def check(self, value):
        kind, colon, size = value.partition(":") if isinstance(value, str) else ("", "", "")
        allowed = " or ".join(f'"{kind}:N"' if kind == "patch" else f'"{kind}"' for kind in self.kinds)
        if kind not in self.kinds or (kind == "patch") != bool(colon) or \
                kind == "patch" and not (size.isdigit() and int(size) >= 1):
            return f"must be {allowed} (N a side in pixels, at least 1); got {value!r}"
        return None
