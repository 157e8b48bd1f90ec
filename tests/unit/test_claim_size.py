"""The adaptive claim size and prefetch (mi_worker/claim_size.py, issue 17).

Grows while claims come back full, shrinks on a short one, never beyond its bounds; the rows
allowed to wait for a thread follow the measured call time (many with a fast gateway, a few
at 100 ms, none when calls are slow), so a prefetched row waits about the horizon at most.
"""
from __future__ import annotations

import pytest

from mi_worker.claim_size import PREFETCH_HORIZON, ClaimSizer


def test_the_claim_size_doubles_while_full_and_halves_on_a_short_claim():
    s = ClaimSizer(threads=16, batch_size=16, max_batch_size=256, prefetch=-1)
    sizes = []
    for _ in range(6):
        asked = s.want(10_000)
        s.claimed(asked, asked)  # a backlog: every claim full
        sizes.append(s.size)
    assert sizes == [32, 64, 128, 256, 256, 256]
    s.claimed(256, 3)  # the backlog is gone
    assert s.size == 128
    for _ in range(10):
        s.claimed(s.want(10_000), 0)
    assert s.size == 16  # never below batch_size


def test_a_claim_limited_by_free_threads_does_not_grow_the_size():
    s = ClaimSizer(threads=4, batch_size=16, max_batch_size=256, prefetch=0)
    asked = s.want(4)
    s.claimed(asked, asked)
    assert asked == 4 and s.size == 16


@pytest.mark.parametrize("call_s, expected", [
    (0.0001, 256),  # no-op gateway: the cap
    (0.1, int(32 * PREFETCH_HORIZON / 0.1)),  # 100 ms: a few rows in hand
    (2.0, 0),  # slow gateway: none
])
def test_adaptive_prefetch_is_the_work_the_threads_start_within_the_horizon(call_s, expected):
    s = ClaimSizer(threads=32, batch_size=16, max_batch_size=256, prefetch=-1)
    assert s.prefetch == 0 and s.capacity == 32  # nothing measured: idle threads only
    for _ in range(100):
        s.observe_call(call_s)
    assert s.prefetch == expected and s.capacity == 32 + expected
    # what waits is what starts within ~the horizon at the measured rate
    assert s.prefetch * call_s / 32 <= PREFETCH_HORIZON + 1e-9


def test_a_fixed_prefetch_and_a_fixed_size_stay_as_configured():
    s = ClaimSizer(threads=8, batch_size=16, max_batch_size=16, prefetch=8)
    for _ in range(50):
        s.observe_call(0.0001)
        s.claimed(s.want(100), s.want(100))
    assert s.prefetch == 8 and s.capacity == 16 and s.size == 16
