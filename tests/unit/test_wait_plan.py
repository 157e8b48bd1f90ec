"""The poll schedule of a waiting caller and the worker's latency book (issue 17)."""
from __future__ import annotations

import itertools
import threading

from mi_worker.wait_plan import MIN_SAMPLES, LatencyBook, poll_delays


def _first(expected, poll_ms, n):
    return [round(d * 1000) for d in itertools.islice(poll_delays(expected, poll_ms), n)]


def test_without_an_estimate_the_schedule_is_the_old_one():
    # look at once, then 10 ms doubling up to poll_ms: looks at 0, 10, 30, 70, 150, 250 ms
    assert _first(None, 100, 7) == [0, 10, 20, 40, 80, 100, 100]
    assert _first(0, 100, 3) == [0, 10, 20]
    assert _first(None, 25, 5) == [0, 10, 20, 25, 25]
    assert _first(None, 5, 3) == [0, 10, 10]  # the 10 ms floor of the procedures


def test_with_an_estimate_the_first_look_is_when_the_answer_is_due():
    # sleep the estimate, then 5 ms growing by half (integer ms, as T-SQL computes it)
    assert _first(57, 100, 10) == [57, 5, 7, 10, 15, 22, 33, 49, 73, 100]
    assert _first(57, 1000, 11) == [57, 5, 7, 10, 15, 22, 33, 49, 73, 109, 163]
    assert _first(57, 10, 4) == [57, 5, 7, 10]  # the smallest p_poll_ms caps the growth
    assert _first(3_600_000, 100, 1) == [600_000]  # capped; the deadline caps it again


def test_the_book_publishes_a_median_once_per_change():
    book = LatencyBook(samples=8)
    assert book.publishable() == []
    for ms in (50, 60):
        book.observe("1101", ms)
    assert book.expected_ms("1101") is None and book.publishable() == []  # too few
    book.observe("1101", 70)
    assert MIN_SAMPLES == 3
    assert book.publishable() == [{"interface_code": "1101", "expected_ms": 60}]
    assert book.publishable() == []  # nothing new: an idle worker writes nothing
    for ms in (200,) * 8:  # only the last `samples` count
        book.observe("1101", ms)
    assert book.publishable() == [{"interface_code": "1101", "expected_ms": 200}]
    book.observe("2207", -1)  # a clock oddity is not a sample
    assert book.expected_ms("2207") is None


def test_the_book_is_safe_across_threads():
    book = LatencyBook(samples=64)

    def feed(base):
        for i in range(2000):
            book.observe("1101", base + i % 10)

    threads = [threading.Thread(target=feed, args=(b,)) for b in (100, 100, 100, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 100 <= book.expected_ms("1101") <= 109
