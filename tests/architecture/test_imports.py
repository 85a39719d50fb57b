"""The import structure shows the architecture: layers only import downwards, and no modules
import each other (directly or round a loop), counting imports inside functions too.

Why a test of our own rather than import-linter: the layering below mixes packages with module
kinds (every feature's ``models.py`` is one layer, the tables, below every feature's services),
which import-linter's contracts express only by listing every module. Forty lines of ``ast``
read the same graph and say exactly which import breaks which rule.

Layers, low to high (see CONTRIBUTING.md):

1. kernel: values and settings every layer may use, with no voucherd imports above them
2. db: the engine, sessions and migrations runner
3. tables: every feature's ``models.py``
4. platform: keys and callers, idempotency, the guard, operations, the ``api`` kit
5. features: the voucher domain's use cases and their routes
6. faces: the dialects and the console, translating onto the features
7. top: the composition module and the entry points (app, cli, worker, Alembic's env)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "voucherd"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "kernel",
        (
            "voucherd",
            "voucherd.errors",
            "voucherd.ids",
            "voucherd.money",
            "voucherd.clock",
            "voucherd.fields",
            "voucherd.formatting",
            "voucherd.pagination",
            "voucherd.config",
            "voucherd.codes",
            "voucherd.auth.caller",
            "voucherd.observability.context",
            "voucherd.observability.logs",
            "voucherd.observability.metrics",
        ),
    ),
    ("db", ("voucherd.db",)),
    ("tables", ()),  # every voucherd.<feature>.models, matched by name below
    (
        "platform",
        (
            "voucherd.auth",
            "voucherd.idempotency",
            "voucherd.guard",
            "voucherd.operations",
            "voucherd.api",
            "voucherd.observability",
        ),
    ),
    (
        "features",
        (
            "voucherd.campaigns",
            "voucherd.customers",
            "voucherd.vouchers",
            "voucherd.publications",
            "voucherd.redemptions",
            "voucherd.delivery",
            "voucherd.tenants",
            "voucherd.exports",
            "voucherd.orders",
            "voucherd.pages",
            "voucherd.imports",
            "voucherd.webhooks",
        ),
    ),
    ("faces", ("voucherd.dialects", "voucherd.console")),
    (
        "top",
        (
            "voucherd.worker",
            "voucherd.composition",
            "voucherd.app",
            "voucherd.cli",
            "voucherd.demo",
            "voucherd.__main__",
            "voucherd.db.migrations",
        ),
    ),
]
RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 3 and parts[2] == "models" and parts[1] not in ("db",):
        return "tables"
    best, best_len = "", -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = name, len(prefix)
    if not best:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        if (
            "versions" in relative.parts
        ):  # migration scripts: run by Alembic, import nothing of ours
            continue
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            continue  # not imported at run time, so no cycle and no coupling at run time
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def import_graph() -> dict[str, frozenset[str]]:
    """Each module of the package and the package modules it imports: parsed once per process
    (every test here reads the same graph), frozen so that no test can change another's."""
    return dict(_parsed_graph())


@cache
def _parsed_graph() -> dict[str, frozenset[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("voucherd"):
                    graph[name].add(target)
    # ``from voucherd.x import y`` names both the package and its module y: keep the module.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
    return {name: frozenset(targets) for name, targets in graph.items()}


def upward_imports(graph: dict[str, frozenset[str]]) -> list[str]:
    return sorted(
        f"{source} ({layer_of(source)}) -> {target} ({layer_of(target)})"
        for source, targets in graph.items()
        for target in targets
        if RANK[layer_of(target)] > RANK[layer_of(source)]
    )


def cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_every_module_is_in_a_layer() -> None:
    for module in import_graph():
        layer_of(module)


def test_no_layer_imports_a_higher_one() -> None:
    assert upward_imports(import_graph()) == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_only_the_top_imports_the_composition_module() -> None:
    graph = import_graph()
    wrong = sorted(
        source
        for source, targets in graph.items()
        if any(t in ("voucherd.composition", "voucherd.app", "voucherd.cli") for t in targets)
        and layer_of(source) != "top"
    )
    assert wrong == []


if __name__ == "__main__":  # python -m tests.architecture.test_imports: the current counts
    current = import_graph()
    upward = upward_imports(current)
    print("\n".join(upward))
    print(f"{len(upward)} upward imports; cycles: {cycles(current)}")
