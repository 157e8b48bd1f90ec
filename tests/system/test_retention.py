"""Retention: which rows leave the live table, in batches, archived or deleted (SQLite and the
real PostgreSQL; the T-SQL twin is parsed by tests/test_tsql_parse.py)."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time

from conftest import InProcessWorker, make_settings
from mi_worker import config
from mi_worker.his_call import call
from mi_worker.retention import run_retention

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC)


def at(days_ago: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days_ago)


def lit(db, when: dt.datetime) -> str:
    text = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.000")
    return f"CAST('{text}+00' AS timestamptz)" if db.name == "postgresql" else f"'{text}'"


def insert(db, code: str, status: str, days_ago: float, *, needs_reversal: int = 0,
           parent=None, resolved: bool = False, response: bool = True) -> int:
    """A row with exact times (test-only SQL: the worker never writes rows this way)."""
    t = at(days_ago)
    conn = db.raw()
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO medical_insurance_requests (interface_code, input_data, status, request_time,"
        " response_time, deadline_at, needs_reversal, parent_request_id, psn_no, msgid,"
        " response_data, resolved_at) VALUES "
        f"('{code}', '{{\"data\": {{}}}}', '{status}', {lit(db, t)},"
        f" {lit(db, t + dt.timedelta(seconds=1)) if response else 'NULL'},"
        f" {lit(db, t + dt.timedelta(seconds=30))}, {needs_reversal},"
        f" {'NULL' if parent is None else parent}, 'P{days_ago:g}', NULL, '{{\"infcode\": 0}}',"
        f" {lit(db, t) if resolved else 'NULL'})")
    if not getattr(conn, "autocommit", True):
        conn.commit()
    conn.close()
    return int(db.run("list_requests", status=None, interface_code=None,
                      limit_rows=1)[0]["request_id"])


def ids(db, table: str = "medical_insurance_requests") -> set:
    conn = db.raw()
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT request_id FROM {table}")
        return {int(r[0]) for r in cur.fetchall()}
    finally:
        conn.close()


def settings(**jobs) -> config.Settings:
    s = config.Settings()
    for k, v in jobs.items():
        setattr(s.jobs, k, v)
    return s


def recon(db, when: dt.datetime, rslt: str, request_id=None) -> None:
    day = when.astimezone(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
    db.run("insert_reconciliation", stmt_date=day, insutype="310", clr_type="11",
           setl_optins="990000", medfee_sumamt="1.00", fund_pay_sumamt="1.00", acct_pay="0.00",
           setl_cnt=1, stmt_rslt=rslt, stmt_rslt_dscr="", request_id=request_id)


def test_only_old_terminal_rows_move_and_arrive_whole(db):
    moves = {insert(db, "1101", "COMPLETED", 500), insert(db, "2207", "ERROR", 450),
             insert(db, "1101", "TIMEOUT", 401, response=False),
             insert(db, "2207", "REVERSED", 600)}
    stays = {insert(db, "1101", "COMPLETED", 399),            # inside the window
             insert(db, "2207", "UNCERTAIN", 700),
             insert(db, "2207", "NEEDS_MANUAL", 700),
             insert(db, "2207", "NEEDS_MANUAL", 700, resolved=True),
             insert(db, "1101", "PENDING", 700),
             insert(db, "1101", "PROCESSING", 700),
             insert(db, "2207", "COMPLETED", 700, needs_reversal=1)}
    parent = insert(db, "2207", "REVERSED", 700)               # its 2601 is still running
    stays |= {parent, insert(db, "2601", "PENDING", 700, parent=parent)}
    before = {r["request_id"]: r for r in (db.run_one("get_request", request_id=i) for i in moves)}
    result = run_retention(db, settings())
    assert result["moved"] == 4 and result["done"], result
    assert ids(db) == stays
    assert ids(db, "medical_insurance_requests_archive") == moves
    conn = db.raw()
    cur = conn.cursor()
    cur.execute("SELECT request_id, interface_code, status, psn_no, response_data, archived_at "
                "FROM medical_insurance_requests_archive")
    for rid, code, status, psn, response, archived_at in cur.fetchall():
        assert (code, status, psn, response) == (
            before[rid]["interface_code"], before[rid]["status"], before[rid]["psn_no"],
            before[rid]["response_data"])
        assert archived_at is not None
    conn.close()
    assert run_retention(db, settings())["moved"] == 0  # nothing left: a cheap no-op


def test_unbalanced_reconciliation_day_stays_until_balanced(db):
    day_old = 500
    settle = insert(db, "2207", "COMPLETED", day_old)
    stmt = insert(db, "3201", "COMPLETED", day_old - 0.5)
    recon(db, at(day_old), "1", request_id=stmt)               # 对账不平 that day
    other = insert(db, "2207", "COMPLETED", day_old + 3)       # another day: free to go
    run_retention(db, settings())
    assert {settle, stmt} <= ids(db) and other not in ids(db)
    recon(db, at(day_old), "0")                                # re-reconciled: balanced
    run_retention(db, settings())
    assert not ({settle, stmt} & ids(db))


def test_delete_mode_small_batches_and_run_cap(db):
    rows = {insert(db, "1101", "COMPLETED", 500 + i) for i in range(10)}
    result = run_retention(db, settings(retention_archive=False, retention_batch_rows=3,
                                        retention_max_rows=7))
    assert result["moved"] == 7 and result["batches"] == 3 and not result["done"], result
    assert len(ids(db) & rows) == 3
    result = run_retention(db, settings(retention_archive=False, retention_batch_rows=3))
    assert result["moved"] == 3 and result["done"]
    assert not ids(db) & rows and not ids(db, "medical_insurance_requests_archive")
    assert run_retention(db, settings(retention_days=0))["moved"] == 0


def test_interrupted_batch_is_finished_by_the_next_run(db):
    rows = {insert(db, "1101", "COMPLETED", 500 + i) for i in range(4)}
    batch = db.run_one("retention_batch", retention_days=400, batch_rows=10)
    db.run("retention_archive", retention_days=400, lo=int(batch["lo"]), hi=int(batch["hi"]))
    # ...the worker died here: copies exist, originals too.
    assert ids(db, "medical_insurance_requests_archive") == rows and rows <= ids(db)
    result = run_retention(db, settings())
    assert result["moved"] == 4
    assert ids(db, "medical_insurance_requests_archive") == rows and not rows & ids(db)


def test_calls_keep_flowing_while_retention_runs(db_url, sandbox):
    """The job runs in small batches beside a live worker: calls still complete meanwhile."""
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        for i in range(600):
            insert(w.db, "1101", "COMPLETED", 500 + i / 100)
        out: dict = {}
        job = threading.Thread(target=lambda: out.update(run_retention(
            w.db, settings(retention_batch_rows=50))))
        job.start()
        latencies = []
        while job.is_alive() or not latencies:
            t = time.monotonic()
            r = call(w.db, "1101", json.dumps({"data": {"psn_no": "LIVE"}}), timeout=20)
            assert r.error_code == 0, r
            latencies.append(time.monotonic() - t)
        job.join(60)
        assert out["moved"] == 600 and out["batches"] == 12, out
        assert max(latencies) < 5.0, latencies


def test_cli_runs_retention_once(db, db_url):
    from click.testing import CliRunner

    from mi_worker.cli import main
    rows = {insert(db, "1101", "COMPLETED", 500 + i) for i in range(3)}
    r = CliRunner().invoke(main, ["db", "retention", "--json"],
                           env={"MI_WORKER_DATABASE_URL": db_url})
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["moved"] == 3
    assert ids(db, "medical_insurance_requests_archive") == rows
