"""Conformance: the reconciliation (3201 对账) statements on every dialect.

settlements_between (the local side of one China day: settlements 2102/2207/2207A/2304 that
COMPLETED in [:start_utc, :end_utc) and are not flagged for reversal), cancellations_since
(2103/2208/2305 that COMPLETED from :start_utc on), insert_reconciliation /
list_reconciliation (the centre's answer per day, in insertion order).
"""
from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from qhelpers import enqueue, set_cols  # noqa: E402

COVERS = {"settlements_between", "cancellations_since", "insert_reconciliation",
          "list_reconciliation"}

START, END = "2024-03-01 16:00:00", "2024-03-02 16:00:00"  # China day 2024-03-02 in UTC


def _setl(rid: int) -> str:
    return '{"output":{"setlinfo":{"setl_id":"S' + str(rid) + '"}}}'


def _row(db, code, status, response_time, needs_reversal=0, data="{}") -> int:
    rid = enqueue(db, code, input_data=data)
    set_cols(db, rid, status=status, response_time=response_time, needs_reversal=needs_reversal,
             response_data=_setl(rid))
    return rid


def test_settlements_between_is_the_days_standing_settlements(db):
    inside = [
        _row(db, "2207", "COMPLETED", "2024-03-01 16:00:00.000"),  # start is included
        _row(db, "2102", "COMPLETED", "2024-03-02 08:00:00.000"),
        _row(db, "2304", "COMPLETED", "2024-03-02 09:00:00.000"),
        _row(db, "2207A", "COMPLETED", "2024-03-02 15:59:59.999"),
    ]
    _row(db, "2207", "COMPLETED", "2024-03-02 16:00:00.000")  # end is excluded
    _row(db, "2207", "COMPLETED", "2024-03-01 15:59:59.999")  # the day before
    _row(db, "2207", "COMPLETED", "2024-03-02 10:00:00.000", needs_reversal=1)  # to reverse
    _row(db, "2207", "ERROR", "2024-03-02 10:00:00.000")
    _row(db, "2207", "REVERSED", "2024-03-02 10:00:00.000")
    _row(db, "1101", "COMPLETED", "2024-03-02 10:00:00.000")  # not a settlement
    rows = db.run("settlements_between", start_utc=START, end_utc=END)
    assert [int(r["request_id"]) for r in rows] == inside
    first = rows[0]
    assert first["interface_code"].strip() == "2207" and first["input_data"] == "{}"
    assert first["response_data"] == _setl(inside[0])
    assert str(first["response_time"]).startswith("2024-03-01 16:00:00")


def test_cancellations_since_lists_completed_cancellations_from_the_day_on(db):
    want = [
        _row(db, "2208", "COMPLETED", "2024-03-02 01:00:00.000", data='{"data":{"setl_id":"S1"}}'),
        _row(db, "2103", "COMPLETED", "2024-03-05 01:00:00.000"),  # later days count too
        _row(db, "2305", "COMPLETED", "2024-03-01 16:00:00.000"),
    ]
    _row(db, "2305", "COMPLETED", "2024-03-01 15:00:00.000")  # before the day
    _row(db, "2208", "ERROR", "2024-03-02 01:00:00.000")
    _row(db, "2601", "COMPLETED", "2024-03-02 01:00:00.000")
    _row(db, "2207", "COMPLETED", "2024-03-02 01:00:00.000")
    rows = db.run("cancellations_since", start_utc=START)
    assert [int(r["request_id"]) for r in rows] == want
    assert rows[0]["interface_code"].strip() == "2208"
    assert rows[0]["input_data"] == '{"data":{"setl_id":"S1"}}'


def test_insert_and_list_reconciliation_per_day(db):
    def put(day, insutype, medfee, rslt, request_id=None):
        db.run("insert_reconciliation", stmt_date=day, insutype=insutype, clr_type="11",
               setl_optins="110105", medfee_sumamt=medfee, fund_pay_sumamt="80.10",
               acct_pay="20.00", setl_cnt=3, stmt_rslt=rslt, stmt_rslt_dscr="对账一致",
               request_id=request_id)

    put("2024-03-02", "310", "123.45", "0", request_id=7)
    put("2024-03-03", "310", "1.00", "0")
    put("2024-03-02", "390", "0.00", "1")
    assert db.run("list_reconciliation", stmt_date="2024-03-04") == []
    rows = db.run("list_reconciliation", stmt_date="2024-03-02")
    assert [r["insutype"] for r in rows] == ["310", "390"]
    r = rows[0]
    assert str(r["stmt_date"])[:10] == "2024-03-02"
    assert (r["clr_type"], r["setl_optins"], int(r["setl_cnt"]), r["stmt_rslt"],
            r["stmt_rslt_dscr"], r["request_id"]) == ("11", "110105", 3, "0", "对账一致", 7)
    cents = Decimal("0.01")
    assert [Decimal(str(r[f])).quantize(cents) for f in (
        "medfee_sumamt", "fund_pay_sumamt", "acct_pay")] == [
        Decimal("123.45"), Decimal("80.10"), Decimal("20.00")]
    assert r["created_at"] is not None and int(rows[1]["recon_id"]) > int(r["recon_id"])
    assert rows[1]["request_id"] is None
