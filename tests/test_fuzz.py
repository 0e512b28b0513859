"""Two seeded fuzzers: command lines drawn by hypothesis, and mutated image files.

FUZZ_CASES sets the number of cases of each (default 150, the CI-sized run), e.g.
    FUZZ_CASES=10000 .venv/bin/python -m pytest tests/test_fuzz.py
"""
import functools
import io
import itertools
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import run_cli
from heatkit.base.errors import UsageError
from heatkit.base.images import load_image
from heatkit.methods.registry import METHODS, groups
from heatkit.model.keras_net import KerasNet
from heatkit.pipeline import config

CASES = int(os.environ.get("FUZZ_CASES", "150"))
SEED = 20261126
# Cheap values for the settings that set the cost of a run; the fuzzer's own options come after.
# The gradient family runs on torch unless a case says otherwise: every Keras run adds its
# analyzers to TensorFlow's one graph, which slows every later test of the session.
CHEAP = ["backend='torch'", "sg.augment_by_n=2", "ig.steps=3", "pda.levels=2", "shapley.samples=1",
         "lime.num_samples=10", "shap.nsamples=10", "shap.n_segments=4", "rise.num_masks=10", "rise.cell_size=3",
         "mp.iterations=2", "mp.mask_size=3", "sanity.noise_levels=[0.5]", "growing_patch.sizes=[1, 3]", "figure.dpi=30",
         "figure.top_k=2"]


