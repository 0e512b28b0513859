"""Completeness where the papers promise it, and a reported gap where it does not hold: DeepLIFT
through max pooling (overlapping windows) on both frameworks sums to the logit's change; an IG
map whose path crosses a jump of the logit reports its gap and says so; each gap is against its
own reference's logits, DeepLIFT's from its own pass."""
import gc

import numpy as np
import pytest

import heatkit
from heatkit.base import frameworks
from heatkit.base.run_state import RunState

SIDE = 12
QUIET = {"faithfulness.curves": False, "input_size": [SIDE, SIDE]}


def keras_pooling_net(path):
    tf = frameworks.tensorflow()
    layers, init = tf.keras.layers, tf.keras.initializers
    with frameworks.keras_floatx("float64"):
        inputs = tf.keras.Input((SIDE, SIDE, 2))
        hidden = layers.Conv2D(4, 3, activation="relu", kernel_initializer=init.GlorotNormal(seed=1),
                               bias_initializer=init.RandomNormal(stddev=0.5, seed=2))(inputs)
        hidden = layers.MaxPooling2D(3, 2, padding="same")(hidden)  # windows overlap
        hidden = layers.MaxPooling2D(2)(layers.Conv2D(3, 2, activation="relu",
                                                      kernel_initializer=init.GlorotNormal(seed=3))(hidden))
        tf.keras.Model(inputs, layers.Dense(5, kernel_initializer=init.GlorotNormal(seed=4))(
            layers.Flatten()(hidden))).save(path)
    return path


def torch_pooling_net():
    torch = frameworks.torch()
    nn = torch.nn
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 3, 2), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 5)).double().eval()


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_deeplift_sums_to_the_logits_change_through_max_pooling(framework, tmp_path):
    model = keras_pooling_net(tmp_path / "net.h5") if framework == "keras" else torch_pooling_net()
    x = np.random.default_rng(0).random((SIDE, SIDE, 2))
    run = heatkit.explain(model, x, ["deeplift"], settings={**QUIET, "deeplift.baseline": 0.3}, progress=False)
    logits = run.model.logits(np.stack([x, np.full_like(x, 0.3)]))[:, run.result.target]
    assert run.maps["deeplift"].sum() == pytest.approx(logits[0] - logits[1], rel=1e-5)
    assert run.scores["deeplift"]["completeness_gap"] < 1e-5


def stepped_net():
    """A linear net whose logit 0 steps by 5 once the image's mean passes 1e-3 (as a
    zero-initialised stem's does): no gradient sees the step."""
    torch = frameworks.torch()
    nn = torch.nn

    class Stepped(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(SIDE * SIDE, 3).double()

        def forward(self, x):
            step = (x.flatten(1).mean(1, keepdim=True) > 1e-3).double() * torch.tensor([[5.0, 0.0, 0.0]])
            return self.linear(x.flatten(1)) + step

    torch.manual_seed(0)
    return Stepped()


def gap_of(attribution, logits) -> float:
    return abs(attribution.astype(np.float64).sum() - (logits[0] - logits[1])) / abs(logits[0] - logits[1])


def test_an_ig_map_across_a_jump_of_the_logit_reports_its_gap():
    """IG's gradients never see the step just past the reference, and its map falls short of the
    change by it."""
    x = np.random.default_rng(1).random((SIDE, SIDE, 1))
    run = heatkit.explain(stepped_net(), x, ["ig", "deeplift"], target=0, settings=QUIET, progress=False)
    gap = gap_of(run.maps["ig"], run.model.logits(np.stack([x, np.zeros_like(x)]))[:, 0])
    assert gap > 0.2 and run.scores["ig"]["completeness_gap"] == pytest.approx(gap, rel=1e-5)
    assert any("ig misses the logit's change" in note for note in run.notes), run.notes


def test_each_gap_is_against_its_own_reference_and_deeplift_passes_its_baseline_once():
    """DeepLIFT's gap is read from the logits of its own pass of the baseline (three passes in
    all: the prediction's, the baseline's and the image's), IG's from a pass of its other
    reference; each equals the gap from the logits computed apart."""
    net = stepped_net()
    settings = {**QUIET, "deeplift.baseline": 1e-4, "ig.steps": 8}  # below the step, as IG's black is
    x = np.random.default_rng(1).random((SIDE, SIDE, 1))
    both = heatkit.explain(net, x, ["deeplift", "ig"], target=0, settings=settings, progress=False)
    for key, reference in (("deeplift", 1e-4), ("ig", 0.0)):
        gap = gap_of(both.maps[key], both.model.logits(np.stack([x, np.full_like(x, reference)]))[:, 0])
        assert gap > 0.2 and both.scores[key]["completeness_gap"] == pytest.approx(gap, rel=1e-9), key
    batches = []
    net.register_forward_hook(lambda module, inputs, output: batches.append(len(inputs[0])))
    alone = heatkit.explain(both.model, x, ["deeplift"], target=0, settings=settings, progress=False)
    assert batches == [1, 1, 1]
    assert alone.scores["deeplift"]["completeness_gap"] == pytest.approx(both.scores["deeplift"]["completeness_gap"],
                                                                         rel=1e-9)


@pytest.mark.parametrize("transform", ["mean/std", "/255"])
def test_lrp_conserves_on_a_bias_free_net_that_normalises_inside_its_forward(transform):
    """(x - mean) / std or x / 255 in the forward is part of the first layer: relevance passes it
    whole (through autograd it was scaled by 1 / std: 0.258 against a logit of 0.0588)."""
    torch = frameworks.torch()
    nn = torch.nn

    class Normalising(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))
            self.conv, self.linear = nn.Conv2d(3, 4, 3, bias=False), nn.Linear(4 * 6 * 6, 3, bias=False)

        def forward(self, x):
            x = x / 255 if transform == "/255" else (x - self.mean) / self.std
            return self.linear(torch.relu(self.conv(x)).flatten(1))

    torch.manual_seed(0)
    x = np.random.default_rng(0).random((8, 8, 3))
    settings = {"faithfulness.curves": False, "input_size": [8, 8],
                **({"preprocess.range": "byte"} if transform == "/255" else {})}
    rules = ["lrp.z", "lrp.epsilon", "lrp.alpha1beta0", "lrp.epsilon_plus_flat"]
    run = heatkit.explain(Normalising().eval(), x, rules, target=1, settings=settings, progress=False)
    logit = run.model.logits(run.model.preprocess(x)[None])[0, 1]
    for key in rules:
        assert run.maps[key].sum() == pytest.approx(logit, rel=1e-5), key


def test_kept_reference_logits_serve_only_their_own_model_and_value():
    """A run keeps a method's reference logits for the model and value they were computed for:
    not another model's (a sanity check's altered copies follow one another in one run), not
    another value's, and not a new model's that a freed one's id was given to."""
    class Net:  # weakly referable, as a Model is
        pass

    state, logits = RunState(), np.arange(3.0)
    kept, other = Net(), Net()
    state.keep_reference(kept, [0.5, 0.5], logits)
    assert state.reference(kept, np.full(2, 0.5)) is logits
    assert state.reference(other, np.full(2, 0.5)) is None and state.reference(kept, np.zeros(2)) is None
    (key, entry), = state.references.items()
    del kept
    gc.collect()
    state.references[id(other), key[1]] = entry  # the freed model's entry, as if `other` had been given its id
    assert state.reference(other, np.full(2, 0.5)) is None
