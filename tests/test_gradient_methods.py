"""The gradient family on both frameworks (innvestigate on Keras, captum on the PyTorch twin),
against answers computed by hand."""
import numpy as np
import pytest

from conftest import SMALL, default_params, dense_weights
from heatkit.base import frameworks
from heatkit.base.data import center_pixel_images
from heatkit.base.errors import NotApplicable
from heatkit.methods import (
    deconvnet,
    gradient,
    gradient_shap,
    guided_backprop,
    input_x_gradient,
    integrated_gradients,
    lrp,
    smoothgrad,
)
from heatkit.methods.registry import REGISTRY
from heatkit.model import Model

SG = {"augment_by_n": 16, "noise_scale": 0.2, "type": "smoothgrad", "seed": 0}



@pytest.fixture(params=["keras", "torch"])
def backend(request):
    return request.param


def on(module, backend):
    """The module's function for `backend`."""
    return module.METHOD.function(backend)


def lrp_on(rule: str, backend):
    """An LRP rule's function for `backend`, from the registry (lrp.py builds them per rule)."""
    return REGISTRY[f"lrp.{rule}"].function(backend)


def case(model, seed=3, target=None):
    """An image, the class explained, and the Dense layer's numbers for that class."""
    image = center_pixel_images(1, SMALL, 256, seed)[0]
    kernel, bias = dense_weights(model)
    target = int(model.probabilities(image[None])[0].argmax()) if target is None else target
    x = image.reshape(-1)
    return image, target, x, kernel[:, target], bias[target]


def as_map(values):
    return np.asarray(values, dtype=np.float64).reshape(SMALL, SMALL)


def test_gradient_is_the_weight_column(small_model, backend):
    image, target, _, w, _ = case(small_model)
    attribution = on(gradient, backend)(small_model, image, target, {})
    assert attribution.dtype == np.float32 and attribution.shape == (SMALL, SMALL)
    np.testing.assert_allclose(attribution, as_map(w), rtol=1e-6)


@pytest.mark.parametrize("method", [guided_backprop, deconvnet])
def test_guided_backprop_and_deconvnet_equal_the_gradient_when_no_relu_clips(small_model, method, backend):
    image, target, _, w, _ = case(small_model)
    np.testing.assert_allclose(on(method, backend)(small_model, image, target, {}), as_map(w), rtol=1e-6)


