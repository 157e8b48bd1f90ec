"""Shared helpers of the per-statement conformance suite (tests/queries, river's riverdrivertest).

Rows are seeded through the public statements wherever they can be (``enqueue_request``,
``claim_batch`` …). Where a test needs a row in a state no statement reaches quickly (a deadline
already past, a lease that ran out), a column is set with a plain bound UPDATE on the raw driver
connection, and times are computed on the *database* clock (never by sleeping), one expression
per dialect. Column names are checked against a fixed set because they cannot be bound.
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Dict, List, Optional, Sequence

import pytest

FIXMEDINS = "H11010500001"  # 12 characters, as the gateway's fixmedins_code
CHINA = dt.timezone(dt.timedelta(hours=8))

_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")
_TABLES = {"medical_insurance_requests": "request_id", "sdk_heartbeat": "worker_id",
           "medical_insurance_alerts": "alert_id", "medical_insurance_workflows": "workflow_id"}


def _check_column(name: str) -> str:
    if not _COLUMN.match(name):
        raise ValueError(f"not a column name: {name!r}")
    return name


# -- raw SQL on the driver connection --------------------------------------------------------
def raw(db, sql: str, params: Sequence[Any] = ()) -> List[Dict[str, Any]]:
    """Run test-only SQL with ``?`` placeholders on a fresh raw connection; rows as dicts."""
    conn = db.raw()
    try:
        cur = conn.cursor()
        cur.execute(sql, list(params))
        rows: List[Dict[str, Any]] = []
        if cur.description:
            cols = [d[0].lower() for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        if not getattr(conn, "autocommit", True) and db.name != "sqlite":
            conn.commit()
        return rows
    finally:
        conn.close()


def db_time(db, seconds: float) -> str:
    """An SQL expression for 'now + seconds' on the database clock, taking one ``?`` (seconds)."""
    if db.name == "sqlite":
        return "strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', ?))"
    if db.name == "postgresql":
        return "(now() + CAST(? AS double precision) * interval '1 second')"
    return "DATEADD(millisecond, CAST(CAST(? AS float) * 1000 AS int), SYSUTCDATETIME())"


def set_cols(db, request_id, table: str = "medical_insurance_requests", **cols: Any) -> None:
    """Set columns of one row to plain bound values."""
    update(db, request_id, table, values=cols)


def set_time(db, request_id, table: str = "medical_insurance_requests", **offsets: float) -> None:
    """Set time columns to 'database now + offset seconds' (negative: in the past)."""
    update(db, request_id, table, times=offsets)


def update(db, key_value, table: str = "medical_insurance_requests", *,
           values: Optional[Dict[str, Any]] = None,
           times: Optional[Dict[str, float]] = None) -> None:
    """One bound UPDATE of one row: plain values and 'now + seconds' times together."""
    values, times = values or {}, times or {}
    sets = [f"{_check_column(c)} = ?" for c in values]
    sets += [f"{_check_column(c)} = {db_time(db, 0)}" for c in times]
    params = [*values.values(), *(float(v) for v in times.values()), key_value]
    raw(db, f"UPDATE {table} SET {', '.join(sets)} WHERE {_TABLES[table]} = ?", params)


def seconds_from_now(db, request_id: int, column: str,
                     table: str = "medical_insurance_requests") -> Optional[float]:
    """column - now on the database clock, in seconds (None when the column is NULL)."""
    c = _check_column(column)
    key = _TABLES[table]
    if db.name == "sqlite":
        expr = f"(julianday({c}) - julianday('now')) * 86400.0"
    elif db.name == "postgresql":
        expr = f"EXTRACT(EPOCH FROM ({c} - now()))"
    else:
        expr = f"DATEDIFF_BIG(millisecond, SYSUTCDATETIME(), {c}) / 1000.0"
    rows = raw(db, f"SELECT {expr} AS s FROM {table} WHERE {key} = ?", [request_id])
    value = rows[0]["s"]
    return None if value is None else float(value)


# -- seeding through the public statements ---------------------------------------------------
def enqueue(db, code: str = "1101", *, psn_no: Optional[str] = None, priority: int = 5,
            timeout: float = 60, max_retry_count: int = 3, input_data: str = "{}",
            idempotency_key: Optional[str] = None, his_fee_id: Optional[str] = None,
            parent_request_id: Optional[int] = None, insuplc_admdvs: str = "110000") -> int:
    row = db.run_one("enqueue_request", interface_code=code, input_data=input_data,
                     priority=priority, timeout_seconds=timeout,
                     max_retry_count=max_retry_count, psn_no=psn_no,
                     insuplc_admdvs=insuplc_admdvs, idempotency_key=idempotency_key,
                     his_fee_id=his_fee_id, parent_request_id=parent_request_id)
    return int(row["request_id"])


def claim(db, n: int = 10, *, token: Optional[str] = None, worker_id: str = "w1",
          lease_seconds: float = 30, scan_size: Optional[int] = None,
          slot_offset: int = 0) -> List[Dict[str, Any]]:
    """claim_batch with a fresh (or given) token; each returned row carries it as claim_token."""
    token = token or uuid.uuid4().hex
    rows = db.run("claim_batch", batch_size=n, scan_size=scan_size or n + 10,
                  slot_offset=slot_offset, worker_id=worker_id, claim_token=token,
                  lease_seconds=lease_seconds, fixmedins_code=FIXMEDINS)
    for r in rows:
        r["request_id"] = int(r["request_id"])
        r["claim_token"] = token
    return rows


def claim_ids(db, n: int = 10, **kw: Any) -> List[int]:
    return sorted(r["request_id"] for r in claim(db, n, **kw))


def claim_one(db, request_id: int, **kw: Any) -> Dict[str, Any]:
    """Claim and return exactly the given row (the test arranges that it is the only one)."""
    rows = claim(db, 50, **kw)
    mine = [r for r in rows if r["request_id"] == request_id]
    assert mine, f"request {request_id} was not claimed (got {[r['request_id'] for r in rows]})"
    return mine[0]


def get(db, request_id: int) -> Dict[str, Any]:
    row = db.run_one("get_request", request_id=request_id)
    assert row is not None, f"request {request_id} not found"
    return row


def complete(db, req: Dict[str, Any], status: str = "COMPLETED", *, token: Optional[str] = None,
             late_reversible: int = 0, infcode: Optional[str] = "0",
             response_data: Optional[str] = '{"infcode":0}', error_code: Optional[int] = None,
             error_message: Optional[str] = None, msgid: Optional[str] = None,
             attempt_log: str = "[]") -> List[Dict[str, Any]]:
    return db.run("complete_request", request_id=req["request_id"],
                  claim_token=token or req["claim_token"], status=status, infcode=infcode,
                  response_data=response_data, error_code=error_code,
                  error_message=error_message, msgid=msgid, attempt_log=attempt_log,
                  late_reversible=late_reversible)


def requeue(db, req: Dict[str, Any], delay: float = 5.0, *, token: Optional[str] = None,
            error_code: Optional[int] = -1003, error_message: Optional[str] = "network",
            msgid: Optional[str] = None, attempt_log: str = "[]") -> List[Dict[str, Any]]:
    return db.run("requeue_request", request_id=req["request_id"],
                  claim_token=token or req["claim_token"], delay_seconds=float(delay),
                  error_code=error_code, error_message=error_message, msgid=msgid,
                  attempt_log=attempt_log)


def beat(db, worker_id: str = "w1", *, status: str = "RUNNING", seconds_ago: float = 0,
         in_flight: int = 0, processed_total: int = 0, host: str = "h1", pid: int = 1,
         version: str = "t", service_name: str = "medical_insurance_sdk",
         gateway_kind: Optional[str] = "nhsa", gateway_tls_verified: Optional[int] = 1) -> None:
    """A heartbeat (by default of a worker on the real centre with TLS checked)."""
    db.run("heartbeat", service_name=service_name, worker_id=worker_id, host=host, pid=pid,
           version=version, status=status, in_flight=in_flight,
           processed_total=processed_total, gateway_kind=gateway_kind,
           gateway_tls_verified=gateway_tls_verified)
    if seconds_ago:
        set_time(db, worker_id, table="sdk_heartbeat", last_heartbeat=-seconds_ago)


def finished(db, code: str, status: str, latency_ms: Optional[float], seconds_ago: float, *,
             needs_reversal: int = 0, psn_no: Optional[str] = None) -> int:
    """A row that finished ``seconds_ago`` with a known latency: enqueued, then its times set."""
    rid = enqueue(db, code, psn_no=psn_no)
    offsets = {"request_time": -seconds_ago}
    if latency_ms is not None:
        offsets["response_time"] = -seconds_ago + latency_ms / 1000.0
    update(db, rid, values={"status": status, "needs_reversal": needs_reversal}, times=offsets)
    return rid


def xfail_on(request, db, dialect: str, reason: str) -> None:
    """Mark the running test a strict xfail on one dialect only (a known dialect bug)."""
    if db.name == dialect:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))


def msgid_ok(msgid: str, code: str = FIXMEDINS, tolerance_s: float = 300) -> bool:
    """30 chars: fixmedins_code (12) + China-time yyyyMMddHHmmss (14) + 4 digits, near now."""
    assert isinstance(msgid, str) and len(msgid) == 30, msgid
    assert msgid.startswith(code), msgid
    stamp, tail = msgid[12:26], msgid[26:]
    assert stamp.isdigit() and tail.isdigit(), msgid
    when = dt.datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=CHINA)
    drift = abs((when - dt.datetime.now(dt.timezone.utc)).total_seconds())
    assert drift < tolerance_s, f"{msgid}: China-time stamp {drift:.0f}s from now"
    return True
