"""Perturbation and sampling methods against answers known in closed form."""
import numpy as np
import pytest
from PIL import Image

from conftest import SMALL, build, engine_options, image_maps
from heatkit import cli
from heatkit.base.data import center_pixel_images
from heatkit.base.engine import Engine
from heatkit.base.evaluated import AffineSplit
from heatkit.base.run_state import EngineOptions
from heatkit.methods import _regions, kernel_shap, lime, occlusion, pda, rise, shapley
from heatkit.model import Model
from heatkit.pipeline.scores import center_scores

QUIET = EngineOptions(progress=False)
NAIVE = EngineOptions(fast=False, progress=False)
ALPHA, LEVELS = 10.0, np.arange(256)
CENTER = (SMALL // 2, SMALL // 2)
PARAMS = {
    "occlusion": {"patch": 1, "stride": 1, "fill": 0.0, "mask": None},
    "pda": {"train_samples": 256_000, "levels": 256, "window": 1, "prior": "uniform", "samples": 4, "seed": 0},
    "shapley": {"samples": 3, "baseline": 0.0, "mask": "pixels", "seed": 0},
    "lime": {"kernel_size": 2, "max_dist": 20, "ratio": 0.5, "num_samples": 200, "hide_color": 0.0,
             "num_features": 1000, "seed": 0},
    "shap": {"mask": "superpixels", "n_segments": 30, "compactness": 0.1, "sigma": 0.5, "nsamples": 200,
             "background": 0.0, "l1_reg": 0, "seed": 0},
    "rise": {"num_masks": 60, "cell_size": 4, "keep_probability": 0.5, "batch_size": 16, "seed": 0},
}
FUNCTIONS = {"occlusion": occlusion.attribute, "pda": pda.attribute, "shapley": shapley.attribute,
             "lime": lime.attribute, "shap": kernel_shap.attribute, "rise": rise.attribute}


def analytic(level: float) -> np.ndarray:
    """The center-pixel model's probabilities for a center gray level, softmax(-alpha (j - level)^2)."""
    z = -ALPHA * (LEVELS - level) ** 2
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.fixture(scope="module")
def case(small_model_path):
    model = Model(small_model_path)
    image = center_pixel_images(1, SMALL, 256, seed=21)[0]
    target = model.true_label(image)
    return model, image, target


def only_the_center(attribution):
    rest = attribution.astype(np.float64).copy()
    rest[CENTER] = 0.0
    return np.abs(rest).max()


def test_single_pixel_occlusion_is_the_drop_at_the_center_and_zero_elsewhere(case):
    model, image, target = case
    attribution = occlusion.attribute(model, image, target, PARAMS["occlusion"])
    assert attribution[CENTER] == pytest.approx(analytic(target)[target] - analytic(0)[target], rel=1e-6)
    assert only_the_center(attribution) <= 1e-9


def test_patch_occlusion_spreads_the_drop_over_the_patches_covering_the_center(case):
    model, image, target = case
    attribution = occlusion.attribute(model, image, target, {"patch": 3, "stride": 1, "fill": 0.0, "mask": None})
    drop = analytic(target)[target] - analytic(0)[target]
    expected = np.zeros((SMALL, SMALL))
    for dy in range(-2, 3):
        for dx in range(-2, 3):  # a pixel shares (3 - |dy|)(3 - |dx|) of its 9 patches with the center
            expected[CENTER[0] + dy, CENTER[1] + dx] = drop * (3 - abs(dy)) * (3 - abs(dx)) / 9
    np.testing.assert_allclose(attribution, expected, atol=1e-8)


def test_pda_is_the_log_odds_difference_at_the_center_and_zero_elsewhere(case):
    model, image, target = case
    attribution = pda.attribute(model, image, target, PARAMS["pda"])
    marginal = np.mean([analytic(level)[target] for level in LEVELS])

    def log_odds(p):
        p = (p * 256_000 + 1) / (256_000 + 256)
        return np.log2(p / (1 - p))
    assert attribution[CENTER] == pytest.approx(log_odds(analytic(target)[target]) - log_odds(marginal), rel=1e-6)
    assert only_the_center(attribution) <= 1e-9


def slow_pda(model, image, target, params):
    """PDA window by window and draw by draw, with full forward passes and the module's own draws."""
    window, size = params["window"], image.shape[0]
    positions = size - window + 1
    draws = pda._draws(model, image, params, np.zeros((positions * positions, 1), int))
    before = model.probabilities(image[None])[0, target]

    def log_odds(p):
        p = (p * params["train_samples"] + 1) / (params["train_samples"] + model.num_classes)
        return np.log2(p / (1 - p))
    total, covered = np.zeros((size, size)), np.zeros((size, size))
    for r in range(positions):
        for c in range(positions):
            replaced = np.repeat(image[None], len(draws), axis=0)
            replaced[:, r:r + window, c:c + window] = draws.reshape(len(draws), window, window, -1)
            marginal = model.probabilities(replaced)[:, target].mean()
            total[r:r + window, c:c + window] += log_odds(before) - log_odds(marginal)
            covered[r:r + window, c:c + window] += 1
    return total / covered


@pytest.mark.parametrize("prior", ["uniform", "image"])
def test_pda_with_windows_is_the_slow_obvious_pda(case, small_model_path, prior):
    model, image, target = case
    params = {**PARAMS["pda"], "window": 3, "prior": prior}
    attribution = pda.attribute(model, image, target, params)
    with engine_options(fast=False):
        slow = slow_pda(Model(small_model_path), image, target, params)
    np.testing.assert_allclose(attribution, slow, rtol=1e-6, atol=1e-6)
    far = np.ones((SMALL, SMALL), bool)
    far[CENTER[0] - 4:CENTER[0] + 5, CENTER[1] - 4:CENTER[1] + 5] = False  # no 3 x 3 window reaches the center
    assert np.abs(attribution[far]).max() <= 1e-9 and np.abs(attribution[CENTER]) > 0.1


def test_pda_with_the_image_itself_as_the_prior_finds_nothing(case, tmp_path):
    """Every draw of a folder holding only the image equals the image: no window changes p."""
    model, image, target = case
    Image.fromarray(np.rint(image[..., 0] * 255).astype(np.uint8)).save(tmp_path / "same.png")
    attribution = pda.attribute(model, image, target, {**PARAMS["pda"], "window": 2, "prior": str(tmp_path)})
    assert not attribution.any()


def test_shapley_gives_the_center_its_whole_effect_and_the_rest_zero(case):
    model, image, target = case
    attribution = shapley.attribute(model, image, target, PARAMS["shapley"])
    # whatever the order, the only switch that changes the probability is the center's
    assert attribution[CENTER] == pytest.approx(analytic(target)[target] - analytic(0)[target], rel=1e-6)
    assert only_the_center(attribution) <= 1e-9


class LinearModel:
    """f(x) = w.x + b with no softmax: its Shapley values are w_i (x_i - baseline_i) exactly."""

    num_classes, activation_bytes = 1, 0

    def windowed_evaluator(self, max_fraction, approximate):
        return None  # no convolutional graph

    def __init__(self, weight, bias, options):
        self.weight, self.bias, self.options = weight, bias, options

    def probabilities(self, batch):
        return batch.reshape(len(batch), -1) @ self.weight[:, None] + self.bias

    def affine_split(self):
        return AffineSplit(self.weight[:, None], np.array([self.bias]), lambda z: z)

    def engine(self, image, target):
        return Engine(self, image, target, self.options)


@pytest.mark.parametrize("options", [QUIET, NAIVE], ids=["fast", "naive"])
def test_shapley_of_a_linear_model_is_weight_times_input_change(rng, options):
    weight, image = rng.normal(size=SMALL * SMALL), rng.random((SMALL, SMALL, 1))
    attribution = shapley.attribute(LinearModel(weight, 0.3, options), image, 0, {**PARAMS["shapley"], "baseline": 0.2})
    np.testing.assert_allclose(attribution, (weight * (image.reshape(-1) - 0.2)).reshape(SMALL, SMALL), atol=1e-6)


@pytest.mark.parametrize("options", [QUIET, NAIVE], ids=["fast", "naive"])
@pytest.mark.parametrize("mask", ["patch:4", "superpixels"])
def test_shapley_of_a_linear_model_over_regions_is_each_regions_weighted_change(rng, options, mask):
    """Regions switch whole: a region's value is the sum of w_i (x_i - baseline) over its inputs,
    shown at each of its pixels; on three channels a pixel's channels switch together."""
    weight, image = rng.normal(size=SMALL * SMALL * 3), rng.random((SMALL, SMALL, 3))
    attribution = shapley.attribute(LinearModel(weight, 0.3, options), image, 0,
                                    {**PARAMS["shapley"], "baseline": 0.2, "mask": mask})
    labels = _regions.labels(image, mask)
    assert 4 <= labels.max() + 1 <= 60  # a 4 x 4 grid over 15 x 15, or SLIC's superpixels
    per_input = weight * (image.reshape(-1) - 0.2)
    region_values = np.bincount(np.repeat(labels.reshape(-1), 3), weights=per_input)
    np.testing.assert_allclose(attribution, region_values[labels], atol=1e-9)


def test_patches_number_a_grid_cut_by_the_edges():
    labels = _regions.labels(np.zeros((5, 7, 1)), "patch:3")
    np.testing.assert_array_equal(labels, [[0, 0, 0, 1, 1, 1, 2]] * 3 + [[3, 3, 3, 4, 4, 4, 5]] * 2)
    assert (_regions.labels(np.zeros((5, 7, 1)), "pixels") == np.arange(35).reshape(5, 7)).all()


@pytest.mark.parametrize("options", [QUIET, NAIVE], ids=["fast", "naive"])
def test_occlusion_over_a_grid_is_occlusion_of_patches_at_their_own_stride(small_model_path, options):
    """15 = 3 x 5: 5 x 5 squares of the grid are the windows of patch 5, stride 5."""
    model = Model(small_model_path)
    image = center_pixel_images(1, SMALL, 256, seed=21)[0]
    target = model.true_label(image)
    with engine_options(fast=options.fast):
        grid = occlusion.attribute(model, image, target, {**PARAMS["occlusion"], "mask": "patch:5"})
        windows = occlusion.attribute(model, image, target, {**PARAMS["occlusion"], "patch": 5, "stride": 5})
    np.testing.assert_allclose(grid, windows, rtol=0, atol=1e-12)
    assert grid[CENTER] > 0.5 and (grid[5:10, 5:10] == grid[CENTER]).all() and not grid[:5].any()


def test_kernel_shap_over_patches_gives_the_center_patch_everything(case):
    model, image, target = case
    attribution = kernel_shap.attribute(model, image, target, {**PARAMS["shap"], "mask": "patch:5"})
    center = attribution[CENTER]
    assert center == pytest.approx(analytic(target)[target] - analytic(0)[target], rel=1e-6)
    assert (attribution[5:10, 5:10] == center).all() and np.abs(attribution[:5]).max() <= 1e-9


@pytest.mark.parametrize("name", FUNCTIONS)
def test_fast_path_equals_full_passes(case, small_model_path, name):
    model, image, target = case
    fast_map = FUNCTIONS[name](model, image, target, PARAMS[name])
    with engine_options(fast=False):
        naive_map = FUNCTIONS[name](model, image, target, PARAMS[name])
    # probabilities agree to 1e-9; PDA's log-odds amplify that by up to 1 / (p'(1 - p') ln 2) ~ 1300
    np.testing.assert_allclose(fast_map, naive_map, rtol=0, atol=2e-6 if name == "pda" else 1e-8)


@pytest.mark.parametrize("name", ["shapley", "lime", "shap", "rise"])
def test_seeded_methods_repeat_exactly(case, name):
    model, image, target = case
    first = FUNCTIONS[name](model, image, target, PARAMS[name])
    assert np.array_equal(first, FUNCTIONS[name](model, image, target, PARAMS[name]))


@pytest.mark.parametrize("name", ["shapley", "lime", "shap", "rise"])
def test_a_different_seed_gives_a_different_map(mlp_path, name):
    """On an MLP: the center-pixel model is additive in any partition, so the estimates there are exact."""
    model, image, target = Model(mlp_path), center_pixel_images(1, SMALL, 256, seed=4)[0], 2
    first = FUNCTIONS[name](model, image, target, PARAMS[name])
    assert not np.array_equal(first, FUNCTIONS[name](model, image, target, {**PARAMS[name], "seed": 1}))


def test_rise_equals_a_slow_obvious_rise(case):
    """Mask by mask with scikit-image's resize, as the paper's code does."""
    from skimage.transform import resize

    model, image, target = case
    params = PARAMS["rise"]
    cells, count, keep = params["cell_size"], params["num_masks"], params["keep_probability"]
    rng = np.random.default_rng(params["seed"])
    grids = rng.random((count, cells, cells)) < keep
    cell = -(-SMALL // cells)
    shifts = np.stack([rng.integers(0, cell, count), rng.integers(0, cell, count)], axis=1)
    saliency = np.zeros((SMALL, SMALL))
    for grid, (dy, dx) in zip(grids, shifts):
        mask = resize(grid.astype(float), ((cells + 1) * cell,) * 2, order=1, mode="reflect",
                      anti_aliasing=False)[dy:dy + SMALL, dx:dx + SMALL]
        saliency += model.probabilities((image * mask[..., None])[None])[0, target] * mask
    np.testing.assert_allclose(rise.attribute(model, image, target, params), saliency / (count * keep), rtol=1e-6)


@pytest.fixture(scope="module")
def photo_case(tmp_path_factory):
    """A 41 x 41 twin explaining a photograph, so that superpixels follow edges."""
    from skimage import data

    path = build(tmp_path_factory.mktemp("center_pixel_41"), size=41)
    model = Model(path)
    image = np.asarray(Image.fromarray(data.camera()).resize((41, 41)), dtype=np.float64)[..., None] / 255
    return model, image, model.true_label(image)


@pytest.mark.parametrize("name", ["lime", "shap"])
def test_the_superpixel_holding_the_center_weighs_most(photo_case, name):
    model, image, target = photo_case
    params = {**PARAMS[name], "kernel_size": 3, "max_dist": 40} if name == "lime" else PARAMS[name]
    attribution = FUNCTIONS[name](model, image, target, params)
    center = attribution[20, 20]
    assert center > 0 and center == np.abs(attribution).max()
    superpixel = np.count_nonzero(attribution == center)  # ties count against the center: its superpixel's size
    assert center_scores(attribution, 5)["center_rank"] == superpixel < attribution.size / 4


def test_lime_cuts_a_small_input_into_superpixels_scaled_to_it(photo_case):
    """lime's own quickshift kernel (4, for 224 x 224) made a 41 x 41 photo two or three superpixels;
    scaled to its side, it makes a dozen or more."""
    model, image, target = photo_case
    params = {**PARAMS["lime"], "max_dist": 200, "ratio": 0.2}
    fixed = lime.attribute(model, image, target, {**params, "kernel_size": 4})
    scaled = lime.attribute(model, image, target, {**params, "kernel_size": None})
    assert np.unique(fixed).size <= 4 and np.unique(scaled).size >= 12


def test_full_size_perturbation_run(full_model_path, tmp_path, capsys):
    """The suite's one 227 x 227 perturbation run, through the command line."""
    code = cli.main(["-q", "-mp", str(full_model_path), "-ip", "images/chelsea.png", "-op", str(tmp_path),
                                "-hm", "occlusion", "pda", "shapley", "--set", "pda.levels=16",
                                "--set", "shapley.samples=2"])
    assert code == 0
    [folder] = tmp_path.iterdir()
    maps = image_maps(folder)
    for key in ("occlusion", "pda", "shapley"):
        scores = center_scores(maps[key], 5)
        assert scores["center_rank"] == 1 and scores["center_share"] == pytest.approx(1.0, abs=1e-9)
    assert "PDA (pda)" in capsys.readouterr().out


def interacting(x):
    """f on 4 inputs with interactions of every order: a product, a max and a triple product."""
    return x[:, 0] * x[:, 1] + np.maximum(x[:, 2], x[:, 3]) + 2 * x[:, 0] * x[:, 2] * x[:, 3]


class InteractingModel:
    """`interacting` on a 2 x 2 gray image, as the engine's one class; with the fast path, as an
    identity first layer followed by the nonlinear head."""

    num_classes, activation_bytes = 1, 0

    def windowed_evaluator(self, max_fraction, approximate):
        return None  # no convolutional graph

    def __init__(self, options):
        self.options = options

    def probabilities(self, batch):
        return interacting(batch.reshape(len(batch), 4))[:, None]

    def affine_split(self):
        return AffineSplit(np.eye(4), np.zeros(4), lambda z: interacting(z)[:, None])

    def engine(self, image, target):
        return Engine(self, image, target, self.options)


def exact_shapley(x, baseline):
    """Every one of the 4! orders: an input's value is its mean change of f when switched on."""
    import itertools

    values = np.zeros(4)
    for order in itertools.permutations(range(4)):
        state = np.full(4, baseline)
        for i in order:
            before = interacting(state[None])[0]
            state[i] = x[i]
            values[i] += interacting(state[None])[0] - before
    return values / 24


@pytest.mark.parametrize("options", [QUIET, NAIVE], ids=["fast", "naive"])
def test_shapley_sampling_converges_to_the_exact_values_of_interacting_inputs(options):
    image = np.array([0.9, 0.7, 0.2, 0.8]).reshape(2, 2, 1)
    exact = exact_shapley(image.reshape(-1), 0.1)
    assert exact.sum() == pytest.approx(interacting(image.reshape(1, 4))[0] - interacting(np.full((1, 4), 0.1))[0])
    model = InteractingModel(options)
    errors = []
    for samples in (4, 64, 1024):
        estimates = [shapley.attribute(model, image, 0, {"samples": samples, "baseline": 0.1, "mask": "pixels", "seed": seed}).reshape(-1)
                     for seed in range(5)]
        for estimate in estimates:  # every order's changes add up to f(x) - f(baseline)
            assert estimate.sum() == pytest.approx(exact.sum(), rel=1e-6)
        errors.append(np.mean([np.abs(estimate - exact).max() for estimate in estimates]))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02 * np.abs(exact).max()
