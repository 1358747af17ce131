"""The package imports one way: every ``import`` of every module (those inside functions too) goes
to the module's own layer or a lower one, and no modules import each other in a circle.

Layers, lowest first (docs/ARCHITECTURE.md):

    base       errors, ops (pure tensor helpers), io/, weights/io.py (safetensors in and out), runtime, temporal,
               distributed (shards, the torchrun process group)
    kernels    attention/, nn/ (layers, losses)
    models     models/ (networks; they know nothing of files, registries or methods)
    weights    weights/ (manifest registry, the one loader, converters, fetchers)
    styles     styles/ (the style-method registry and the methods), memory.py
    pipelines  pipelines/, bench.py, evaluate.py, quality.py
    train      train/
    cli        cli/, __main__.py, the public Python API (dynast_cli/__init__.py, api.py)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dynast_cli"
LAYERS = ("base", "kernels", "models", "weights", "styles", "pipelines", "train", "cli")
#: Module prefix -> layer; the longest matching prefix wins.
LAYER_OF = {
    "dynast_cli.errors": "base",
    "dynast_cli.ops": "base",
    "dynast_cli.io": "base",
    "dynast_cli.weights.io": "base",
    "dynast_cli.runtime": "base",
    "dynast_cli.temporal": "base",
    "dynast_cli.distributed": "base",
    "dynast_cli.attention": "kernels",
    "dynast_cli.nn": "kernels",
    "dynast_cli.models": "models",
    "dynast_cli.weights": "weights",
    "dynast_cli.styles": "styles",
    "dynast_cli.memory": "styles",
    "dynast_cli.pipelines": "pipelines",
    "dynast_cli.bench": "pipelines",
    "dynast_cli.evaluate": "pipelines",
    "dynast_cli.quality": "pipelines",
    "dynast_cli.train": "train",
    "dynast_cli.cli": "cli",
    "dynast_cli.__main__": "cli",
    "dynast_cli.api": "cli",
    "dynast_cli": "cli",
}
#: Imports that break the rule, each with why it is tolerated; the test fails when one is no longer
#: made (then it is removed from here).
ALLOWED: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    prefixes = [p for p in LAYER_OF if module == p or module.startswith(p + ".")]
    assert prefixes, f"{module} belongs to no layer: add it to LAYER_OF"
    return LAYER_OF[max(prefixes, key=len)]


def imports(module: str) -> set[str]:
    """The dynast_cli modules ``module`` imports anywhere in its file (``from pkg import sub`` -> pkg.sub)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:  # `import dynast_cli.x.y` names a module; an attribute -> its module
                name = name.rpartition(".")[0]
            if name.startswith("dynast_cli") and name != module:
                found.add(name)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, targets in GRAPH.items():
        for target in sorted(targets):
            if LAYERS.index(layer(target)) > LAYERS.index(layer(module)) and (module, target) not in ALLOWED:
                upward.append(f"{module} ({layer(module)}) imports {target} ({layer(target)})")
    assert not upward, "\n".join(upward)


def test_allowed_exceptions_are_still_needed():
    stale = [f"{a} -> {b}" for a, b in ALLOWED if b not in GRAPH.get(a, set())]
    assert not stale, f"no longer imported, remove from ALLOWED: {stale}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if (v, w) in ALLOWED:
                continue
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = strongly_connected(GRAPH)
    assert not cycles, "modules importing each other in a circle: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_lazy_imports_and_cycles():
    """The parser counts imports inside functions, and the cycle search finds a planted circle."""
    assert "dynast_cli.errors" in imports("dynast_cli.ops")
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    lazy = [m for m, p in MODULES.items() for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, ast.FunctionDef) and any(isinstance(n, ast.ImportFrom) for n in ast.walk(node))]
    assert lazy  # the package does import inside functions: those edges are in GRAPH too


def test_importing_the_package_and_the_cli_stays_light():
    """``import dynast_cli`` (the public API is lazy) and the CLI's start-up do not import PyTorch: the help
    texts that read the style registry are filled in only when a help page is shown."""
    import subprocess
    import sys

    code = "import sys, dynast_cli, dynast_cli.cli; print('torch' in sys.modules, sorted(dynast_cli.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False ['build_method', 'list_methods', 'stylize']"
