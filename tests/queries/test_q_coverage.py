"""The conformance layer covers every named statement (river: riverdrivertest is exhaustive).

Each tests/queries/test_q_*.py declares ``COVERS = {...}``: the statements whose documented
contract it asserts. A statement added to sql/sqlite/queries.sql without a test here fails this
check, and so does a COVERS entry that names no statement or that the module never runs.
``call_procedure`` exists only on PostgreSQL and SQL Server and is covered by
tests/system/test_procedure_postgresql.py.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Set

from mi_worker.db.queries import load

HERE = Path(__file__).parent
ELSEWHERE = {"call_procedure": "tests/system/test_procedure_postgresql.py",
             "submit_procedure": "tests/system/test_async_calls.py",
             "result_procedure": "tests/system/test_async_calls.py"}


def _declared() -> Dict[str, Set[str]]:
    found: Dict[str, Set[str]] = {}
    for path in sorted(HERE.glob("test_q_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "COVERS" for t in node.targets):
                found[path.name] = set(ast.literal_eval(node.value))
    return found


def test_every_named_statement_has_a_conformance_test():
    names = set(load("sqlite")) | (set(load("postgresql")) - set(ELSEWHERE))
    declared = _declared()
    covered = set().union(*declared.values())
    missing = sorted(names - covered)
    assert not missing, f"named statements without a test in tests/queries: {missing}"
    assert (HERE.parent.parent / ELSEWHERE["call_procedure"]).is_file()


def test_covers_names_real_statements_that_the_module_runs():
    names = set(load("sqlite")) | set(load("postgresql"))
    helpers = (HERE / "qhelpers.py").read_text(encoding="utf-8")
    for module, covers in _declared().items():
        assert covers, f"{module}: empty COVERS"
        assert covers <= names, f"{module}: COVERS names no statement: {covers - names}"
        text = (HERE / module).read_text(encoding="utf-8")
        for name in covers:
            quoted = re.compile(r"[\"']" + name + r"[\"']")
            assert quoted.search(text) or quoted.search(helpers), \
                f"{module} claims {name} but neither it nor qhelpers.py runs it"


def test_each_statement_is_claimed_by_one_module():
    seen: Dict[str, str] = {}
    for module, covers in _declared().items():
        for name in covers:
            assert name not in seen, f"{name} in COVERS of both {seen[name]} and {module}"
            seen[name] = module
