#!/usr/bin/env python3
"""Print the import graph of ``vgi_rpc/`` and check that it only goes one way.

    python scripts/import_graph.py            # the graph, module by module, then the verdict
    python scripts/import_graph.py --check    # only the verdict (``make test`` runs this)

Edges are read from the source with ``ast`` (nothing is imported): ``import
vgi_rpc.x`` and ``from vgi_rpc.x import y`` (an edge to ``vgi_rpc.x.y`` when that is
a module), at module level, inside a function (*lazy*, shown ``~>``) or under ``if
TYPE_CHECKING:`` (*typing only*, shown ``..>``, ignored by the checks: it never runs).
Importing ``vgi_rpc.a.b`` also runs the packages' ``__init__`` modules; those
implicit edges are not drawn.

Every module belongs to one layer (``LAYERS``); a module in no layer is an
error, so the rules stay complete as the package grows. The checks, over the
edges that run (module level and lazy):

* no cycle;
* the core imports no transport, no instrumentation, no testing kit, no app
  and not the package facade -- except the one auto-attach seam
  (``ALLOWED``: ``vgi_rpc.server`` -> ``vgi_rpc.sentry``, lazily);
* a transport imports no other transport, no testing kit, no app and not the
  facade, and an instrumentation only inside a function (``make_wsgi_app``'s
  ``sentry_config=``/``otel_config=``).

Exit status 0 when every check passes, 1 otherwise (each violation is printed).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "vgi_rpc"

LAYERS: dict[str, tuple[str, ...]] = {
    "core": (
        "vgi_rpc._extras",
        "vgi_rpc._ipc_framing",
        "vgi_rpc._types",
        "vgi_rpc.auth",
        "vgi_rpc.call",
        "vgi_rpc.client",
        "vgi_rpc.context",
        "vgi_rpc.errors",
        "vgi_rpc.hooks",
        "vgi_rpc.methods",
        "vgi_rpc.server",
        "vgi_rpc.streams",
        "vgi_rpc.wire",
    ),
    "transport": ("vgi_rpc.pipe", "vgi_rpc._pipe_io", "vgi_rpc.http"),
    "instrumentation": (
        "vgi_rpc.sentry",
        "vgi_rpc._sentry_config",
        "vgi_rpc._sentry_hook",
        "vgi_rpc._sentry_redaction",
        "vgi_rpc._sentry_sdk",
        "vgi_rpc._sentry_spans",
        "vgi_rpc._sentry_values",
        "vgi_rpc.otel",
    ),
    "kit": ("vgi_rpc.testing",),
    "app": ("vgi_rpc.demo", "vgi_rpc._demo_table"),
    "facade": ("vgi_rpc",),
}
"""Layer -> module prefixes (a prefix covers the module and its submodules; ``vgi_rpc`` itself
only the package's ``__init__``); the longest prefix wins."""

FORBIDDEN: dict[str, frozenset[str]] = {
    "core": frozenset({"transport", "instrumentation", "kit", "app", "facade"}),
    "transport": frozenset({"kit", "app", "facade"}),
}
"""Layer -> the layers it must not import at all (besides the rule between transports)."""

FORBIDDEN_AT_MODULE_LEVEL: dict[str, frozenset[str]] = {
    "transport": frozenset({"instrumentation"}),
}
"""Layer -> the layers it may import only inside a function (``make_wsgi_app(sentry_config=...)``
imports ``vgi_rpc.sentry`` when it is given one, so ``import vgi_rpc.http`` never imports Sentry)."""

TRANSPORT_OF: dict[str, str] = {"vgi_rpc.pipe": "pipe", "vgi_rpc._pipe_io": "pipe", "vgi_rpc.http": "http"}
"""Transport module prefix -> which transport it belongs to (the pipe's I/O module is the pipe's)."""

ALLOWED: frozenset[tuple[str, str, str]] = frozenset(
    {("vgi_rpc.server", "vgi_rpc.sentry", "lazy")},  # the auto-attach seam, RpcServer._auto_attach
)
"""(importer, imported, kind) edges exempt from the layer rules."""


@dataclass(frozen=True, order=True)
class Edge:
    """One import of a vgi_rpc module by another."""

    source: str
    target: str
    kind: str  # "top" | "lazy" | "typing"
    line: int


def module_names(root: Path) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` under ``vgi_rpc/``."""
    out: dict[str, Path] = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with its kind: module level, inside a function, or typing only."""

    def walk(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, kind
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), "typing")
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), kind)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, "typing" if kind == "typing" else "lazy")
            else:
                yield from walk(child, kind)

    yield from walk(tree, "top")


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def edges(root: Path = ROOT) -> tuple[dict[str, Path], list[Edge]]:
    """The package's modules and every import edge between them."""
    modules = module_names(root)
    found: set[Edge] = set()
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node, kind in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(module, node, path.name == "__init__.py")
                if base is None:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    while target not in modules and "." in target:
                        target = target.rsplit(".", 1)[0]
                    if target != module:
                        found.add(Edge(module, target, kind, node.lineno))
    return modules, sorted(found)


def layer_of(module: str) -> str | None:
    """The layer whose longest prefix covers *module*, or ``None``."""
    best: tuple[int, str] | None = None
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            covers = module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))
            if covers and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return best[1] if best else None


def _transport(module: str) -> str:
    return next(
        t for prefix, t in TRANSPORT_OF.items() if module == prefix or module.startswith(prefix + ".")
    )


def find_cycles(modules: list[str], runtime: list[Edge]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), as a sorted module list."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in runtime:
        graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    sys.setrecursionlimit(max(1000, 10 * len(modules)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def violations(modules: dict[str, Path], all_edges: list[Edge], root: Path = ROOT) -> list[str]:
    """What breaks the rules, one readable line each."""
    out: list[str] = []
    for module in modules:
        if layer_of(module) is None:
            out.append(f"{module}: in no layer (add it to LAYERS in scripts/import_graph.py)")
    runtime = [e for e in all_edges if e.kind != "typing"]
    for cycle in find_cycles(list(modules), runtime):
        out.append("import cycle: " + " <-> ".join(cycle))
    for e in runtime:
        src, dst = layer_of(e.source), layer_of(e.target)
        if src is None or dst is None or (e.source, e.target, e.kind) in ALLOWED:
            continue
        same_transport = src == dst == "transport" and _transport(e.source) != _transport(e.target)
        at_module_level = e.kind == "top" and dst in FORBIDDEN_AT_MODULE_LEVEL.get(src, ())
        if dst in FORBIDDEN.get(src, ()) or same_transport or at_module_level:
            where = modules[e.source].relative_to(root)
            out.append(f"{src} -> {dst}: {e.source} imports {e.target} ({e.kind}, {where}:{e.line})")
    return out


def render(modules: dict[str, Path], all_edges: list[Edge]) -> str:
    """The graph as text: each module with its layer and what it imports."""
    arrows = {"top": "->", "lazy": "~>", "typing": "..>"}
    lines = ["vgi_rpc import graph  (-> module level, ~> inside a function, ..> typing only)", ""]
    for layer in LAYERS:
        members = [m for m in modules if layer_of(m) == layer]
        if not members:
            continue
        lines.append(f"[{layer}]")
        for module in members:
            outgoing = sorted({(e.target, e.kind) for e in all_edges if e.source == module})
            targets = (
                ", ".join(f"{arrows[kind]} {target}" for target, kind in outgoing) or "(nothing of vgi_rpc)"
            )
            lines.append(f"  {module}: {targets}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the graph (unless ``--check``) and the verdict; 1 on a violation."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="print only the verdict")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to read (default: this one)")
    args = parser.parse_args(argv)
    modules, all_edges = edges(args.root)
    if not args.check:
        print(render(modules, all_edges))
    problems = violations(modules, all_edges, args.root)
    runtime = sum(1 for e in all_edges if e.kind != "typing")
    if problems:
        for p in problems:
            print(f"FAIL  {p}")
        print(f"import-graph: {len(problems)} problem(s) in {len(modules)} modules")
        return 1
    print(
        f"import-graph: ok -- {len(modules)} modules, {runtime} runtime edges, no cycle, "
        "the core imports no transport or instrumentation (but the auto-attach seam)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