@pytest.fixture(scope="module")
def files(small_model_path, gap_model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_inputs")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 17), dtype=np.uint8)).save(folder / "gray.png")
    (folder / "notes.png").write_text("not an image")
    (folder / "labels.txt").write_text("\n".join(f"class {i}" for i in range(256)))
    (folder / "model.txt").write_text("not a model")
    assert run_cli("-mp", small_model_path, "-hm", "grad", "-op", folder / "runs", "-q") == 0
    [record] = (folder / "runs").glob("*/run.json")
    return {"small": small_model_path, "gap": gap_model_path, "folder": folder, "record": record}


@pytest.fixture
def loaded_once(monkeypatch):
    """Each Keras file loaded once for all cases: the fuzzer tests the CLI, not Keras' loader."""
    monkeypatch.setattr(KerasNet, "load", functools.lru_cache(KerasNet.load))


SETTING_KEYS = sorted(config.flatten(config.load()))
VALUES = st.one_of(st.integers(-3, 12), st.floats(-1.5, 2.5), st.none(), st.booleans(),
                   st.sampled_from(["'keras'", "'abs'", "'layer'", "[1, 2]", "[-1]", "[]", "(3,)", "{}", "x", "",
                                    "1e9", "'conv2'", "['conv1']", "nan", "inf"]))
METHOD_WORDS = st.sampled_from([m.key for m in METHODS] + list(groups()) + ["gradd", "", "lrp.", "all all"])


def option(name):
    """One option of the command line, with a value that is valid or not."""
    path = st.sampled_from(["small", "gap", "folder", "folder/gray.png", "folder/notes.png", "folder/none.png",
                            "folder/model.txt", "folder/labels.txt", "folder/run.json", "record"])
    choices = {
        "-ip": st.lists(path, min_size=1, max_size=2),
        "-mp": path.map(lambda p: [p]),
        "-hm": st.lists(METHOD_WORDS, min_size=1, max_size=3),
        "-cl": st.one_of(st.integers(-2, 260), st.sampled_from(["cat", "1.5"])).map(lambda v: [str(v)]),
        "-cp": st.one_of(st.integers(-2, 260), st.just("x")).map(lambda v: [str(v)]),
        "--backend": st.sampled_from(["keras", "torch", "jax"]).map(lambda v: [v]),
        "--device": st.sampled_from(["cpu", "cuda", "tpu"]).map(lambda v: [v]),
        "--preprocess": st.sampled_from(["unit", "byte", "imagenet", "half"]).map(lambda v: [v]),
        "--labels": path.map(lambda p: [p]),
        "--sanity": st.sampled_from(["cascading", "independent", "noise", "shuffle"]).map(lambda v: [v]),
        "--sweep": st.tuples(st.sampled_from(SETTING_KEYS + ["ig.stepz", ""]), st.lists(VALUES, max_size=3)).map(
            lambda kv: [f"{kv[0]}={','.join(map(str, kv[1]))}"]),
        "--seed": st.one_of(st.integers(-2, 2**33), st.just("s")).map(lambda v: [str(v)]),
        "--set": st.tuples(st.sampled_from(SETTING_KEYS + ["ig.stepz", "x", ""]), VALUES).map(
            lambda kv: [f"{kv[0]}={kv[1]}"]),
        "--rerun": path.map(lambda p: [p]),
    }
    flags = ["--compare-backends", "--trust-model", "--growing-patch", "-q", "-v"]
    if name in flags:
        return st.just([name])
    return choices[name].map(lambda value: [name, *value])


COMMAND_LINES = st.lists(st.sampled_from([*("-ip -mp -hm -cl -cp --backend --device --preprocess --labels --sanity "
                                            "--sweep --seed --set --rerun").split(),
                                          "--compare-backends", "--trust-model", "--growing-patch", "-q", "-v"]),
                         max_size=5).flatmap(lambda names: st.tuples(*map(option, names)))
# Stray words in one case of four: most of them end the run at argparse.
RAW_WORDS = st.one_of(st.just([]), st.just([]), st.just([]),
                      st.lists(st.one_of(st.text(max_size=6), st.sampled_from(["-", "--", "-hm", "--set", "-h=1"])),
                               min_size=1, max_size=3))


@seed(SEED)
@settings(max_examples=CASES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(options=COMMAND_LINES, raw=RAW_WORDS)
def test_no_command_line_raises_or_exits_outside_0_1_2(options, raw, files, loaded_once, tmp_path, capsys):
    def resolve(word):
        head, _, rest = word.partition("/")
        return str(files[head] / rest) if head in files and rest else str(files.get(word, word))

    out = tmp_path / "out"
    shutil.rmtree(out, ignore_errors=True)  # hypothesis reruns a failing case in the same tmp_path
    argv = [resolve(word) for word in itertools.chain(*options)] + raw
    argv += ["-hm", "grad", "occlusion"] * ("-hm" not in argv) + ["-mp", resolve("small")] * ("-mp" not in argv)
    argv = [arg for setting in CHEAP for arg in ("--set", setting)] + argv + ["-op", str(out)]
    code = run_cli(*argv)
    err = capsys.readouterr().err
    assert code in (0, 1, 2), (argv, code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, (argv, err)
        assert not out.exists() or not any(out.iterdir()), argv


def seed_images() -> dict[str, bytes]:
    """Small valid images of every mode and format the loader handles."""
    rng = np.random.default_rng(SEED)
    gray = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    images = {
        "gray.png": Image.fromarray(gray), "rgb.png": Image.fromarray(rgb),
        "rgba.png": Image.fromarray(rng.integers(0, 256, (9, 11, 4), dtype=np.uint8)),
        "16bit.png": Image.fromarray(rng.integers(0, 65536, (9, 11), dtype=np.uint16)),
        "palette.png": Image.fromarray(rgb).quantize(8), "gray.jpg": Image.fromarray(gray),
        "rgb.jpg": Image.fromarray(rgb), "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "rgb.bmp": Image.fromarray(rgb), "rgb.tiff": Image.fromarray(rgb),
        "palette.gif": Image.fromarray(rgb).quantize(8), "rgb.webp": Image.fromarray(rgb),
    }
    encoded = {}
    for name, image in images.items():
        buffer = io.BytesIO()
        image.save(buffer, format={"jpg": "JPEG", "tiff": "TIFF"}.get(name.split(".")[1], name.split(".")[1].upper()))
        encoded[name] = buffer.getvalue()
    return encoded


def mutate(data: bytes, donor: bytes, rng: np.random.Generator) -> bytes:
    """One mutation: flipped bytes (half of them in the header), a cut, another format's header,
    a repeated or zeroed span."""
    data = bytearray(data)
    kind = rng.integers(5)
    if kind == 0:
        for _ in range(rng.integers(1, 9)):
            at = rng.integers(min(len(data), 64)) if rng.random() < 0.5 else rng.integers(len(data))
            data[at] ^= 1 << rng.integers(8)
    elif kind == 1:
        data = data[: rng.integers(len(data))]
    elif kind == 2:
        cut = rng.integers(4, 33)
        data[:cut] = donor[:cut]
    elif kind == 3:
        start = rng.integers(len(data))
        span = data[start: start + rng.integers(1, 64)]
        data[start:start] = span * int(rng.integers(1, 4))
    else:
        start = rng.integers(len(data))
        data[start: start + rng.integers(1, 32)] = bytes(min(32, len(data) - start))
    return bytes(data)


@pytest.mark.parametrize("shape", [(15, 15, 1), (12, 12, 3)])
def test_mutated_image_files_load_correctly_or_are_refused(shape, tmp_path):
    """Every mutated file is an image of the model's shape in [0, 1], or a UsageError (exit 2)."""
    originals = seed_images()
    names = sorted(originals)
    rng = np.random.default_rng([SEED, shape[-1]])
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(CASES // 2):
        name, donor = names[case % len(names)], names[rng.integers(len(names))]
        data = mutate(originals[name], originals[donor], rng)
        path = tmp_path / f"case.{name.split('.')[1]}"
        path.write_bytes(data)
        try:
            pixels = load_image(path, shape, max_pixels=1_000_000)
        except UsageError as error:
            assert "\n" not in str(error)
            outcomes["refused"] += 1
            continue
        assert pixels.shape == shape and pixels.dtype == np.float64, (name, case)
        assert np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1, (name, case)
        outcomes["loaded"] += 1
    assert outcomes["loaded"] and outcomes["refused"]  # both paths were exercised
