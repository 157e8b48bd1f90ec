"""The T-SQL parse gate: no SQL Server runs on the build machines, so every .sql file under
sql/mssql/ must at least parse as T-SQL (sqlfluff, dialect tsql, the repository's .sqlfluff
with its colon placeholder templater), and sql/mssql/queries.sql must define the same named
queries, with the same :parameters, as sql/postgresql/queries.sql.

Beyond parsing: the monitoring procedures (migrations/003_monitoring.sql) return the same
columns, in the same order, as PostgreSQL's functions and take PostgreSQL's parameters; every
procedure parameter queries.sql names exists; and security.sql grants mi_worker_role the
rights queries.sql needs (and no others) and mi_his_caller_role exactly the HIS contract.

Each file is parsed once per session (queries.sql takes a couple of seconds); the other
checks are regular expressions and walks of those cached parse trees.
"""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Dict, FrozenSet, List, Set, Tuple

import pytest

from mi_worker.db.queries import parse

# One process parses the T-SQL once for every test of these modules (make test runs
# pytest-xdist with --dist loadgroup; parsing is the cost, the trees are cached per process).
pytestmark = pytest.mark.xdist_group("tsql")

ROOT = Path(__file__).resolve().parents[2]
MSSQL = ROOT / "sql" / "mssql"
FILES = sorted(MSSQL.rglob("*.sql"))

# Where the T-SQL deliberately binds other parameters than PostgreSQL, and why. Both sides
# are listed exactly, so any other drift still fails.
#   try_cluster_lock / release_cluster_lock: sp_getapplock takes a resource *name*
#   (N'mi_worker:' + name, readable in sys.dm_tran_locks); PostgreSQL's advisory lock takes
#   the 63-bit key. Database.cluster_lock passes both lock_key and lock_name.
PARAM_EXCEPTIONS: Dict[str, Tuple[FrozenSet[str], FrozenSet[str]]] = {
    "try_cluster_lock": (frozenset({"lock_key"}), frozenset({"lock_name"})),
    "release_cluster_lock": (frozenset({"lock_key"}), frozenset({"lock_name"})),
}


@cache
def _linter():
    from sqlfluff.core import FluffConfig, Linter
    # The repository's .sqlfluff (dialect, placeholder templater) plus sql/mssql/.sqlfluff;
    # the byte limit is forced off here too: above it sqlfluff skips a file without a word.
    config = FluffConfig.from_path(
        str(MSSQL), overrides={"dialect": "tsql", "large_file_skip_byte_limit": 0})
    return Linter(config=config)


@cache
def _parse(path: Path):
    return _linter().parse_string(path.read_text(encoding="utf-8"), fname=str(path))


def _unparsable(parsed, text: str) -> List[str]:
    """The first lines of each unparsable section, or of each parse error."""
    lines = text.splitlines()
    found: List[str] = []
    if parsed.tree is not None:
        for seg in parsed.tree.recursive_crawl("unparsable"):
            line = seg.pos_marker.source_position()[0] if seg.pos_marker else 0
            snippet = "\n".join(f"    {n}: {lines[n - 1]}"
                                for n in range(max(line, 1), min(line + 3, len(lines)) + 1))
            found.append(f"unparsable section at line {line}:\n{snippet}")
    for v in parsed.violations:
        found.append(f"line {v.line_no}: {v.desc()}")
    return found


def test_there_is_tsql_to_check():
    names = {p.relative_to(MSSQL).as_posix() for p in FILES}
    assert {"queries.sql", "security.sql", "migrations/001_schema.sql",
            "migrations/002_procedures.sql", "migrations/003_monitoring.sql"} <= names
    # Every PostgreSQL migration has its T-SQL counterpart (same number and name).
    pg = {p.name for p in (ROOT / "sql" / "postgresql" / "migrations").glob("*.sql")}
    assert pg <= {p.name for p in (MSSQL / "migrations").glob("*.sql")}


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(MSSQL).as_posix() for p in FILES])
def test_tsql_file_parses(path: Path):
    parsed = _parse(path)
    assert parsed.tree is not None, f"{path.relative_to(ROOT)}: sqlfluff produced no parse tree"
    problems = _unparsable(parsed, path.read_text(encoding="utf-8"))
    assert not problems, f"{path.relative_to(ROOT)} does not parse as T-SQL:\n" + \
        "\n".join(problems[:5])


