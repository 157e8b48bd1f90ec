"""When a waiting HIS caller looks at its row: the first poll timed from the interface's
recent latency (issue 17).

A caller of ``sp_medical_insurance_call_v2`` cannot be woken (no LISTEN through ODBC, no
CLR), so it polls. A fixed schedule (10 ms doubling to ``poll_ms``: looks at 0, 10, 30, 70,
150 ms) puts a 55 ms answer on the 70 ms look and a 75 ms answer on the 150 ms one: the
queue overhead was the schedule's, not the queue's. Workers know how long a row of each
interface takes from INSERT to written result, so each worker keeps a short record per
interface (:class:`LatencyBook`) and publishes its median to
``medical_insurance_interfaces.expected_ms`` every couple of seconds; the procedures (and
the embedded path below) then sleep until then, look, and look again after
:data:`ESTIMATE_STEP_MS`, a step that grows by half each time up to ``poll_ms``. Without a
fresh estimate (new interface, no worker has published for :data:`STALE_SECONDS`) the old
schedule applies unchanged.

The schedule is written four times, in Python (:func:`poll_delays`, the embedded path) and
in each procedure (sql/postgresql and sql/mssql migrations 012 and 013); tests hold the
procedures to it by counting their polls. An estimate only moves when the caller looks,
never what it is told: a wrong one costs latency or a few polls, not a result.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Deque, Dict, Iterator, List, Optional

FIRST_STEP_MS = 10
"""The fixed schedule's first step (no estimate: look at once, then 10 ms doubling)."""

ESTIMATE_STEP_MS = 5
"""The step after a first look timed from an estimate. Answers that miss that look mostly
come within a few ms of it (the estimate is their median). At 100 calls/s (bench latency,
paired runs; migration 013) the time from the written result to the caller having it was
5.1-5.7 ms p50 with 10 ms and 2.5-2.6 ms with 5 ms plus the worker's BUSY_POLLS, at 1.36-1.40
looks per call instead of 1.57 (the tighter claim wait leaves fewer late answers)."""

STALE_SECONDS = 600
"""An estimate no worker refreshed for this long is ignored (the SQL says the same)."""

MAX_EXPECTED_MS = 600_000
"""Published estimates are capped (the caller's deadline caps the first sleep anyway)."""

SAMPLES = 64
"""Per interface, the median of this many recent first attempts."""

MIN_SAMPLES = 3

PUBLISH_SECONDS = 2.0
"""How often a busy worker writes its estimates (an idle one writes nothing)."""


def poll_delays(expected_ms: Optional[int], poll_ms: int) -> Iterator[float]:
    """Seconds to sleep before each look after the INSERT, forever (the caller stops at a
    final state or its deadline, and caps each sleep by the time left).

    With an estimate: sleep until ``expected_ms`` after the INSERT (the first value is
    measured from there: the caller subtracts what the INSERT and lookup took), then 5 ms
    growing by half (5, 7, 10, 15, 22 …) up to ``poll_ms``. Without one: look at once, then
    10 ms doubling up to ``poll_ms`` (the schedule of every release before this one)."""
    poll = max(int(poll_ms or 100), FIRST_STEP_MS)
    step = min(FIRST_STEP_MS, poll)
    if expected_ms is not None and expected_ms > 0:
        yield min(int(expected_ms), MAX_EXPECTED_MS) / 1000.0
        step = min(ESTIMATE_STEP_MS, poll)
        while True:
            yield step / 1000.0
            step = min(step * 3 // 2, poll)
    yield 0.0
    while True:
        yield step / 1000.0
        step = min(step * 2, poll)


class LatencyBook:
    """Per interface, how long recent rows took from the caller's INSERT to their written
    result (queue wait + claim + gateway + write), in milliseconds.

    Only first attempts count: a retried row's time includes its back-off, which a caller
    waiting on a first attempt does not see. Thread-safe: rows finish on many threads, the
    publishing job reads on the scheduler's."""

    def __init__(self, samples: int = SAMPLES) -> None:
        self._samples = samples
        self._seen: Dict[str, Deque[float]] = {}
        self._fresh: Dict[str, bool] = {}
        self._lock = threading.Lock()

    def observe(self, interface_code: str, elapsed_ms: float) -> None:
        if elapsed_ms < 0:
            return
        with self._lock:
            seen = self._seen.get(interface_code)
            if seen is None:
                seen = self._seen[interface_code] = deque(maxlen=self._samples)
            seen.append(elapsed_ms)
            self._fresh[interface_code] = True

    def expected_ms(self, interface_code: str) -> Optional[int]:
        """The median of the recent samples, or None with fewer than MIN_SAMPLES."""
        with self._lock:
            seen = sorted(self._seen.get(interface_code, ()))
        if len(seen) < MIN_SAMPLES:
            return None
        return min(int(round(seen[len(seen) // 2])), MAX_EXPECTED_MS)

    def publishable(self) -> List[Dict[str, object]]:
        """The estimates that changed since the last call, as parameters of
        ``record_interface_latency``; an idle worker returns [] and writes nothing."""
        with self._lock:
            codes = [code for code, fresh in self._fresh.items() if fresh]
        out: List[Dict[str, object]] = []
        for code in codes:
            expected = self.expected_ms(code)
            if expected is None:
                continue
            with self._lock:
                self._fresh[code] = False
            out.append({"interface_code": code, "expected_ms": expected})
        return out
