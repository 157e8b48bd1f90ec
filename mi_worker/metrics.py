"""`mi-worker metrics`: Prometheus text exposition from the database.

Counters and a latency histogram per interface and outcome, queue depth and worker gauges.
``--textfile`` writes atomically (temp file + rename) for node_exporter's textfile collector,
which must never read a half-written file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import List

from mi_worker import monitor
from mi_worker.db import Database

BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(db: Database) -> str:
    out: List[str] = []
    by_itf = monitor.rows(db.run("metrics_by_interface"))
    out += ["# HELP mi_requests_total Requests by interface code and outcome.",
            "# TYPE mi_requests_total counter"]
    for r in by_itf:
        out.append(f'mi_requests_total{{interface="{_label(r["interface_code"])}",'
                   f'result="{_label(r["result_status"])}"}} {int(r["n"])}')
    out += ["# HELP mi_request_duration_seconds Time from enqueue to result, per interface.",
            "# TYPE mi_request_duration_seconds histogram"]
    merged: dict = {}
    for r in by_itf:
        m = merged.setdefault(r["interface_code"], {"count": 0, "sum": 0.0,
                                                    **{b: 0 for b in BUCKETS_MS}})
        m["count"] += int(r["latency_count"] or 0)
        m["sum"] += float(r["latency_sum_ms"] or 0) / 1000.0
        for b in BUCKETS_MS:
            m[b] += int(r[f"le_{b}"] or 0)
    for code, m in sorted(merged.items()):
        lbl = f'interface="{_label(code)}"'
        for b in BUCKETS_MS:
            out.append(f'mi_request_duration_seconds_bucket{{{lbl},le="{b / 1000:g}"}} {m[b]}')
        out.append(f'mi_request_duration_seconds_bucket{{{lbl},le="+Inf"}} {m["count"]}')
        out.append(f"mi_request_duration_seconds_sum{{{lbl}}} {m['sum']:.3f}")
        out.append(f"mi_request_duration_seconds_count{{{lbl}}} {m['count']}")
    out += ["# HELP mi_queue_depth Open requests by status and priority.",
            "# TYPE mi_queue_depth gauge"]
    queue = monitor.monitor(db, "queue")
    for r in queue:
        out.append(f'mi_queue_depth{{status="{_label(r["status"])}",'
                   f'priority="{r["priority"]}"}} {int(r["depth"])}')
    out += ["# HELP mi_queue_oldest_age_seconds Age of the oldest open request by status.",
            "# TYPE mi_queue_oldest_age_seconds gauge"]
    oldest: dict = {}
    for r in queue:
        oldest[r["status"]] = max(oldest.get(r["status"], 0), int(r["oldest_age_seconds"] or 0))
    for st, age in sorted(oldest.items()):
        out.append(f'mi_queue_oldest_age_seconds{{status="{_label(st)}"}} {age}')
    out += ["# HELP mi_worker_up 1 when the worker's heartbeat is fresh (UP).",
            "# TYPE mi_worker_up gauge",
            "# HELP mi_worker_heartbeat_age_seconds Seconds since the worker's last heartbeat.",
            "# TYPE mi_worker_heartbeat_age_seconds gauge",
            "# HELP mi_worker_in_flight Calls the worker is processing.",
            "# TYPE mi_worker_in_flight gauge"]
    for r in monitor.monitor(db, "health"):
        if r["worker_id"] == "*":
            continue
        lbl = f'worker="{_label(r["worker_id"])}",host="{_label(r["host"])}"'
        out.append(f"mi_worker_up{{{lbl}}} {1 if r['status'] == 'UP' else 0}")
        out.append(f"mi_worker_heartbeat_age_seconds{{{lbl}}} "
                   f"{int(r['seconds_since_heartbeat'] or 0)}")
        out.append(f"mi_worker_in_flight{{{lbl}}} {int(r['in_flight'] or 0)}")
    out += ["# HELP mi_alerts_open Open alerts by type.", "# TYPE mi_alerts_open gauge"]
    counts: dict = {}
    for a in monitor.alerts(db):
        counts[a["alert_type"]] = counts.get(a["alert_type"], 0) + 1
    for kind, n in sorted(counts.items()):
        out.append(f'mi_alerts_open{{type="{_label(kind)}"}} {n}')
    return "\n".join(out) + "\n"


def write_textfile(text: str, path: str) -> None:
    """Atomic replace, so the collector reads either the old file or the new one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mi_worker.", suffix=".prom.tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
