"""`mi-worker metrics`: Prometheus exposition of the cluster, built with prometheus_client.

Why this shape:

* Counters are monotonic totals only: every worker process keeps its own counts in memory
  (mi_worker/stats.py) and the heartbeat writes them to its sdk_heartbeat row, so a counter
  never goes down (retention may delete history; an IN_PROGRESS row is not a counter) and
  the scrape reads one row per worker process, never the request history.
* Gauges are what is in flight now: queue depth and the oldest open row come from the open
  rows only (ix_mir_open_rows), worker liveness from the heartbeat rows, open alerts from
  the alerts table (small, one row per incident).
* prometheus_client writes the text format (one HELP/TYPE group per metric, escaping) and
  serves it over HTTP for ``mi-worker run --metrics-port``.

``--textfile`` writes atomically (temp file + rename) for node_exporter's textfile collector,
which must never read a half-written file.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from mi_worker import monitor, stats
from mi_worker.db import Database

log = logging.getLogger("mi_worker.metrics")

# A worker process silent for longer leaves the exposition: every restart is a new worker
# label, and years of restarts must not pile up series (Prometheus treats a series that
# stops as ended; rate()/increase() are unaffected).
RETIRED_SECONDS = 86400.0


class DatabaseCollector:
    """A custom collector: every scrape reads the heartbeat rows and the open rows."""

    def __init__(self, db: Database, stale_seconds: float = 30.0) -> None:
        self.db = db
        self.stale_seconds = stale_seconds

    def describe(self) -> list:
        # No describe-time samples: registering must not touch the database.
        return []

    def collect(self) -> Iterator[Any]:
        workers = [w for w in self.db.run("metrics_workers")
                   if float(w["age_seconds"] or 0) <= RETIRED_SECONDS]
        yield from self._counters(workers)
        yield from self._worker_gauges(workers)
        yield from self._queue_gauges()
        yield from self._alert_gauges()

    def _counters(self, workers: list) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "mi_requests", "Finished gateway calls by worker process, interface and outcome "
            "(RETRY = sent back to the queue for another attempt).",
            labels=["worker", "interface", "outcome"])
        outcomes = CounterMetricFamily(
            "mi_worker_outcomes", "Finished gateway calls by worker process and outcome "
            "(the sdk_heartbeat columns DBAs read).", labels=["worker", "outcome"])
        processed = CounterMetricFamily(
            "mi_worker_processed", "Rows a worker process has finished handling.",
            labels=["worker"])
        events = CounterMetricFamily(
            "mi_webhook_notifications", "Alert webhook notifications by worker and result "
            "(delivered, failed after all retries, retried attempts).",
            labels=["worker", "result"])
        latency = HistogramMetricFamily(
            "mi_request_duration_seconds", "Claim-to-result time of finished gateway calls.",
            labels=["worker", "interface"])
        for w in workers:
            wid = str(w["worker_id"])
            processed.add_metric([wid], float(w["processed_total"] or 0))
            for outcome, column in stats.COLUMNS.items():
                outcomes.add_metric([wid, outcome], float(w[column] or 0))
            snap = stats.parse(w["counters_json"])
            for code, outcome, n in snap.get("requests", []):
                requests.add_metric([wid, str(code), str(outcome)], float(n))
            bounds = snap.get("buckets") or []
            for code, h in (snap.get("latency") or {}).items():
                if len(h) != len(bounds) + 2:
                    continue
                buckets = [(f"{b:g}", float(h[i])) for i, b in enumerate(bounds)]
                buckets.append(("+Inf", float(h[-1])))
                latency.add_metric([wid, str(code)], buckets, float(h[-2]))
            for name in ("delivered", "failed", "retried"):
                n = (snap.get("events") or {}).get(f"webhook_{name}")
                if n is not None:
                    events.add_metric([wid, name], float(n))
        yield from (requests, outcomes, processed, events, latency)

    def _worker_gauges(self, workers: list) -> Iterator[Any]:
        up = GaugeMetricFamily("mi_worker_up", "1 while the worker's heartbeat is fresh and it "
                               "is RUNNING.", labels=["worker", "host"])
        age = GaugeMetricFamily("mi_worker_heartbeat_age_seconds",
                                "Seconds since the worker's last heartbeat.",
                                labels=["worker", "host"])
        inflight = GaugeMetricFamily("mi_worker_in_flight", "Calls the worker is processing.",
                                     labels=["worker", "host"])
        for w in workers:
            lbl = [str(w["worker_id"]), str(w["host"] or "")]
            seconds = float(w["age_seconds"] or 0)
            alive = str(w["status"]) == "RUNNING" and seconds <= self.stale_seconds
            up.add_metric(lbl, 1.0 if alive else 0.0)
            age.add_metric(lbl, seconds)
            inflight.add_metric(lbl, float(w["in_flight"] or 0) if alive else 0.0)
        yield from (up, age, inflight)

    def _queue_gauges(self) -> Iterator[Any]:
        depth = GaugeMetricFamily("mi_queue_depth", "Open requests by status and priority.",
                                  labels=["status", "priority"])
        oldest = GaugeMetricFamily("mi_queue_oldest_age_seconds",
                                   "Age of the oldest open request by status.",
                                   labels=["status"])
        ages: dict = {}
        for r in monitor.rows(self.db.run("monitor_queue")):
            depth.add_metric([str(r["status"]), str(r["priority"])], float(r["depth"] or 0))
            ages[r["status"]] = max(ages.get(r["status"], 0), int(r["oldest_age_seconds"] or 0))
        for status, seconds in sorted(ages.items()):
            oldest.add_metric([str(status)], float(seconds))
        yield from (depth, oldest)

    def _alert_gauges(self) -> Iterator[Any]:
        family = GaugeMetricFamily("mi_alerts_open", "Open alerts by type.", labels=["type"])
        counts: dict = {}
        for a in monitor.alerts(self.db):
            counts[a["alert_type"]] = counts.get(a["alert_type"], 0) + 1
        for kind, n in sorted(counts.items()):
            family.add_metric([str(kind)], float(n))
        yield family


def registry(db: Database, stale_seconds: float = 30.0) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DatabaseCollector(db, stale_seconds))
    return reg


def render(db: Database, stale_seconds: float = 30.0) -> str:
    """The exposition text of one scrape."""
    return generate_latest(registry(db, stale_seconds)).decode("utf-8")


def serve(db: Database, port: int, host: str = "127.0.0.1",
          stale_seconds: float = 30.0) -> Optional[Any]:
    """Serve /metrics from this process (prometheus_client's threaded HTTP server).

    Bound to 127.0.0.1 unless told otherwise: the numbers name interfaces and hosts, and the
    hospital network decides who may read them. Returns the server (``shutdown()`` stops it).
    """
    server, _thread = start_http_server(port, addr=host, registry=registry(db, stale_seconds))
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return server


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
