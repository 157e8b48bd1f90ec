"""EXPLAIN of the worker's own claim_batch statement, with its parameters as literals.

``EXPLAIN (ANALYZE, BUFFERS)`` really runs the UPDATE, so it runs inside a transaction that is
rolled back: the plan and its timings are real and the table is left as it was.
"""
from __future__ import annotations

import re
import uuid
from typing import Any, Dict, List

from bench import common

_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_STRING = re.compile(r"N?'(?:[^']|'')*'")


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def inline(sql: str, params: Dict[str, Any]) -> str:
    """Replace :name placeholders (outside string literals) by SQL literals."""
    out: List[str] = []
    pos = 0

    def sub(m: re.Match) -> str:
        return literal(params[m.group(1)])

    for m in _STRING.finditer(sql):
        out.append(_PARAM.sub(sub, sql[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_PARAM.sub(sub, sql[pos:]))
    return "".join(out)


def claim_params(batch_size: int = 16) -> Dict[str, Any]:
    """The parameters mi_worker.queue.Queue.claim binds (same names, representative values;
    scan_size as Queue.claim computes it since 07d329a: n + max(2, n // 8))."""
    return {"batch_size": batch_size, "scan_size": batch_size + max(2, batch_size // 8),
            "slot_offset": 7,
            "worker_id": "bench:explain", "claim_token": uuid.uuid4().hex,
            "lease_seconds": 120, "fixmedins_code": "H00000000000"}


def explain_claim(dbname: str, batch_size: int = 16) -> Dict[str, Any]:
    from mi_worker.db.queries import load
    query = load("postgresql")["claim_batch"]
    sql = inline(query.sql.strip().rstrip(";"), claim_params(batch_size))
    conn = common.pg_connect(dbname)
    try:
        conn.autocommit = False
        cur = conn.cursor()
        cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql)
        lines = [r[0] for r in cur.fetchall()]
        conn.rollback()
    finally:
        conn.close()
    text = "\n".join(lines)
    index, pending_only = candidate_scan(lines)
    m = re.search(r"Execution Time: ([0-9.]+) ms", text)
    return {"plan": lines, "candidate_index": index, "pending_only": pending_only,
            "execution_ms": float(m.group(1)) if m else None}


def prepared_claim(dbname: str, n: int = 300) -> Dict[str, Any]:
    """The worker's own empty claim, through mi_worker's driver path (pyodbc, psqlODBC with
    UseServerSidePrepare=1, one cursor per statement): ms per claim as it runs (PostgreSQL's
    plan cache chooses, ``plan_cache_mode = auto``) and re-planned every time
    (``force_custom_plan``), with the prepared statement's generic / custom plan counts.
    EXPLAIN's Planning Time is what re-planning would cost; this shows whether it is paid."""
    import time

    from mi_worker.db import connect
    db = connect(common.pg_url(dbname), pool_size=1)  # one session: SET applies to the claims

    def on_session(sql: str) -> List[Any]:
        conn = db._acquire()
        try:
            cur = conn.raw.cursor()
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
        finally:
            db._release(conn)

    out: Dict[str, Any] = {"claims": n}
    try:
        params = claim_params()
        for mode in ("force_custom_plan", "auto"):
            on_session(f"SET plan_cache_mode = {mode}")
            for _ in range(10):  # past the plan cache's five custom plans
                db.run("claim_batch", retry=False, **params)
            t0 = time.perf_counter()
            for _ in range(n):
                db.run("claim_batch", retry=False, **params)
            out[f"{mode}_ms"] = round((time.perf_counter() - t0) / n * 1000, 3)
        rows = on_session("SELECT COALESCE(SUM(generic_plans), 0), COALESCE(SUM(custom_plans), 0) "
                          "FROM pg_prepared_statements")
        out["generic_plans"], out["custom_plans"] = int(rows[0][0]), int(rows[0][1])
    finally:
        db.close()
    return out


_CAND = re.compile(r"Index (?:Only )?Scan using (\w+) on medical_insurance_requests r ")


def candidate_scan(lines: List[str]) -> tuple[str | None, bool]:
    """The index the claim's candidate scan (alias ``r``) uses, and whether that scan reads
    PENDING rows only: the partial index ix_mir_claim (WHERE status = 'PENDING'), or any
    index whose Index Cond is ``status = 'PENDING'`` (ix_mir_status_id when the planner
    knows only a few rows are PENDING). Either way the history is never read; a Seq Scan or
    an index walked without that condition would read it."""
    for i, line in enumerate(lines):
        m = _CAND.search(line)
        if not m:
            continue
        index = m.group(1)
        if index == "ix_mir_claim":
            return index, True
        cond = lines[i + 1] if i + 1 < len(lines) else ""
        return index, "Index Cond: ((status)::text = 'PENDING'::text)" in cond
    return None, False
