"""The gradient family on both frameworks (innvestigate on Keras, captum on the PyTorch twin),
against answers computed by hand."""
import numpy as np
import pytest

from conftest import SMALL, dense_weights
from core.center_pixel import random_images
from core.model import Model
from methods import deconvnet, gradient, guided_backprop, input_x_gradient, integrated_gradients, lrp, smoothgrad

SG = {"augment_by_n": 16, "noise_scale": 0.2, "postprocess": None, "seed": 0}


@pytest.fixture(params=["keras", "torch"])
def backend(request):
    return request.param


def on(module, backend, rule=""):
    """The module's function for `backend` (lrp's are named per rule: z_keras, ...)."""
    return getattr(module, f"{rule}{backend}")


def case(model, seed=3, target=None):
    """An image, the class explained, and the Dense layer's numbers for that class."""
    image = random_images(1, SMALL, 256, seed)[0]
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
    np.testing.assert_allclose(on(lrp, backend, "z_")(small_model, image, target, {}),
                               as_map(x * w / z * max(z, 0.0)), rtol=1e-6)


def test_lrp_epsilon_is_the_hand_formula(small_model, backend):
    image, target, x, w, b = case(small_model)
    z = x @ w + b
    epsilon = z / 4  # large enough to matter
    expected = x * w / (z + epsilon * np.sign(z)) * max(z, 0.0)
    np.testing.assert_allclose(on(lrp, backend, "epsilon_")(small_model, image, target, {"epsilon": epsilon}),
                               as_map(expected), rtol=1e-6)


@pytest.mark.parametrize("rule, alpha, beta", [("alpha1beta0_", 1, 0), ("alpha2beta1_", 2, 1)])
def test_lrp_alpha_beta_is_innvestigates_formula(small_model, backend, rule, alpha, beta):
    # innvestigate 2.1.2 adds the whole bias to both denominators: z+ = sum (x w)+ + b, z- = sum (x w)- + b
    image, target, x, w, b = case(small_model)
    contribution = x * w
    positive, negative = np.maximum(contribution, 0), np.minimum(contribution, 0)
    logit = max(x @ w + b, 0.0)
    expected = (alpha * positive / (positive.sum() + b) - beta * negative / (negative.sum() + b)) * logit
    np.testing.assert_allclose(on(lrp, backend, rule)(small_model, image, target, {}), as_map(expected), rtol=1e-6)


@pytest.fixture(scope="module")
def nonlinear_model(mlp_path):
    """An MLP whose hidden ReLUs clip, so that its gradient changes with the input."""
    return Model(mlp_path)


def test_smoothgrad_is_identical_for_the_same_seed(nonlinear_model):
    image = random_images(1, SMALL, 256, seed=4)[0]
    first = smoothgrad.keras(nonlinear_model, image, 3, SG)
    again = smoothgrad.keras(nonlinear_model, image, 3, SG)
    other = smoothgrad.keras(nonlinear_model, image, 3, {**SG, "seed": 1})
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_smoothgrad_is_the_mean_gradient_over_its_noisy_copies(nonlinear_model):
    image = random_images(1, SMALL, 256, seed=4)[0]
    noise = np.random.default_rng(SG["seed"]).normal(0.0, SG["noise_scale"] * (image.max() - image.min()),
                                                     (SG["augment_by_n"], *image.shape))
    expected = np.mean([gradient.keras(nonlinear_model, image + n, 3, {}) for n in noise], axis=0)
    np.testing.assert_allclose(smoothgrad.keras(nonlinear_model, image, 3, SG), expected, rtol=1e-5, atol=1e-7)


def test_smoothgrad_without_noise_is_the_gradient(nonlinear_model):
    image = random_images(1, SMALL, 256, seed=4)[0]
    np.testing.assert_allclose(smoothgrad.keras(nonlinear_model, image, 3, {**SG, "noise_scale": 0.0}),
                               gradient.keras(nonlinear_model, image, 3, {}), rtol=1e-6)
