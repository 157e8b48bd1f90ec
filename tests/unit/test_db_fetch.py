"""Review S9 (issue 12): an error raised while the driver moves to the next result of a batch
(a later statement of a T-SQL batch failed after an earlier one returned rows) reaches the
caller as DatabaseError; it used to be dropped and the first result returned as if all went
well. SQL Server raises it at SQLMoreResults, an edge we cannot run: a cursor that does."""
from __future__ import annotations

import pytest

from mi_worker.db.base import Database, DatabaseError
from mi_worker.db.mssql import SQLServerDialect


class _Cursor:
    def __init__(self, fail_at_next: bool):
        self.fail_at_next, self.sets, self.description = fail_at_next, 0, None

    def setinputsizes(self, sizes):
        pass

    def execute(self, sql, params):
        self.sets, self.description = 0, [("n",)]

    def fetchall(self):
        return [(1,)]

    def nextset(self):
        self.sets += 1
        if self.fail_at_next:
            raise RuntimeError("('23000', '[23000] Violation of UNIQUE KEY constraint (2627)')")
        return False


class _Connection:
    def __init__(self, fail_at_next):
        self.fail_at_next = fail_at_next

    def cursor(self):
        return _Cursor(self.fail_at_next)

    def close(self):
        pass


@pytest.mark.parametrize("fail", [False, True])
def test_an_error_at_the_next_result_is_not_swallowed(monkeypatch, fail):
    dialect = SQLServerDialect("mssql+pyodbc://u:p@h:1433/db")
    monkeypatch.setattr(dialect, "connect", lambda: _Connection(fail))
    monkeypatch.setattr(dialect, "is_disconnect", lambda exc: False)
    db = Database(dialect, pool_size=1)
    if not fail:
        assert db.run("doctor_db_time") == [{"n": 1}]
        return
    with pytest.raises(DatabaseError, match="2627"):
        db.run("doctor_db_time")
