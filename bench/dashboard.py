"""`python -m bench.dashboard`: each dashboard page's query time on a PostgreSQL history.

    python -m bench.dashboard                    10k and 1M rows, 7 runs per page
    python -m bench.dashboard --sizes 10000 --runs 5 --output /tmp/b

A history of n rows spread over 30 days (1101 / 2207 / 2201 / 5203 / 2601, 1 % ERROR,
0.1 % TIMEOUT, a few UNCERTAIN / NEEDS_MANUAL / PENDING, 100k patients, unique msgid and HIS
fee id) is generated in a fresh database, ANALYZEd, then every page's data is read the way
the dashboard reads it (mi_worker.dashboard.data on a read-only session): the median and max
of the runs, in milliseconds, for the queries alone and for the whole page rendered by Flask.
Writes bench/results/dashboard.json and dashboard.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

from bench import common

SEED = """
INSERT INTO medical_insurance_requests (interface_code, input_data, status, priority, psn_no,
    his_fee_id, msgid, request_time, response_time, deadline_at, next_attempt_at, attempts,
    error_code, error_message, needs_reversal)
SELECT (ARRAY['1101', '2207', '2201', '5203', '2601'])[1 + g % 5],
       '{{"psn_no":"43' || lpad((g % 100000)::text, 18, '0') || '","mdtrt_id":"M' || g || '"}}',
       CASE WHEN g % 100 = 0 THEN 'ERROR' WHEN g % 997 = 0 THEN 'TIMEOUT'
            WHEN g % 5003 = 0 THEN 'REVERSED' ELSE 'COMPLETED' END,
       5, '43' || lpad((g % 100000)::text, 18, '0'), 'FEE' || g,
       'H1101010000120240101' || lpad(g::text, 10, '0'),
       now() - ({n} - g) * interval '30 days' / {n},
       now() - ({n} - g) * interval '30 days' / {n} + (50 + g % 400) * interval '1 millisecond',
       now() - ({n} - g) * interval '30 days' / {n} + interval '30 seconds',
       now() - ({n} - g) * interval '30 days' / {n}, 1,
       CASE WHEN g % 100 = 0 THEN -1001 END,
       CASE WHEN g % 100 = 0 THEN 'infcode -1: 参保人信息不存在' END, 0
FROM generate_series(1, {n}) g;
UPDATE medical_insurance_requests SET status = 'UNCERTAIN', response_time = NULL
 WHERE request_id IN (SELECT request_id FROM medical_insurance_requests
                      WHERE interface_code = '2207' ORDER BY request_id DESC LIMIT 3);
UPDATE medical_insurance_requests SET status = 'NEEDS_MANUAL', response_time = NULL
 WHERE request_id IN (SELECT request_id FROM medical_insurance_requests
                      WHERE interface_code = '2201' ORDER BY request_id DESC LIMIT 2);
UPDATE medical_insurance_requests SET status = 'PENDING', response_time = NULL
 WHERE request_id IN (SELECT request_id FROM medical_insurance_requests
                      WHERE interface_code = '1101' ORDER BY request_id DESC LIMIT 5);
