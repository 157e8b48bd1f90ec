"""Conformance: the stored alerts' statements on every dialect.

open_alert (the open alert of a type: alerts are de-duplicated per type while open),
insert_alert, touch_alert (refresh message, detail and last_seen_at), resolve_alert (close once),
reopen_alert (a condition back within :dedup_minutes reopens the latest resolved alert instead
of raising a new one), mark_alert_notified, list_open_alerts (open, or all with
:include_resolved = 1, newest first).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402
from qhelpers import raw, seconds_from_now, set_time  # noqa: E402

COVERS = {"open_alert", "insert_alert", "touch_alert", "resolve_alert", "reopen_alert",
          "mark_alert_notified", "list_open_alerts"}

A = "medical_insurance_alerts"


def _insert(db, alert_type, message="m", level="WARNING", detail=None) -> int:
    db.run("insert_alert", alert_type=alert_type, alert_level=level, alert_message=message,
           detail=detail)
    return int(db.run_one("open_alert", alert_type=alert_type)["alert_id"])


def _listed(db, include_resolved=0):
    return [int(r["alert_id"]) for r in db.run("list_open_alerts",
                                               include_resolved=include_resolved)]


def test_insert_open_touch_and_notify_an_alert(db):
    assert db.run("open_alert", alert_type="SLOW_RESPONSE") == []
    slow = _insert(db, "SLOW_RESPONSE", "slow 6000 ms", detail='{"avg":6000}')
    down = _insert(db, "SERVICE_DOWN", "down", level="CRITICAL")
    row = db.run_one("open_alert", alert_type="SLOW_RESPONSE")
    assert (int(row["alert_id"]), row["alert_type"], row["alert_level"],
            row["alert_message"]) == (slow, "SLOW_RESPONSE", "WARNING", "slow 6000 ms")
    assert row["raised_at"] is not None and row["last_seen_at"] is not None
    assert _listed(db) == [down, slow]  # newest first
    set_time(db, slow, table=A, last_seen_at=-100, raised_at=-100)
    db.run("touch_alert", alert_id=slow, alert_message="slow 7000 ms", detail='{"avg":7000}')
    assert seconds_from_now(db, slow, "last_seen_at", table=A) == pytest.approx(0, abs=5)
    assert seconds_from_now(db, slow, "raised_at", table=A) == pytest.approx(-100, abs=5)
    [r] = raw(db, "SELECT alert_message, detail, notified_at FROM medical_insurance_alerts "
                  "WHERE alert_id = ?", [slow])
    assert (r["alert_message"], r["detail"], r["notified_at"]) == (
        "slow 7000 ms", '{"avg":7000}', None)
    db.run("mark_alert_notified", alert_id=slow)
    listed = {int(x["alert_id"]): x for x in db.run("list_open_alerts", include_resolved=0)}
    assert listed[slow]["notified_at"] is not None and listed[down]["notified_at"] is None
    assert listed[slow]["resolved_at"] is None


def test_resolve_closes_once_and_list_can_include_resolved(db):
    a = _insert(db, "QUEUE_BACKLOG")
    b = _insert(db, "NEEDS_MANUAL")
    db.run("resolve_alert", alert_id=a)
    assert db.run("open_alert", alert_type="QUEUE_BACKLOG") == []
    assert _listed(db) == [b] and _listed(db, 1) == [b, a]
    resolved = [x for x in db.run("list_open_alerts", include_resolved=1)
                if int(x["alert_id"]) == a][0]
    assert resolved["resolved_at"] is not None
    set_time(db, a, table=A, resolved_at=-50)
    db.run("resolve_alert", alert_id=a)  # already closed: its resolved_at stands
    assert seconds_from_now(db, a, "resolved_at", table=A) == pytest.approx(-50, abs=5)
    again = _insert(db, "QUEUE_BACKLOG")  # a new one may be raised after the old closed
    assert again > a and int(db.run_one("open_alert", alert_type="QUEUE_BACKLOG")[
        "alert_id"]) == again


def test_reopen_alert_only_within_the_dedup_window_and_the_latest_one(db):
    old = _insert(db, "HIGH_ERROR_RATE", "first")
    db.run("resolve_alert", alert_id=old)
    recent = _insert(db, "HIGH_ERROR_RATE", "second")
    db.run("resolve_alert", alert_id=recent)
    _insert(db, "SLOW_RESPONSE")
    set_time(db, recent, table=A, resolved_at=-120, last_seen_at=-120)
    out = db.run("reopen_alert", alert_type="HIGH_ERROR_RATE", alert_message="back again",
                 dedup_minutes=10)
    assert [int(r["alert_id"]) for r in out] == [recent]
    row = db.run_one("open_alert", alert_type="HIGH_ERROR_RATE")
    assert int(row["alert_id"]) == recent and row["alert_message"] == "back again"
    assert seconds_from_now(db, recent, "last_seen_at", table=A) == pytest.approx(0, abs=5)
    db.run("resolve_alert", alert_id=recent)
    set_time(db, recent, table=A, resolved_at=-3600)
    set_time(db, old, table=A, resolved_at=-3600)
    assert db.run("reopen_alert", alert_type="HIGH_ERROR_RATE", alert_message="x",
                  dedup_minutes=10) == []  # cleared too long ago: a new alert is due
    assert db.run("open_alert", alert_type="HIGH_ERROR_RATE") == []
    assert db.run("reopen_alert", alert_type="SERVICE_DOWN", alert_message="x",
                  dedup_minutes=10) == []
