"""The T-SQL parse gate: no SQL Server runs on the build machines, so every .sql file under
sql/mssql/ must at least parse as T-SQL (sqlfluff, dialect tsql, the repository's .sqlfluff
with its colon placeholder templater), and sql/mssql/queries.sql must define the same named
queries, with the same :parameters, as sql/postgresql/queries.sql.

Each file is parsed once per session (queries.sql takes a couple of seconds).
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Dict, FrozenSet, List, Tuple

import pytest

from mi_worker.db.queries import parse

ROOT = Path(__file__).resolve().parent.parent
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
    assert {"queries.sql", "migrations/001_schema.sql", "migrations/002_procedures.sql"} <= names


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
