"""The contract between the worker and whatever answers for the centre.

The worker only knows this module: it hands a :class:`CallContext` to a :class:`Gateway` and
gets a :class:`GatewayResult` back. The NHSA client (``client.py``), the no-op gateway used by
the benchmark and any test double implement the same two methods, so the claim loop never
depends on transports, signing or retry rules.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol


class Outcome(str, enum.Enum):
    """What the worker must do with the row after a call.

    COMPLETED  infcode 0: write the response, status COMPLETED.
    ERROR      a definite failure (infcode != 0, bad input, refused by config): status ERROR.
    RETRY      nothing reached the centre, or the interface is safe to resend: the row goes
               back to PENDING with next_attempt_at = now + ``retry_after`` (the worker checks
               the deadline and max_retry_count, and ends the row ERROR/TIMEOUT when spent).
    UNCERTAIN  a state-changing request was sent and no definite answer came back: never
               resend; the reversal job settles the doubt.
    """

    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    RETRY = "RETRY"
    UNCERTAIN = "UNCERTAIN"


@dataclass
class CallContext:
    """One claimed row, as the gateway needs it.

    ``msgid`` was assigned by the claim statement and is already stored on the row, so a
    2601 reversal can always find it. ``new_msgid`` asks the database for a fresh one and
    stores it on the row before returning it: a gateway must call it before it *resends* a
    request that may already have reached the centre (the centre rejects a repeated msgid),
    and may reuse ``msgid`` when the earlier attempt never left this host.
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
    new_msgid: Optional[Callable[[], str]] = None


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


# Error codes written to rows (DESIGN.md §6 uses the same numbers for the procedure).
E_BAD_INPUT = -1001
E_GATEWAY = -1004
E_TIMEOUT = -1005
E_UNCERTAIN = -1007
E_UNEXPECTED = -1999


class NoopGateway:
    """Answers every call with infcode 0 at once, in process: the benchmark's gateway.

    It measures the queue, not the network, so it does no I/O at all.
    """

    def call(self, ctx: CallContext) -> GatewayResult:
        response = {"infcode": 0, "inf_refmsgid": ctx.msgid, "output": {}, "err_msg": None}
        return GatewayResult(outcome=Outcome.COMPLETED, response=response, infcode="0",
                             msgid=ctx.msgid)

    def close(self) -> None:
        return None