def _queries(dialect: str):
    return parse((ROOT / "sql" / dialect / "queries.sql").read_text(encoding="utf-8"))


def test_same_query_names_as_postgresql():
    pg, ms = _queries("postgresql"), _queries("mssql")
    missing = sorted(set(pg) - set(ms))
    extra = sorted(set(ms) - set(pg))
    assert not missing and not extra, \
        f"sql/mssql/queries.sql: missing {missing}, not in PostgreSQL {extra}"


def test_same_parameters_as_postgresql():
    pg, ms = _queries("postgresql"), _queries("mssql")
    wrong = []
    for name in sorted(set(pg) & set(ms)):
        want, got = frozenset(pg[name].param_order), frozenset(ms[name].param_order)
        if name in PARAM_EXCEPTIONS:
            want, allowed = PARAM_EXCEPTIONS[name]
            assert frozenset(pg[name].param_order) == want, \
                f"{name}: PostgreSQL parameters changed; update PARAM_EXCEPTIONS"
            if got != allowed:
                wrong.append(f"{name}: expected {sorted(allowed)}, got {sorted(got)}")
            continue
        if want != got:
            wrong.append(f"{name}: PostgreSQL binds {sorted(want)}, T-SQL binds {sorted(got)}")
    assert not wrong, "\n".join(wrong)


def test_tsql_binds_each_parameter_once():
    """Each :param is DECLAREd once at the top of its batch, so it is bound exactly once."""
    twice = {name: q.param_order for name, q in _queries("mssql").items()
             if len(q.param_order) != len(set(q.param_order))}
    assert not twice, f"parameters bound more than once: {twice}"


# -- monitoring procedures against PostgreSQL's functions --------------------------------------

PG_MONITORING = ROOT / "sql" / "postgresql" / "migrations" / "003_monitoring.sql"
MS_MONITORING = MSSQL / "migrations" / "003_monitoring.sql"
# sp_get_medical_insurance_monitor_data's IF branches, in file order, and the PostgreSQL
# function whose columns each must return.
MONITOR_BRANCHES = ("mi_monitor_health", "mi_monitor_performance", "mi_monitor_interfaces",
                    "mi_monitor_queue", "mi_monitor_workers")


def _pg_functions() -> Dict[str, Tuple[List[str], List[str]]]:
    """PostgreSQL function name -> (parameter names without p_, RETURNS TABLE column names)."""
    text = PG_MONITORING.read_text(encoding="utf-8")
    found = {}
    for m in re.finditer(r"CREATE OR REPLACE FUNCTION (\w+)\s*\((.*?)\)\s*RETURNS\s+(.*?)\s+LANGUAGE",
                         text, re.S):
        params = [re.sub(r"^p_", "", a.split()[0]) for a in m.group(2).split(",") if a.strip()]
        cols = []
        table = re.match(r"TABLE\s*\((.*)\)\s*$", m.group(3), re.S)
        if table:
            cols = [c.split()[0] for c in table.group(1).split(",")]
        found[m.group(1)] = (params, cols)
    return found


def _result_columns(stmt) -> List[str]:
    """Output column names of a top-level SELECT (or of the first SELECT of a UNION)."""
    if stmt.type == "set_expression":
        stmt = next(s for s in stmt.segments if s.type == "select_statement")
    clause = next(s for s in stmt.segments if s.type == "select_clause")
    names = []
    for el in (s for s in clause.segments if s.type == "select_clause_element"):
        alias = next((s for s in el.segments if s.type == "alias_expression"), None)
        ref = alias or next((s for s in el.segments if s.type == "column_reference"), None)
        assert ref is not None, f"result column without a name: {el.raw!r}"
        idents = [s for s in ref.segments if s.type in ("identifier", "quoted_identifier")]
        names.append(idents[-1].raw.strip("[]\""))
    return names


