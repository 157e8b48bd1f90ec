"""The contract between the worker and whatever answers for the centre.

The worker only knows this module: it hands a :class:`CallContext` to a :class:`Gateway` and
gets a :class:`GatewayResult` back. The NHSA client (``client.py``), the no-op gateway used by
the benchmark and any test double implement the same two methods, so the claim loop never
depends on transports, signing or retry rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol

from mi_worker.states import Outcome

__all__ = ["CallContext", "Gateway", "GatewayResult", "Outcome"]


@dataclass
class CallContext:
    """One claimed row, as the gateway needs it.

    ``msgid`` was assigned by the claim statement and is already stored on the row, so a
    2601 reversal can always find it. ``new_msgid`` asks the database for a fresh one and
    stores it on the row before returning it: a gateway must call it before it *resends* a
    request that may already have reached the centre (the centre rejects a repeated msgid),
    and may reuse ``msgid`` when the earlier attempt never left this host. It returns None
    when the row is no longer this worker's (its lease was lost): the gateway must then stop
    without sending and answer ``Outcome.LEASE_LOST``.
    """

    request_id: int
    interface_code: str
    input: Dict[str, Any]
    msgid: str
    deadline_monotonic: float
    attempt: int = 1
    max_attempts: int = 3
    psn_no: Optional[str] = None
    insuplc_admdvs: Optional[str] = None
    new_msgid: Optional[Callable[[], Optional[str]]] = None


@dataclass
class GatewayResult:
    """The outcome of one row's call, with everything the worker writes back in one statement.

    ``response`` is the centre's whole answer (the envelope with infcode, inf_refmsgid,
    output, err_msg…), which is what the HIS receives in ``@result``. ``attempt_log`` holds
    one dict per HTTP attempt (msgid, latency_ms, http_status, infcode, error) and is stored
    on the row as JSON for audit.
    """

    outcome: Outcome
    response: Optional[Dict[str, Any]] = None
    infcode: Optional[str] = None
    error_code: Optional[int] = None
    error_message: Optional[str] = None
    msgid: Optional[str] = None
    retry_after: float = 1.0
    attempt_log: List[Dict[str, Any]] = field(default_factory=list)


class Gateway(Protocol):
    """Anything that can answer a claimed row. Must be thread-safe: N worker threads share it."""

    def call(self, ctx: CallContext) -> GatewayResult:
        """Send one request and classify the answer; never raises for gateway trouble."""
        ...

    def close(self) -> None:
        """Release connections (and sign out where the transport signs in)."""
        ...
