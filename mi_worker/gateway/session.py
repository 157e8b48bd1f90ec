"""Sign-in sessions (9001 签到 / 9002 签退): today's sign_no per operator.

The centre wants one sign-in per operator and China day; every business call carries its
sign_no. The cache is per process, one 9001 at a time per operator (other threads wait for
it), and a sign_no the centre rejected is dropped once, by the first thread that saw it, so a
burst of rejections signs in once, not once per thread.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from mi_worker.gateway import envelope
from mi_worker.gateway.attempts import GiveUp
from mi_worker.gateway.base import GatewayResult, Outcome
from mi_worker.gateway.settings import GatewaySettings
from mi_worker.states import ErrorCode

logger = logging.getLogger("mi_worker.gateway.client")

#: (infno, input, sign_no=, deadline=, budget=, log=) -> the centre's answer, or GiveUp.
Exchange = Callable[..., dict]


class SignInSessions:
    """Per-operator sign_no cache with the China day it belongs to. Thread-safe."""

    def __init__(self, settings: GatewaySettings, exchange: Exchange) -> None:
        self.settings = settings
        self._exchange = exchange
        self._sessions: dict[str, tuple[str, str]] = {}  # opter -> (China day, sign_no)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def forget(self, opter: str) -> None:
        with self._guard:
            self._sessions.pop(opter, None)

    def _lock_for(self, opter: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(opter, threading.Lock())

    def invalidate(self, opter: str, sign_no: str) -> None:
        """Forget ``sign_no`` unless another thread already replaced it (one re-sign only)."""
        with self._guard:
            cached = self._sessions.get(opter)
            if cached is not None and cached[1] == sign_no:
                del self._sessions[opter]

    def ensure(self, opter: str, deadline: float, log: list[dict[str, Any]]
               ) -> tuple[str, GatewayResult | None]:
        """Today's sign_no for ``opter`` (9001 when missing); one sign-in per operator at once."""
        with self._lock_for(opter):
            today = envelope.china_date()
            with self._guard:
                cached = self._sessions.get(opter)
            if cached is not None and cached[0] == today:
                return cached[1], None
            s = self.settings
            inp = {"signIn": {"opter_no": opter, "mac": s.sign_in_mac, "ip": s.sign_in_ip}}
            try:
                response = self._exchange("9001", inp, sign_no="", deadline=deadline, budget=3,
                                          log=log)
            except GiveUp as stop:
                return "", GatewayResult(outcome=stop.outcome, error_code=stop.code,
                                         error_message=f"9001 签到 sign-in: {stop.message}",
                                         retry_after=stop.retry_after, attempt_log=log)
            if not envelope.is_success(response):
                err = envelope.error_message(response)
                return "", GatewayResult(outcome=Outcome.ERROR, response=response,
                                         infcode=envelope.infcode_str(response.get("infcode")),
                                         error_code=ErrorCode.GATEWAY,
                                         error_message=f"9001 签到 sign-in failed: {err}",
                                         attempt_log=log)
            out = response.get("output") or {}
            sign_no = ((out.get("signinoutb") or {}) if isinstance(out, dict) else {}) \
                .get("sign_no")
            if not sign_no:
                return "", GatewayResult(outcome=Outcome.ERROR, response=response, infcode="0",
                                         error_code=ErrorCode.GATEWAY,
                                         error_message="9001 签到 answered without "
                                         "output.signinoutb.sign_no", attempt_log=log)
            with self._guard:
                self._sessions[opter] = (today, str(sign_no))
            logger.info("operator %s signed in (9001) for %s", opter or "(empty)", today)
            return str(sign_no), None

    def sign_out_all(self) -> None:
        """9002 for every signed-in operator, best effort (closing must finish)."""
        with self._guard:
            sessions = dict(self._sessions)
            self._sessions.clear()
        for opter, (_, sign_no) in sessions.items():
            try:
                self._sign_out(opter, sign_no)
            except Exception as exc:  # noqa: BLE001 - closing must finish
                logger.warning("9002 sign-out of operator %s failed: %s", opter, exc)

    def _sign_out(self, opter: str, sign_no: str) -> None:
        inp = {"signOut": {"sign_no": sign_no, "opter_no": opter}}
        deadline = time.monotonic() + self.settings.connect_timeout \
            + self.settings.read_timeout
        try:
            response = self._exchange("9002", inp, sign_no=sign_no, deadline=deadline, budget=1,
                                      log=[])
        except GiveUp as stop:
            logger.warning("9002 sign-out of operator %s: %s", opter, stop.message)
            return
        if not envelope.is_success(response):
            logger.warning("9002 sign-out of operator %s refused: %s", opter,
                           envelope.error_message(response))
