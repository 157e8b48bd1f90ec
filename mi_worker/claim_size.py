"""How many rows one worker claims at once and may hold, from what it measures (issue 17).

The defaults must be the fast configuration, whatever the gateway does:

* the claim size starts at ``worker.batch_size`` and doubles while claims come back full (a
  backlog: one round trip fetches more rows), up to ``worker.max_batch_size``; a claim that
  comes back short halves it again (the backlog is gone; a big claim would only lock more
  candidate rows and starve the other workers);
* with ``worker.prefetch = -1`` (the default) the rows allowed to wait for a free thread are
  the rows the threads can *start* within PREFETCH_HORIZON at the measured call time:
  ``threads × horizon / call_seconds``. A no-op or 1 ms gateway gets a big batch in hand, a
  100 ms gateway a few rows (so a thread finds its next row at once instead of waiting a
  claim round trip), a slow one none. A prefetched row therefore waits for its thread for
  about the horizon at most — far below any lease, so the lease never needs extending for a
  row that has not started, and a crash strands only rows that were about to start anyway.

Pure arithmetic, no I/O, one instance per dispatcher (the worker serialises the calls).
"""
from __future__ import annotations

from typing import Optional

#: A prefetched row waits at most about this long for its thread (seconds of queued work).
PREFETCH_HORIZON = 0.025
#: Weight of the newest call in the moving average of the call time.
CALL_EMA = 0.1


class ClaimSizer:
    """The dispatcher's claim size and capacity (threads + rows allowed to wait)."""

    def __init__(self, threads: int, batch_size: int, max_batch_size: int, prefetch: int,
                 horizon: float = PREFETCH_HORIZON) -> None:
        self.threads = max(1, threads)
        self.floor = max(1, batch_size)
        self.ceiling = max(self.floor, max_batch_size)
        self.fixed_prefetch: Optional[int] = prefetch if prefetch >= 0 else None
        self.horizon = horizon
        self.size = self.floor
        self.call_seconds: Optional[float] = None

    def observe_call(self, seconds: float) -> None:
        """A gateway thread held a row for ``seconds`` (moving average)."""
        if self.call_seconds is None:
            self.call_seconds = seconds
        else:
            self.call_seconds += CALL_EMA * (seconds - self.call_seconds)

    @property
    def prefetch(self) -> int:
        """Rows allowed to wait for a thread now: fixed, or what starts within the horizon."""
        if self.fixed_prefetch is not None:
            return self.fixed_prefetch
        if self.call_seconds is None:  # nothing measured yet: claim for idle threads only
            return 0
        startable = self.threads * self.horizon / max(self.call_seconds, 1e-5)
        return max(0, min(self.ceiling, int(startable)))

    @property
    def capacity(self) -> int:
        """Rows this process may hold before a thread is free for them."""
        return self.threads + self.prefetch

    def want(self, free: int) -> int:
        """Rows to ask for with ``free`` slots."""
        return max(0, min(self.size, free))

    def claimed(self, asked: int, got: int) -> None:
        """Grow while full claims of the whole size come back; shrink on a short one."""
        if got >= asked and asked >= self.size:
            self.size = min(self.size * 2, self.ceiling)
        elif got < asked:
            self.size = max(self.floor, self.size // 2)
