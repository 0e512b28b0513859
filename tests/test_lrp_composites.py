"""LRP composites against zennit's own composites called directly, conservation on a bias-free
network, and the Keras twin against the PyTorch model."""
import numpy as np
import pytest

import heatkit
from conftest import nchw, random_image, trained_looking
from heatkit.base import frameworks
from heatkit.methods.registry import REGISTRY

SIDE, TARGET = 16, 2
PARAMS = {"epsilon": 1e-7, "gamma": 0.25, "alpha_beta_bias": "split"}
COMPOSITES = ["lrp.epsilon_plus_flat", "lrp.epsilon_alpha2beta1_flat", "lrp.epsilon_gamma_box"]


def sequential_cnn(bias: bool):
    """conv, ReLU, conv, ReLU, average pooling, Dense, ReLU, Dense: no module reused, no residual or
    BatchNorm, where zennit's composites need no canonizer."""
    torch = frameworks.torch()
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=bias),
                         nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8 * 8 * 8, 16, bias=bias), nn.ReLU(),
                         nn.Linear(16, 5, bias=bias)).eval()


def zennits(key: str, net, inputs, low=0.0, high=1.0, target=TARGET):
    """zennit's composite of that name on the network, from the target's logit, channels summed, and
    the logit."""
    torch = frameworks.torch()
    import zennit.composites as composites

    composite = {"lrp.epsilon_plus_flat": lambda: composites.EpsilonPlusFlat(epsilon=1e-7, stabilizer=1e-12),
                 "lrp.epsilon_alpha2beta1_flat": lambda: composites.EpsilonAlpha2Beta1Flat(epsilon=1e-7,
                                                                                          stabilizer=1e-12),
                 "lrp.epsilon_gamma_box": lambda: composites.EpsilonGammaBox(
                     low=torch.zeros_like(inputs) + low, high=torch.zeros_like(inputs) + high, epsilon=1e-7,
                     stabilizer=1e-12)}[key]()
    inputs = inputs.detach().requires_grad_()
    with composite.context(net) as modified:
        output = modified(inputs)
        seed = torch.zeros_like(output)
        seed[0, target] = output[0, target]
        (relevance,) = torch.autograd.grad(output, inputs, grad_outputs=seed)
    return relevance[0].sum(0).numpy(), float(output[0, target].detach())


@pytest.fixture(scope="module")
def image():
    return random_image(SIDE)


@pytest.mark.parametrize("key", COMPOSITES)
def test_each_composite_equals_zennits_own(key, image):
    net = sequential_cnn(bias=True)
    model = heatkit.load_model(net, settings={"input_size": [SIDE, SIDE]})
    ours = REGISTRY[key].impl["torch"](model, image, TARGET, PARAMS)
    theirs, _ = zennits(key, net, nchw(image))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6 * np.abs(theirs).max())
    uniform = REGISTRY["lrp.alpha1beta0"].impl["torch"](model, image, TARGET, PARAMS)
    assert np.abs(ours - uniform).max() > 0.01 * np.abs(ours).max()  # a composite is not one rule everywhere


