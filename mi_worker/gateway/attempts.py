"""The vocabulary of one exchange with the centre: did it leave this host, what the row
becomes when it stopped without an answer, and the msgid in use. Shared by the client (one
row) and the sign-in sessions (9001/9002), so neither imports the other."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mi_worker.states import Outcome


class NoAnswer(Exception):
    """One attempt ended without a definite answer.

    ``sent`` is False when nothing can have reached the centre (safe to resend with the same
    msgid), True when the request may have been received and processed.
    """

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class GiveUp(Exception):
    """The exchange stopped without a definite answer; ``outcome`` says what the row becomes."""

    def __init__(self, outcome: Outcome, code: int, message: str, retry_after: float = 1.0,
                 sent: bool = False) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.sent = sent  # the last attempt may have reached the centre


class LeaseGone(Exception):
    """``new_msgid`` said the row is no longer ours: stop without sending."""


@dataclass
class Msgid:
    """The msgid in use and whether it must be replaced before the next send."""

    current: str
    renew_fn: Callable[[], str | None]
    dirty: bool = False

    def renew(self) -> str:
        fresh = self.renew_fn()
        if fresh is None:
            raise LeaseGone()
        self.current = fresh
        return fresh

    def for_send(self) -> str:
        if self.dirty:
            self.renew()
            self.dirty = False
        return self.current