def _procedure_results() -> Dict[str, List[List[str]]]:
    """Each procedure of 003_monitoring.sql -> the column lists of its result statements (a
    SELECT or UNION that is a statement of its own, not a subquery), in file order."""
    out: Dict[str, List[List[str]]] = {}
    for proc in _parse(MS_MONITORING).tree.recursive_crawl("create_procedure_statement"):
        name = next(proc.recursive_crawl("object_reference")).raw.split(".")[-1]
        out[name] = _result_statements(proc)
    return out


def _result_statements(proc) -> List[List[str]]:
    """Column lists of the SELECTs of ``proc`` that return a result set, in file order."""
    results: List[List[str]] = []

    def walk(seg, parent_type: str) -> None:
        if seg.type in ("select_statement", "set_expression") \
                and parent_type in ("statement", "with_compound_statement"):
            results.append(_result_columns(seg))
            return
        for child in seg.segments:
            walk(child, seg.type)
    walk(proc, "")
    return results


def _procedure_params() -> Dict[str, List[str]]:
    """Every procedure created or altered by a T-SQL migration -> its parameter names."""
    found: Dict[str, List[str]] = {}
    for path in sorted((MSSQL / "migrations").glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"^(?:CREATE|ALTER) PROCEDURE dbo\.(\w+)(.*?)^AS$", text, re.S | re.M):
            found[m.group(1)] = re.findall(r"@(\w+)", m.group(2))
    return found


def test_monitor_procedure_returns_postgresql_columns():
    pg, results = _pg_functions(), _procedure_results()
    branches = results["sp_get_medical_insurance_monitor_data"]
    assert len(branches) == len(MONITOR_BRANCHES), \
        f"expected one result SELECT per data type {MONITOR_BRANCHES}, found {len(branches)}"
    for fn, got in zip(MONITOR_BRANCHES, branches):
        assert got == pg[fn][1], f"{fn}: PostgreSQL returns {pg[fn][1]}, T-SQL {got}"
    alerts = results["sp_check_medical_insurance_alerts"]
    assert alerts == [pg["sp_check_medical_insurance_alerts"][1]]


def test_monitor_procedures_take_postgresql_parameters():
    pg, ms = _pg_functions(), _procedure_params()
    assert ms["sp_check_medical_insurance_alerts"] == pg["sp_check_medical_insurance_alerts"][0]
    # PostgreSQL's entry point takes the data type only; T-SQL appends optional parameters.
    want = pg["sp_get_medical_insurance_monitor_data"][0]
    assert ms["sp_get_medical_insurance_monitor_data"][:len(want)] == want


def test_exec_names_existing_procedure_parameters():
    procs = _procedure_params()
    wrong = []
    for name, q in _queries("mssql").items():
        for m in re.finditer(r"\bEXEC\s+(?:@\w+\s*=\s*)?dbo\.(\w+)(.*?)(?:;|$)", q.sql, re.S):
            proc, args = m.group(1), re.findall(r"@(\w+)\s*=", m.group(2))
            if proc not in procs:
                wrong.append(f"{name}: EXEC of unknown procedure {proc}")
                continue
            wrong += [f"{name}: {proc} has no parameter @{a}" for a in args if a not in procs[proc]]
    assert not wrong, "\n".join(wrong)


# -- security.sql --------------------------------------------------------------------------

# Statements `mi-worker db upgrade` runs as a DBA; the worker's role needs no right for them.
UPGRADE_ONLY = frozenset({"create_migrations_table", "migration_lock", "record_migration",
                          "upsert_interface"})