@pytest.mark.parametrize("method", [gradient, guided_backprop, deconvnet])
def test_the_relu_backward_rules_where_relus_clip(clipping_twin_path, method, backend):
    """Flatten, Dense + ReLU, Dense: the signal at the hidden units is the logit's weight column v.
    Gradient passes v where the unit is on; Guided Backprop max(v, 0) where it is on; DeConvNet
    max(v, 0) everywhere. Then back through the first Dense."""
    model = Model(clipping_twin_path)
    image = center_pixel_images(1, SMALL, 256, seed=4)[0]
    (kernel, bias), (logit_kernel, _) = (model.keras.weights(name) for name in ("hidden", "logits"))
    active = image.reshape(-1) @ kernel + bias > 0
    assert 0 < active.sum() < active.size  # some units clip
    for target in range(3):
        v = logit_kernel[:, target]
        signal = {gradient: v * active, guided_backprop: np.maximum(v, 0) * active,
                  deconvnet: np.maximum(v, 0)}[method]
        assert (signal != v * active).any() or method is gradient  # the rule changes the map here
        np.testing.assert_allclose(on(method, backend)(model, image, target, {}), as_map(kernel @ signal),
                                   rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("method", [guided_backprop, deconvnet])
def test_backward_pass_starts_from_one_not_from_the_logit(linear_model, method, backend):
    """innvestigate alone would scale these maps by the logit, and flip them where it is negative."""
    image, target, x, w, b = case(linear_model, target=0)
    assert x @ w + b < 0  # class 0's logit, -alpha * 0^2 + S(x), is negative for this image
    np.testing.assert_allclose(on(method, backend)(linear_model, image, target, {}), as_map(w), rtol=1e-6)


def test_input_times_gradient_is_x_times_w(small_model, backend):
    image, target, x, w, _ = case(small_model)
    np.testing.assert_allclose(on(input_x_gradient, backend)(small_model, image, target, {}), as_map(x * w),
                               rtol=1e-6)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_left", "riemann_middle", "riemann_right"])
@pytest.mark.parametrize("reference", [0.0, 0.5])
def test_integrated_gradients_is_complete(small_model, backend, reference, rule):
    image, target, *_ = case(small_model)
    params = {"reference": reference, "steps": 16, "rule": rule}
    attribution = on(integrated_gradients, backend)(small_model, image, target, params)
    logits = small_model.logits(np.stack([image, np.full_like(image, reference)]))[:, target]
    assert attribution.astype(np.float64).sum() == pytest.approx(logits[0] - logits[1], rel=1e-6)


def test_captums_trapezoid_rule_falls_short_by_one_step(small_model, backend):
    """captum 0.9 weights riemann_trapezoid's points 1/steps with both ends halved: they sum to 1 - 1/steps."""
    image, target, *_ = case(small_model)
    params = {"reference": 0.0, "steps": 16, "rule": "riemann_trapezoid"}
    attribution = on(integrated_gradients, backend)(small_model, image, target, params)
    logits = small_model.logits(np.stack([image, np.zeros_like(image)]))[:, target]
    assert attribution.astype(np.float64).sum() == pytest.approx((logits[0] - logits[1]) * 15 / 16, rel=1e-6)


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_left", "riemann_middle", "riemann_right",
                                  "riemann_trapezoid"])
def test_path_rules_are_captums(rule):
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(rule)
    ours = integrated_gradients.path_rule(rule, 16)
    np.testing.assert_allclose(ours[0], alphas(16), atol=1e-7)  # captum builds its alphas in float32
    np.testing.assert_allclose(ours[1], step_sizes(16), rtol=1e-12)


def test_lrp_z_is_the_hand_formula(small_model, backend):
    # R_i = x_i w_i / z * R with z = x.w + b and R = the logit relu(z)
    image, target, x, w, b = case(small_model)
    z = x @ w + b
    np.testing.assert_allclose(lrp_on("z", backend)(small_model, image, target, {}),
                               as_map(x * w / z * max(z, 0.0)), rtol=1e-6)


def test_lrp_epsilon_is_the_hand_formula(small_model, backend):
    image, target, x, w, b = case(small_model)
    z = x @ w + b
    epsilon = z / 4  # large enough to matter
    expected = x * w / (z + epsilon * np.sign(z)) * max(z, 0.0)
    np.testing.assert_allclose(lrp_on("epsilon", backend)(small_model, image, target, {"epsilon": epsilon}),
                               as_map(expected), rtol=1e-6)


@pytest.mark.parametrize("rule, alpha, beta", [("alpha1beta0", 1, 0), ("alpha2beta1", 2, 1)])
@pytest.mark.parametrize("bias", ["split", "whole"])
def test_lrp_alpha_beta_is_the_hand_formula(small_model, backend, rule, alpha, beta, bias):
    """R_i = (alpha z_i+ / z+ - beta z_i- / z-) R with z_i = x_i w_i. "split" (Bach et al. 2015):
    z+ = sum z_i+ + b+, z- = sum z_i- + b-; "whole" (innvestigate 2.1.2): the whole b in both."""
    image, target, x, w, b = case(small_model)
    contribution = x * w
    positive, negative = np.maximum(contribution, 0), np.minimum(contribution, 0)
    logit = max(x @ w + b, 0.0)
    b_positive, b_negative = (max(b, 0.0), min(b, 0.0)) if bias == "split" else (b, b)
    expected = (alpha * positive / (positive.sum() + b_positive)
                - beta * negative / (negative.sum() + b_negative)) * logit
    attribution = lrp_on(rule, backend)(small_model, image, target, {"alpha_beta_bias": bias})
    np.testing.assert_allclose(attribution, as_map(expected), rtol=1e-6)


