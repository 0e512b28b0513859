"""settings.py, --set overrides and the registry stay consistent and checked."""
import types

import pytest

import settings
from core import config
from core.errors import UsageError
from methods.registry import METHODS, REGISTRY, SETTINGS_RULES, expand


def test_every_setting_has_a_rule_and_every_rule_a_setting():
    assert config.load() is not None  # load() refuses either kind of mismatch
    extra = types.ModuleType("edited")
    vars(extra).update({k: v for k, v in vars(settings).items() if not k.startswith("_")}, typo_setting=1)
    with pytest.raises(UsageError, match="unknown setting 'typo_setting'"):
        config.load(extra)


def test_every_method_dict_is_read_by_a_method():
    read = {m.settings for m in METHODS if m.settings}
    assert read == set(SETTINGS_RULES)
    assert all(isinstance(getattr(settings, name), dict) for name in read)


@pytest.mark.parametrize("override, key, value", [
    ("sg.noise_scale=0.2", ("sg", "noise_scale"), 0.2),
    ("sg.noise_scale=1", ("sg", "noise_scale"), 1.0),  # an int where a float is due is converted
    ("sg.postprocess=square", ("sg", "postprocess"), "square"),  # bare words are strings
    ("sg.postprocess=None", ("sg", "postprocess"), None),
    ("ig.steps=128", ("ig", "steps"), 128),
    ("figure.cmap=bwr", ("figure", "cmap"), "bwr"),
    ("seed=3", ("seed",), 3),
])
def test_overrides_are_parsed_and_applied(override, key, value):
    cfg = config.load(overrides=[override])
    for part in key:
        cfg = cfg[part]
    assert cfg == value and type(cfg) is type(value)


def test_overrides_leave_the_module_untouched():
    config.load(overrides=["ig.steps=3"])
    assert settings.ig["steps"] == 64


@pytest.mark.parametrize("override, message", [
    ("ig.stepz=3", "did you mean 'ig.steps'"),
    ("nothing.here=3", "unknown setting 'nothing.here'"),
    ("ig=3", "unknown setting 'ig'"),
    ("ig.steps=2.5", "must be an integer"),
    ("ig.steps=-4", "must be at least 2"),
    ("sg.postprocess=cube", "must be one of None, 'abs', 'square'"),
    ("image_size=8", "must be odd"),
    ("seed=-1", "must be at least 0"),
    ("lrp.epsilon=0", "must be above 0.0"),
    ("figure.cmap=viridis", "must be one of"),
    ("=3", "--set takes KEY=VALUE"),
])
def test_bad_overrides_say_what_to_fix(override, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(".", r"\.")):
        config.load(overrides=[override])


def test_groups_expand_in_order_without_repeats():
    assert expand(["lrp", "grad", "lrp.z"]) == ["lrp.z", "lrp.epsilon", "lrp.alpha1beta0", "lrp.alpha2beta1", "grad"]
    assert expand(["all"]) == list(REGISTRY)


def test_unknown_method_lists_the_valid_names():
    with pytest.raises(UsageError) as error:
        expand(["gradcam++"])
    assert all(key in str(error.value) for key in REGISTRY)
