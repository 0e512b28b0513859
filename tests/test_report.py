"""report.html: its data equals the run's files, and in a real browser (Debian's Chromium, headless)
every map is drawn in the figure's colors with its values on hover, the scores table sorts, an
interrupted run says so, a dataset's page drills down to an image's maps, and a screenshot shows
a page that is not blank."""
from __future__ import annotations

import base64
import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import heatkit
from conftest import break_occlusion, image_maps, run_cli
from heatkit.pipeline.plotting import INCOMPLETE, color_scale

METHODS = ["grad", "ig", "occlusion", "lime"]


def page_data(folder) -> dict:
    text = (folder / "report.html").read_text()
    start = text.index('id="data">') + len('id="data">')
    return json.loads(text[start:text.index("</script>", start)])


def decoded(entry) -> np.ndarray:
    values = np.frombuffer(base64.b64decode(entry["bytes"]), "<f4" if entry["type"] == "float32" else np.uint8)
    return values.reshape(entry["shape"])


@pytest.fixture(scope="module")
def run_folder(small_model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert run_cli("-mp", small_model_path, "-hm", *METHODS, "-op", out, "-q", "--set", "faithfulness.curves=True",
                   "--set", "lime.num_samples=50", "--set", "lime.kernel_size=4") == 0  # one superpixel: constant
    [folder] = out.iterdir()
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed: `make test` installs it (apt-get install chromium)")
    from browser import Chromium

    chromium = Chromium(tmp_path_factory.mktemp("profile"))
    yield chromium
    chromium.close()


def test_the_page_holds_the_runs_maps_scores_and_record(run_folder):
    data = page_data(run_folder)
    maps = image_maps(run_folder)
    entries = {entry["key"]: entry for entry in data["images"][0]["maps"]}
    assert list(entries) == METHODS
    for key in METHODS:
        assert np.array_equal(decoded(entries[key]), maps[key])  # the float32 values, bit for bit
        assert (entries[key]["cmap"], entries[key]["low"], entries[key]["high"]) == \
            color_scale(maps[key], "RdBu_r", "auto")[:3]  # the figure's colors
    with open(run_folder / "scores.csv", newline="") as handle:
        assert [row["method"] for row in csv.DictReader(handle)] == [row["method"] for row in data["rows"]]
    assert data["record"] == json.loads((run_folder / "run.json").read_text())
    constant = {key for key in METHODS if np.ptp(maps[key]) == 0}  # no ranking, no curves
    assert constant == {"lime"}  # quickshift's kernel of 4 on a 15 x 15 image: one superpixel
    assert {curve["key"] for curve in data["images"][0]["curves"]} == {*METHODS, "random"} - constant
    assert "<script src" not in (run_folder / "report.html").read_text()  # nothing to fetch


def test_every_map_is_drawn_in_its_colors_with_its_values_on_hover(run_folder, browser):
    assert browser.open(run_folder / "report.html") == []
    maps, data = image_maps(run_folder), page_data(run_folder)
    lut = {name: np.frombuffer(base64.b64decode(text), np.uint8).reshape(256, 3) for name, text in data["luts"].items()}
    assert browser.evaluate("document.querySelectorAll('canvas.map').length") == len(METHODS)
    for entry in data["images"][0]["maps"]:
        row, column = 7, 7  # the center pixel of the 15 x 15 model
        drawn = browser.evaluate(f"""Array.from(document.querySelector('figure[data-key="{entry['key']}"] canvas.map')
            .getContext('2d').getImageData({column}, {row}, 1, 1).data)""")
        value = maps[entry["key"]][row, column]
        level = int(np.clip(np.round((value - entry["low"]) / (entry["high"] - entry["low"]) * 255), 0, 255))
        assert np.abs(np.array(drawn[:3]) - lut[entry["cmap"]][level]).max() <= 1, entry["key"]
        tip = browser.evaluate(f"""(() => {{
            const canvas = document.querySelector('figure[data-key="{entry['key']}"] canvas.map');
            const box = canvas.getBoundingClientRect();
            canvas.dispatchEvent(new MouseEvent('mousemove', {{clientX: box.left + box.width * {column + 0.5} / 15,
                                                              clientY: box.top + box.height * {row + 0.5} / 15}}));
            return document.getElementById('tip').textContent; }})()""")
        assert tip.startswith(f"{entry['key']} [{row}, {column}] = ")
        assert float(tip.rpartition("= ")[2]) == pytest.approx(float(value), rel=1e-3, abs=1e-12)


def test_a_column_sorts_both_ways_on_a_click(run_folder, browser):
    browser.open(run_folder / "report.html")
    rows = page_data(run_folder)["rows"]
    expected = {row["method"]: row["deletion_area"] for row in rows if row["deletion_area"] is not None}
    empty = [row["method"] for row in rows if row["deletion_area"] is None]  # last, either way
    order = lambda: browser.evaluate(  # noqa: E731
        "Array.from(document.querySelectorAll('table.scores tbody tr')).map((row) => row.cells[1].textContent)")
    click = "document.querySelector('table.scores th[data-key=\"deletion_area\"]').click()"
    browser.evaluate(click)
    assert order() == sorted(expected, key=expected.get) + empty
    browser.evaluate(click)
    assert order() == sorted(expected, key=expected.get, reverse=True) + empty
    assert browser.evaluate("document.querySelector('th[data-key=\"deletion_area\"]').getAttribute('aria-sort')") \
        == "descending"


def test_the_screenshot_is_a_page_not_a_blank(run_folder, browser):
    browser.open(run_folder / "report.html")
    shot = np.asarray(Image.open(io.BytesIO(browser.screenshot())).convert("RGB"))
    assert shot.shape == (900, 1280, 3)
    colored = (shot.max(axis=2) - shot.min(axis=2)) > 60  # the maps' reds and blues
    assert colored.mean() > 0.005 and (shot.min(axis=2) < 100).mean() > 0.002  # and dark text


def test_an_interrupted_run_says_so(small_model_path, tmp_path, monkeypatch, browser):
    def interrupt():
        raise KeyboardInterrupt
    break_occlusion(monkeypatch, 1, interrupt)
    assert run_cli("-mp", small_model_path, "-hm", "grad", "occlusion", "-op", tmp_path, "-q") == 130
    [folder] = tmp_path.iterdir()
    assert page_data(folder)["incomplete"] == INCOMPLETE
    browser.open(folder / "report.html")
    assert browser.evaluate("document.querySelector('.incomplete').textContent") == INCOMPLETE
    assert browser.evaluate("document.querySelectorAll('canvas.map').length") == 1


def test_a_dataset_page_has_its_leaderboard_and_drills_down_to_an_image(small_model_path, tmp_path, browser,
                                                                       monkeypatch):
    from heatkit.pipeline import html

    monkeypatch.setattr(html, "DRILL_DOWN_IMAGES", 3)  # the fourth image's maps stay in their file
    found = heatkit.explain_dataset(small_model_path, "random:4", ["grad", "occlusion"], workers=0, out=tmp_path,
                                    progress=False, settings={"backend": "torch"})
    data = page_data(found.folder)
    assert [entry["method"] for entry in data["leaderboard"]] == [entry["method"] for entry in found.leaderboard]
    browser.open(found.folder / "report.html")
    assert browser.evaluate("document.querySelectorAll('table.leaderboard tbody tr').length") == 2
    rows = browser.evaluate("document.querySelectorAll('table.scores tbody tr').length")
    assert rows == len(found.rows)
    browser.evaluate("document.querySelector('table.scores tbody tr').click()")
    assert browser.evaluate("document.querySelectorAll('#drill canvas.map').length") == 2
    browser.evaluate("Array.from(document.querySelectorAll('table.scores tbody tr')).at(-1).click()")
    assert browser.evaluate("document.querySelectorAll('#drill canvas.map').length") == 0
    last = [row for row in found.rows if row["method"] is not None][-1]["key"]
    assert f"maps/{last}.npz" in browser.evaluate("document.getElementById('drill').textContent")


def test_a_dataset_page_lists_a_bounded_number_of_rows_and_names_the_table_of_all(small_model_path, tmp_path,
                                                                                   browser, monkeypatch):
    from heatkit.pipeline.datasets import summary

    monkeypatch.setattr(summary, "REPORT_ROWS", 3)
    found = heatkit.explain_dataset(small_model_path, "random:4", ["grad", "occlusion"], workers=0, out=tmp_path,
                                    progress=False, settings={"backend": "torch"})
    data = page_data(found.folder)
    assert len(data["rows"]) == 3 and data["total"] == len(found.rows) == 8
    assert data["rows"] == [{key: row[key] for key in data["rows"][0]} for row in found.rows[:3]]
    browser.open(found.folder / "report.html")
    assert browser.evaluate("document.querySelectorAll('table.scores tbody tr').length") == 3
    assert "the first 3 of 8 rows" in browser.evaluate("document.body.textContent")


def test_a_map_keeps_its_aspect_ratio(browser, tmp_path):
    """A 12 x 48 map was stretched to its color bar's height."""
    from heatkit.base import frameworks

    torch = frameworks.torch()
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12 * 48, 3))
    run = heatkit.explain(net, np.random.default_rng(0).random((12, 48, 1)), ["grad"], progress=False,
                          settings={"input_size": [12, 48], "faithfulness.curves": False})
    folder = run.save(tmp_path)
    assert browser.open(folder / "report.html") == []
    width, height = browser.evaluate("(() => { const c = document.querySelector('canvas.map'); "
                                     "return [c.clientWidth, c.clientHeight]; })()")
    assert height == pytest.approx(width * 12 / 48, abs=2)


