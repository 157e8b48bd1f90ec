"""The shape of the package, computed from its source with ``ast`` (nothing is imported):
no import cycle, no arrow pointing up a floor, the few rules the layout promises, modules of
a readable size, and function-level imports only where they keep an optional dependency
optional."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "mi_worker"

# Floors, top first: a module may import only modules on its own floor or below (and the
# graph must still be acyclic). Everything of one package shares its floor unless named.
FLOORS: List[Tuple[int, Set[str]]] = [
    (9, {"mi_worker.__main__", "mi_worker.cli", "mi_worker.cli_errors", "mi_worker.cli_monitor",
         "mi_worker.cli_requests", "mi_worker.cli_context"}),
    (8, {"mi_worker.runner", "mi_worker.sandbox.cli", "mi_worker.dashboard", "mi_worker.doctor"}),
    (7, {"mi_worker.jobs"}),
    (6, {"mi_worker.reversal", "mi_worker.reconcile", "mi_worker.retention",
         "mi_worker.catalog_sync", "mi_worker.workflows.engine"}),
    (5, {"mi_worker.worker", "mi_worker.alerts", "mi_worker.metrics", "mi_worker.docs",
         "mi_worker.workflows.contract"}),
    (4, {"mi_worker.queue", "mi_worker.claim_size", "mi_worker.his_call", "mi_worker.his_async",
         "mi_worker.monitor", "mi_worker.observe",
         "mi_worker.stats"}),
    (3, {"mi_worker.sandbox", "mi_worker.db", "mi_worker.config", "mi_worker.config_model",
         "mi_worker.files", "mi_worker.workflows.decide"}),
    (2, {"mi_worker.gateway", "mi_worker.logs", "mi_worker.workflows"}),
    (1, {"mi_worker.states"}),
    (0, {"mi_worker", "mi_worker.config_fields", "mi_worker.masking", "mi_worker.notify",
         "mi_worker.gateway.catalog", "mi_worker.display", "mi_worker.wait_plan"}),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def imports(path: Path) -> List[Tuple[str, bool]]:
    """(imported mi_worker module, imported inside a function) for every import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nested: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    found = []
    for node in ast.walk(tree):
        inner = id(node) in nested
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mi_worker"):
            subs = [f"{node.module}.{a.name}" for a in node.names
                    if _is_module(f"{node.module}.{a.name}")]
            # `from pkg import submodule` depends on the submodule, not on pkg's __init__
            found.extend((s, inner) for s in subs)
            if len(subs) < len(node.names):
                found.append((node.module, inner))
        elif isinstance(node, ast.Import):
            found.extend((a.name, inner) for a in node.names if a.name.startswith("mi_worker"))
    return found


def graph() -> Dict[str, Set[str]]:
    g: Dict[str, Set[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        name = module_name(path)
        g[name] = {m for m, _ in imports(path) if m != name}
    return g


def floor(module: str) -> int:
    best = None
    for level, names in FLOORS:
        for n in names:
            # the package root holds only __version__: it is no floor for its children;
            # cli_*, doctor_*, config_* modules are their family's parts, on its floor
            if module == n or (n != "mi_worker" and module.startswith((n + ".", n + "_"))):
                if best is None or len(n) > best[1]:
                    best = (level, len(n))
    assert best is not None, f"{module} has no floor in FLOORS: place it"
    return best[0]


def cycles(g: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_no_arrow_points_up_a_floor():
    up = [(a, b) for a, deps in graph().items() for b in deps if floor(b) > floor(a)]
    assert not up, "upward imports: " + ", ".join(f"{a} -> {b}" for a, b in up)


def test_the_layout_rules():
    g = graph()
    for name, deps in g.items():
        if name.startswith("mi_worker.gateway"):
            assert not [d for d in deps if d.startswith("mi_worker.sandbox")], \
                f"{name}: the production gateway must not know the fake centre"
        if name.startswith("mi_worker.db"):
            outside = [d for d in deps if not d.startswith("mi_worker.db")
                       and d not in ("mi_worker.masking", "mi_worker.config_fields")]
            assert not outside, f"{name}: the db layer imports {outside}, which stand above it"
    assert g["mi_worker.states"] <= {"mi_worker.gateway.catalog"}
    jobs = (PKG / "jobs.py").read_text(encoding="utf-8")
    assert "worker.queue" not in jobs, "jobs reach into the worker's queue"
    assert "db.stopping =" not in (PKG / "worker.py").read_text(encoding="utf-8")


def test_the_checks_catch_a_cycle_and_an_upward_arrow():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert floor("mi_worker.db.base") < floor("mi_worker.queue")


# Function-level imports: only to keep an optional dependency optional (pyodbc and the
# ODBC dialects, the 国密 crypto, certifi, zoneinfo/tomllib by Python version).
ALLOWED_INNER = {"pyodbc", "cryptography", "gmssl", "certifi", "zoneinfo", "tomllib", "tomli",
                 "backports", "truststore"}


def test_function_level_imports_only_for_optional_dependencies():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        name = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    mods = [node.module or ""]
                else:
                    continue
                for mod in mods:
                    top = mod.split(".")[0]
                    if top in ALLOWED_INNER:
                        continue
                    if name == "mi_worker.db" and mod.startswith("mi_worker.db."):
                        continue  # the ODBC dialects import pyodbc's wrapper lazily
                    if name == "mi_worker.gateway.client" and mod == "mi_worker.gateway":
                        continue  # gm: the 国密 extra
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {mod}")
    assert not bad, "hidden imports: " + "; ".join(bad)


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: p.name)
def test_modules_stay_readable(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 420, f"{path.relative_to(ROOT)} has {lines} lines: split it along a seam"


STATUS_WORDS = {"PENDING", "PROCESSING", "COMPLETED", "UNCERTAIN", "REVERSED", "NEEDS_MANUAL",
                "TIMEOUT", "ERROR", "IN_PROGRESS", "SUCCESS"}
# Words that are not row statuses in these places (log levels, alert types, 3201's marker).
NOT_A_STATUS = {("mi_worker/config.py", "ERROR"), ("mi_worker/cli.py", "ERROR"),
                ("mi_worker/cli_context.py", "ERROR"), ("mi_worker/reconcile.py", "ERROR")}


def test_no_bare_status_literals_outside_states():
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel == "mi_worker/states.py" or rel.startswith("mi_worker/sandbox/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in STATUS_WORDS \
                    and (rel, node.value) not in NOT_A_STATUS:
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not found, "use mi_worker.states: " + ", ".join(found)
