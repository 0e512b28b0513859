"""The README, the documentation's pages and settings.py stay true: the two commands, the short
README, the site's strict build, and what is generated from the registries and from the runs of
docs/build.py."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from heatkit.generated import SETTINGS_START, between, documents, method_table, metric_table, settings_section

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def tables_named(name: str) -> list[tuple[Path, str]]:
    """Every document's table `name`: (the document, the text between its markers)."""
    found = [(path, between(path.read_text(), name)) for path in documents()]
    return [(path, parts[1]) for path, parts in found if parts]


@pytest.mark.parametrize("name, table", [("methods", method_table), ("metrics", metric_table)])
def test_method_and_metric_tables_match_their_registries(name, table):
    found = tables_named(name)
    assert found and all(inside == table() for _, inside in found), [str(path) for path, _ in found]
    assert name != "methods" or ROOT / "README.md" in [path for path, _ in found]


def test_settings_py_shows_every_declared_setting():
    """settings.py's method and metric dicts are generated from their modules (python -m heatkit.generated)."""
    text = (ROOT / "settings.py").read_text()
    assert SETTINGS_START in text and SETTINGS_START + text.split(SETTINGS_START, 1)[1] == settings_section()


def test_opens_with_the_two_commands_and_stays_short():
    block = README.split("```sh\n")[1].split("```")[0]
    assert [line.split()[:2] for line in block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]
    assert len(README.splitlines()) <= 250


def test_referenced_images_and_pages_exist():
    assert (ROOT / "docs/demo.png").is_file() and "docs/demo.png" in README
    for image in (ROOT / "images").glob("*.png"):
        assert f"`{image.name}`" in README
    for page in (ROOT / "docs").glob("*.md"):
        assert page.name == "index.md" or f"docs/{page.name}" in README, page.name


def test_the_tests_the_pages_name_exist():
    """A page that names a test (`test_x.py::test_y`, or `::test_y` after its file) names a real one."""
    import re

    named = 0
    for page in (ROOT / "docs").glob("*.md"):
        last = None
        for file, test in re.findall(r"`(test_\w+\.py)?(?:::(test_\w+))?`", page.read_text()):
            last = file or last
            if file:
                assert (ROOT / "tests" / file).is_file(), (page.name, file)
            if test:
                assert re.search(rf"^def {test}\(", (ROOT / "tests" / last).read_text(), re.M), (page.name, last, test)
                named += 1
    assert named >= 20


def test_result_tables_come_from_the_docs_build():
    """docs/build.py reruns the documented commands, keeps their scores.json (or leaderboard) in docs/
    and writes the tables from them: a table edited by hand, or a stale one, fails here."""
    spec = importlib.util.spec_from_file_location("docs_build", ROOT / "docs" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name in build.TABLES:
        found = tables_named(name)
        assert found and all(inside == build.readme_table(name) for _, inside in found), name


def test_the_site_builds_strictly(tmp_path):
    """mkdocs build --strict: every page in the navigation, every link and anchor found, the API
    reference rendered from the docstrings, the README's example included where the API page says."""
    done = subprocess.run([Path(sys.executable).with_name("mkdocs"), "build", "--strict", "-d", tmp_path / "site"],
                          cwd=ROOT, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "heatkit.load_model" in api and "The methods' maps of every image" in api
