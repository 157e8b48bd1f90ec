"""Every `db.run("name", k=…)` call site in the package passes exactly the parameters the
named statement binds, in every dialect (and the statement exists there). Found with an
``ast`` walk, so a renamed parameter fails here, not at 3 a.m. on a hospital's server."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import List, Optional, Set, Tuple

import pytest

from mi_worker.db.queries import load

ROOT = Path(__file__).resolve().parents[2]
RUNNERS = {"run": 0, "run_one": 0, "prepared": 0, "_execute": 2}
NOT_PARAMS = {"retry"}
# call_procedure exists where the HIS contract is a stored procedure (Database.supports).
ONLY_WITH_PROCEDURES = {"call_procedure", "submit_procedure", "result_procedure",
                        "call_workflow_procedure"}
# The cluster lock is a number on PostgreSQL (advisory lock) and a name on SQL Server
# (sp_getapplock): the caller passes both and each dialect binds what it uses.
EITHER = {"try_cluster_lock": {"lock_key", "lock_name"},
          "release_cluster_lock": {"lock_key", "lock_name"}}


def call_sites(path: Path) -> List[Tuple[int, str, Optional[Set[str]]]]:
    """(line, statement, keyword names or None when **kwargs hides them)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if fname not in RUNNERS or len(node.args) <= RUNNERS[fname]:
            continue
        first = node.args[RUNNERS[fname]]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        if any(k.arg is None for k in node.keywords):
            out.append((node.lineno, first.value, None))
            continue
        out.append((node.lineno, first.value, {k.arg for k in node.keywords} - NOT_PARAMS))
    return out


SITES = [(p, *site) for p in sorted((ROOT / "mi_worker").rglob("*.py")) for site in call_sites(p)]


def test_the_walk_finds_the_call_sites():
    names = {name for _, _, name, _ in SITES}
    assert {"claim_batch", "heartbeat", "find_doubtful", "enqueue_request",
            "get_request"} <= names


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mssql"])
def test_the_finish_writes_bind_what_their_statements_declare(dialect):
    """queue.finish() names its statement through states.FINISH (no literal call site):
    the parameters it builds for every outcome must be exactly those declared."""
    from mi_worker.gateway.base import GatewayResult
    from mi_worker.queue import ClaimedRequest, _params
    from mi_worker.states import FINISH
    queries = load(dialect)
    req = ClaimedRequest(1, "1101", "{}", "m", 1, 3, None, None, 5, None, 30.0, "t", 0.0)
    for outcome, finish in FINISH.items():
        params = _params(req, finish, GatewayResult(outcome=outcome), False)
        assert set(params) == set(queries[finish.statement].param_order), outcome
    assert set(queries["complete_batch"].param_order) == {"rows"}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mssql"])
def test_every_call_site_binds_exactly_what_the_statement_declares(dialect):
    queries = load(dialect)
    problems = []
    for path, line, name, given in SITES:
        where = f"{path.relative_to(ROOT)}:{line}"
        if name not in queries:
            if not (dialect == "sqlite" and name in ONLY_WITH_PROCEDURES):
                problems.append(f"{where}: no statement {name!r} in {dialect}")
            continue
        if given is None:
            continue  # parameters passed as **kwargs: checked by the tests that run it
        declared = set(queries[name].param_order)
        if name in EITHER and given == EITHER[name] and declared and declared <= given:
            continue
        if given != declared:
            problems.append(f"{where}: {name} passes {sorted(given)}, {dialect} binds "
                            f"{sorted(declared)}")
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_wrong_parameter(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('db.run("heartbeat", worker_id="w")\n', encoding="utf-8")
    [(_, name, given)] = call_sites(bad)
    assert name == "heartbeat" and given != set(load("sqlite")["heartbeat"].param_order)