def test_the_box_is_the_preprocessed_range_of_pixels(image):
    """With ImageNet's mean and std the input lies in [(0 - mean) / std, (1 - mean) / std] per channel:
    zennit's ZBox with those bounds."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    net = sequential_cnn(bias=True)
    model = heatkit.load_model(net, settings={"input_size": [SIDE, SIDE], "preprocess.mean": list(mean),
                                              "preprocess.std": list(std)})
    prepared = model.preprocess(image)
    ours = REGISTRY["lrp.epsilon_gamma_box"].impl["torch"](model, prepared, TARGET, PARAMS)
    torch = frameworks.torch()
    low, high = (torch.from_numpy(((value - mean) / std).astype(np.float32)).reshape(1, 3, 1, 1) for value in (0, 1))
    theirs, _ = zennits("lrp.epsilon_gamma_box", net, nchw(prepared), low, high)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6 * np.abs(theirs).max())


@pytest.mark.parametrize("key", ["lrp.epsilon_plus_flat", "lrp.epsilon_gamma_box"])
def test_a_bias_free_network_conserves_the_logit(key, image):
    """Alpha 2 beta 1 conserves only where each neuron has contributions of both signs: one with none
    negative passes on alpha times its relevance."""
    net = sequential_cnn(bias=False)
    model = heatkit.load_model(net, settings={"input_size": [SIDE, SIDE]})
    top = int(model.logits(image[None])[0].argmax())
    relevance = REGISTRY[key].impl["torch"](model, image, top, PARAMS)
    _, logit = zennits(key, net, nchw(image), target=top)
    assert logit > 0.01
    assert relevance.sum(dtype=np.float64) == pytest.approx(logit, rel=1e-4)


@pytest.mark.parametrize("key", ["lrp.epsilon_plus_flat", "lrp.epsilon_alpha2beta1_flat"])
def test_the_keras_twin_gives_the_pytorch_map(key, gap_model_path):
    image = np.random.default_rng(2).random((12, 12, 3))
    runs = {backend: heatkit.explain(str(gap_model_path), image, [key], settings={"backend": backend},
                                     progress=False) for backend in ("keras", "torch")}
    keras_map, torch_map = runs["keras"].maps[key], runs["torch"].maps[key]
    assert runs["keras"].scores[key]["framework"] == "keras" and runs["torch"].scores[key]["framework"] == "torch"
    np.testing.assert_allclose(torch_map, keras_map, rtol=0, atol=1e-6 * np.abs(keras_map).max())


def test_epsilon_plus_flat_on_resnet18_equals_zennits_with_its_resnet_canonizer():
    """What a researcher runs on a ResNet: zennit's EpsilonPlusFlat with its ResNetCanonizer. zennit's
    merged BatchNorm keeps a variance of 1 where ours is the identity, eps / 2 off each BatchNorm."""
    torch = frameworks.torch()
    import torchvision
    import zennit.composites
    import zennit.torchvision

    torch.manual_seed(0)
    net = trained_looking(torchvision.models.resnet18(num_classes=10))
    image = np.random.default_rng(1).random((32, 32, 3))
    model = heatkit.load_model(net, settings={"input_size": [32, 32]})
    ours = REGISTRY["lrp.epsilon_plus_flat"].impl["torch"](model, image, TARGET, PARAMS)
    composite = zennit.composites.EpsilonPlusFlat(epsilon=1e-7, stabilizer=1e-12,
                                                  canonizers=[zennit.torchvision.ResNetCanonizer()])
    inputs = nchw(image).requires_grad_()
    with composite.context(net) as modified:
        output = modified(inputs)
        seed = torch.zeros_like(output)
        seed[0, TARGET] = output[0, TARGET]
        (relevance,) = torch.autograd.grad(output, inputs, grad_outputs=seed)
    theirs = relevance[0].sum(0).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=5e-4 * np.abs(theirs).max())
    epsilon = REGISTRY["lrp.epsilon"].impl["torch"](model, image, TARGET, PARAMS)
    assert np.abs(epsilon - theirs).max() > 0.05 * np.abs(theirs).max()  # the finding: not lrp.epsilon


def _shared_output_net():
    """A convolution whose output two branches read (a residual addition and a second convolution),
    changed in place by a LeakyReLU written as a function, which no hook sees."""
    torch = frameworks.torch()
    nn = torch.nn

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.branch = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
            self.head = nn.Linear(6, 4)

        def forward(self, x):
            stem = torch.nn.functional.leaky_relu_(self.stem(x), 0.2)
            return self.head((stem + self.branch(stem)).mean((2, 3)))

    torch.manual_seed(3)
    return Shared().eval()


@pytest.mark.parametrize("network", ["resnet18", "shared output", "sequential"])
@pytest.mark.parametrize("epsilon", [1e-7, 0.25, "safe"])
def test_the_one_pass_epsilon_rule_is_zennits_epsilon(network, epsilon):
    """The rule divides the relevance before the layer's own backward pass, where zennit's
    recomputes the layer and takes a second one: the same relevance, on a torchvision ResNet
    (residual sums, merged BatchNorms, in-place ReLUs), a layer whose output two branches read,
    and a plain Sequential, for two targets at once."""
    import torchvision

    from heatkit.methods import _epsilon_rule, _zennit

    torch = frameworks.torch()
    torch.manual_seed(0)
    net = {"resnet18": lambda: trained_looking(torchvision.models.resnet18(num_classes=10)).eval(),
           "shared output": _shared_output_net, "sequential": lambda: sequential_cnn(bias=True)}[network]()
    model = heatkit.load_model(net, settings={"input_size": [SIDE, SIDE]})
    images = np.stack([random_image(SIDE, seed=seed) for seed in (1, 2)])
    z, stabilizer = _zennit.zennit(), _zennit.SAFE if epsilon == "safe" else epsilon
    ours = _zennit.relevance(model, images, np.array([1, 3]), _epsilon_rule.one_pass_epsilon(z, stabilizer))
    theirs = _zennit.relevance(model, images, np.array([1, 3]), z.rules.Epsilon(epsilon=stabilizer))
    assert np.abs(theirs).max() > 0
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7 * np.abs(theirs).max())
