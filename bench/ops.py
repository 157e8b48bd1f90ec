"""`python -m bench.ops`: what the day-two jobs cost on PostgreSQL (and SQLite).

* scrape: time of one `mi-worker metrics` scrape (metrics.render) with 10k and 1M history
  rows, next to the statement the old exposition ran on every scrape (metrics_by_interface,
  a GROUP BY over the whole history) on the same data;
* retention: rows/s moving old rows to the archive in batches, and the latency of the
  worker's claim statement while it runs compared with before it.

    python -m bench.ops [--quick] [--output bench/results]

Writes <output>/ops.json and ops.md. The machine is shared and small: compare the figures
with each other, not with other machines.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

from bench import common

SEED_HISTORY_PG = """
INSERT INTO medical_insurance_requests (interface_code, input_data, status, deadline_at,
    request_time, next_attempt_at, response_time, claimed_at, attempts, response_data)
SELECT CASE WHEN g % 3 = 0 THEN '2207' ELSE '1101' END, '{{"data":{{}}}}',
       CASE WHEN g % 50 = 0 THEN 'ERROR' ELSE 'COMPLETED' END,
       now() - interval '{days} days' + g * interval '10 ms',
       now() - interval '{days} days' + g * interval '10 ms',
       now() - interval '{days} days' + g * interval '10 ms',
       now() - interval '{days} days' + g * interval '10 ms' + interval '120 ms',
       now() - interval '{days} days' + g * interval '10 ms', 1, '{{"infcode":0}}'
FROM generate_series(1, {n}) g;
ANALYZE medical_insurance_requests;
"""

SEED_HISTORY_SQLITE = """
WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {n})
INSERT INTO medical_insurance_requests (interface_code, input_data, status, deadline_at,
    request_time, next_attempt_at, response_time, claimed_at, attempts, response_data)
