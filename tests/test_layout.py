"""The package's structure: imports run one way, and the library stands without its jobs layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import daskgmm
from daskgmm._param_constraints import PARAMETER_CONSTRAINTS
from daskgmm.estimator import GaussianMixture

PACKAGE = Path(daskgmm.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Each daskgmm module's imports of other daskgmm modules, at any depth of its code."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
            graph[name].update(c for c in candidates if c in modules and c != "daskgmm")
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_import_cycle_inside_the_package():
    graph = _imports()
    assert "daskgmm.persistence" in graph and graph["daskgmm.estimator"]  # the walk saw imports
    assert _cycle(graph) is None, _cycle(graph)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_library_never_imports_the_jobs_layer():
    graph = _imports()
    core_to_jobs = sorted((m, n) for m, targets in graph.items() for n in targets
                          if not m.startswith("daskgmm.jobs") and n.startswith("daskgmm.jobs"))
    assert core_to_jobs == []
    code = ("import sys, daskgmm\n"
            "from daskgmm import GaussianMixture, fit_many, load_model, save_model, Checkpoint\n"
            "import daskgmm.persistence, daskgmm.checkpoints, daskgmm.callbacks\n"
            "print(sorted(m for m in sys.modules if m.startswith('daskgmm.jobs')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_model_files_and_checkpoints_do_not_import_the_estimator():
    graph = _imports()
    for module in ("daskgmm.persistence", "daskgmm.checkpoints"):
        assert "daskgmm.estimator" not in graph[module], module


def test_the_constraint_table_declares_exactly_the_constructor_parameters():
    assert set(PARAMETER_CONSTRAINTS) == set(GaussianMixture._get_param_names())


def test_the_bayesian_constraint_table_declares_exactly_its_constructor_parameters():
    from daskgmm._param_constraints import BAYESIAN_PARAMETER_CONSTRAINTS
    from daskgmm.bayesian import BayesianGaussianMixture

    assert set(BAYESIAN_PARAMETER_CONSTRAINTS) == set(BayesianGaussianMixture._get_param_names())