def test_markup_in_every_user_field_is_text_and_runs_nothing(small_model_path, browser, tmp_path):
    """A file name, the class names and the output folder holding "<!--<script>" left the page blank
    (its data's script block ended early); markup with inline handlers is shown as text, and the
    page's policy would block such a handler anyway."""
    hostile = "<!--<script>x<img src=x onerror=window.__pwned=1>"
    image = tmp_path / f"{hostile.replace('/', '')}.png"
    Image.fromarray(np.full((15, 15), 128, np.uint8)).save(image)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"{hostile} {level}" for level in range(256)) + "\n")
    out = tmp_path / "<svg onload=window.__pwned=2>"
    assert run_cli("-mp", small_model_path, "-ip", image, "--labels", labels, "-hm", "grad", "occlusion",
                   "-op", out, "-q", "--set", "faithfulness.curves=False") == 0
    [folder] = out.iterdir()
    text = (folder / "report.html").read_text()
    assert "Content-Security-Policy" in text and "<img src=x" not in text.split('id="data">')[1]
    assert browser.open(folder / "report.html") == []
    assert browser.evaluate("document.querySelectorAll('canvas.map').length") == 2
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.querySelectorAll('img[src=x], svg').length") == 0
    assert hostile in browser.evaluate("document.body.innerText")  # shown, as text


