"""The README stays true: its two commands and its generated method table."""
from pathlib import Path

from methods.table import END, START, markdown

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_method_table_matches_the_registry():
    assert README.split(START)[1].split(END)[0].strip() == markdown()


def test_opens_with_the_two_commands():
    block = README.split("```sh\n")[1].split("```")[0]
    assert [line.split()[:2] for line in block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]


def test_referenced_images_exist():
    root = Path(__file__).resolve().parent.parent
    assert (root / "docs/demo.png").is_file() and "docs/demo.png" in README
    for image in (root / "images").glob("*.png"):
        assert f"`{image.name}`" in README
