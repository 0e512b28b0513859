"""The figure is a function of arrays: panels, titles and colour scales follow the data."""
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np

from heatkit.pipeline.plotting import heatmap_figure
from heatkit.pipeline.results import ImageResult

ROOT = Path(__file__).resolve().parent.parent


OPTIONS = {"crop": 5, "crop_row": True, "scale": "auto", "column_width": 2.0, "cmap": "RdBu_r", "maps_per_row": 0,
           "overlay": False, "overlay_alpha": 0.6}


def figure(results, names, class_names=None, **options):
    """The heatmap figure with OPTIONS changed by `options`; crop=None: no crop row."""
    options = {**OPTIONS, **options}
    if options["crop"] is None:
        options.update(crop=5, crop_row=False)
    return heatmap_figure(results, names, options, ground_truth=False, class_names=class_names)


def result(maps, failures=None):
    image = np.random.default_rng(0).random((15, 15, 1))
    return ImageResult(name="x", image=image, probabilities=np.array([0.0, 0.0, 0.01, 0.99]), target=3, settings={},
                       true_label=3, top_k=2, maps=maps, failures=failures or {})


def test_fifteen_columns_with_titles_and_symmetric_scales():
    rng = np.random.default_rng(1)
    maps = {f"m{i}": rng.normal(size=(15, 15)).astype(np.float32) for i in range(14)}
    before = dict(matplotlib.rcParams)
    fig = figure([result(maps)], {k: k.upper() for k in maps}, crop=5)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 2 * 15  # full + crop row, input + 14 maps
    titles = {ax.get_title().split("\n")[0] for ax in images}
    assert {k.upper() for k in maps} <= titles
    m0 = maps["m0"]
    [panel] = [ax for ax in images if ax.get_title().startswith("M0\n")]
    assert panel.get_title() == f"M0\nmax {m0.max():.3g}\nmin {m0.min():.3g}"
    low, high = panel.images[0].get_clim()
    assert low == -high == -np.abs(m0).max()
    assert dict(matplotlib.rcParams) == before


