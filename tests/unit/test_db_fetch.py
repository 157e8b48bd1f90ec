"""Review S9 (issue 12): an error raised while the driver moves to the next result of a batch
(a later statement of a T-SQL batch failed after an earlier one returned rows) reaches the
caller as DatabaseError; it used to be dropped and the first result returned as if all went
well. SQL Server raises it at SQLMoreResults, an edge we cannot run: a cursor that does."""
from __future__ import annotations

import pytest
from fake_sqlserver import FakeConnection

from mi_worker.db.base import Database, DatabaseError
from mi_worker.db.mssql import SQLServerDialect


@pytest.mark.parametrize("fail", [False, True])
def test_an_error_at_the_next_result_is_not_swallowed(monkeypatch, fail):
    dialect = SQLServerDialect("mssql+pyodbc://u:p@h:1433/db")
    error = RuntimeError("('23000', '[23000] Violation of UNIQUE KEY constraint (2627)')")
    conn = FakeConnection(["n"], (1,), fail_at_next=error if fail else None)
    monkeypatch.setattr(dialect, "connect", lambda: conn)
    monkeypatch.setattr(dialect, "is_disconnect", lambda exc: False)
    db = Database(dialect, pool_size=1)
    if not fail:
        assert db.run("doctor_db_time") == [{"n": 1}]
        return
    with pytest.raises(DatabaseError, match="2627"):
        db.run("doctor_db_time")
