"""The house rules of ``explorer/``, checked on its source: no import cycles, no hidden
module-level state, and the facts every layer reads importable without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "explorer"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _target(name: str) -> str | None:
    """The explorer module an import of ``name`` runs (a name inside a module: that module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path) -> set[str]:
    """Every explorer module ``name`` imports, at module level or inside functions alike."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found = [_target(a.name) for a in node.names if a.name.startswith("explorer")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            if not base.startswith("explorer"):
                continue
            # ``from pkg import mod`` imports the module ``pkg.mod`` when there is one
            found = [_target(f"{base}.{a.name}") if f"{base}.{a.name}" in MODULES
                     else _target(base) for a in node.names]
        else:
            continue
        out.update(m for m in found if m and m != name)
    return out


def test_no_import_cycles():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


MUTATORS = {"append", "extend", "update", "setdefault", "pop", "popitem", "clear", "add",
            "discard", "remove", "insert", "set"}


def _module_level_state(path: Path) -> list[str]:
    """Module-level names that code mutates (``NAME[k] = v``, ``NAME.update(...)``, ``global
    NAME``), module-level locks and events, and the environment read at import."""
    tree = ast.parse(path.read_text())
    top = {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
           for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
           if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            found += [f"global {n}" for n in node.names]
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) \
                        and t.value.id in top:
                    found.append(f"{t.value.id}[...] =")
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) \
                        and t.value.id[:1].isupper() and t.value.id != "self":
                    found.append(f"{t.value.id}.{t.attr} =")  # a class attribute set from outside
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id in top \
                and node.func.attr in MUTATORS:
            found.append(f"{node.func.value.id}.{node.func.attr}()")
    for node in tree.body:  # executed at import
        for sub in ast.walk(node) if not isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else []:
            if isinstance(sub, ast.Call) and ast.unparse(sub.func) in (
                    "threading.Lock", "threading.RLock", "threading.Event", "os.environ.get",
                    "os.getenv"):
                found.append(f"{ast.unparse(sub.func)}() at import")
    return found


def test_no_hidden_module_level_state():
    found = {name: s for name, path in MODULES.items() if (s := _module_level_state(path))}
    assert found == {}


def test_the_run_facts_import_without_torch():
    """The metric, the architectures, the searcher and the progress lines are strings and
    dicts: reading them must not import torch (the driver's stages should not pay for it)."""
    code = ("import sys; import explorer.names, explorer.search.tuning, explorer.search.progress, "
            "explorer.search.pipeline, explorer.spec.config, explorer.storage, explorer.spec, "
            "explorer.train.artifacts; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


#: The layers, bottom first (docs/architecture.md): a module imports its own layer or lower.
LAYERS = (("explorer", "explorer.names", "explorer.errors", "explorer.schema"),
          ("explorer.data", "explorer.models", "explorer.metrics"),
          ("explorer.spec",), ("explorer.storage",), ("explorer.train",), ("explorer.results",),
          ("explorer.report",), ("explorer.tracking",),
          ("explorer.search", "explorer.tuning", "explorer.progress"),
          ("explorer.export", "explorer.predict", "explorer.model_card", "explorer.replay"))


def _layer(module: str) -> int:
    best = max((p for layer in LAYERS for p in layer
                if module == p or module.startswith(p + ".")), key=len)
    return next(i for i, layer in enumerate(LAYERS) if best in layer)


def test_imports_go_down_the_layers_only():
    upward = [f"{name} -> {dep}" for name, path in MODULES.items()
              for dep in _imports(name, path) if _layer(dep) > _layer(name)]
    assert upward == []
