"""What happens once per finished gateway call: count it (metrics) and log one line.

Kept out of worker.py so the worker's completion path calls one function in one place.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from mi_worker import stats
from mi_worker.logs import log_finished
from mi_worker.states import Outcome


def outcome_of(result: Any) -> str:
    """COMPLETED, UNCERTAIN, RETRY (sent back to the queue) or ERROR."""
    outcome = getattr(result, "outcome", None)
    kept = (Outcome.COMPLETED, Outcome.UNCERTAIN, Outcome.RETRY)
    return (outcome if outcome in kept else Outcome.ERROR).value


def finished(worker: Any, req: Any, result: Any) -> None:
    """Record one call's outcome; never raises (observability must not fail a call)."""
    try:
        outcome = outcome_of(result)
        seconds = max(time.monotonic() - req.claimed_monotonic, 0.0)
        stats.stats_of(worker).record(req.interface_code, outcome, seconds)
        log_finished(request_id=req.request_id, interface_code=req.interface_code,
                     msgid=getattr(result, "msgid", None) or req.msgid, outcome=outcome,
                     attempts=req.attempts, http_attempts=len(result.attempt_log or []),
                     latency_ms=round(seconds * 1000), worker_id=worker.worker_id,
                     psn_no=req.psn_no, infcode=result.infcode, error_code=result.error_code)
    except Exception:  # pragma: no cover - defensive
        logging.getLogger("mi_worker.observe").debug("could not record a call", exc_info=True)