def test_the_figure_needs_no_pyplot():
    code = ("import sys, numpy as np; from heatkit.pipeline.plotting import heatmap_figure;"
            "from heatkit.pipeline.results import ImageResult;"
            "r = ImageResult('x', np.zeros((9, 9, 1)), np.array([0.0, 1.0]), 1, {}, maps={'a': np.ones((9, 9), 'f4')});"
            "heatmap_figure([r], {'a': 'A'}, dict(crop=3, crop_row=True, scale='auto', column_width=2, cmap='bwr',"
            " maps_per_row=0, overlay=True, overlay_alpha=0.5), False).savefig('/dev/null', format='png');"
            "print('matplotlib.pyplot' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def map_scales(fig) -> set:
    """(colormap, low, high) of every map panel (the input's is gray)."""
    return {(panel.images[0].get_cmap().name, *panel.images[0].get_clim()) for panel in fig.axes
            if panel.images and panel.images[0].get_cmap().name != "gray"}


def test_crop_panels_use_the_full_maps_scale():
    attribution = np.zeros((15, 15), np.float32)
    attribution[0, 0], attribution[1, 1] = 10.0, -2.0  # far from the center crop
    fig = figure([result({"a": attribution})], {"a": "A"}, crop=5)
    assert map_scales(fig) == {("RdBu_r", -10.0, 10.0)}
    assert sum(1 for panel in fig.axes if panel.images) == 4  # input and map, each with its crop


def test_a_map_of_one_sign_spans_its_own_range():
    """RISE's maps are non-negative and narrow: on a scale about 0 they would be one dark red."""
    narrow = np.linspace(0.487, 0.554, 225, dtype=np.float32).reshape(15, 15)
    fig = figure([result({"rise": narrow, "neg": -narrow})], {"rise": "RISE", "neg": "N"}, crop=None,
                         column_width=2.0, cmap="RdBu_r")
    assert map_scales(fig) == {("Reds", np.float32(0.487), np.float32(0.554)),
                               ("Blues_r", -np.float32(0.554), -np.float32(0.487))}
    symmetric = figure([result({"rise": narrow})], {"rise": "RISE"}, crop=None, scale="symmetric")
    assert map_scales(symmetric) == {("RdBu_r", -np.float32(0.554), np.float32(0.554))}


def test_without_a_crop_there_is_no_crop_row():
    fig = figure([result({"a": np.ones((15, 15), np.float32)})], {"a": "A"}, crop=None)
    assert sum(1 for panel in fig.axes if panel.images) == 2 and not any("center" in ax.get_title() for ax in fig.axes)


def test_a_failed_method_gets_a_blank_panel_with_its_reason():
    fig = figure([result({}, {"a": "ValueError: no conv layer"})], {"a": "A"}, crop=5)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("no conv layer" in t for t in texts)
    assert sum(1 for ax in fig.axes if ax.images) == 2  # only the input panels


def test_long_class_names_stay_inside_the_figure():
    names = [f"class {i} " + "with a very long descriptive name" * (i % 3) for i in range(4)]
    long_result = ImageResult(name="x", image=np.zeros((15, 15, 1)), settings={},
                              probabilities=np.array([0.1, 0.3, 0.5, 0.1]),
                              target=2, true_label=1, top_k=4, maps={"a": np.ones((15, 15), np.float32)})
    fig = figure([long_result], {"a": "A"}, crop=5, class_names=names)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer, box = FigureCanvasAgg(fig).get_renderer(), fig.bbox
    margins = [text for text in fig.texts if "top 4" in text.get_text() or "explained" in text.get_text()]
    assert len(margins) == 2
    for text in margins:
        extent = text.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1


def test_maps_wrap_into_rows_of_the_given_length():
    maps = {f"m{i}": np.full((15, 15), i + 1.0, np.float32) for i in range(7)}
    fig = figure([result(maps)], {k: k.upper() for k in maps}, crop=None, maps_per_row=3)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 8  # the input once, then 3 + 3 + 1 maps
    row = {ax: ax.get_subplotspec().get_topmost_subplotspec().rowspan.start for ax in panels}
    by_row = [sorted(ax.get_title().split("\n")[0] for ax in panels if row[ax] == number)
              for number in sorted(set(row.values()))]
    assert by_row == [["M0", "M1", "M2", "x"], ["M3", "M4", "M5"], ["M6"]]


def test_user_text_is_drawn_as_written(tmp_path):
    """File names and class names holding "$" were read as mathtext: a$x^$b.png raised a
    ParseSyntaxException, and one name hung for 400 s."""
    made = result({"grad": np.ones((15, 15), np.float32)})
    made.name = "a$x^$b"
    fig = figure([made], {"grad": r"$\frac{$"}, class_names=["$", r"$\frac{$", "a$b$c", "$$"])
    fig.savefig(tmp_path / "figure.png")
    texts = [text.get_text() for text in fig.findobj(matplotlib.text.Text)]
    assert any("a$x^$b" in text for text in texts) and any(r"$\frac{$" in text for text in texts)
    assert matplotlib.rcParams["text.parse_math"]  # the user's own figures parse as they did


def test_a_map_over_the_photo_is_as_opaque_as_it_is_strong():
    """overlay: the photo in gray under each full map, the map's colors with alpha 0.6 at its largest
    |value| and 0 where it is 0; the colorbar keeps the map's own scale."""
    values = np.zeros((15, 15), np.float32)
    values[3, 4], values[7, 7] = 2.0, -1.0
    made = result({"m": values})
    fig = figure([made], {"m": "M"}, crop=None, overlay=True, overlay_alpha=0.6)
    [panel] = [ax for ax in fig.axes if ax.get_title().startswith("M")]
    hidden, photo, colors = panel.images
    assert not hidden.get_visible() and photo.get_cmap().name == "gray"
    np.testing.assert_allclose(photo.get_array(), made.image[..., 0])
    np.testing.assert_allclose(colors.get_array()[..., 3], 0.6 * np.abs(values) / 2.0)
