"""The package's layers: imports point one way, down, and none loops; the installed package is
importable from anywhere, under one top-level name, with its console command; and the bench
scripts import what the package has."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lower layers never import higher ones; a layer may import itself.
LAYERS = {
    "heatkit.defaults": 0,  # the default settings (the repository's settings.py), data only
    "heatkit.base": 0,  # errors, rules, contract, frameworks, images, data, the perturbation engine
    "heatkit.model": 1,  # the model wrapper
    "heatkit.methods": 2,  # the registry and one module per method
    "heatkit.metrics": 2,  # the metric registry and one module per family of metrics
    "heatkit.testmodels": 2,  # the builders of the test models
    "heatkit.pipeline": 3,  # settings, explaining, scores, figures, files, experiments
    "heatkit.api": 4, "heatkit.studies": 4, "heatkit.preparation": 4, "heatkit.generated": 4,  # the Python API
    "heatkit": 4,
    "heatkit.cli": 5, "heatkit.__main__": 5, "heatkit.testmodels.build": 5,  # the command lines, shells over the API
}


def module_files() -> dict[str, Path]:
    files = {}
    for path in [*(ROOT / "heatkit").rglob("*.py"), *(ROOT / "methods").glob("*.py")]:
        relative = path.relative_to(ROOT).with_suffix("")
        parts = ["heatkit", *relative.parts] if relative.parts[0] == "methods" else list(relative.parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = module_files()


def imports(path: Path) -> set[str]:
    """The heatkit modules a file imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                      for alias in node.names}
    return {name for name in found if name in MODULES}


def layer(module: str) -> int | None:
    """The module's layer: that of the longest listed prefix of its name ("heatkit" itself names
    the package's __init__ alone), or None for a module no layer lists."""
    prefixes = [prefix for prefix in LAYERS if module == prefix or prefix != "heatkit" and module.startswith(prefix + ".")]
    return LAYERS[max(prefixes, key=len)] if prefixes else None


GRAPH = {module: imports(path) - {module} for module, path in MODULES.items()}


def test_every_module_has_a_layer():
    assert [module for module in MODULES if layer(module) is None] == []


def upward(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Each module's imports of a higher layer."""
    return {module: found for module in graph
            if (found := {imported for imported in graph[module] if layer(imported) > layer(module)})}


def loop(graph: dict[str, set[str]]) -> list[str] | None:
    """An import loop, as the path around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module, path):
        state[module] = 1
        for imported in graph[module]:
            if state.get(imported) == 1:
                return [*path, module, imported]
            if imported not in state and (found := visit(imported, [*path, module])):
                return found
        state[module] = 2
        return None

    return next((found for module in graph if module not in state and (found := visit(module, []))), None)


def test_imports_point_down():
    assert upward(GRAPH) == {}


def test_no_import_loop():
    assert loop(GRAPH) is None


def test_the_checks_catch_an_upward_import_and_a_loop():
    """The checks above on a made-up graph: the engine importing the model it evaluates, and the
    model importing the engine back."""
    made_up = {"heatkit.base.engine": {"heatkit.model"}, "heatkit.model": {"heatkit.base.engine"}}
    assert upward(made_up) == {"heatkit.base.engine": {"heatkit.model"}}
    assert loop(made_up) == ["heatkit.base.engine", "heatkit.model", "heatkit.base.engine"]


def test_the_engine_sees_the_model_through_an_interface_in_its_own_layer():
    """The engine called the Model by duck typing while the Model imported the engine: an edge no
    check could see. Both now name heatkit.base.evaluated's interface, which the Model declares."""
    from heatkit.base.evaluated import Evaluated
    from heatkit.model import Model

    assert "heatkit.base.evaluated" in GRAPH["heatkit.base.engine"] & GRAPH["heatkit.model"]
    assert Evaluated in Model.__mro__
    members = {name for name in vars(Evaluated) if not name.startswith("_")} | set(Evaluated.__annotations__)
    assert members <= set(dir(Model))


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_the_installed_package_imports_from_anywhere_under_one_name(tmp_path):
    done = python("import heatkit, heatkit.api, heatkit.methods.registry; print(heatkit.api.__file__)", tmp_path)
    assert done.returncode == 0 and Path(done.stdout.strip()) == ROOT / "heatkit" / "api.py"
    for generic in ("core", "settings", "methods"):
        assert python(f"import {generic}", tmp_path).returncode != 0, generic
    for command in ("heatkit", "heatmap_script"):
        help_text = subprocess.run([Path(sys.executable).parent / command, "-h"], cwd=tmp_path, capture_output=True,
                                   text=True)
        assert help_text.returncode == 0 and "methods (-hm)" in help_text.stdout


def test_a_checkout_imports_without_the_install_and_loads_the_registry_once():
    """From the repository's root, with the editable install's finder taken away: heatkit.methods
    comes through the link heatkit/methods, and `methods` as a top-level name is refused, where it
    loaded a second registry of its own."""
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__]; "
            "import heatkit.methods.registry as registry, heatkit.generated; print(registry.__file__)")
    done = python(code, ROOT)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == ROOT / "heatkit" / "methods" / "registry.py"
    again = python("import methods.registry", ROOT)
    assert again.returncode != 0 and "import heatkit.methods, not methods" in again.stderr


def test_the_package_exposes_the_api():
    import heatkit
    from heatkit import api, studies

    assert set(heatkit.API) == set(api.__all__) | set(studies.__all__)
    assert all(getattr(heatkit, name) is getattr(api if name in api.__all__ else studies, name) for name in heatkit.API)


def test_no_module_runs_past_400_lines():
    """settings.py (heatkit/defaults.py) is exempt: it is every setting with its comment, data that
    the registries generate in part, not code."""
    long = {module: lines for module, path in MODULES.items()
            if module != "heatkit.defaults" and (lines := len(path.read_text().splitlines())) > 400}
    assert long == {}


def test_every_bench_scripts_imports_name_what_the_package_has():
    """The benchmarks take minutes to an hour and no test runs them: a module renamed under
    bench/windowed.py had left it failing at its first line."""
    files = module_files()
    for script in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "heatkit":
                assert node.module in files, (script.name, node.module)
                defined = top_level_names(files[node.module])
                for alias in node.names:
                    assert f"{node.module}.{alias.name}" in files or alias.name in defined, \
                        (script.name, node.module, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("heatkit.") or alias.name in files, (script.name, alias.name)


def top_level_names(path: Path) -> set[str]:
    """The names a module binds at its top level: its functions, classes, assignments and imports."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names