# Issue 12: the HIS gets the procedures only; the view (every patient's answers) only through
# the optional mi_his_result_reader_role, the monitors through mi_monitor_role.
HIS_CALLER_GRANTS = {
    ("EXECUTE", "sp_medical_insurance_call_v2"), ("EXECUTE", "sp_check_sdk_service_status"),
    ("EXECUTE", "sp_medical_insurance_submit_v2"), ("EXECUTE", "sp_medical_insurance_result_v2"),
    ("EXECUTE", "sp_medical_insurance_workflow_v2"),  # issue 14: settlement workflows
}


def _grants() -> Dict[str, Set[Tuple[str, str]]]:
    text = (MSSQL / "security.sql").read_text(encoding="utf-8")
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    grants: Dict[str, Set[Tuple[str, str]]] = {}
    # a column list (GRANT UPDATE (a, b) ON …) counts as the right on the object
    for m in re.finditer(r"^GRANT\s+([A-Z, ]+?)\s*(?:\([\w, ]+\))?\s+ON\s+OBJECT::dbo\.(\w+)"
                         r"\s+TO\s+(\w+);", text, re.M):
        for right in m.group(1).split(","):
            grants.setdefault(m.group(3), set()).add((right.strip(), m.group(2)))
    return grants


def _worker_needs() -> Tuple[Set[Tuple[str, str]], Set[str]]:
    """(right, object) pairs the worker's statements need, and every object they name."""
    need: Set[Tuple[str, str]] = set()
    named: Set[str] = set()
    for name, q in _queries("mssql").items():
        if name in UPGRADE_ONLY:
            continue
        sql = q.sql
        named |= set(re.findall(r"\bdbo\.(\w+)", sql))
        need |= {("INSERT", o) for o in re.findall(r"\bINSERT INTO dbo\.(\w+)", sql)}
        need |= {("DELETE", o) for o in re.findall(r"\bDELETE FROM dbo\.(\w+)", sql)}
        need |= {("EXECUTE", o) for o in re.findall(r"\bEXEC\s+(?:@\w+\s*=\s*)?dbo\.(\w+)", sql)}
        need |= {("UPDATE", o) for o in re.findall(r"\bNEXT VALUE FOR dbo\.(\w+)", sql)}
        need |= {("UPDATE", o) for o in re.findall(r"@sequence_name = N'dbo\.(\w+)'", sql)}
        for target in re.findall(r"\bUPDATE\s+(?:TOP\s*\(\d+\)\s*)?(dbo\.\w+|\w+)\s", sql):
            if target.startswith("dbo."):
                need.add(("UPDATE", target[4:]))
            else:  # UPDATE alias ... FROM dbo.table AS alias
                need |= {("UPDATE", o) for o in
                         re.findall(r"\bdbo\.(\w+) AS " + re.escape(target) + r"\b", sql)}
    return need, named


def test_security_worker_role_covers_queries():
    granted = _grants().get("mi_worker_role", set())
    need, named = _worker_needs()
    missing = sorted(need - granted)
    assert not missing, f"security.sql: mi_worker_role lacks {missing}"
    ungranted = sorted(o for o in named if not any(obj == o for _, obj in granted))
    assert not ungranted, f"security.sql: mi_worker_role has no right on {ungranted}"


def test_security_worker_role_grants_nothing_unneeded():
    granted = _grants().get("mi_worker_role", set())
    need, named = _worker_needs()
    # SELECT is justified by any statement that names the object (reads, UPDATE ... WHERE,
    # OUTPUT); every other right by a statement that needs it.
    extra = sorted((r, o) for r, o in granted
                   if o not in named or (r != "SELECT" and (r, o) not in need))
    assert not extra, f"security.sql: mi_worker_role grants more than queries.sql needs: {extra}"


def test_security_his_caller_role_is_the_contract():
    assert _grants().get("mi_his_caller_role") == HIS_CALLER_GRANTS
    assert _grants().get("mi_his_result_reader_role") == {("SELECT", "v_medical_insurance_result")}
    assert _grants().get("mi_monitor_role") == {
        ("EXECUTE", "sp_get_medical_insurance_monitor_data"),
        ("EXECUTE", "sp_check_medical_insurance_alerts")}
