"""Metrics: prometheus_client exposition from the heartbeat counters and the open rows.

Real worker (in-process, real sandbox gateway on loopback), real database (SQLite and
PostgreSQL), parsed with prometheus_client's own text parser.
"""
from __future__ import annotations

import json
import socket
import urllib.request

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from conftest import InProcessWorker, make_settings, wait_until
from mi_worker import metrics
from mi_worker.cli import main
from mi_worker.his_call import call


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def counter_values(fams: dict) -> dict:
    """Every counter sample (name + labels) -> value."""
    out = {}
    for fam in fams.values():
        if fam.type == "counter":
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def query(w, n: int) -> None:
    for i in range(n):
        r = call(w.db, "1101", json.dumps({"data": {"psn_no": f"P{i:04d}"}}), timeout=20,
                 psn_no=f"P{i:04d}")
        assert r.error_code == 0, r


def beat(w) -> None:
    w.scheduler.heartbeat()


def test_every_metric_is_typed_and_counters_never_decrease(db_url, sandbox):
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        query(w, 5)
        beat(w)
        first = families(metrics.render(w.db))
        for name in ("mi_requests", "mi_worker_outcomes", "mi_worker_processed",
                     "mi_request_duration_seconds", "mi_queue_depth", "mi_worker_up",
                     "mi_worker_in_flight", "mi_alerts_open"):
            assert name in first, sorted(first)
        assert all(f.type != "unknown" for f in first.values()), \
            [f.name for f in first.values() if f.type == "unknown"]
        assert first["mi_requests"].type == "counter"
        assert first["mi_request_duration_seconds"].type == "histogram"
        assert first["mi_queue_depth"].type == "gauge"
        mine = {s.labels["outcome"]: s.value for s in first["mi_requests"].samples
                if s.labels["worker"] == w.worker.worker_id and s.name == "mi_requests_total"}
        assert mine.get("COMPLETED") == 5, mine
        count = [s.value for s in first["mi_request_duration_seconds"].samples
                 if s.name.endswith("_count") and s.labels["interface"] == "1101"]
        assert count == [5]
        up = [s.value for s in first["mi_worker_up"].samples
              if s.labels["worker"] == w.worker.worker_id]
        assert up == [1.0]
        before = counter_values(first)
        # Scrape again without new work, then after more work: nothing goes down.
        again = counter_values(families(metrics.render(w.db)))
        assert again == before
        query(w, 3)
        beat(w)
        after = counter_values(families(metrics.render(w.db)))
        for key, value in before.items():
            assert after.get(key, -1) >= value, key
        completed = [v for (name, labels), v in after.items() if name == "mi_requests_total"
                     and ("outcome", "COMPLETED") in labels]
        assert completed == [8]
        worker_id = w.worker.worker_id
    # The worker stopped (its STOPPED heartbeat wrote the final totals): its counters stay,
    # and it is no longer up.
    from mi_worker.db import connect
    db = connect(db_url)
    try:
        final = families(metrics.render(db))
        stopped = counter_values(final)
        for key, value in after.items():
            assert stopped.get(key, -1) >= value, key
        assert [s.value for s in final["mi_worker_up"].samples
                if s.labels["worker"] == worker_id] == [0.0]
    finally:
        db.close()


def test_scrape_does_not_read_the_history(db_url, sandbox):
    """Counters come from the heartbeat rows: deleting the whole history changes none."""
    with InProcessWorker(make_settings(db_url, sandbox)) as w:
        query(w, 4)
        wait_until(lambda: w.worker.in_flight == 0, 10)
        beat(w)
        before = counter_values(families(metrics.render(w.db)))
        conn = w.db.raw()
        conn.cursor().execute("DELETE FROM medical_insurance_requests")
        if not getattr(conn, "autocommit", True):
            conn.commit()
        conn.close()
        after = counter_values(families(metrics.render(w.db)))
        assert after == before and any(v == 4 for v in after.values())


