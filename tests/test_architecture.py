"""The package's shape: no import circles, networks independent of the rest, a layout the clone's folder cannot
shadow, set-up files that agree with each other."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pds.storage import REPO_ROOT

SRC = REPO_ROOT / "src" / "pds"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def pds_imports(path: Path) -> dict[str, bool]:
    """Every pds module imported by the file (module level or inside a function) → whether at module level."""
    tree = ast.parse(path.read_text())
    found: dict[str, bool] = {}
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            if n.split(".")[0] == "pds":
                found[n] = found.get(n, False) or id(node) in top
    return found


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    g = {}
    for name, path in MODULES.items():
        deps = set()
        for imported in pds_imports(path):
            # "pds.x.y" may be a module or a name in module "pds.x"
            while imported and imported not in MODULES:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and imported != "pds":
                deps.add(imported)
        g[name] = deps
    return g


def test_no_import_circles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in g[m]:
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in g:
        if m not in state:
            visit(m)


# The layers of the package, each importing only from itself and the layers before it (README.md, "The package").
LAYERS = ((), ("pds.models", "pds.integrations"), ("pds.exact",), ("pds.lab",), ("pds.lessons",), ("pds.publish",),
          ("pds.cli", "pds.__main__"))


def layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return 0  # the method: the top-level modules


def test_every_layer_imports_only_the_layers_before_it():
    wrong = {name: sorted(d for d in deps if layer(d) > layer(name)) for name, deps in graph().items()}
    assert not {k: v for k, v in wrong.items() if v}, "imports from a later layer (see README.md, \"The package\")"
    assert {layer(m) for m in MODULES} == set(range(len(LAYERS)))


def test_the_method_is_small_and_needs_neither_models_nor_laboratory():
    # the paper's settings table (pds.configs) is data beside the method, not counted
    method = [p for name, p in MODULES.items() if layer(name) == 0 and name not in ("pds", "pds.configs")]
    lines = sum(len(p.read_text().splitlines()) for p in method)
    assert lines < 3000, f"the top-level method is {lines} lines"
    code = ("import sys, pds, pds.samplers, pds.scores, pds.integrations.kdiffusion; "
            "assert not [m for m in sys.modules if m.startswith(('pds.models', 'pds.exact', 'pds.lab', 'diffusers'))]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_publishing_needs_neither_the_lessons_nor_the_experiments():
    """Building the book and the findings (pds.publish) imports of the laboratory only its verdicts: no network, no
    experiment, no lesson (so `make book` does not load them)."""
    assert not {d for name in MODULES if name.startswith("pds.publish") for d in graph()[name]
                if d.startswith(("pds.lessons", "pds.models", "pds.exact")) or (d.startswith("pds.lab") and
                                                                                 d != "pds.lab.verdicts")}
    code = ("import sys, pds.publish.book, pds.publish.findings, pds.publish.rendered; "
            "assert not [m for m in sys.modules if m.startswith(('pds.models', 'pds.lessons', 'pds.exact', "
            "'pds.lab.experiments'))]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_exact_layer_is_pure_maths():
    """pds.exact imports no network, no file storage and no laboratory: the paper's settings come from pds.configs."""
    assert not {d for name in MODULES if name.startswith("pds.exact") for d in graph()[name]
                if d.startswith(("pds.models", "pds.lab", "pds.storage"))}


def test_networks_import_nothing_else_from_pds():
    nets = ("pds.models", "pds.models.ncsnpp", "pds.models.refinenet")
    for name in nets:
        outside = {d for d in graph()[name] if d not in nets and d != "pds.schedules"}
        assert not outside, f"{name} imports {outside}"
    code = ("import sys, pds.models; "
            "assert not [m for m in sys.modules if m.startswith('pds.models.') and m.rpartition('.')[2] not in "
            "('ncsnpp', 'refinenet')]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_function_local_imports_of_pds_hide_a_circle():
    """Inside the package, pds modules are imported at module level only (the CLI included)."""
    local = {name: [m for m, top in pds_imports(path).items() if not top] for name, path in MODULES.items()}
    assert not {k: v for k, v in local.items() if v}


def test_import_from_the_folder_that_holds_a_clone_named_pds(tmp_path):
    """A clone named `pds` in the working directory must not shadow the package (src layout)."""
    (tmp_path / "pds").symlink_to(REPO_ROOT, target_is_directory=True)
    code = ("import pds.lab.data, pds.models.checkpoints; "
            "assert callable(pds.lab.data.load_idx_images), pds.lab.data.__file__")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, env=env)


def test_setup_files_agree():
    req = (REPO_ROOT / "requirements.txt").read_text()
    assert "torch==" in req and "torchvision==" in req
    env = (REPO_ROOT / "environment.yml").read_text()
    assert "-r requirements.txt" in env and "-e ." in env  # the conda file installs exactly the pinned set
    assert "python=3.11" in env
    toml = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.11"' in toml
