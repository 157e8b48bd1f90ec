"""Per-process call counters: what every finished call adds, kept in memory and written to the
heartbeat row (sdk_heartbeat) by the heartbeat job.

Why in the heartbeat row: a Prometheus scrape then reads one row per worker process instead of
grouping the whole request history, so it costs the same with 100 rows or 50 million, and the
totals are true counters (they only grow for the life of the process; a restarted worker is a
new ``worker`` label starting from zero, which Prometheus' ``rate()`` handles). Retention can
move or delete history rows without making a counter go down.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Dict, List, Tuple

from mi_worker.states import Outcome

# Latency buckets in seconds (claim to result, as the worker measures it).
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OUTCOMES = tuple(o.value for o in (Outcome.COMPLETED, Outcome.ERROR, Outcome.UNCERTAIN,
                                   Outcome.RETRY))
COLUMNS = dict(zip(OUTCOMES, ("completed_total", "error_total", "uncertain_total",
                              "requeued_total")))


class CallStats:
    """Thread-safe monotonic counters of one worker process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Dict[Tuple[str, str], int] = {}
        self._latency: Dict[str, List[float]] = {}  # code -> bucket counts..., sum, count
        self._events: Dict[str, int] = {}

    def record(self, interface_code: str, outcome: str, seconds: float) -> None:
        """One finished gateway call of ``interface_code`` ending in ``outcome``."""
        code = str(interface_code).strip()
        with self._lock:
            key = (code, outcome)
            self._requests[key] = self._requests.get(key, 0) + 1
            h = self._latency.setdefault(code, [0] * len(BUCKETS) + [0.0, 0])
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    h[i] += 1
            h[-2] += max(seconds, 0.0)
            h[-1] += 1

    def add(self, event: str, n: int = 1) -> None:
        """Count something other than a call (webhook deliveries and failures)."""
        with self._lock:
            self._events[event] = self._events.get(event, 0) + n

    def totals(self) -> Dict[str, int]:
        """Totals by outcome, named after the sdk_heartbeat columns."""
        with self._lock:
            out = {col: 0 for col in COLUMNS.values()}
            for (_, outcome), n in self._requests.items():
                out[COLUMNS.get(outcome, "error_total")] += n
            return out

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            return {"v": 1,
                    "requests": [[c, o, n] for (c, o), n in sorted(self._requests.items())],
                    "buckets": list(BUCKETS),
                    "latency": {c: list(h) for c, h in sorted(self._latency.items())},
                    "events": dict(sorted(self._events.items()))}

    def to_json(self) -> str:
        return json.dumps(self.snapshot(), separators=(",", ":"))


_attach_lock = threading.Lock()


def stats_of(owner: Any) -> CallStats:
    """The CallStats attached to a worker (created on first use, so Worker needs no change)."""
    found = getattr(owner, "call_stats", None)
    if found is not None:
        return found
    with _attach_lock:
        found = getattr(owner, "call_stats", None)
        if found is None:
            found = CallStats()
            owner.call_stats = found
        return found


def heartbeat_counter_params(worker: Any) -> Dict[str, Any]:
    """Parameters of the ``heartbeat_counters`` query for this worker."""
    s = stats_of(worker)
    return dict(service_name=worker.settings.worker.service_name, worker_id=worker.worker_id,
                counters_json=s.to_json(), **s.totals())


def parse(text: Any) -> Dict[str, Any]:
    """A heartbeat row's counters_json, tolerant of NULL and foreign text."""
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