def test_maps_over_the_photo_with_class_names_and_the_top_classes(browser, tmp_path):
    """On a model of photos (no ground truth) each map is drawn over the photo, as opaque as it is
    strong, with a switch back to the map alone; the classes are named, the top five listed."""
    from heatkit.base import frameworks

    torch = frameworks.torch()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3))
    run = heatkit.explain(net, np.random.default_rng(0).random((12, 12, 3)), ["grad", "gradcam"], progress=False,
                          labels=["cat", "dog", "owl"], settings={"faithfulness.curves": False})
    folder = run.save(tmp_path)
    assert browser.open(folder / "report.html") == []
    named = [f"{c} {name}" for c, name in enumerate(["cat", "dog", "owl"])]
    text = browser.evaluate("document.body.innerText")
    assert "top classes" in text and all(name in text for name in named)
    photo = "(() => getComputedStyle(document.querySelector('canvas.map')).backgroundImage)()"
    alpha = ("(() => { const c = document.querySelector('canvas.map');"
             " return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
             ".filter((_, i) => i % 4 === 3); })()")
    values = np.abs(run.maps["grad"]).ravel()
    assert browser.evaluate(photo).startswith('url("data:image/png')
    np.testing.assert_allclose(browser.evaluate(alpha), np.round(255 * 0.6 * values / values.max()), atol=1)
    browser.evaluate("document.getElementById('overlay').click()")  # the map alone
    assert browser.evaluate(photo) == "none" and set(browser.evaluate(alpha)) == {255}
