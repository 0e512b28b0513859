"""The windowed path (heatkit/model/windows.py): occlusion, PDA and Shapley on convolutional networks,
recomputing only what a change of a window can reach, equal full forward passes."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import create_model
import heatkit
from heatkit.base import frameworks
from heatkit.base.engine import Engine
from heatkit.base.run_state import EngineOptions
from heatkit.base.progress import Meter
from conftest import engine_options, random_image, record_batches
from heatkit.model import Model
from heatkit.model.windowed_evaluator import WindowedEvaluator

ROOT = Path(__file__).resolve().parents[1]
SIDE = 12
# Relative to the probabilities the maps are differences of: a map of small drops (1e-3) has float32
# rounding of its probabilities (1e-7) in it, 1e-4 of its own largest value.
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
METHODS = {"occlusion": {"occlusion.patch": 3, "occlusion.stride": 2, "occlusion.fill": 0.5},
           "pda": {"pda.levels": 4},
           "pda_windows": {"pda.window": 2, "pda.samples": 2, "pda.prior": "image"},
           "shapley": {"shapley.samples": 8, "shapley.baseline": 0.3}}  # the windowed path walks 8 or more


def torch_nets():
    """Modules a researcher writes, seeded: a plain CNN, a residual BatchNorm network, and one with
    every rule the windowed path has (dilation, stride, "same" padding, average pooling, a
    concatenation, a gate, functional activations, a spatial mean and F.linear)."""
    torch = frameworks.torch()
    nn, F = torch.nn, torch.nn.functional
    sys.path.insert(0, str(ROOT / "examples"))
    import residual_digits
    sys.path.remove(str(ROOT / "examples"))

    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 6, 3, padding="same", dilation=2)
            self.left = nn.Conv2d(6, 4, 3, stride=2, padding=1)
            self.right = nn.AvgPool2d(3, 2, 1)
            self.mix, self.gate, self.skip = nn.Conv2d(10, 8, 1), nn.Conv2d(10, 8, 1), nn.Conv2d(10, 8, 1)
            self.weight = nn.Parameter(torch.randn(5, 8))

        def forward(self, x):
            x = F.silu(self.stem(x))
            x = torch.cat([F.relu(self.left(x)), self.right(x)], 1)
            x = torch.tanh(self.mix(x)) * torch.sigmoid(self.gate(x)) * 2.0 + self.skip(x)
            return F.linear(x.mean((2, 3)), self.weight)

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(8 * (SIDE // 2) ** 2, 6))
    residual = residual_digits.ResidualNet()
    residual.stem[0] = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in residual.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(0.2 * torch.randn(module.num_features, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))
    return {"plain CNN": plain, "residual BatchNorm net": residual, "branches": Branches()}


NETS = torch_nets()


@pytest.fixture(scope="module")
def image():
    return random_image(SIDE, seed=5)


def maps(model, image, method: str, **settings):
    """The method's map and the model's evaluations by path, on the windowed path or full passes."""
    key = method.split("_")[0]
    size = {} if isinstance(model, (str, Path)) else {"input_size": list(image.shape[:2])}
    run = heatkit.explain(model, image, [key], progress=False, settings={
        **size, **METHODS[method], "perturbation.min_flop_ratio": 0, **settings})  # windowed wherever it applies
    assert key in run.maps, run.result.failures
    return run.maps[key], run.result.evaluations[key]


def assert_close(windowed, full, dtype: str):
    assert np.abs(full).max() > 0
    assert np.abs(windowed - full).max() <= TOLERANCE[dtype] * max(1.0, np.abs(full).max())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("method", METHODS)
def test_every_windowed_method_equals_full_passes(net, dtype, method, image):
    model = NETS[net].to(getattr(frameworks.torch(), dtype)).eval()
    windowed, evaluations = maps(model, image, method)
    full, full_evaluations = maps(model, image, method, **{"perturbation.fast": False})
    assert "windowed" in evaluations and set(full_evaluations) == {"full"}
    assert_close(windowed, full, dtype)


def test_the_windowed_path_is_taken_where_it_saves_enough_multiply_adds(image):
    """The plain CNN at 12 x 12, a 3 x 3 window at the center, counted by hand (2 flops a
    multiply-add): a full pass is conv1 2*8*3*9*144 + conv2 2*8*8*9*36 + Linear 2*288*6 = 107,136;
    the window changes 5 x 5 of conv1's outputs (2*8*3*9*25 = 10,800), and 25 of conv2's 36, over
    max_fast_fraction, so conv2 and the Linear layer run whole: 55,728, a ratio of 1.92."""
    net = NETS["plain CNN"].float()
    model = heatkit.load_model(net, settings={"input_size": [SIDE, SIDE]})
    windows = model.windowed_evaluator(0.5, 0.0)  # max_fast_fraction as settings.py has it, exact
    windows.remember(image[None])
    assert windows.flop_ratio((3, 3)) == pytest.approx(107_136 / 55_728, rel=1e-12)
    taken = {}
    for ratio in (1.9, 1.95):
        _, taken[ratio] = maps(net, image, "occlusion", **{"perturbation.min_flop_ratio": ratio})
    assert set(taken[1.9]) == {"windowed"} and set(taken[1.95]) == {"full"}


@pytest.fixture(scope="module")
def center_cnn(tmp_path_factory):
    """The center-pixel CNN of create_model.py at 15 x 15 (dilated convolutions, a Dense head)."""
    out = tmp_path_factory.mktemp("center_cnn")
    assert create_model.main(["--model", "center_cnn", "--image-size", "15", "--out", str(out)]) == 0
    return out / "center_cnn.h5"


def test_the_center_cnn_windowed_equals_full_passes(center_cnn, rng):
    """On probabilities (PDA's log-odds of a probability near 1 magnify its last bits), to 1e-8: the
    construction's logits reach 1e8, and full passes in batches of 1 and of 40 differ by 4e-9 already."""
    image, orders = rng.random((15, 15, 1)), np.stack([rng.permutation(15 * 15) for _ in range(8)])
    probabilities = {}
    for fast in (True, False):
        model = Model(center_cnn)
        with engine_options(fast=fast, min_flop_ratio=0) as state:
            engine = Engine(model, image, int(model.probabilities(image[None]).argmax()))
        patches = np.array([[row * 15 + col for row in range(top, top + 3) for col in range(left, left + 3)]
                            for top in range(0, 13, 2) for left in range(0, 13, 3)])
        probabilities[fast] = np.concatenate([
            engine.edits(patches, 0.5, "occlusion"), engine.pixel_levels(np.linspace(0, 1, 3), "pda").ravel(),
            engine.walks(np.zeros(image.size), orders, "shapley").ravel()])
        assert state.evaluations["windowed"] == (0 if not fast else len(probabilities[fast]) - 8)
    assert np.abs(probabilities[True] - probabilities[False]).max() < 1e-8


def test_a_digits_cnn_windowed_equals_full_passes(gap_model_path):
    """The digits CNN's architecture (conv, pooling, GAP, Dense) as a Keras model and its twin."""
    image = np.random.default_rng(3).random((12, 12, 3))
    single_pixels = {"occlusion.patch": 1, "occlusion.stride": 1}
    windowed, evaluations = maps(gap_model_path, image, "occlusion", **single_pixels)
    full, _ = maps(gap_model_path, image, "occlusion", **single_pixels, **{"perturbation.fast": False})
    assert "windowed" in evaluations
    assert_close(windowed, full, "float64")


def test_batches_change_nothing(image, monkeypatch):
    """Rows evaluated in batches of four (each row counted as 4 MB against a 16 MB bound) equal
    rows evaluated all at once."""
    model = NETS["residual BatchNorm net"].double()
    sizes = record_batches(monkeypatch)
    large, _ = maps(model, image, "occlusion", **{"perturbation.memory_mb": 4096})
    at_once, sizes[:] = list(sizes), []
    monkeypatch.setattr(WindowedEvaluator, "bytes_per_row", lambda self, size: 4 << 20)
    small, evaluations = maps(model, image, "occlusion", **{"perturbation.memory_mb": 16})
    assert "windowed" in evaluations and max(sizes) == 4 < max(at_once) and sum(sizes) == sum(at_once)
    assert_close(small, large, "float64")


def test_walks_on_full_passes_are_the_states_in_order(image, rng):
    """The full-pass walk: state k of a walk has the first k inputs of its order switched."""
    model = Model(NETS["plain CNN"].double(), input_size=[SIDE, SIDE])
    engine = Engine(model, image, 2, EngineOptions(fast=False, progress=False))
    start, orders = rng.random(image.size), np.stack([rng.permutation(image.size)[:5] for _ in range(2)])
    walks = engine.walks(start, orders, "walks")
    for order, probabilities in zip(orders, walks):
        state = start.copy()
        expected = [model.probabilities(state.reshape(1, *image.shape))[0, 2]]
        for element in order:
            state[element] = image.reshape(-1)[element]
            expected.append(model.probabilities(state.reshape(1, *image.shape))[0, 2])
        assert np.abs(probabilities - expected).max() < 1e-12


@pytest.mark.parametrize("fast", [True, False], ids=["windowed", "full passes"])
def test_the_memory_bound_sizes_every_batch(image, fast, monkeypatch):
    """Every batch allocates at most perturbation.memory_mb (by the bytes counted for one row); with
    a bound that holds every row, one batch takes them all."""
    from heatkit.model.windowed_evaluator import WindowedEvaluator

    model = NETS["residual BatchNorm net"].float()
    batches = []
    for evaluator in (WindowedEvaluator, Model):
        original = evaluator.probabilities

        def spy(self, *args, original=original, **kwargs):
            batches.append(len(args[0]))
            return original(self, *args, **kwargs)
        monkeypatch.setattr(evaluator, "probabilities", spy)
    for memory_mb, bounded in ((16, True), (4096, False)):
        batches.clear()
        loaded = heatkit.load_model(model, settings={"input_size": [SIDE, SIDE]})
        with engine_options(memory_mb=memory_mb, fast=fast):
            engine = loaded.engine(image, 0)
        engine.edits(np.arange(image.size)[:, None], 0.0, "occlusion")
        row = engine.windowed.evaluator.bytes_per_row((1, 1)) if fast else image.nbytes * 3 + 2 * loaded.activation_bytes
        largest = max(batches[1:])  # after the first chunk, of 8
        if bounded:
            assert 1 < largest <= (memory_mb << 20) // row < image.size
        else:
            assert largest == image.size - 8  # the rest at once


def test_a_long_run_says_so_first_with_what_makes_it_cheaper(monkeypatch):
    """Timed from the first chunk's end (its warm-up is not the rate) for a second: 12 evaluations
    in 2.5 s, 84 to go, 17.5 s."""
    clock = iter([0.5, 1.0, 3.0, 4.0])
    monkeypatch.setattr("heatkit.base.progress.time.perf_counter", lambda: next(clock))
    said = []
    meter = Meter("occlusion", enabled=False, warn_seconds=10, cheaper="raise occlusion.stride", say=said.append)
    meter.start(100)
    meter.update(4)  # t = 0.5: the first chunk, warm-up included
    meter.update(4)  # t = 1: too soon to tell
    assert said == []
    meter.update(8)  # t = 3
    meter.update(10)  # t = 4: said once only
    meter.close()
    assert said == ["occlusion: about 18 s to go (84 model evaluations at 208 ms); to make it cheaper, "
                    "raise occlusion.stride"]


def test_no_warning_below_the_threshold_and_one_line_a_step_in_a_log(image, capsys):
    """stderr is no terminal here: no bar's carriage returns, but a line as the run loads, says its
    cost and starts each method, and no warning of a long run (0: never; 3600: far off)."""
    model = NETS["plain CNN"].float()
    for seconds in (0, 3600):
        heatkit.explain(model, image, ["occlusion"], settings={"perturbation.warn_seconds": seconds,
                                                              "input_size": [SIDE, SIDE]})
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[0] for line in lines] == ["loading", "this", "occlusion"] * 2 and "\r" not in "".join(lines)
    assert not any("to go" in line or "cheaper" in line for line in lines)


