"""What a method or metric module declares besides its function: the paper it implements and the
settings it reads, with their defaults, rules and meaning. settings.py's method and metric dicts,
the CLI's checks and the docs' tables are generated from these (heatkit/generated.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from heatkit.base.rules import Int, Optional, PixelValue, Rule

SEED = Int(min=0, max=2**32 - 1)


@dataclass(frozen=True)
class Paper:
    cite: str
    title: str
    url: str


@dataclass(frozen=True)
class Setting:
    default: Any
    rule: Rule
    doc: str = ""


@dataclass(frozen=True)
class Settings:
    """A dict in settings.py that methods or metrics read: its name, the comment above it, and its keys."""

    name: str
    doc: str
    keys: dict[str, Setting] = field(default_factory=dict)

    def defaults(self) -> dict:
        return {key: setting.default for key, setting in self.keys.items()}

    def rules(self) -> dict[str, Rule]:
        return {key: setting.rule for key, setting in self.keys.items()}

    def pixel_values(self) -> list[str]:
        """The keys whose values are pixel values (PixelValue: references, baselines, fills),
        which a run gives the method in the model's input space."""
        return [key for key, setting in self.keys.items()
                if isinstance(setting.rule.rule if isinstance(setting.rule, Optional) else setting.rule, PixelValue)]
