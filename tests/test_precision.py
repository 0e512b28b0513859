"""Models in float16, bfloat16 and mixed precision run in their own precision, with softmax,
differences and scores in float32; maps with NaN or infinite values are errors, never results."""
import copy

import numpy as np
import pytest

import heatkit
from conftest import image_scores, random_image, replace_method, run_cli
from heatkit.base import frameworks
from heatkit.model import Model
from heatkit.model.heads import softmax

QUIET = {"faithfulness.curves": False, "input_size": [16, 16]}


def cnn(dtype):
    """A small ReLU CNN with BatchNorm and a residual addition, in `dtype`, from seeded weights."""
    torch = frameworks.torch()
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = self.stem(x)
            return self.fc(torch.relu(x + self.block(x)).mean((2, 3)))

    torch.manual_seed(1)
    return Net().eval().to(getattr(torch, dtype))


def pearson(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def image():
    return random_image(16)


@pytest.fixture(scope="module")
def float32_run(image):
    return heatkit.explain(cnn("float32"), image, ["grad", "deeplift", "occlusion", "pda"],
                           settings={**QUIET, "pda.levels": 8, "occlusion.patch": 2}, progress=False)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_torch_models_give_the_float32_maps_to_their_rounding(dtype, image, float32_run):
    """float16 DeepLIFT gave NaN, its occlusion and PDA all-zero maps; bfloat16 raised TypeError."""
    torch = frameworks.torch()
    run = heatkit.explain(cnn(dtype), image, ["grad", "deeplift", "occlusion", "pda"], target=float32_run.result.target,
                          settings={**QUIET, "pda.levels": 8, "occlusion.patch": 2}, progress=False)
    assert not run.result.failures and run.model.dtype == dtype
    assert run.probabilities.dtype == np.float32
    for key in ("grad", "deeplift"):
        assert pearson(run.maps[key], float32_run.maps[key]) > 0.99, key
    if dtype == "float16":  # bfloat16's 8-bit mantissa cannot resolve one pixel's change of this small net
        for key in ("occlusion", "pda"):
            assert np.abs(run.maps[key]).max() > 0 and pearson(run.maps[key], float32_run.maps[key]) > 0.8, key
    net = run.model.torch
    with torch.no_grad():
        change = float(net.forward(net.tensor(image[None]))[0, run.result.target]
                       - net.forward(net.tensor(np.zeros((1, 16, 16, 3))))[0, run.result.target])
    assert abs(run.maps["deeplift"].sum() - change) < 0.02 * abs(change) + 0.01  # complete, to half precision


def keras_cnn(path, policy: str):
    """A Keras CNN saved under a dtype policy (float32, float16, mixed_float16), from seeded weights."""
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    before = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(policy)
    try:
        inputs = tf.keras.Input((16, 16, 3))
        hidden = layers.Conv2D(8, 3, activation="relu", kernel_initializer=init.GlorotNormal(seed=1))(inputs)
        hidden = layers.GlobalAveragePooling2D()(hidden)
        outputs = layers.Dense(5, activation="softmax", kernel_initializer=init.GlorotNormal(seed=2),
                               bias_initializer=init.RandomNormal(stddev=3.0, seed=3))(hidden)
        model = tf.keras.Model(inputs, outputs)
        model.save(path)
    finally:
        tf.keras.mixed_precision.set_global_policy(before)
    return path


@pytest.mark.parametrize("policy", ["mixed_float16", "float16"])
def test_keras_half_precision_models_take_their_softmax_in_float32(policy, tmp_path, image):
    """Mixed precision ran the softmax on float16 logits and said float32; LRP-epsilon raised a dtype
    TypeError on both kinds of model. Occlusion is checked against Keras' own float16 logits with a
    float64 softmax, one pixel at a time."""
    model = Model(keras_cnn(tmp_path / "half.h5", policy))
    reference = Model(keras_cnn(tmp_path / "full.h5", "float32"))
    edited = np.repeat(image[None], 16 * 16, axis=0)
    edited[np.arange(16 * 16), np.arange(16 * 16) // 16, np.arange(16 * 16) % 16] = 0.0  # one pixel each
    batch = np.concatenate([image[None], edited])
    with model.keras.scope():
        probabilities = softmax(model.keras.logits_model.predict(batch, verbose=0).astype(np.float64))
    np.testing.assert_allclose(model.probabilities(batch[:1]), probabilities[:1], atol=1e-6)
    run = heatkit.explain(model, image, ["grad", "lrp.epsilon", "occlusion"], settings=QUIET, progress=False)
    target = run.result.target
    expected = (probabilities[0, target] - probabilities[1:, target]).reshape(16, 16)
    np.testing.assert_allclose(run.maps["occlusion"], expected, atol=1e-6)
    full = heatkit.explain(reference, image, ["grad", "lrp.epsilon"], target=target, settings=QUIET, progress=False)
    assert not run.result.failures
    for key in ("grad", "lrp.epsilon"):
        assert pearson(run.maps[key], full.maps[key]) > 0.99, key
    assert run.header()["dtype"] == policy
    # DeepLIFT where the image equals its baseline (rows of black): its float16 secants were infinite there
    dark = image.copy()
    dark[:5] = 0.0
    found = heatkit.explain(model, dark, ["deeplift"], target=target, settings=QUIET, progress=False)
    assert not found.result.failures and found.scores["deeplift"]["completeness_gap"] < 0.05


def test_a_float16_input_before_float32_layers_takes_lrp(tmp_path, image):
    """LRP-Z and LRP-epsilon raised dtype TypeErrors on a float16 Input feeding float32 layers."""
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    inputs = tf.keras.Input((16, 16, 3), dtype="float16")
    hidden = layers.Conv2D(8, 3, activation="relu", kernel_initializer=init.GlorotNormal(seed=1), use_bias=False)(inputs)
    outputs = layers.Dense(5, kernel_initializer=init.GlorotNormal(seed=2), use_bias=False)(
        layers.GlobalAveragePooling2D()(hidden))
    tf.keras.Model(inputs, outputs).save(tmp_path / "input16.h5")
    run = heatkit.explain(tmp_path / "input16.h5", image, ["lrp.z", "lrp.epsilon"], settings=QUIET, progress=False)
    logit = run.model.logits(image[None])[0, run.result.target]
    for key in ("lrp.z", "lrp.epsilon"):  # bias-free: conserved, to float16's rounding of the input
        assert run.maps[key].sum() == pytest.approx(logit, rel=1e-3), key


def test_nan_weights_make_every_map_an_error_not_a_score(tmp_path, capsys):
    """A model whose weights are NaN printed center_rank 1 with exit 0."""
    torch = frameworks.torch()
    net = cnn("float32")
    with torch.no_grad():
        net.fc.weight.fill_(float("nan"))
    path = tmp_path / "nan.pt"
    torch.jit.script(net).save(str(path))
    code = run_cli("-mp", path, "--trust-model", "--input-size", "16", "-hm", "grad", "occlusion", "-op", tmp_path / "out", "-q",
                   "--set", "faithfulness.curves=False")
    assert code == 1
    [folder] = (tmp_path / "out").iterdir()
    scores = image_scores(folder)["methods"]
    assert all("not finite" in scores[key]["error"] and "center_rank" not in scores[key] for key in ("grad", "occlusion"))


def test_a_map_with_nan_pixels_is_an_error_row_that_counts_them(small_model, monkeypatch):
    def half_nan(model, image, target, params):
        attribution = np.ones(image.shape[:2], np.float32)
        attribution[:3] = np.nan
        return attribution

    replace_method(monkeypatch, "grad", half_nan)
    run = heatkit.explain(small_model, None, ["grad", "occlusion"], settings={"faithfulness.curves": False},
                          progress=False)  # the 15 x 15 model as loaded (QUIET's 16 x 16 input is refused)
    assert run.result.failures["grad"] == "grad: 45 of 225 pixels are not finite (NaN or infinite)"
    assert "grad" not in run.maps and "occlusion" in run.maps and run.failed


def test_meaningful_perturbation_of_a_float16_model_is_finite_where_it_reads_nothing():
    """The mask's cells over pixels the model never reads have no gradient: optimized in float16,
    Adam's epsilon rounds to 0 and they became 0 / 0, a map of NaN."""
    torch = frameworks.torch()
    nn = torch.nn

    class LeftHalf(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x[..., :8])).mean((2, 3)))

    torch.manual_seed(0)
    net = LeftHalf().eval()
    settings = {**QUIET, "mp.iterations": 30, "mp.mask_size": 5}
    maps = {dtype: heatkit.explain(copy.deepcopy(net).to(getattr(torch, dtype)), np.random.default_rng(0).random(
        (16, 16, 3)), ["mp"], target=1, settings=settings, progress=False).maps["mp"] for dtype in ("float32", "float16")}
    assert np.isfinite(maps["float16"]).all()
    assert np.abs(maps["float16"] - maps["float32"]).max() < 0.02 * np.abs(maps["float32"]).max() + 1e-3