INSERT INTO sdk_heartbeat (service_name, worker_id, host, pid, version, started_at, status)
VALUES ('medical_insurance_sdk', 'bench-1', 'bench', 1, 'bench', now(), 'RUNNING');
ANALYZE;
"""


def timed(fn: Callable[[], Any], runs: int) -> Dict[str, float]:
    fn()  # warm: connection, prepared statement, buffers
    times: List[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}


def measure(dbname: str, n: int, runs: int) -> Dict[str, Any]:
    import datetime as dt

    from mi_worker.dashboard import app as app_module
    from mi_worker.dashboard import data
    from mi_worker.dashboard.app import create_app
    from mi_worker.dashboard.server import open_read_only

    db = open_read_only(common.pg_url(dbname))
    app_module.OVERVIEW_TTL = 0.0  # measure every overview reading, not the shared one
    client = create_app(db).test_client()
    mid = common.pg_query(dbname, "SELECT max(request_id) / 2, max(request_id) "
                                  "FROM medical_insurance_requests")[0]
    middle, newest = int(mid[0]), int(mid[1])
    psn = "43" + str(4242).rjust(18, "0")
    msgid = "H1101010000120240101" + str(middle).rjust(10, "0")
    ten_days = (dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))
                - dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S")
    ten_days_end = (dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))
                    - dt.timedelta(days=10) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    zone = dt.timezone(dt.timedelta(hours=8))

    def page(args: Dict[str, str]) -> Callable[[], Any]:
        f = data.parse_filter(args, zone)
        return lambda: data.requests_page(db, f)

    cases = [
        ("overview", "/", lambda: data.overview(db, recon_day=dt.date.today())),
        ("requests, first page", "/requests", page({})),
        ("requests, deep keyset page", f"/requests?before={middle}", page({"before": str(middle)})),
        ("requests, status=ERROR", "/requests?status=ERROR", page({"status": "ERROR"})),
        ("requests, status=ERROR deep", f"/requests?status=ERROR&before={middle}",
         page({"status": "ERROR", "before": str(middle)})),
        ("requests, interface 2207", "/requests?interface_code=2207",
         page({"interface_code": "2207"})),
        ("requests, psn_no", f"/requests?psn_no={psn}", page({"psn_no": psn})),
        ("requests, msgid", f"/requests?msgid={msgid}", page({"msgid": msgid})),
        ("requests, his_fee_id", f"/requests?his_fee_id=FEE{middle}",
         page({"his_fee_id": f"FEE{middle}"})),
        ("requests, one hour 10 days ago", f"/requests?from={ten_days}&to={ten_days_end}",
         page({"from": ten_days, "to": ten_days_end})),
        ("request page", f"/requests/{newest}", lambda: data.request_detail(db, newest)),
        ("doubtful rows", "/doubtful", lambda: data.doubtful(db)),
        ("alerts", "/alerts", lambda: data.alerts(db)),
        ("reconciliation", "/reconciliation", lambda: data.reconciliation(db)),
    ]
    out = []
    try:
        for label, url, fn in cases:
            q = timed(fn, runs)
            r = timed(lambda u=url: _ok(client.get(u)), runs)
            out.append({"page": label, "url": url, "query": q, "page_render": r})
            common.log(f"dashboard {n}: {label}: queries {q['median_ms']} ms, "
                       f"page {r['median_ms']} ms")
    finally:
        db.close()
    return {"rows": n, "runs": runs, "pages": out}


def _ok(resp) -> None:
    if resp.status_code != 200:
        raise RuntimeError(f"HTTP {resp.status_code}")


def run(sizes: List[int], runs: int) -> Dict[str, Any]:
    why = common.pg_available()
    if why:
        raise SystemExit(f"PostgreSQL not available: {why}")
    dbs = common.PgDatabases()
    results = []
    try:
        for n in sizes:
            name = dbs.new(f"dash{n}")
            t0 = time.perf_counter()
            common.pg_exec(name, SEED.format(n=int(n)))
            common.log(f"dashboard: seeded {n} rows in {time.perf_counter() - t0:.1f} s")
            results.append(measure(name, n, runs))
            dbs.drop(name)
    finally:
        dbs.close()
    return {"machine": common.machine_info(), "results": results}


def markdown(doc: Dict[str, Any]) -> str:
    sizes = [r["rows"] for r in doc["results"]]
    head = "| page | " + " | ".join(f"queries @ {n:,} (median / max ms) | page @ {n:,}"
                                     for n in sizes) + " |"
    lines = ["# Dashboard page times (PostgreSQL)", "", head,
             "|" + "---|" * (1 + 2 * len(sizes))]
    for i, p in enumerate(doc["results"][0]["pages"]):
        cells = []
        for r in doc["results"]:
            q, pr = r["pages"][i]["query"], r["pages"][i]["page_render"]
            cells += [f"{q['median_ms']} / {q['max_ms']}", f"{pr['median_ms']}"]
        lines.append(f"| {p['page']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,1000000")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--output", type=Path, default=common.ROOT / "bench" / "results")
    args = ap.parse_args(argv)
    doc = run([int(s) for s in args.sizes.split(",")], args.runs)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "dashboard.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False),
                                                encoding="utf-8")
    text = markdown(doc)
    (args.output / "dashboard.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
