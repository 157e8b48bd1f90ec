"""Conformance: the read-only web dashboard's statements on every dialect.

dash_session_read_only (every dashboard session refuses writes: PostgreSQL's read-only session
characteristics, SQLite's query_only; SQL Server relies on mi_dashboard_role), dash_session_plans
(PostgreSQL plans each call for the filters given), dash_requests_page (the request list: every
filter, newest first, keyset-paged by request_id < :before_id), dash_throughput (calls per
bucket and outcome, bucket 0 = newest), dash_latency (nearest-rank p50 / p95 per interface),
dash_doubtful (rows a person must look at, with their 2601 rows counted), dash_reconciliation
(the latest 3201 results, newest day first).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import enqueue, finished, raw, set_cols, set_time  # noqa: E402

from mi_worker.dashboard.server import open_read_only  # noqa: E402
from mi_worker.db.base import DatabaseError  # noqa: E402

COVERS = {"dash_session_read_only", "dash_session_plans", "dash_requests_page",
          "dash_throughput", "dash_latency", "dash_doubtful", "dash_reconciliation"}


READ_ONLY = r"(?i)read-?only"  # PostgreSQL: read-only transaction; SQLite: readonly database


def _ids(rows) -> list:
    return [int(r["request_id"]) for r in rows]


# -- dash_session_read_only / dash_session_plans -------------------------------------------
def test_a_dashboard_session_reads_but_refuses_writes(db, db_url):
    if db.name == "mssql":  # no session switch there: mi_dashboard_role refuses the writes
        assert int(db.run_one("dash_session_read_only")["read_only_by_role"]) == 1
        return
    rid = enqueue(db)
    conn = db.raw()
    try:
        cur = conn.cursor()
        cur.execute(db.queries["dash_session_read_only"].sql)
        cur.execute("SELECT status FROM medical_insurance_requests WHERE request_id = ?", [rid])
        assert cur.fetchall()[0][0] == "PENDING"  # reads still work
        for write in ("UPDATE medical_insurance_requests SET priority = 1 WHERE request_id = ?",
                      "DELETE FROM medical_insurance_requests WHERE request_id = ?"):
            with pytest.raises(Exception) as refused:
                cur.execute(write, [rid])
            assert re.search(READ_ONLY, str(refused.value)), str(refused.value)
    finally:
        conn.close()
    assert int(db.run_one("get_request", request_id=rid)["priority"]) == 5  # nothing changed
    enqueue(db)  # the setting is the session's: other sessions still write

    dash = open_read_only(db_url)  # how the dashboard opens its database (server.py)
    try:
        page = dash.run("dash_requests_page", status=None, interface_code=None, psn_no=None,
                        msgid=None, his_fee_id=None, from_utc=None, to_utc=None,
                        before_id=None, limit_rows=10)
        assert len(page) == 2
        with pytest.raises(DatabaseError, match=READ_ONLY):
            dash.run("upsert_limit", interface_code="1101", max_in_flight=1)
        with pytest.raises(DatabaseError, match=READ_ONLY):
            dash.run("enqueue_request", interface_code="1101", input_data="{}", priority=5,
                     timeout_seconds=60, max_retry_count=3, psn_no=None,
                     insuplc_admdvs="110000", idempotency_key=None, his_fee_id=None,
                     parent_request_id=None)
    finally:
        dash.close()
    [(status, n)] = [(r["status"], int(r["n"])) for r in db.run("count_by_status")]
    assert (status, n) == ("PENDING", 2)  # the refused insert left no row
    assert db.run("list_limits") == []


def test_dash_session_plans_plans_each_call_on_postgresql(db):
    conn = db.raw()
    try:
        cur = conn.cursor()
        cur.execute(db.queries["dash_session_plans"].sql)
        if db.name == "postgresql":
            cur.execute("SHOW plan_cache_mode")
            assert cur.fetchall()[0][0] == "force_custom_plan"
        else:  # nothing to set: the statement only answers
            assert int(cur.fetchall()[0][0]) == 1
    finally:
        conn.close()
    if db.name != "postgresql":
        assert int(db.run_one("dash_session_plans")["plans"]) == 1


# -- dash_requests_page ---------------------------------------------------------------------
def _page(db, limit=100, **filters):
    params = dict(status=None, interface_code=None, psn_no=None, msgid=None, his_fee_id=None,
                  from_utc=None, to_utc=None, before_id=None, limit_rows=limit)
    params.update(filters)
    return db.run("dash_requests_page", **params)


MSGID = "H11010500001202403021600000001"


def test_dash_requests_page_filters_and_keyset_pages_newest_first(db):
    times = ["2024-03-02 07:59:59.999", "2024-03-02 08:00:00.000", "2024-03-02 09:30:00.000",
             "2024-03-02 10:00:00.000", "2024-03-02 10:00:00.001", "2024-03-03 00:00:00.000",
             "2024-03-03 01:00:00.000"]
    spec = [("1101", "COMPLETED", "P1", None), ("2207", "ERROR", "P1", "FEE-1"),
            ("2207", "COMPLETED", "P2", "FEE-2"), ("1101", "PENDING", None, None),
            ("2207", "UNCERTAIN", "P2", "FEE-2"), ("1101", "COMPLETED", "P1", None),
            ("2601", "PENDING", None, None)]
    ids = []
    for (code, status, psn, fee), when in zip(spec, times):
        rid = enqueue(db, code, psn_no=psn, his_fee_id=fee)
        set_cols(db, rid, status=status, request_time=when)
        ids.append(rid)
    set_cols(db, ids[2], msgid=MSGID)
    newest_first = ids[::-1]
    assert _ids(_page(db)) == newest_first

    # keyset paging: pages of 3 walk the whole list, never repeating or skipping a row
    walked, before = [], None
    while True:
        page = _ids(_page(db, 3, before_id=before))
        if not page:
            break
        assert len(page) <= 3
        walked += page
        before = page[-1]
    assert walked == newest_first
    assert _ids(_page(db, 2, before_id=ids[4])) == [ids[3], ids[2]]

    assert _ids(_page(db, status="COMPLETED")) == [ids[5], ids[2], ids[0]]
    assert _ids(_page(db, interface_code="2207")) == [ids[4], ids[2], ids[1]]
    assert _ids(_page(db, psn_no="P1")) == [ids[5], ids[1], ids[0]]
    assert _ids(_page(db, msgid=MSGID)) == [ids[2]]
    assert _ids(_page(db, his_fee_id="FEE-2")) == [ids[4], ids[2]]
    # from is included, to is excluded (UTC text as data.RequestFilter sends it)
    assert _ids(_page(db, from_utc="2024-03-02 08:00:00",
                      to_utc="2024-03-02 10:00:00")) == [ids[2], ids[1]]
    assert _ids(_page(db, from_utc="2024-03-02 10:00:00")) == [ids[6], ids[5], ids[4], ids[3]]
    assert _ids(_page(db, to_utc="2024-03-02 08:00:00")) == [ids[0]]
    # filters together, and with the keyset
    assert _ids(_page(db, interface_code="2207", psn_no="P2", status="UNCERTAIN")) == [ids[4]]
    assert _ids(_page(db, interface_code="1101", before_id=ids[5])) == [ids[3], ids[0]]
    assert _page(db, psn_no="nobody") == []

    [row] = _page(db, msgid=MSGID)
    assert (row["interface_code"].strip(), row["status"], row["psn_no"], row["his_fee_id"],
            row["msgid"], int(row["needs_reversal"]), row["resolved_at"],
            row["parent_request_id"]) == ("2207", "COMPLETED", "P2", "FEE-2", MSGID, 0, None,
                                          None)
    assert str(row["request_time"]).startswith("2024-03-02 09:30:00")


# -- dash_throughput ------------------------------------------------------------------------
def test_dash_throughput_counts_calls_per_bucket_and_outcome(db):
    finished(db, "1101", "COMPLETED", 100, 10)        # bucket 0
    finished(db, "1101", "COMPLETED", 100, 310)       # bucket 1
    finished(db, "2207", "ERROR", 100, 320)           # bucket 1
    finished(db, "2207", "COMPLETED", 100, 400, needs_reversal=1)  # bucket 1, UNCERTAIN
    finished(db, "2207", "TIMEOUT", None, 3500)       # bucket 11
    finished(db, "1101", "COMPLETED", 100, 4000)      # outside the hour
    pending = enqueue(db)
    set_time(db, pending, request_time=-20)           # bucket 0, still in progress
    got = [(int(r["bucket"]), r["result_status"], int(r["n"]))
           for r in db.run("dash_throughput", hours=1, bucket_seconds=300)]
    assert got == [(0, "IN_PROGRESS", 1), (0, "SUCCESS", 1), (1, "ERROR", 1),
                   (1, "SUCCESS", 1), (1, "UNCERTAIN", 1), (11, "TIMEOUT", 1)]
    wide = [(int(r["bucket"]), r["result_status"], int(r["n"]))
            for r in db.run("dash_throughput", hours=2, bucket_seconds=3600)]
    assert wide == [(0, "ERROR", 1), (0, "IN_PROGRESS", 1), (0, "SUCCESS", 2),
                    (0, "TIMEOUT", 1), (0, "UNCERTAIN", 1), (1, "SUCCESS", 1)]


# -- dash_latency ---------------------------------------------------------------------------
def test_dash_latency_nearest_rank_percentiles_per_interface(db):
    for i in (3, 1, 4, 10, 5, 9, 2, 6, 8, 7):  # 100 … 1000 ms, out of order
        finished(db, "1101", "COMPLETED", 100 * i, 60 + i)
    for ms in (300, 100, 200):
        finished(db, "2207", "COMPLETED", ms, 120)
    enqueue(db, "2207")  # counted, no latency yet
    enqueue(db, "1201")  # only calls in progress: no percentiles
    finished(db, "2207", "COMPLETED", 9000, 7200)  # outside the hour
    rows = db.run("dash_latency", hours=1)
    assert [(r["interface_code"].strip(), int(r["total_calls"])) for r in rows] == [
        ("1101", 10), ("2207", 4), ("1201", 1)]  # most calls first
    a, b, c = rows
    assert float(a["p50_ms"]) == pytest.approx(500, abs=2)
    assert float(a["p95_ms"]) == pytest.approx(1000, abs=2)
    assert float(b["p50_ms"]) == pytest.approx(200, abs=2)
    assert float(b["p95_ms"]) == pytest.approx(300, abs=2)
    assert c["p50_ms"] is None and c["p95_ms"] is None
    day = {r["interface_code"].strip(): r for r in db.run("dash_latency", hours=3)}
    assert int(day["2207"]["total_calls"]) == 5
    assert float(day["2207"]["p95_ms"]) == pytest.approx(9000, abs=2)


# -- dash_doubtful --------------------------------------------------------------------------
def test_dash_doubtful_lists_open_doubt_oldest_first_with_reversals(db):
    def row(status, needs_reversal=0, psn_no=None):
        rid = enqueue(db, "2207", psn_no=psn_no, his_fee_id=f"F-{status}")
        set_cols(db, rid, status=status, needs_reversal=needs_reversal)
        return rid

    unsure = row("UNCERTAIN", psn_no="P9")
    manual = row("NEEDS_MANUAL")
    settled = row("NEEDS_MANUAL")
    db.run("resolve_request", request_id=settled, resolved_by="op", note="by hand")
    unsure_resolved = row("UNCERTAIN")
    set_time(db, unsure_resolved, resolved_at=-10)
    late = row("COMPLETED", needs_reversal=1)
    row("COMPLETED")
    row("REVERSED")
    row("ERROR")
    row("PENDING")
    first = enqueue(db, "2601", parent_request_id=unsure)
    set_cols(db, first, status="ERROR")
    second = enqueue(db, "2601", parent_request_id=unsure)
    rows = db.run("dash_doubtful")
    assert _ids(rows) == [unsure, manual, late]
    by_id = {int(r["request_id"]): r for r in rows}
    u = by_id[unsure]
    assert (int(u["rev_count"]), int(u["rev_id"])) == (2, second)
    assert (u["status"], u["psn_no"], u["his_fee_id"], u["interface_code"].strip()) == (
        "UNCERTAIN", "P9", "F-UNCERTAIN", "2207")
    assert int(by_id[manual]["rev_count"]) == 0 and by_id[manual]["rev_id"] is None
    assert int(by_id[late]["needs_reversal"]) == 1 and by_id[late]["status"] == "COMPLETED"
    assert u["request_time"] is not None and "attempts" in u and "error_code" in u


# -- dash_reconciliation --------------------------------------------------------------------
def test_dash_reconciliation_newest_day_first_latest_200(db):
    def put(day, insutype, rslt="0", request_id=None):
        db.run("insert_reconciliation", stmt_date=day, insutype=insutype, clr_type="11",
               setl_optins="110105", medfee_sumamt="10.50", fund_pay_sumamt="8.00",
               acct_pay="2.50", setl_cnt=1, stmt_rslt=rslt, stmt_rslt_dscr="对账一致",
               request_id=request_id)

    assert db.run("dash_reconciliation") == []
    put("2024-03-02", "310", request_id=11)
    put("2024-03-04", "310", "1")
    put("2024-03-03", "310")
    put("2024-03-04", "390")
    rows = db.run("dash_reconciliation")
    assert [(str(r["stmt_date"])[:10], r["insutype"]) for r in rows] == [
        ("2024-03-04", "390"), ("2024-03-04", "310"), ("2024-03-03", "310"),
        ("2024-03-02", "310")]  # newest day first, then the latest row of a day
    last = rows[-1]
    assert (last["clr_type"], last["setl_optins"], int(last["setl_cnt"]), last["stmt_rslt"],
            last["stmt_rslt_dscr"], int(last["request_id"])) == (
        "11", "110105", 1, "0", "对账一致", 11)
    assert float(last["medfee_sumamt"]) == pytest.approx(10.5)
    assert last["created_at"] is not None and rows[1]["stmt_rslt"] == "1"
    for i in range(200):  # older days beyond the page
        put(f"2023-{1 + i // 28:02d}-{1 + i % 28:02d}", "310")
    older = sorted((f"2023-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(200)),
                   reverse=True)
    rows = db.run("dash_reconciliation")
    assert [str(r["stmt_date"])[:10] for r in rows] == [
        "2024-03-04", "2024-03-04", "2024-03-03", "2024-03-02"] + older[:196]
    assert raw(db, "SELECT COUNT(*) AS n FROM medical_insurance_reconciliation")[0]["n"] == 204
