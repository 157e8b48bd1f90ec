"""A recording stand-in for a pyodbc connection to SQL Server (msodbcsql is an edge that
cannot run here): the Database talks to it exactly as to the driver, and it logs what it was
asked to do. ``columns``/``row`` is the one result every statement returns; ``fail_at_next``
makes ``nextset()`` raise as the driver does for a later statement's error in a batch."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn, self.description = conn, None

    def setinputsizes(self, sizes: Sequence[Any]) -> None:
        self.conn.log.append(("sizes", list(sizes)))

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        self.conn.log.append(("execute", list(params)))
        self.description = [(c,) for c in self.conn.columns]

    def fetchall(self) -> List[Tuple[Any, ...]]:
        return [self.conn.row]

    def nextset(self) -> bool:
        if self.conn.fail_at_next is not None:
            raise self.conn.fail_at_next
        return False


class FakeConnection:
    def __init__(self, columns: Sequence[str], row: Tuple[Any, ...],
                 fail_at_next: Optional[BaseException] = None) -> None:
        self.columns, self.row, self.fail_at_next = list(columns), row, fail_at_next
        self.log: List[Tuple[str, Any]] = []

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def close(self) -> None:
        pass