def enqueue(db, code: str, psn: str) -> int:
    row = db.run_one("enqueue_request", interface_code=code, input_data='{"data": {}}',
                     priority=5, timeout_seconds=600, max_retry_count=0, psn_no=psn,
                     insuplc_admdvs=None, idempotency_key=None, his_fee_id=None,
                     parent_request_id=None)
    return int(row["request_id"])


def test_queue_depth_gauge_from_open_rows(db):
    for i in range(3):
        enqueue(db, "1101", f"Q{i}")
    fams = families(metrics.render(db))
    depth = {(s.labels["status"], s.labels["priority"]): s.value
             for s in fams["mi_queue_depth"].samples}
    assert depth == {("PENDING", "5"): 3.0}


def test_http_endpoint_and_textfile(db_url, sandbox, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = make_settings(db_url, sandbox)
    with InProcessWorker(settings) as w:
        query(w, 2)
        beat(w)
        server = metrics.serve(w.db, port)
        try:
            assert server.server_address[0] == "127.0.0.1"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode("utf-8")
        finally:
            server.shutdown()
            server.server_close()
        fams = families(text)
        assert sum(s.value for s in fams["mi_requests"].samples
                   if s.name == "mi_requests_total") == 2
    target = tmp_path / "tf" / "mi_worker.prom"
    result = CliRunner().invoke(main, ["metrics", "--textfile", str(target)],
                                env={"MI_WORKER_DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert "mi_requests" in families(target.read_text(encoding="utf-8"))
    bad = CliRunner().invoke(main, ["metrics", "--textfile", "/proc/nope/x.prom"],
                             env={"MI_WORKER_DATABASE_URL": db_url})
    assert bad.exit_code == 2 and "cannot write the metrics file" in bad.output  # usage error


def test_run_metrics_port_serves_from_a_real_worker_process(db, db_url, sandbox, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT, settings_toml
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "w.toml"
    cfg.write_text(settings_toml(make_settings(db_url, sandbox)), encoding="utf-8")
    env = dict(os.environ)
    env.pop("MI_WORKER_CONFIG", None)
    out = open(tmp_path / "w.out", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mi_worker", "--config", str(cfg), "run",
                             "--metrics-port", str(port)], cwd=str(ROOT), env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: any(r["status"] == "RUNNING" for r in db.run("heartbeat_rows")), 30)
        r = call(db, "1101", json.dumps({"data": {"psn_no": "M1"}}), timeout=20)
        assert r.error_code == 0, r

        def scraped() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                return families(resp.read().decode("utf-8"))

        # The heartbeat (1 s in tests) carries the count to the database.
        wait_until(lambda: sum(s.value for s in scraped()["mi_requests"].samples
                               if s.name == "mi_requests_total") == 1, 15)
    finally:
        proc.terminate()
        proc.wait(30)
        out.close()
    assert proc.returncode == 0, (tmp_path / "w.out").read_text()


def test_workers_silent_for_a_day_leave_the_exposition(db):
    from mi_worker import stats
    for wid, days in (("old:1", 2), ("recent:1", 0)):
        s = stats.CallStats()
        s.record("1101", "COMPLETED", 0.1)
        db.run("heartbeat", service_name="medical_insurance_sdk", worker_id=wid, host="h",
               pid=1, version="t", status="STOPPED", in_flight=0, processed_total=1, gateway_kind="nhsa",
           gateway_tls_verified=1)
        db.run("heartbeat_counters", service_name="medical_insurance_sdk", worker_id=wid,
               counters_json=s.to_json(), **s.totals())
        if days:
            ago = ("now() - interval '2 days'" if db.name == "postgresql"
                   else "strftime('%Y-%m-%d %H:%M:%f', 'now', '-2 days')")
            conn = db.raw()
            conn.cursor().execute(f"UPDATE sdk_heartbeat SET last_heartbeat = {ago} "
                                  f"WHERE worker_id = '{wid}'")
            if not getattr(conn, "autocommit", True):
                conn.commit()
            conn.close()
    fams = families(metrics.render(db))
    workers = {s.labels["worker"] for s in fams["mi_requests"].samples}
    assert workers == {"recent:1"}
