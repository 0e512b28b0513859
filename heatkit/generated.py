"""Text generated from the registries: the method and metric tables of the README and the
documentation's pages, and settings.py's method and metric dicts (each declares its settings in
its module; settings.py shows them, for users to edit).

    python -m heatkit.generated          # rewrite them all, between their markers
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from heatkit.methods._entry import FAMILIES
from heatkit.methods.registry import ANY, METHODS, SETTINGS
from heatkit.metrics.registry import METRICS
from heatkit.metrics.registry import SETTINGS as METRIC_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_START = ("# ---- Methods: one dict per method, generated from the methods' modules by "
                  "`python -m heatkit.generated` ----\n")
METRIC_SETTINGS_START = "# ---- Metrics: one dict per family, generated from the metrics' modules ----\n"
LINE = 110  # longest line; a setting whose comment would pass it gets the comment above it


def method_table() -> str:
    """The README's table of methods: key, name, paper, needs, frameworks, architectures, settings
    with their defaults."""
    rows = ["| key | method | paper | needs | runs on | architectures | settings (defaults) |",
            "|---|---|---|---|---|---|---|"]
    for method in METHODS:
        defaults = method.settings.defaults() if method.settings else {}
        settings = ", ".join(f"`{method.settings.name}.{k}={v!r}`" for k, v in defaults.items()) or "none"
        paper = f"[{method.paper.cite}]({method.paper.url})"
        runs_on = ("any framework (`evaluate_with`)" if ANY in method.impl else
                   " or ".join(method.backends) + (" (`--backend`)" if len(method.backends) > 1 else ""))
        rows.append(f"| `{method.key}` | {method.name} | {paper} | {method.needs.value} | {runs_on} | "
                    f"{architectures(method.families)} | {settings} |")
    return "\n".join(rows)


def architectures(families: dict[str, str]) -> str:
    """What a method is on each architecture family, families of one verdict together; "all" where
    it runs the same on every one."""
    if not families:
        return "all"
    verdicts: dict[str, list[str]] = {}
    for family in FAMILIES:
        verdicts.setdefault(families[family], []).append(family)
    return "; ".join(f"{', '.join(names)}: {verdict}" for verdict, names in verdicts.items())


def metric_table() -> str:
    """The README's table of metrics: key, name, paper, category, direction, needs, settings."""
    rows = ["| key | metric | paper | category | better | needs | settings (defaults) |",
            "|---|---|---|---|---|---|---|"]
    for metric in METRICS:
        defaults = metric.settings.defaults() if metric.settings else {}
        settings = ", ".join(f"`{metric.settings.name}.{k}={v!r}`" for k, v in defaults.items()) or metric.settings_read
        paper = f"[{metric.paper.cite}]({metric.paper.url})"
        rows.append(f"| `{metric.key}` | {metric.name} | {paper} | {metric.category.value} | {metric.direction} | "
                    f"{metric.reads.value} | {settings or 'none'} |")
    return "\n".join(rows)


def settings_section() -> str:
    """settings.py's method dicts, then its metric dicts, each under its comment, each key with its
    default and meaning."""
    return (SETTINGS_START + _dicts(SETTINGS.values()) + "\n\n" + METRIC_SETTINGS_START
            + _dicts(METRIC_SETTINGS.values()) + "\n")


def _dicts(all_settings) -> str:
    blocks = []
    for settings in all_settings:
        lines = ["# " + line for line in textwrap.wrap(settings.doc, LINE - 12)] + [f"{settings.name} = dict("]
        for key, setting in settings.keys.items():
            entry = f"    {key}={setting.default!r},"
            if setting.doc and len(f"{entry}  # {setting.doc}") <= LINE:
                entry += f"  # {setting.doc}"
            elif setting.doc:
                lines += ["    # " + line for line in textwrap.wrap(setting.doc, LINE - 16)]
            lines.append(entry)
        blocks.append("\n".join(lines + [")"]))
    return "\n\n".join(blocks)


def documents() -> list[Path]:
    """The README and the documentation's pages: where generated tables live, between markers."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def between(text: str, name: str) -> tuple[str, str, str] | None:
    """The text before, inside and after the markers of table `name`; None where it has none."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text:
        return None
    head, rest = text.split(start, 1)
    inside, tail = rest.split(end, 1)
    return head + start, inside.strip(), end + tail


def rewrite(tables: dict[str, str]) -> None:
    """Each document's tables named in `tables` rewritten with their text."""
    for path in documents():
        text = path.read_text()
        for name, table in tables.items():
            parts = between(text, name)
            if parts:
                text = f"{parts[0]}\n{table}\n{parts[2]}"
        path.write_text(text)


def rewrite_settings(settings_file: Path) -> None:
    head = settings_file.read_text().split(SETTINGS_START, 1)[0]
    settings_file.write_text(head + settings_section())


if __name__ == "__main__":
    rewrite({"methods": method_table(), "metrics": metric_table()})
    rewrite_settings(ROOT / "settings.py")
    sys.exit(0)
