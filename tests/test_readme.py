"""The README and settings.py stay true: the two commands, and what is generated from the
registry and from the runs of docs/build.py."""
from pathlib import Path

import pytest

from heatkit.generated import SETTINGS_START, TABLES, method_table, metric_table, settings_section

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name, table", [("methods", method_table), ("metrics", metric_table)])
def test_method_and_metric_tables_match_their_registries(name, table):
    start, end = TABLES[name]
    assert README.split(start)[1].split(end)[0].strip() == table()


def test_settings_py_shows_every_declared_setting():
    """settings.py's method and metric dicts are generated from their modules (python -m heatkit.generated)."""
    text = (ROOT / "settings.py").read_text()
    assert SETTINGS_START in text and SETTINGS_START + text.split(SETTINGS_START, 1)[1] == settings_section()


def test_opens_with_the_two_commands():
    block = README.split("```sh\n")[1].split("```")[0]
    assert [line.split()[:2] for line in block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]


def test_referenced_images_exist():
    root = Path(__file__).resolve().parent.parent
    assert (root / "docs/demo.png").is_file() and "docs/demo.png" in README
    for image in (root / "images").glob("*.png"):
        assert f"`{image.name}`" in README


def test_result_tables_come_from_the_docs_build():
    """docs/build.py reruns the documented commands, keeps their scores.json (or leaderboard) in docs/
    and writes the README's tables from them: a table edited by hand, or a stale one, fails here."""
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("docs_build", root / "docs" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name in build.TABLES:
        _, inside, _ = build.marked(README, name)
        assert inside == build.readme_table(name), name
