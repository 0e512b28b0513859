"""ONNX files as exporters in the wild write them: an old opset's softmax (onnx2torch makes it
flatten, softmax, reshape), a trailing Identity, weights as Constant nodes (PaddlePaddle) and a
dynamic reshape that torch.fx cannot trace through onnx2torch's modules."""
import numpy as np
import onnx
import pytest
from onnx import helper

import heatkit
from heatkit.base import frameworks

SIDE = 12
QUIET = {"faithfulness.curves": False}


def network(bias: bool = True, dynamic: bool = False):
    torch = frameworks.torch()
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.linear = nn.Conv2d(3, 4, 3, bias=bias), nn.Linear(4 * (SIDE - 2) ** 2, 5, bias=bias)

        def forward(self, x):
            hidden = torch.relu(self.conv(x))
            # x.shape[0] exports as Shape, Gather, Unsqueeze, Concat; the slice as Slice
            hidden = hidden.reshape(x.shape[0], -1)[:, :self.linear.in_features] if dynamic else hidden.flatten(1)
            return torch.softmax(self.linear(hidden), 1)

    torch.manual_seed(0)
    return Net().eval()


def export(net, path, opset: int, identity: bool = False, constants: bool = False):
    torch = frameworks.torch()
    torch.onnx.export(net, torch.zeros(1, 3, SIDE, SIDE), str(path), opset_version=opset, dynamo=False,
                      input_names=["x"], output_names=["p"], dynamic_axes={"x": {0: "batch"}})
    model = onnx.load(str(path))
    graph = model.graph
    if identity:  # the output through an Identity, as some converters leave it
        graph.node[-1].output[0] = "before"
        graph.node.append(helper.make_node("Identity", ["before"], ["p"]))
    if constants:  # every weight a Constant node, none an initializer, as PaddlePaddle writes them
        nodes = [helper.make_node("Constant", [], [weight.name], value=weight) for weight in graph.initializer]
        nodes += list(graph.node)
        del graph.initializer[:], graph.node[:]
        graph.node.extend(nodes)
    onnx.save(model, str(path))
    return path


def logit_gradient(net, x: np.ndarray, target: int) -> np.ndarray:
    """d logit / d x by autograd, the logit below the module's softmax."""
    torch = frameworks.torch()
    inputs = torch.from_numpy(x.transpose(2, 0, 1)[None]).float().requires_grad_()
    hidden = torch.relu(net.conv(inputs)).flatten(1)
    net.linear(hidden)[0, target].backward()
    return inputs.grad[0].sum(0).numpy()


@pytest.mark.parametrize("opset, identity", [(11, False), (11, True), (12, False)])
def test_an_old_opsets_softmax_is_the_head_and_its_logits_are_explained(opset, identity, tmp_path):
    net = network()
    path = export(net, tmp_path / "net.onnx", opset, identity)
    x = np.random.default_rng(0).random((SIDE, SIDE, 3))
    run = heatkit.explain(path, x, ["grad", "gb", "deeplift"], settings=QUIET, progress=False)
    assert not run.result.skipped, run.result.skipped  # the head is its softmax, no softmax inside
    assert not any("log p" in note for note in run.notes), run.notes
    expected = logit_gradient(net, x, run.result.target)
    np.testing.assert_allclose(run.maps["grad"], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_constant_node_weights_and_a_dynamic_reshape_convert_and_trace(tmp_path):
    net = network(bias=False, dynamic=True)
    path = export(net, tmp_path / "paddle.onnx", 11, constants=True)
    assert not onnx.load(str(path)).graph.initializer
    x = np.random.default_rng(1).random((SIDE, SIDE, 3))
    run = heatkit.explain(path, x, ["grad", "gradcam", "lrp.epsilon"], target=3, settings=QUIET, progress=False)
    assert not run.result.skipped and not run.result.failures, (run.result.skipped, run.result.failures)
    expected = logit_gradient(net, x, 3)
    np.testing.assert_allclose(run.maps["grad"], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    logit = run.model.logits(run.model.preprocess(x)[None])[0, 3]
    assert run.maps["lrp.epsilon"].sum() == pytest.approx(logit, rel=1e-4)  # bias-free: LRP conserves
