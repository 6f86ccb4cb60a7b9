"""The library's layout (issue 11): no import cycles and no imports of another module's private names."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "crowdselect_lib"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _resolve(mod: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(mods: dict[str, Path]):
    """(module, imported module, imported name or None) for every import of the package's own modules."""
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("crowdselect_lib"):
                        yield mod, a.name, None
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(mod, path, node)
                if not target.startswith("crowdselect_lib"):
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    yield (mod, sub, None) if sub in mods else (mod, target, a.name)


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, target, _ in _imports(mods):
        if target in mods and target != mod:
            graph[mod].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def test_no_import_cycles():
    """Function-local imports count too: a cycle hidden inside a function is still a cycle."""
    graph = _graph()
    # a package's __init__ re-exporting its own submodules is not a cycle of concepts
    for mod in graph:
        graph[mod] = {t for t in graph[mod] if not (mod.startswith(t + ".") and (PKG.parent / t.replace(".", "/")
                                                                                  / "__init__.py").exists())}
    assert _cycles(graph) == []


def test_no_private_imports_across_modules():
    bad = [(m, t, n) for m, t, n in _imports(_modules()) if n and n.startswith("_") and n != "__version__"
           and t != m]
    assert bad == []


def test_cycle_checker_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_modules_are_a_few_hundred_lines():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
