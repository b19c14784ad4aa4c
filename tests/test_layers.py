"""The packages form one-way layers, and no package's modules import each other in a circle.

Every import of every module counts: at the top, inside functions (imported lazily to save start-up time is
still a dependency) and under ``TYPE_CHECKING``. A package may import packages of a lower layer and its own
modules; never a package of its own layer or a higher one. ``tests/`` may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The allowed order, lowest first. Packages of one layer do not import each other.
LAYERS: list[set[str]] = [
    {"core", "protos"},  # records, image codec, config machinery; the generated gRPC code
    {"policy"},  # the Janus model, its tokenizer, its sampling distribution
    {"weightsync"},  # moving weights between processes
    {"rollout", "rewards", "learner"},  # the stages
    {"evaluation"},  # the benchmark harness (an application of the stages; the training loop calls into it)
    {"cluster"},  # the training loop: composes every section's config, the eval section included
    {"benchmarks"},
]
LAYER_OF = {package: i for i, layer in enumerate(LAYERS) for package in layer}
NOT_PACKAGES = {"tests"}


def project_packages(root: Path = REPO) -> list[str]:
    return sorted(p.parent.name for p in root.glob("*/__init__.py") if p.parent.name not in NOT_PACKAGES)


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str], root: Path = REPO) -> set[str]:
    """Project modules ``path`` imports anywhere in its body (``from p import m`` counts as module p.m when m
    is a module, else as p). Relative imports are resolved against the module's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] in LAYER_OF or t.split(".")[0] in known:
                # the deepest project module the name denotes (``import a.b.c`` of a function c is a.b)
                while t and t not in known:
                    t = t.rpartition(".")[0]
                if t:
                    out.add(t)
    return out


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    files = [f for pkg in project_packages(root) for f in (root / pkg).rglob("*.py")]
    known = {module_name(f, root) for f in files}
    return {module_name(f, root): imported_modules(f, known, root) for f in files}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        src = module.split(".")[0]
        for t in sorted(targets):
            dst = t.split(".")[0]
            if dst != src and LAYER_OF[dst] >= LAYER_OF[src]:
                how = "the same layer as" if LAYER_OF[dst] == LAYER_OF[src] else "a higher layer than"
                bad.append(f"{module} imports {t} ({dst} is in {how} {src})")
    return bad


def package_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles between modules of one package (Tarjan's strongly connected components)."""
    edges = {m: {t for t in ts if t.split(".")[0] == m.split(".")[0] and t != m} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def test_every_package_has_a_layer():
    missing = [p for p in project_packages() if p not in LAYER_OF]
    assert not missing, f"packages without a layer: {missing}; add each to LAYERS in tests/test_layers.py"


def test_packages_import_only_lower_layers():
    bad = layer_violations(import_graph())
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycle_inside_a_package():
    cycles = package_cycles(import_graph())
    assert not cycles, "modules that import each other (use a factory module): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


# ------------------------------------------------------------------------------------- the checker itself


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return tmp_path


def test_checker_sees_imports_in_functions_and_under_type_checking(tmp_path):
    root = _tree(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rollout.b import X\n",
            "rollout/__init__.py": "",
            "rollout/b.py": "def f():\n    import cluster.c\n    from rewards import d\n",
            "rewards/__init__.py": "",
            "rewards/d.py": "from . import e\n",
            "rewards/e.py": "from .d import thing\n",
            "cluster/__init__.py": "",
            "cluster/c.py": "import rollout.b\nimport numpy\n",
        },
    )
    graph = import_graph(root)
    assert graph["core.a"] == {"rollout.b"} and graph["rollout.b"] == {"cluster.c", "rewards.d"}
    assert graph["rewards.d"] == {"rewards.e"} and graph["cluster.c"] == {"rollout.b"}
    assert layer_violations(graph) == [
        "core.a imports rollout.b (rollout is in a higher layer than core)",
        "rollout.b imports cluster.c (cluster is in a higher layer than rollout)",
        "rollout.b imports rewards.d (rewards is in the same layer as rollout)",
    ]
    assert package_cycles(graph) == [["rewards.d", "rewards.e"]]
