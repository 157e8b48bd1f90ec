"""Review S3 (issue 12), the driver half: pyodbc takes mssql_params' (type, size, digits)
tuples and keeps them for every execute on the cursor, so the ODBC driver is told the same
declaration whatever the values' lengths. Seen in unixODBC's own trace of SQLBindParameter,
on the real psqlODBC driver (no SQL Server driver or engine runs here; the tuples and
pyodbc's handling of them are the same)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import PG_ADMIN_URL, ROOT

SCRIPT = r"""
import sys
from mi_worker.db import mssql_params
from mi_worker.db.odbc import import_pyodbc
from mi_worker.db.postgresql import odbc_string
from mi_worker.db.queries import load
pyodbc = import_pyodbc()
query = load("mssql")["complete_request"]
plan = mssql_params.plan({"complete_request": query})["complete_request"]
conn = pyodbc.connect(odbc_string(sys.argv[1]), autocommit=True)
cur = conn.cursor()
cur.setinputsizes(plan.sizes)
sql = "SELECT " + ", ".join("CAST(? AS text)" for _ in query.param_order)
for n in (3, 300):
    values = {"status": "C" * n, "infcode": "0", "response_data": "r" * n * 10,
              "error_code": n, "error_message": None, "msgid": "H" * n, "attempt_log": "[]",
              "late_reversible": 0, "request_id": 2 ** 40 + n, "claim_token": "t"}
    cur.execute(sql, [values[p] for p in query.param_order])
    row = cur.fetchone()
    assert row[list(query.param_order).index("status")] == "C" * n, row
print("ok")
"""


def _bindings(trace: str):
    """[(param number, SQL type, column size)] of every SQLBindParameter in the trace."""
    out = []
    for block in trace.split("SQLBindParameter.c")[1:]:
        num = re.search(r"Param Number = (\d+)", block)
        typ = re.search(r"SQL Type = (-?\d+)", block)
        size = re.search(r"Col Def = (\d+)", block)
        if num and typ and size:
            out.append((int(num.group(1)), int(typ.group(1)), int(size.group(1))))
    return out


def test_pyodbc_keeps_the_fixed_sizes_for_every_execute(tmp_path, pg_template):
    ini = Path("/etc/odbcinst.ini")
    if not ini.is_file():
        pytest.skip("no /etc/odbcinst.ini (unixODBC) here")
    # unixODBC ignores a TraceFile path longer than its short buffer: keep it short
    short = Path(tempfile.mkdtemp(prefix="odbct", dir="/tmp"))
    trace = short / "t.log"
    (tmp_path / "odbcinst.ini").write_text(
        f"[ODBC]\nTrace=Yes\nTraceFile={trace}\n\n" + ini.read_text(encoding="utf-8"),
        encoding="utf-8")
    run = subprocess.run([sys.executable, "-c", SCRIPT, PG_ADMIN_URL], cwd=str(ROOT),
                         env={"PATH": "/usr/bin:/bin", "ODBCSYSINI": str(tmp_path),
                              "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-2000:]
    from mi_worker.db import mssql_params
    from mi_worker.db.queries import load
    query = load("mssql")["complete_request"]
    sizes = mssql_params.plan({"complete_request": query})["complete_request"].sizes
    want = [(i + 1, s[0], s[1]) for i, s in enumerate(sizes) if s is not None]
    try:
        binds = _bindings(trace.read_text(encoding="utf-8", errors="replace"))
    finally:
        shutil.rmtree(short, ignore_errors=True)
    fixed = {w[0] for w in want}
    per_execute = [b for b in binds if b[0] in fixed]
    assert len(per_execute) == 2 * len(want), binds  # both executes bound every parameter
    assert per_execute[:len(want)] == want and per_execute[len(want):] == want
