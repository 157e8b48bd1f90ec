"""Rows of every status with known times, latencies and personal data, for the dashboard tests.

Test-only SQL (the worker never writes rows this way): exact request/response times from the
database clock, so each figure on a page has an answer the monitoring queries also give.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional

NAMES = ["张三丰", "李四光", "王五德", "赵六安"]


@dataclass
class Seeded:
    ids: Dict[str, List[int]] = field(default_factory=dict)   # status → request ids
    all_ids: List[int] = field(default_factory=list)
    identifiers: List[str] = field(default_factory=list)      # must never appear in a page
    by_id: Dict[int, dict] = field(default_factory=dict)
    uncertain_id: int = 0
    child_id: int = 0


def _sql_time(db, seconds_ago: float) -> str:
    if db.name == "postgresql":
        return f"now() - interval '{seconds_ago:.3f} seconds'"
    if db.name == "mssql":
        return f"DATEADD(MILLISECOND, {-int(seconds_ago * 1000)}, SYSUTCDATETIME())"
    return f"strftime('%Y-%m-%d %H:%M:%f', 'now', '{-seconds_ago:+.3f} seconds')"


def person(i: int) -> Dict[str, str]:
    return {"psn_no": f"4300{i:016d}", "certno": f"11010119900307{i % 1000:03d}X",
            "psn_name": NAMES[i % len(NAMES)], "mobile": f"1390000{i % 10000:04d}"}


def insert(db, out: Seeded, i: int, code: str, status: str, latency_ms: Optional[int],
           seconds_ago: float, *, needs_reversal: int = 0, parent: Optional[int] = None) -> int:
    p = person(i)
    req = _sql_time(db, seconds_ago)
    resp = "NULL" if latency_ms is None else _sql_time(db, seconds_ago - latency_ms / 1000.0)
    msgid = f"H11010100001{20240101000000 + i:014d}{i % 10000:04d}"
    fee = f"FEE{i:05d}"
    input_data = json.dumps({**p, "mdtrt_id": f"MD{i}"}, ensure_ascii=False)
    response = json.dumps({"infcode": 0, "output": {"baseinfo": {**p, "gend": "1"}}},
                          ensure_ascii=False) if latency_ms is not None else None
    error = f"中心返回: 证件 {p['certno']} 电话 {p['mobile']}" if status != "COMPLETED" else None
    log = json.dumps([{"attempt": 1, "outcome": status, "elapsed_ms": latency_ms,
                       "detail": f"tel {p['mobile']}"}], ensure_ascii=False)
    conn = db.raw()
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO medical_insurance_requests (interface_code, input_data, status, priority,"
        " request_time, response_time, deadline_at, needs_reversal, psn_no, msgid, his_fee_id,"
        " response_data, error_message, attempt_log, attempts, parent_request_id) VALUES "
        f"(?, ?, ?, 5, {req}, {resp}, {_sql_time(db, -600)}, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
        (code, input_data, status, needs_reversal, p["psn_no"], msgid, fee, response, error, log,
         parent))
    cur.execute("SELECT MAX(request_id) FROM medical_insurance_requests")
    rid = int(cur.fetchone()[0])
    try:
        conn.commit()
    except Exception:
        pass
    conn.close()
    out.ids.setdefault(status, []).append(rid)
    out.all_ids.append(rid)
    out.identifiers.extend(p.values())
    out.by_id[rid] = {"code": code, "status": status, "psn_no": p["psn_no"], "msgid": msgid,
                      "his_fee_id": fee, "seconds_ago": seconds_ago, "latency": latency_ms}
    return rid


def beat(db, worker_id: str, seconds_ago: float) -> None:
    db.run("heartbeat", service_name="medical_insurance_sdk", worker_id=worker_id,
           host=f"host-{worker_id}", pid=4000 + len(worker_id), version="9.9.9",
           status="RUNNING", in_flight=2, processed_total=17, gateway_kind="nhsa",
           gateway_tls_verified=1)
    conn = db.raw()
    conn.cursor().execute(f"UPDATE sdk_heartbeat SET last_heartbeat = {_sql_time(db, seconds_ago)}"
                          " WHERE worker_id = ?", (worker_id,))
    try:
        conn.commit()
    except Exception:
        pass
    conn.close()


def seed_all(db) -> Seeded:
    """Every status, two interfaces, three workers (UP / WARNING / DOWN), alerts, a 2601 chain,
    yesterday's reconciliation. Known hour figures: 1101 latencies 100…600 ms, 2207 700…900."""
    s = Seeded()
    i = 1
    for k, status in enumerate(["COMPLETED"] * 4 + ["ERROR"] * 2):   # 1101: 100..600 ms
        insert(db, s, i, "1101", status, 100 * (k + 1), 120 + 60 * k)
        i += 1
    for code, status, latency, ago, reversal in [
            ("2207", "TIMEOUT", 700, 400, 0), ("2207", "REVERSED", 800, 500, 0),
            ("2207", "COMPLETED", 900, 600, 1), ("2207", "UNCERTAIN", None, 700, 0),
            ("2207", "NEEDS_MANUAL", None, 800, 0), ("1101", "PENDING", None, 5, 0),
            ("1101", "PROCESSING", None, 10, 0)]:
        rid = insert(db, s, i, code, status, latency, ago, needs_reversal=reversal)
        if status == "UNCERTAIN":
            s.uncertain_id = rid
        i += 1
    s.child_id = insert(db, s, i, "2601", "PENDING", None, 3, parent=s.uncertain_id)
    i += 1
    for k in range(3):  # inside the day, not the hour
        insert(db, s, i, "1101", "COMPLETED", 1000 + 100 * k, 7200 + 600 * k)
        i += 1
    beat(db, "w-up", 2)
    beat(db, "w-warn", 45)
    beat(db, "w-down", 300)
    db.run("insert_alert", alert_type="NEEDS_MANUAL", alert_level="CRITICAL",
           alert_message=f"需人工处理: 1 request(s), certno {person(1)['certno']}", detail=None)
    from mi_worker.reconcile import yesterday_china
    db.run("insert_reconciliation", stmt_date=yesterday_china().isoformat(), insutype="310",
           clr_type="11", setl_optins="110100", medfee_sumamt="123.45",
           fund_pay_sumamt="100.00", acct_pay="23.45", setl_cnt=4, stmt_rslt="0",
           stmt_rslt_dscr="对账一致", request_id=None)
    return s


def seed_many(db, n: int, start: int = 1000, spacing: float = 1.0) -> Seeded:
    """n rows alternating statuses and interfaces, ``spacing`` seconds apart (paging tests)."""
    s = Seeded()
    statuses = ["COMPLETED", "ERROR", "TIMEOUT", "COMPLETED"]
    for k in range(n):
        insert(db, s, start + k, "1101" if k % 3 else "2207", statuses[k % 4],
               50 + k, 3000 - spacing * k)
    return s


def china(seconds_ago: float) -> str:
    """A form value for the time filter: local China time, seconds ago (HTML datetime-local)."""
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))
    return (now - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S")
