"""Text generated from the registry: the README's method table, and settings.py's method dicts
(each method declares its settings in its module; settings.py shows them, for users to edit).

    python -m heatkit.generated          # rewrite both, between their markers
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from heatkit.methods.registry import ANY, METHODS, SETTINGS

ROOT = Path(__file__).resolve().parent.parent
TABLE_START, TABLE_END = "<!-- methods:start -->", "<!-- methods:end -->"
SETTINGS_START = ("# ---- Methods: one dict per method, generated from the methods' modules by "
                  "`python -m heatkit.generated` ----\n")
LINE = 110  # longest line; a setting whose comment would pass it gets the comment above it


def method_table() -> str:
    """The README's table of methods: key, name, paper, needs, frameworks, settings with their defaults."""
    rows = ["| key | method | paper | needs | runs on | settings (defaults) |", "|---|---|---|---|---|---|"]
    for method in METHODS:
        defaults = method.settings.defaults() if method.settings else {}
        settings = ", ".join(f"`{method.settings.name}.{k}={v!r}`" for k, v in defaults.items()) or "none"
        paper = f"[{method.paper.cite}]({method.paper.url})"
        runs_on = ("any framework (`evaluate_with`)" if ANY in method.impl else
                   " or ".join(method.backends) + (" (`--backend`)" if len(method.backends) > 1 else ""))
        rows.append(f"| `{method.key}` | {method.name} | {paper} | {method.needs.value} | {runs_on} | {settings} |")
    return "\n".join(rows)


def settings_section() -> str:
    """settings.py's method dicts, each under its comment, each key with its default and meaning."""
    blocks = []
    for settings in SETTINGS.values():
        lines = ["# " + line for line in textwrap.wrap(settings.doc, LINE - 12)] + [f"{settings.name} = dict("]
        for key, setting in settings.keys.items():
            entry = f"    {key}={setting.default!r},"
            if setting.doc and len(f"{entry}  # {setting.doc}") <= LINE:
                entry += f"  # {setting.doc}"
            elif setting.doc:
                lines += ["    # " + line for line in textwrap.wrap(setting.doc, LINE - 16)]
            lines.append(entry)
        blocks.append("\n".join(lines + [")"]))
    return SETTINGS_START + "\n\n".join(blocks) + "\n"


def rewrite_readme(readme: Path) -> None:
    head, rest = readme.read_text().split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    readme.write_text(f"{head}{TABLE_START}\n{method_table()}\n{TABLE_END}{tail}")


def rewrite_settings(settings_file: Path) -> None:
    head = settings_file.read_text().split(SETTINGS_START, 1)[0]
    settings_file.write_text(head + settings_section())


if __name__ == "__main__":
    rewrite_readme(ROOT / "README.md")
    rewrite_settings(ROOT / "settings.py")
    sys.exit(0)
