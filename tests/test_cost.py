"""What a run will cost is counted before it starts, from the settings: the count is what the engine
then evaluates, and the README's own-model commands plan few enough passes to finish in minutes on
2 cores (counted, never timed)."""
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

import heatkit
from heatkit.base import frameworks
from heatkit.base.run_state import RunState, running
from heatkit.model import Model
from heatkit.pipeline import config, cost

ROOT = Path(__file__).resolve().parent.parent
# torchvision's ResNet-50 at 224 x 224 took 0.056 s a forward pass here (2 cores, batches of 8): five
# minutes are 5,300 passes, of which a run may plan 3,000 (the loading, the figure and the report
# take the rest)
README_PASSES = 3000


def conv_net():
    torch = frameworks.torch()
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 2, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(8, 3)).eval()


def test_the_plan_is_what_the_engine_evaluates():
    """At 224 x 224, occlusion's default window (16, stride 8) is 27 x 27 = 729 evaluations, and the
    curves' scoring is what the engine makes of them (completeness's two passes go outside it)."""
    settings = {"input_size": [224, 224], "shapley.mask": "patch:56", "shapley.samples": 2, "lime.num_samples": 20,
                "rise.num_masks": 30, "faithfulness.curves": True, "faithfulness.patch": 16,
                "faithfulness.random_draws": 1, "faithfulness_correlation.runs": 5}
    keys = ["grad", "occlusion", "shapley", "lime", "rise"]
    model = heatkit.load_model(conv_net(), settings=settings)
    planned = cost.plan(model, keys, config.load(settings), 1)
    assert planned.maps == {"grad": 3, "occlusion": 729, "shapley": 2 * 17, "lime": 20, "rise": 30}
    with running(RunState()) as state:  # the run's count of evaluations, its methods' included, adds to it
        run = heatkit.explain(model, np.random.default_rng(0).random((224, 224, 3)), keys, settings=settings,
                              progress=False)
    made = {key: sum(found.values()) for key, found in run.result.evaluations.items()}
    assert made == {key: passes for key, passes in planned.maps.items() if key != "grad"}
    scoring = sum(state.evaluations.values()) - sum(made.values())
    assert scoring == planned.scoring - 2 * len(keys)


def readme_commands() -> list[list[str]]:
    """The own-model commands of the README that name a zoo architecture."""
    text = (ROOT / "README.md").read_text()
    lines = [line.split("#")[0] for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("heatkit -mp t")]


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda argv: argv[1])
def test_the_readmes_commands_plan_few_enough_passes_for_minutes(argv):
    name, methods = argv[1], argv[argv.index("-hm") + 1:]
    cfg = config.load({})
    model = Model.from_settings(name, cfg)  # the architecture; its weights do not change the count
    planned = cost.plan(model, methods, cfg, 1)
    assert None not in planned.maps.values() and planned.total <= README_PASSES, planned
