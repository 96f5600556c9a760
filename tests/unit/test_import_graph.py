"""The tree's imports point one way: no circles, and the layers

    cli / cli_swap / render  ->  api  ->  engine (swap, switch)  ->  mysql, coord, config

(runtime imports, including lazy ones inside functions; ``if TYPE_CHECKING:`` blocks
are for the type checker only and do not count).  The engine never prints: no click,
no print() in swap/, switch/, mysql/, coord/.  intermission never imports roleswap."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("roleswap", "intermission")


def modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    out = {}
    for pkg in packages:
        for p in (root / pkg).rglob("*.py"):
            parts = list(p.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def _runtime_tree(path: Path) -> ast.Module:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    return tree


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """module -> the project modules it imports (``from pkg import mod`` -> pkg.mod)."""
    mods = modules(root, packages)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        base = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(_runtime_tree(p)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    up = base[: len(base) - (node.level - 1)]
                    mod = ".".join(up + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m:
                    graph[m].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_detector_finds_a_circle_and_a_lazy_import(tmp_path: Path) -> None:
    pkg = tmp_path / "roleswap"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from roleswap.b import x\n")
    (pkg / "b.py").write_text("def f():\n    from roleswap import c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import roleswap.b\n"
                              "from . import a\n")
    (tmp_path / "intermission").mkdir()
    g = import_graph(tmp_path)
    assert g["roleswap.a"] == {"roleswap.b"} and g["roleswap.b"] == {"roleswap.c"}
    assert g["roleswap.c"] == {"roleswap.a"}  # the TYPE_CHECKING import does not count
    assert cycles(g) == [["roleswap.a", "roleswap.b", "roleswap.c"]]


def test_no_import_circles() -> None:
    assert cycles(import_graph(ROOT)) == []


def _layer(mod: str) -> str:
    parts = mod.split(".")
    if parts[0] == "intermission":
        return "intermission"
    return parts[1] if len(parts) > 1 else "roleswap"


# what each layer must never import (directly or lazily)
FORBIDDEN = {
    "mysql": {"swap", "switch", "api", "cli", "cli_swap", "render", "lab", "testing", "demo"},
    "coord": {"swap", "switch", "api", "cli", "cli_swap", "render", "lab", "testing", "demo", "mysql"},
    "swap": {"api", "cli", "cli_swap", "render", "lab", "testing", "demo"},
    "switch": {"api", "cli", "cli_swap", "render", "lab", "testing", "demo"},
    "api": {"cli", "cli_swap", "render", "testing", "demo"},
    "maintain": {"cli", "cli_swap", "render", "testing", "demo"},
    "events": {"api", "cli", "cli_swap", "render"},
    "config": {"swap", "api", "cli", "cli_swap", "render", "mysql", "coord", "lab"},
    "errors": {"swap", "switch", "api", "cli", "cli_swap", "render", "mysql", "coord", "config"},
}


def test_layers_point_one_way() -> None:
    bad = []
    for mod, deps in import_graph(ROOT).items():
        layer = _layer(mod)
        for d in deps:
            into_roleswap = layer == "intermission" and d.startswith("roleswap")
            upward = _layer(d) in FORBIDDEN.get(layer, set()) and not d.startswith("intermission")
            if into_roleswap or upward:
                bad.append(f"{mod} -> {d}")
    assert bad == []


def test_the_engine_never_prints() -> None:
    bad = []
    for mod, path in modules(ROOT).items():
        if _layer(mod) not in ("swap", "switch", "mysql", "coord", "api", "events", "maintain"):
            continue
        tree = _runtime_tree(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n == "click" or n.startswith("click.") for n in names):
                    bad.append(f"{mod} imports click")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                bad.append(f"{mod}:{node.lineno} calls print()")
    assert bad == []
