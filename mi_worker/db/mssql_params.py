"""Fixed ODBC parameter types per named SQL Server statement (one statement, one plan).

pyodbc declares each ``str`` parameter as ``nvarchar(len(value))`` and each ``int`` as
``int`` or ``bigint`` by its magnitude, so ``sp_prepexec`` sees a new parameter list — a new
compile and a new plan-cache entry — for every combination of lengths (pyodbc #213; review
S3). Every SQL Server named query binds each parameter exactly once, into a typed
``DECLARE @x TYPE = :x`` (a test holds every statement to that), so the types are read from
those DECLAREs and handed to ``cursor.setinputsizes`` once per cursor:

* character types of up to 4,000 characters → ``nvarchar(4000)``; ``(MAX)`` →
  ``nvarchar(max)``. One width per class keeps one plan whatever the value's length, and
  a value longer than 4,000 characters is clipped before binding, which is what the
  DECLARE's own assignment does to it anyway (the driver would refuse it otherwise);
* integer types → their exact ODBC integer type, FLOAT → double, BIT → bit;
* DECIMAL, DATE, DATETIME2 … are left to pyodbc: our values for them are strings of a fixed
  shape, so their declaration does not vary.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

from mi_worker.db.queries import Query

# ODBC type codes (sql.h / sqlext.h; pyodbc exposes the same numbers as pyodbc.SQL_*).
SQL_WVARCHAR = -9
SQL_BIGINT = -5
SQL_INTEGER = 4
SQL_SMALLINT = 5
SQL_TINYINT = -6
SQL_DOUBLE = 8
SQL_BIT = -7

#: The widest nvarchar that is not (max); every shorter declaration binds at this width.
NVARCHAR_WIDTH = 4000

_DECLARE = re.compile(r"DECLARE\s+@(\w+)\s+([A-Za-z0-9_]+)\s*(\(\s*[^)]*\))?\s*=\s*:(\w+)",
                      re.IGNORECASE)
_INTEGERS = {"BIGINT": SQL_BIGINT, "INT": SQL_INTEGER, "INTEGER": SQL_INTEGER,
             "SMALLINT": SQL_SMALLINT, "TINYINT": SQL_TINYINT}
_CHARACTER = {"NVARCHAR", "VARCHAR", "NCHAR", "CHAR", "SYSNAME"}

InputSize = Optional[Tuple[int, int, int]]


def declared_types(query: Query) -> Dict[str, str]:
    """{parameter: "NVARCHAR(100)"} from the statement's ``DECLARE @x TYPE = :x`` lines."""
    found: Dict[str, str] = {}
    for m in _DECLARE.finditer(query.sql):
        found[m.group(4)] = (m.group(2) + re.sub(r"\s+", "", m.group(3) or "")).upper()
    return found


def input_size(sql_type: str) -> InputSize:
    """(ODBC type, column size, decimal digits) for ``setinputsizes``, or None: pyodbc's own."""
    base, _, rest = sql_type.partition("(")
    if base in _INTEGERS:
        return (_INTEGERS[base], 0, 0)
    if base == "FLOAT":
        return (SQL_DOUBLE, 15, 0)
    if base == "BIT":
        return (SQL_BIT, 1, 0)
    if base in _CHARACTER:
        return (SQL_WVARCHAR, 0 if rest.startswith("MAX") else NVARCHAR_WIDTH, 0)
    return None


class QueryParams:
    """The fixed sizes of one statement and the positions whose strings are clipped."""

    __slots__ = ("sizes", "clip")

    def __init__(self, query: Query) -> None:
        types = declared_types(query)
        missing = [p for p in query.param_order if p not in types]
        if missing:
            raise ValueError(f"query {query.name}: parameters {missing} are not bound through "
                             "a typed DECLARE @x TYPE = :x")
        self.sizes: List[InputSize] = [input_size(types[p]) for p in query.param_order]
        self.clip: Tuple[int, ...] = tuple(
            i for i, s in enumerate(self.sizes) if s and s[0] == SQL_WVARCHAR and s[1])

    def values(self, values: List[object]) -> Sequence[object]:
        """The values to bind (the list, clipped in place): a string longer than the bound
        width is cut to it."""
        for i in self.clip:
            v = values[i]
            if isinstance(v, str) and len(v) > NVARCHAR_WIDTH:
                values[i] = v[:NVARCHAR_WIDTH]
        return values


def plan(queries: Dict[str, Query]) -> Dict[str, QueryParams]:
    """QueryParams of every statement that binds parameters."""
    return {name: QueryParams(q) for name, q in queries.items() if q.param_order}
