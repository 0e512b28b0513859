"""The README's method table, generated from the registry and settings.py.

    python -m methods.table            # print it
    python -m methods.table README.md  # rewrite it between the README's markers
"""
from __future__ import annotations

import sys
from pathlib import Path

import settings
from methods.registry import ANY, METHODS

START, END = "<!-- methods:start -->", "<!-- methods:end -->"


def markdown() -> str:
    rows = ["| key | method | paper | needs | runs on | settings (defaults) |", "|---|---|---|---|---|---|"]
    for method in METHODS:
        params = getattr(settings, method.settings) if method.settings else {}
        defaults = ", ".join(f"`{method.settings}.{k}={v!r}`" for k, v in params.items()) or "none"
        paper = f"[{method.paper.cite}]({method.paper.url})"
        runs_on = ("either twin (`evaluate_with`)" if ANY in method.impl else
                   " or ".join(method.backends) + (" (`--backend`)" if len(method.backends) > 1 else ""))
        rows.append(f"| `{method.key}` | {method.name} | {paper} | {method.needs.value} | {runs_on} | {defaults} |")
    return "\n".join(rows)


def rewrite(readme: Path) -> None:
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{markdown()}\n{END}{tail}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        rewrite(Path(sys.argv[1]))
    else:
        print(markdown())
