"""Review S3 (issue 12): SQL Server statements bind with fixed parameter types, so one
statement has one plan whatever the lengths of its strings (pyodbc #213).

The types come from each statement's typed DECLAREs (mssql_params.py); the Database hands
them to ``cursor.setinputsizes`` once per cursor. SQL Server is the edge we cannot run here,
so the wiring test uses a recording connection in place of msodbcsql; the pyodbc half (does
pyodbc take these tuples, do they stay for every execute) runs on a real ODBC driver in
tests/system/test_odbc_input_sizes.py."""
from __future__ import annotations

import pytest
from fake_sqlserver import FakeConnection

from mi_worker.db import mssql_params
from mi_worker.db.base import Database
from mi_worker.db.mssql import SQLServerDialect
from mi_worker.db.queries import load, parse


def test_every_sql_server_statement_has_fixed_types():
    queries = load("mssql")
    plans = mssql_params.plan(queries)  # raises if a parameter is bound without a DECLARE
    assert set(plans) == {n for n, q in queries.items() if q.param_order}
    for name, p in plans.items():
        assert len(p.sizes) == len(queries[name].param_order), name


def test_types_from_the_declares():
    p = mssql_params.plan(load("mssql"))["complete_request"]
    order = load("mssql")["complete_request"].param_order
    got = dict(zip(order, p.sizes))
    assert got["status"] == (mssql_params.SQL_WVARCHAR, 4000, 0)      # NVARCHAR(20)
    assert got["infcode"] == (mssql_params.SQL_WVARCHAR, 4000, 0)     # VARCHAR(10)
    assert got["response_data"] == (mssql_params.SQL_WVARCHAR, 0, 0)  # NVARCHAR(MAX)
    assert got["error_code"] == (mssql_params.SQL_INTEGER, 0, 0)
    assert got["request_id"] == (mssql_params.SQL_BIGINT, 0, 0)
    assert mssql_params.input_size("DECIMAL(16,2)") is None  # strings of a fixed shape
    assert mssql_params.input_size("FLOAT") == (mssql_params.SQL_DOUBLE, 15, 0)
    assert mssql_params.input_size("TINYINT") == (mssql_params.SQL_TINYINT, 0, 0)


def test_a_parameter_outside_a_declare_is_refused():
    """The gate itself: a statement that binds :x straight into the SQL would get pyodbc's
    per-length declaration again, so it does not load."""
    q = parse("-- name: bad\nDECLARE @a INT = :a;\nSELECT * FROM t WHERE b = :b;\n")["bad"]
    with pytest.raises(ValueError, match=r"\['b'\] are not bound through a typed DECLARE"):
        mssql_params.QueryParams(q)


def test_database_sets_the_sizes_once_per_cursor_and_clips_long_strings(monkeypatch):
    conn = FakeConnection(["request_id", "needs_reversal"], (1, 0))
    log = conn.log
    dialect = SQLServerDialect("mssql+pyodbc://u:p@h:1433/db")
    monkeypatch.setattr(dialect, "connect", lambda: conn)
    db = Database(dialect, pool_size=1)
    params = dict(status="COMPLETED", infcode="0", response_data="r" * 9000, error_code=0,
                  error_message="m" * 5000, msgid="H1", attempt_log="[]", late_reversible=0,
                  request_id=7, claim_token="t")
    assert db.run("complete_request", **params) == [{"request_id": 1, "needs_reversal": 0}]
    db.run("complete_request", **{**params, "status": "ERROR", "msgid": "H" * 5000})
    sizes = [e for e in log if e[0] == "sizes"]
    assert sizes == [("sizes", mssql_params.plan(db.queries)["complete_request"].sizes)]
    order = db.queries["complete_request"].param_order
    first, second = (dict(zip(order, e[1])) for e in log if e[0] == "execute")
    assert len(first["response_data"]) == 9000       # (MAX): never clipped
    assert len(first["error_message"]) == 5000       # NVARCHAR(MAX)
    assert len(second["msgid"]) == mssql_params.NVARCHAR_WIDTH  # VARCHAR(30): the DECLARE
    # truncates to 30 anyway; the driver would refuse more than the bound 4,000
