"""The gradient family on the Keras model (innvestigate), against answers computed by hand."""
import numpy as np
import pytest

from conftest import SMALL, dense_weights
from core.center_pixel import random_images
from core.model import Model
from methods import deconvnet, gradient, guided_backprop, input_x_gradient, integrated_gradients, lrp, smoothgrad

SG = {"augment_by_n": 16, "noise_scale": 0.2, "postprocess": None, "seed": 0}


def case(model, seed=3, target=None):
    """An image, the class explained, and the Dense layer's numbers for that class."""
    image = random_images(1, SMALL, 256, seed)[0]
    kernel, bias = dense_weights(model)
    target = int(model.probabilities(image[None])[0].argmax()) if target is None else target
    x = image.reshape(-1)
    return image, target, x, kernel[:, target], bias[target]


def as_map(values):
    return np.asarray(values, dtype=np.float64).reshape(SMALL, SMALL)


def test_gradient_is_the_weight_column(small_model):
    image, target, _, w, _ = case(small_model)
    attribution = gradient.attribute(small_model, image, target, {})
    assert attribution.dtype == np.float32 and attribution.shape == (SMALL, SMALL)
    np.testing.assert_allclose(attribution, as_map(w), rtol=1e-6)


@pytest.mark.parametrize("method", [guided_backprop, deconvnet])
def test_guided_backprop_and_deconvnet_equal_the_gradient_when_no_relu_clips(small_model, method):
    image, target, _, w, _ = case(small_model)
    np.testing.assert_allclose(method.attribute(small_model, image, target, {}), as_map(w), rtol=1e-6)


@pytest.mark.parametrize("method", [guided_backprop, deconvnet])
def test_backward_pass_starts_from_one_not_from_the_logit(linear_model, method):
    """innvestigate alone would scale these maps by the logit, and flip them where it is negative."""
    image, target, x, w, b = case(linear_model, target=0)
    assert x @ w + b < 0  # class 0's logit, -alpha * 0^2 + S(x), is negative for this image
    np.testing.assert_allclose(method.attribute(linear_model, image, target, {}), as_map(w), rtol=1e-6)


def test_input_times_gradient_is_x_times_w(small_model):
    image, target, x, w, _ = case(small_model)
    np.testing.assert_allclose(input_x_gradient.attribute(small_model, image, target, {}), as_map(x * w), rtol=1e-6)


@pytest.mark.parametrize("reference", [0.0, 0.5])
def test_integrated_gradients_is_complete(small_model, reference):
    image, target, *_ = case(small_model)
    attribution = integrated_gradients.attribute(small_model, image, target, {"reference": reference, "steps": 16})
    logits = small_model.logits(np.stack([image, np.full_like(image, reference)]))[:, target]
    total = attribution.astype(np.float64).sum()
    assert total == pytest.approx(logits[0] - logits[1], rel=1e-6)


def test_lrp_z_is_the_hand_formula(small_model):
    # R_i = x_i w_i / z * R with z = x.w + b and R = the logit relu(z)
    image, target, x, w, b = case(small_model)
    z = x @ w + b
    np.testing.assert_allclose(lrp.z(small_model, image, target, {}), as_map(x * w / z * max(z, 0.0)), rtol=1e-6)


def test_lrp_epsilon_is_the_hand_formula(small_model):
    image, target, x, w, b = case(small_model)
    z = x @ w + b
    epsilon = z / 4  # large enough to matter
    expected = x * w / (z + epsilon * np.sign(z)) * max(z, 0.0)
    np.testing.assert_allclose(lrp.epsilon(small_model, image, target, {"epsilon": epsilon}), as_map(expected),
                               rtol=1e-6)


@pytest.mark.parametrize("rule, alpha, beta", [(lrp.alpha1beta0, 1, 0), (lrp.alpha2beta1, 2, 1)])
def test_lrp_alpha_beta_is_innvestigates_formula(small_model, rule, alpha, beta):
    # innvestigate 2.1.2 adds the whole bias to both denominators: z+ = sum (x w)+ + b, z- = sum (x w)- + b
    image, target, x, w, b = case(small_model)
    contribution = x * w
    positive, negative = np.maximum(contribution, 0), np.minimum(contribution, 0)
    logit = max(x @ w + b, 0.0)
    expected = (alpha * positive / (positive.sum() + b) - beta * negative / (negative.sum() + b)) * logit
    np.testing.assert_allclose(rule(small_model, image, target, {}), as_map(expected), rtol=1e-6)


@pytest.fixture(scope="module")
def nonlinear_model(mlp_path):
    """An MLP whose hidden ReLUs clip, so that its gradient changes with the input."""
    return Model(mlp_path)


def test_smoothgrad_is_identical_for_the_same_seed(nonlinear_model):
    image = random_images(1, SMALL, 256, seed=4)[0]
    first = smoothgrad.attribute(nonlinear_model, image, 3, SG)
    again = smoothgrad.attribute(nonlinear_model, image, 3, SG)
    other = smoothgrad.attribute(nonlinear_model, image, 3, {**SG, "seed": 1})
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_smoothgrad_is_the_mean_gradient_over_its_noisy_copies(nonlinear_model):
    image = random_images(1, SMALL, 256, seed=4)[0]
    noise = np.random.default_rng(SG["seed"]).normal(0.0, SG["noise_scale"] * (image.max() - image.min()),
                                                     (SG["augment_by_n"], *image.shape))
    expected = np.mean([gradient.attribute(nonlinear_model, image + n, 3, {}) for n in noise], axis=0)
    np.testing.assert_allclose(smoothgrad.attribute(nonlinear_model, image, 3, SG), expected, rtol=1e-5, atol=1e-7)


def test_smoothgrad_without_noise_is_the_gradient(nonlinear_model):
    image = random_images(1, SMALL, 256, seed=4)[0]
    np.testing.assert_allclose(smoothgrad.attribute(nonlinear_model, image, 3, {**SG, "noise_scale": 0.0}),
                               gradient.attribute(nonlinear_model, image, 3, {}), rtol=1e-6)