def test_krypton_approximate_mode_recomputes_a_fraction_of_each_side(rng):
    """A 3 x 3 box filter summed by the head: a pixel raised by d changes 9 outputs by d each, and
    logit 0 by 9d. Cropped to 1 of 12 output rows and columns (approximate 1/12), the windowed path
    recomputes the middle output only: logit 0 changes by d. At 1.0 nothing is cropped."""
    torch = frameworks.torch()
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(144, 2, bias=False)).double()
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[2].weight.copy_(torch.stack([torch.ones(144), torch.zeros(144)]))
    image = rng.random((12, 12, 1))
    padded = np.pad(image[..., 0], 1)
    box = sum(padded[i:i + 12, j:j + 12] for i in range(3) for j in range(3)).sum()  # logit 0; logit 1 is 0
    pixels, change = np.array([[5 * 12 + 6]]), 0.5 - image[5, 6, 0]  # an inner pixel set to 0.5
    for approximate, logit_change in ((1 / 12, change), (1.0, 9 * change)):
        with engine_options(min_flop_ratio=0, approximate=approximate) as state:
            probability = Model(net, input_size=[12, 12]).engine(image, 0).edits(pixels, 0.5, "occlusion")[0]
        assert state.evaluations["windowed"] == 1
        assert probability == pytest.approx(1 / (1 + np.exp(-(box + logit_change))), rel=1e-12)


def test_a_windows_cost_is_counted_once_per_model_and_size(image, monkeypatch):
    """The multiply-adds of a window were counted anew on every call (a FLOP counter pass per
    engine); they are a fact of the network, counted once for each size."""
    from heatkit.model.windowed_evaluator import WindowedEvaluator

    counted, count = [], WindowedEvaluator._flop_ratio
    monkeypatch.setattr(WindowedEvaluator, "_flop_ratio", lambda self, size: counted.append(size) or count(self, size))
    model = heatkit.load_model(NETS["plain CNN"].float(), settings={"input_size": [SIDE, SIDE]})
    for _ in range(3):
        heatkit.explain(model, image, ["occlusion"], progress=False,
                        settings={"input_size": [SIDE, SIDE], "occlusion.patch": 3, "faithfulness.curves": False})
    heatkit.explain(model, image, ["occlusion"], progress=False,
                    settings={"input_size": [SIDE, SIDE], "occlusion.patch": 2, "faithfulness.curves": False})
    assert counted == [(3, 3), (2, 2)]