SELECT CASE WHEN i % 3 = 0 THEN '2207' ELSE '1101' END, '{{"data":{{}}}}',
       CASE WHEN i % 50 = 0 THEN 'ERROR' ELSE 'COMPLETED' END,
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-{days} days'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-{days} days'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-{days} days'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-{days} days', '+0.120 seconds'),
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-{days} days'), 1, '{{"infcode":0}}'
FROM g;
"""


def _timed(fn, repeat: int) -> Dict[str, Any]:
    times: List[float] = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2),
            "runs": repeat}


def _workers(db, n: int = 4) -> None:
    """Heartbeat rows with counters, as running workers leave them."""
    from mi_worker import stats
    for i in range(n):
        s = stats.CallStats()
        for k in range(200):
            s.record("1101" if k % 2 else "2207", "COMPLETED" if k % 9 else "ERROR", 0.1)
        params = dict(service_name="medical_insurance_sdk", worker_id=f"bench:{i}", host="b",
                      pid=i, version="bench", status="RUNNING", in_flight=0,
                      processed_total=200)
        db.run("heartbeat", **params)
        db.run("heartbeat_counters", service_name=params["service_name"],
               worker_id=params["worker_id"], counters_json=s.to_json(), **s.totals())


def _db_with_history(dialect: str, n: int, days: int, tmp: Path, dbs) -> Any:
    from mi_worker.db import connect
    if dialect == "postgresql":
        name = dbs.new("ops")
        common.pg_exec(name, SEED_HISTORY_PG.format(n=int(n), days=days))
        db = connect(common.pg_url(name))
    else:
        path = tmp / f"ops-{n}-{days}.db"
        url = common.sqlite_prepare(path)
        db = connect(url)
        conn = db.raw()
        conn.cursor().execute(SEED_HISTORY_SQLITE.format(n=int(n), days=days))
        conn.commit()
        conn.close()
    return db


def scrape(dialect: str, sizes: List[int], tmp: Path, dbs, repeat: int) -> List[Dict[str, Any]]:
    from mi_worker import metrics
    out = []
    for n in sizes:
        common.log(f"ops: scrape {dialect} with {n} history rows")
        db = _db_with_history(dialect, n, 10, tmp, dbs)
        try:
            _workers(db)
            for i in range(16):
                db.run("enqueue_request", interface_code="1101", input_data='{"data":{}}',
                       priority=5, timeout_seconds=600, max_retry_count=0, psn_no=f"Q{i}",
                       insuplc_admdvs=None, idempotency_key=None, his_fee_id=None,
                       parent_request_id=None)
            metrics.render(db)  # warm
            new = _timed(lambda d=db: metrics.render(d), repeat)
            old = _timed(lambda d=db: d.run("metrics_by_interface"), max(3, repeat // 4))
        finally:
            db.close()
        out.append({"dialect": dialect, "history_rows": n, "scrape": new,
                    "old_full_scan_query": old})
    return out


def retention(dialect: str, n: int, tmp: Path, dbs, batch: int) -> Dict[str, Any]:
    from mi_worker import config
    from mi_worker.queue import Queue
    from mi_worker.retention import run_retention
    common.log(f"ops: retention {dialect}, {n} old rows, batches of {batch}")
    db = _db_with_history(dialect, n, 500, tmp, dbs)
    try:
        for _ in range(2000):
            db.run("enqueue_request", interface_code="1101", input_data='{"data":{}}',
                   priority=5, timeout_seconds=3600, max_retry_count=0, psn_no=None,
                   insuplc_admdvs=None, idempotency_key=None, his_fee_id=None,
                   parent_request_id=None)
        q = Queue(db, "bench:claim", "H00000000000", 120)

        def claim_latencies(stop: threading.Event, into: List[float], limit: int) -> None:
            while not stop.is_set() and len(into) < limit:
                t = time.perf_counter()
                rows = q.claim(1)
                into.append((time.perf_counter() - t) * 1000)
                for req in rows:
                    q.complete(req, "COMPLETED", infcode="0", response={"infcode": 0},
                               msgid=req.msgid, attempt_log=[])
                time.sleep(0.005)

        before: List[float] = []
        claim_latencies(threading.Event(), before, 200)
        s = config.Settings()
        s.jobs.retention_batch_rows = batch
        s.jobs.retention_max_rows = n
        during: List[float] = []
        stop = threading.Event()
        t = threading.Thread(target=claim_latencies, args=(stop, during, 1500))
        t.start()
        result = run_retention(db, s)
        stop.set()
        t.join(60)
    finally:
        db.close()

    def p(vals: List[float], q_: float) -> float:
        vals = sorted(vals)
        return round(vals[min(len(vals) - 1, int(q_ * len(vals)))], 2) if vals else None

    return {"dialect": dialect, "rows": n, "batch_rows": batch, "moved": result["moved"],
            "seconds": result["seconds"],
            "rows_per_second": round(result["moved"] / result["seconds"], 1)
            if result["seconds"] else None,
            "claim_ms_before": {"p50": p(before, 0.5), "p95": p(before, 0.95),
                                "n": len(before)},
            "claim_ms_during": {"p50": p(during, 0.5), "p95": p(during, 0.95),
                                "n": len(during)}}


def markdown(data: Dict[str, Any]) -> str:
    lines = ["# mi-worker day-two costs (`python -m bench.ops`)", "",
             f"{data['when']}, {data['machine'].get('cores', '?')} cores "
             f"({data['machine'].get('cpu_model', '?')}, shared), quick={data['quick']}. Scrape: "
             "`metrics.render` with 4 workers' heartbeat rows and 16 open rows, next to the "
             "GROUP BY over the history that the old exposition ran per scrape. Retention: "
             "archive mode; claim latency of `Queue.claim(1)` before and while it runs.",
             "", "## Metrics scrape", "",
             "| dialect | history rows | scrape median ms | max ms | old full-scan query ms |",
             "|---|---|---|---|---|"]
    for r in data["scrape"]:
        lines.append(f"| {r['dialect']} | {r['history_rows']:,} | {r['scrape']['median_ms']} | "
                     f"{r['scrape']['max_ms']} | {r['old_full_scan_query']['median_ms']} |")
    lines += ["", "## Retention", "",
              "| dialect | rows | batch | rows/s | claim p50/p95 ms before | during |",
              "|---|---|---|---|---|---|"]
    for r in data["retention"]:
        b, d = r["claim_ms_before"], r["claim_ms_during"]
        lines.append(f"| {r['dialect']} | {r['moved']:,} | {r['batch_rows']} | "
                     f"{r['rows_per_second']} | {b['p50']} / {b['p95']} | "
                     f"{d['p50']} / {d['p95']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ops", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output", type=Path, default=common.ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    sizes = [1000, 20000] if args.quick else [10000, 1000000]
    ret_rows = 5000 if args.quick else 100000
    dialects = ["sqlite"] + ([] if common.pg_available() else ["postgresql"])
    dbs = common.PgDatabases()
    data: Dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                            "quick": args.quick, "machine": common.machine_info(),
                            "scrape": [], "retention": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for d in dialects:
                data["scrape"] += scrape(d, sizes, Path(tmp), dbs, 10 if args.quick else 40)
                data["retention"].append(retention(d, ret_rows, Path(tmp), dbs, 500))
    finally:
        dbs.close()
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "ops.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    (args.output / "ops.md").write_text(markdown(data), encoding="utf-8")
    print(markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