def test_the_two_bias_conventions_differ_on_the_center_pixel_model(small_model):
    """Its bias is positive and large: innvestigate's rule divides the negative contributions by it
    and flips their sign; the paper's divides them by their own (negative) sum."""
    image, target, x, w, _ = case(small_model)
    split, whole = (lrp.alpha2beta1_keras(small_model, image, target, {"alpha_beta_bias": bias}) for bias in
                    ("split", "whole"))
    negative = as_map(x * w) < 0
    assert (np.sign(split[negative]) == -np.sign(whole[negative])).all()


@pytest.fixture(scope="module")
def nonlinear_model(mlp_path):
    """An MLP whose hidden ReLUs clip, so that its gradient changes with the input."""
    return Model(mlp_path)


def test_smoothgrad_is_identical_for_the_same_seed(nonlinear_model):
    image = center_pixel_images(1, SMALL, 256, seed=4)[0]
    first = smoothgrad.on_keras(nonlinear_model, image, 3, SG)
    again = smoothgrad.on_keras(nonlinear_model, image, 3, SG)
    other = smoothgrad.on_keras(nonlinear_model, image, 3, {**SG, "seed": 1})
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_smoothgrad_is_the_mean_gradient_over_its_noisy_copies(nonlinear_model):
    image = center_pixel_images(1, SMALL, 256, seed=4)[0]
    std = np.float32(SG["noise_scale"] * (image.max() - image.min()))  # the paper's, drawn in float32
    noise = np.random.default_rng(SG["seed"]).standard_normal((SG["augment_by_n"], *image.shape), np.float32) * std
    expected = np.mean([gradient.on_keras(nonlinear_model, image + n, 3, {}) for n in noise], axis=0)
    np.testing.assert_allclose(smoothgrad.on_keras(nonlinear_model, image, 3, SG), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_smoothgrad_types_equal_captums_noise_tunnel_with_the_same_noise(clipping_twin_path, kind, monkeypatch):
    torch = frameworks.torch()
    from captum.attr import NoiseTunnel, Saliency

    model = Model(clipping_twin_path)
    image = center_pixel_images(1, SMALL, 256, seed=4)[0]
    params = {**SG, "type": kind}
    net = model.torch
    noise = net.tensor(smoothgrad.noise(image, params))
    monkeypatch.setattr(torch, "normal", lambda mean, std: noise)  # captum's draw, (copies, C, H, W)
    theirs = NoiseTunnel(Saliency(net.forward)).attribute(
        net.tensor(image[None]), nt_type=kind, nt_samples=params["augment_by_n"], stdevs=1.0, target=3, abs=False)
    monkeypatch.undo()
    expected = net.array(theirs)[0].sum(0)
    for backend in ("keras", "torch"):
        np.testing.assert_allclose(smoothgrad.METHOD.function(backend)(model, image, 3, params), expected,
                                   rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_the_noise_tunnel_types_of_an_affine_model(linear_model):
    """Its gradient is w on every copy: SmoothGrad-Squared is w^2, VarGrad 0."""
    image, target, _, w, _ = case(linear_model)
    squared = smoothgrad.on_torch(linear_model, image, target, {**SG, "type": "smoothgrad_sq"})
    np.testing.assert_allclose(squared, as_map(w**2), rtol=1e-6)
    assert np.abs(smoothgrad.on_torch(linear_model, image, target, {**SG, "type": "vargrad"})).max() <= 1e-9 * (w**2).max()


GRADSHAP = {"samples": 16, "baselines": "uniform", "num_baselines": 4, "reference": 0.0, "noise_scale": 0.1, "seed": 0}


def test_gradient_shap_of_an_affine_model_is_w_times_x_minus_the_baseline(linear_model, backend):
    """The gradient is w wherever alpha puts the point, so every sample is (x - r) w."""
    image, target, x, w, _ = case(linear_model)
    params = {**GRADSHAP, "baselines": "reference", "reference": 0.3, "noise_scale": 0.0}
    np.testing.assert_allclose(on(gradient_shap, backend)(linear_model, image, target, params), as_map((x - 0.3) * w),
                               rtol=1e-6, atol=1e-12)


def test_gradient_shap_equals_captums_with_the_same_draws(clipping_twin_path, monkeypatch):
    torch = frameworks.torch()
    from captum.attr import GradientShap

    model = Model(clipping_twin_path)
    image = center_pixel_images(1, SMALL, 256, seed=4)[0]
    baselines, chosen, noise, alphas = gradient_shap.drawn(image, GRADSHAP)
    net = model.torch
    monkeypatch.setattr(np.random, "choice", lambda *_: chosen)  # captum's draws, replaced by ours
    monkeypatch.setattr(np.random, "uniform", lambda *_: alphas)
    monkeypatch.setattr(torch, "normal", lambda mean, std: net.tensor(noise))
    theirs = GradientShap(net.forward).attribute(net.tensor(image[None]), net.tensor(baselines), n_samples=len(chosen),
                                                 stdevs=1.0, target=3)
    monkeypatch.undo()
    expected = net.array(theirs)[0].sum(0)
    assert np.abs(expected).max() > 0
    for backend in ("keras", "torch"):
        np.testing.assert_allclose(gradient_shap.METHOD.function(backend)(model, image, 3, GRADSHAP), expected,
                                   rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_gradient_shap_with_one_baseline_converges_to_integrated_gradients(clipping_twin_path):
    """Its samples are IG's integrand at uniform points: the mean of 4,000 is within a few standard
    errors of IG's 64-point Gauss-Legendre integral, and far from the gradient times the input."""
    model = Model(clipping_twin_path)
    image = center_pixel_images(1, SMALL, 256, seed=4)[0]
    params = {**GRADSHAP, "samples": 4000, "baselines": "reference", "noise_scale": 0.0}
    ig = integrated_gradients.on_keras(model, image, 3, {"reference": 0.0, "steps": 64, "rule": "gausslegendre"})
    shap = gradient_shap.on_keras(model, image, 3, params)
    assert np.abs(shap - ig).max() < 0.02 * np.abs(ig).max()  # 0.005 measured; 0.046 with 100 samples
    assert np.abs(input_x_gradient.on_keras(model, image, 3, {}) - ig).max() > 0.2 * np.abs(ig).max()


def test_smoothgrad_without_noise_is_the_gradient(nonlinear_model):
    image = center_pixel_images(1, SMALL, 256, seed=4)[0]
    np.testing.assert_allclose(smoothgrad.on_keras(nonlinear_model, image, 3, {**SG, "noise_scale": 0.0}),
                               gradient.on_keras(nonlinear_model, image, 3, {}), rtol=1e-6)


def test_the_tensorflow_graph_stays_flat_over_repeated_maps(gap_model_path):
    """Every Keras method builds its graph once per model and settings, then reuses it for any class."""
    from heatkit.base import frameworks
    from heatkit.methods.registry import METHODS

    tf = frameworks.tensorflow()
    model = Model(gap_model_path)
    image = np.random.default_rng(0).random(model.input_shape)
    keras_methods = [m for m in METHODS if "keras" in m.impl]
    params = {m.key: default_params(m) for m in keras_methods}

    def every_method(target):
        for method in keras_methods:
            try:
                method.function("keras")(model, image, target, params[method.key])
            except NotApplicable:  # Keras DeepLIFT takes Dense models only
                continue
            yield method.key, len(tf.compat.v1.get_default_graph().get_operations())

    first = dict(every_method(0))
    for target in (1, 2, 0):
        assert dict(every_method(target)) == {key: first[keras_methods[-1].key] for key in first}
