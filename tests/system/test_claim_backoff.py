"""The claim loop's idle back-off (issue 17): quick looks while rows keep arriving, the
doubling back-off only once they stop, and an idle queue claimed no faster than before.

The worker's sleeps between claims are recorded as it chooses them (the argument of its
stop event's wait), next to what each claim returned, so the test reads the schedule itself
rather than timing it on a busy machine.
"""
from __future__ import annotations

import threading
from typing import List, Tuple

from conftest import InProcessWorker, make_settings, wait_until
from mi_worker.his_call import call
from mi_worker.worker import BUSY_POLLS

INPUT = '{"data":{"psn_no":"P1"}}'
MIN_POLL = 0.01
POLL = 0.16


def _recording(w: InProcessWorker) -> List[Tuple[str, float]]:
    """(event, value) as the claim loop runs: ("claim", rows found), ("sleep", seconds)."""
    events: List[Tuple[str, float]] = []
    lock = threading.Lock()
    claim, wait = w.worker.queue.claim, w.worker._stop.wait

    def claiming(n: int):
        rows = claim(n)
        with lock:
            events.append(("claim", float(len(rows))))
        return rows

    def sleeping(timeout=None):
        with lock:
            events.append(("sleep", float(timeout)))
        return wait(timeout)

    w.worker.queue.claim = claiming
    w.worker._stop.wait = sleeping
    return events


def _last_hit(events: List[Tuple[str, float]]) -> int:
    return max(i for i, (kind, v) in enumerate(events) if kind == "claim" and v > 0)


def _sleeps_after_last_hit(events: List[Tuple[str, float]]) -> List[float]:
    return [v for kind, v in events[_last_hit(events) + 1:] if kind == "sleep"]


def test_after_rows_the_worker_looks_quickly_then_backs_off(db_url, sandbox):
    settings = make_settings(db_url, sandbox,
                             worker={"min_poll_interval": MIN_POLL, "poll_interval": POLL})
    with InProcessWorker(settings) as w:
        events = _recording(w)
        assert call(w.db, "1101", INPUT, timeout=20).error_code == 0
        wait_until(lambda: len(_sleeps_after_last_hit(events)) >= BUSY_POLLS + 6, 20,
                   message="the back-off after the row")
    sleeps = _sleeps_after_last_hit(events)
    # the quick looks at the default min_poll_interval (2 ms) span the 10 ms between rows of
    # 100 HIS calls/s, the rate the latency target is measured at
    assert BUSY_POLLS * 0.002 >= 0.010
    # the sleep after the claim that found the row (none if that claim came back full: the
    # loop claims again at once), then one after each of BUSY_POLLS empty claims: all short
    hit = _last_hit(events)
    quick = BUSY_POLLS + (1 if events[hit + 1][0] == "sleep" else 0)
    assert sleeps[:quick] == [MIN_POLL] * quick, sleeps
    # then the doubling back-off, as before, up to poll_interval
    assert sleeps[quick:quick + 5] == [0.02, 0.04, 0.08, POLL, POLL], sleeps


def test_an_idle_queue_backs_off_at_once(db_url, sandbox):
    settings = make_settings(db_url, sandbox,
                             worker={"min_poll_interval": MIN_POLL, "poll_interval": POLL})
    with InProcessWorker(settings) as w:
        events = _recording(w)
        wait_until(lambda: sum(k == "sleep" for k, _ in events) >= 6, 20,
                   message="six idle sleeps")
    sleeps = [v for k, v in events if k == "sleep"]
    assert all(v == 0 for k, v in events if k == "claim"), events
    # no quick looks without rows: the first empty claim already doubles the sleep
    assert MIN_POLL not in sleeps, sleeps
    assert sleeps[-1] == POLL, sleeps
