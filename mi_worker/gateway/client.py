"""NHSAClient: one envelope per claimed row, sent with the retry rules of DESIGN.md §7.

The one rule that matters most: a state-changing request (2207 门诊结算, 2304 住院结算, 2201...)
that may have reached the centre is never sent again. Retrying it could settle twice; instead
the call ends UNCERTAIN and the reversal job settles the doubt (2601 / cancel / query). Only
failures where nothing left this host (connect, DNS, TLS handshake, pool wait) are retried for
every kind, with the same msgid. Queries, trials, reconciliation and sign-in are resent after
any failure, each time with a fresh msgid because the centre rejects a repeated one.

``call`` never raises: every failure becomes a GatewayResult, and every HTTP attempt is
recorded in ``attempt_log`` for audit. Bodies are never logged (they carry names and ID
numbers); secrets are never logged.
"""
from __future__ import annotations

import itertools
import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception, wait_exponential, wait_random

from mi_worker.gateway import catalog, envelope
from mi_worker.gateway.attempts import GiveUp, LeaseGone, Msgid, NoAnswer
from mi_worker.gateway.base import CallContext, GatewayResult, Outcome
from mi_worker.gateway.http_pool import ThreadLocalHttp
from mi_worker.gateway.session import SignInSessions
from mi_worker.gateway.settings import GatewaySettings
from mi_worker.gateway.transports import (
    Transport,
    build_http_client,
    describe_tls_error,
    make_transport,
    timeout,
)
from mi_worker.states import ErrorCode

logger = logging.getLogger(__name__)

SESSION_CODES = ("9001", "9002")
_CONNECT_PHASE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                  httpx.UnsupportedProtocol, httpx.LocalProtocolError)


class SignInError(RuntimeError):
    """9001 failed (for the scheduler job calling :meth:`NHSAClient.sign_in`)."""


class NHSAClient:
    """The real gateway (and the sandbox, which speaks the same protocol). Thread-safe."""

    def __init__(self, settings: GatewaySettings, *, pool_size: int | None = None,
                 msgid_factory: Callable[[], str] | None = None,
                 http_client: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``msgid_factory`` makes msgids for calls that have no row (9001/9002 and resends
        of rows without ``new_msgid``); pass one backed by the database sequence in
        production. The default uses a per-process counter, unique within this process only.
        """
        self.settings = settings
        self.transport: Transport = make_transport(settings)
        # an injected httpx.Client (tests, tools) is used as it is
        self.http: httpx.Client | ThreadLocalHttp = \
            http_client or build_http_client(settings, pool_size)
        self._sleep = sleep
        self._sign_no_re = re.compile(settings.sign_no_error_pattern, re.IGNORECASE)
        self._seq = itertools.count(secrets.randbelow(10000))
        self._seq_lock = threading.Lock()
        self._msgid_factory = msgid_factory or self._local_msgid
        self.sessions = SignInSessions(settings, self._session_exchange)
        self._closed = False

    # ---------------------------------------------------------------- public API

    def call(self, ctx: CallContext) -> GatewayResult:
        """Send ``ctx`` and classify the answer (see the module docstring). Never raises."""
        log: list[dict[str, Any]] = []
        try:
            return self._call(ctx, log)
        except Exception as exc:  # a bug or an unforeseen library error must not kill a worker
            logger.exception("gateway call %s request_id=%s failed unexpectedly",
                             ctx.interface_code, ctx.request_id)
            return GatewayResult(outcome=Outcome.ERROR, error_code=ErrorCode.UNEXPECTED,
                                 error_message=f"unexpected gateway client error: "
                                 f"{type(exc).__name__}: {exc}",
                                 msgid=ctx.msgid, attempt_log=log)

    def new_msgid(self) -> str:
        """A msgid for an exchange that has no row (file transfers, sessions)."""
        return self._msgid_factory()

    def sign_in(self, force: bool = False, opter: str | None = None) -> str:
        """Sign ``opter`` (default gateway.opter) in with 9001 unless already signed in today.

        For the scheduler (at start, at the China day change). Returns the sign_no ("" when
        sign-in is switched off); raises :class:`SignInError` when 9001 fails.
        """
        if not self.settings.sign_in:
            return ""
        who = self.settings.opter if opter is None else opter
        deadline = time.monotonic() + 3 * (self.settings.connect_timeout
                                           + self.settings.read_timeout)
        if force:
            self.sessions.forget(who)
        sign_no, failure = self.sessions.ensure(who, deadline, [])
        if failure is not None:
            raise SignInError(failure.error_message or "9001 sign-in failed")
        return sign_no

    def close(self) -> None:
        """Sign out (9002) every signed-in operator, best effort, then close connections."""
        if self._closed:
            return
        self._closed = True
        self.sessions.sign_out_all()
        self.http.close()

    # ---------------------------------------------------------------- one row

    def _call(self, ctx: CallContext, log: list[dict[str, Any]]) -> GatewayResult:
        msgid = Msgid(ctx.msgid, ctx.new_msgid or self._msgid_factory)
        try:
            return self._call_row(ctx, msgid, log)
        except LeaseGone:
            # Not an error of this call: another worker holds the row now. The worker logs
            # the one line that says so; nothing more is sent or written from here.
            return GatewayResult(outcome=Outcome.LEASE_LOST, msgid=msgid.current,
                                 error_message="lease lost before a resend", attempt_log=log)

    def _call_row(self, ctx: CallContext, msgid: Msgid,
                  log: list[dict[str, Any]]) -> GatewayResult:
        code = catalog.normalize(ctx.interface_code)
        entry = catalog.lookup(code)

        def done(outcome: Outcome, **kw: Any) -> GatewayResult:
            return GatewayResult(outcome=outcome, msgid=msgid.current, attempt_log=log, **kw)

        if not isinstance(ctx.input, dict):
            return done(Outcome.ERROR, error_code=ErrorCode.BAD_INPUT,
                        error_message="input must be a JSON object")
        insuplc, required = envelope.resolve_insuplc_admdvs(
            ctx.input, ctx.insuplc_admdvs, self.settings.insuplc_admdvs)
        if required and not insuplc:
            return done(Outcome.ERROR, error_code=ErrorCode.BAD_INPUT,
                        error_message="insuplc_admdvs (参保地医保区划) is required when input "
                        "carries a psn_no: pass it with the call, in input.data, or set "
                        "gateway.insuplc_admdvs")
        budget = max(1, ctx.max_attempts - max(0, ctx.attempt - 1))
        opter = self.settings.opter
        resigned = False
        while True:
            sign_no = ""
            if self._uses_sign_in(code):
                sign_no, failure = self.sessions.ensure(opter, ctx.deadline_monotonic, log)
                if failure is not None:
                    failure.msgid = msgid.current
                    return failure
            try:
                response = self._exchange(code, ctx.input, msgid, sign_no=sign_no,
                                          insuplc=insuplc, deadline=ctx.deadline_monotonic,
                                          budget=budget, retry_safe=entry.retry_safe, log=log)
            except GiveUp as stop:
                if stop.outcome is Outcome.UNCERTAIN:
                    logger.warning("%s msgid=%s request_id=%s UNCERTAIN: %s", code,
                                   msgid.current, ctx.request_id, stop.message)
                elif stop.outcome is Outcome.RETRY and stop.sent and ctx.new_msgid:
                    # The centre may have seen the row's msgid: store a fresh one now so the
                    # next claim can send ctx.msgid as it is.
                    msgid.renew()
                return done(stop.outcome, error_code=stop.code, error_message=stop.message,
                            retry_after=stop.retry_after)
            infcode = envelope.infcode_str(response.get("infcode"))
            if infcode == "0":
                return done(Outcome.COMPLETED, response=response, infcode=infcode)
            err = envelope.error_message(response)
            if (not resigned and self._uses_sign_in(code) and self._sign_no_re.search(err)):
                # The centre rejected the sign_no and did nothing: sign in again, resend once
                # with a fresh msgid (the rejected one was seen by the centre).
                logger.info("%s msgid=%s: sign_no rejected (%s); signing in again", code,
                            msgid.current, err)
                resigned = True
                self.sessions.invalidate(opter, sign_no)
                msgid.dirty = True
                budget = max(1, budget - len([a for a in log if a.get("infno") == code]))
                continue
            logger.info("%s msgid=%s request_id=%s infcode=%s: %s", code, msgid.current,
                        ctx.request_id, infcode, err)
            return done(Outcome.ERROR, response=response, infcode=infcode, error_code=ErrorCode.GATEWAY,
                        error_message=err)

    # ---------------------------------------------------------------- exchange

    def _exchange(self, infno: str, input_obj: dict[str, Any], msgid: Msgid, *, sign_no: str,
                  insuplc: str, deadline: float, budget: int, retry_safe: bool,
                  log: list[dict[str, Any]]) -> dict[str, Any]:
        """POST until a definite answer (returned, any infcode) or raise :class:`GiveUp`."""
        s = self.settings
        if time.monotonic() >= deadline:
            raise GiveUp(Outcome.ERROR, ErrorCode.TIMEOUT, f"deadline reached before {infno} was sent")
        backoff = wait_exponential(multiplier=s.retry_initial_seconds,
                                   max=s.retry_max_seconds) \
            + wait_random(0, s.retry_initial_seconds)
        planned = {"wait": 0.0}

        def should_retry(exc: BaseException) -> bool:
            return isinstance(exc, NoAnswer) and (retry_safe or not exc.sent)

        def stop(state: Any) -> bool:
            if state.attempt_number >= budget:
                return True
            planned["wait"] = backoff(state)
            return time.monotonic() + planned["wait"] >= deadline

        def wait(state: Any) -> float:
            return planned["wait"]

        def attempt() -> dict[str, Any]:
            current = msgid.for_send()
            try:
                return self._post(infno, input_obj, current, sign_no, insuplc, deadline,
                                  retry_safe, log)
            except NoAnswer as exc:
                if exc.sent:
                    msgid.dirty = True  # the centre may have seen this msgid
                raise

        retrying = Retrying(stop=stop, wait=wait, retry=retry_if_exception(should_retry),
                            reraise=True, sleep=self._sleep)
        try:
            return retrying(attempt)
        except NoAnswer as exc:
            msgid.dirty = False  # nothing more is sent for this row here: keep the last msgid
            if exc.sent and not retry_safe:
                raise GiveUp(Outcome.UNCERTAIN, ErrorCode.UNCERTAIN,
                             f"{infno} sent, no definite answer ({exc}); "
                             f"{catalog.doubt_advice(infno)}") from None
            if time.monotonic() >= deadline:
                raise GiveUp(Outcome.ERROR, ErrorCode.TIMEOUT,
                             f"deadline reached: {infno} got no answer ({exc})") from None
            # ±20 % so rows that failed together are not all claimed again together.
            retry_after = (planned["wait"] or s.retry_initial_seconds) * random.uniform(0.8, 1.2)
            raise GiveUp(Outcome.RETRY, ErrorCode.GATEWAY, f"{infno} got no answer ({exc}); "
                         "try again later", retry_after=retry_after, sent=exc.sent) from None

    def _post(self, infno: str, input_obj: dict[str, Any], msgid: str, sign_no: str,
              insuplc: str, deadline: float, retry_safe: bool,
              log: list[dict[str, Any]]) -> dict[str, Any]:
        """One HTTP attempt. Returns a definite answer or raises :class:`NoAnswer`."""
        s = self.settings
        env = envelope.build_envelope(s, infno, msgid, input_obj, sign_no, insuplc)
        if s.gm_sign == "sm2":
            from mi_worker.gateway import gm

            gm.sign_envelope(env, s.gm_sm2_private_key, s.gm_sm2_public_key)
        body = envelope.encode(env)
        read = s.read_timeout
        if retry_safe:  # a late answer to a query is worth nothing after the deadline
            read = max(0.1, min(read, deadline - time.monotonic()))
        record: dict[str, Any] = {"infno": infno, "msgid": msgid, "latency_ms": None,
                                  "http_status": None, "infcode": None, "error": None}
        log.append(record)
        t0 = time.monotonic()
        try:
            try:
                resp = self.http.post(self.transport.url(infno), content=body,
                                      headers=self.transport.headers(infno),
                                      timeout=timeout(s, read))
            except _CONNECT_PHASE as exc:
                tls = describe_tls_error(exc, httpx.URL(self.transport.url(infno)).netloc
                                         .decode("ascii", "replace"))
                raise NoAnswer(f"not sent: {tls or f'{type(exc).__name__}: {exc}'}",
                               sent=False) from None
            except httpx.TransportError as exc:  # read timeout, reset, protocol error
                raise NoAnswer(f"{type(exc).__name__}: {exc or 'no answer'}", sent=True) \
                    from None
            record["http_status"] = resp.status_code
            response = self._classify_http(resp)
            record["infcode"] = envelope.infcode_str(response.get("infcode"))
            return response
        except NoAnswer as exc:
            record["error"] = str(exc)
            logger.info("%s msgid=%s attempt failed: %s", infno, msgid, exc)
            raise
        finally:
            record["latency_ms"] = int((time.monotonic() - t0) * 1000)

    def _classify_http(self, resp: httpx.Response) -> dict[str, Any]:
        status = resp.status_code
        if status == 429:
            raise NoAnswer("HTTP 429: the gateway throttled the request", sent=False)
        if status >= 500:
            raise NoAnswer(f"HTTP {status} from the gateway", sent=True)
        try:
            response = envelope.parse_response(resp.content)
        except envelope.BadResponse as exc:
            if 200 <= status < 300:
                raise NoAnswer(f"unreadable answer: {exc}", sent=True) from None
            # 4xx without an envelope: the gateway refused it (signature, path): definite.
            text = resp.content[:200].decode("utf-8", "replace")
            return {"infcode": -1, "err_msg": f"网关拒绝 gateway refused the request: "
                    f"HTTP {status} {text}".strip(), "output": None}
        output = response.get("output")
        if self.settings.gm_sm4_key and isinstance(output, str) and output:
            from mi_worker.gateway import gm

            try:
                response["output"] = gm.decrypt_output(output, self.settings.gm_sm4_key)
            except ValueError as exc:
                raise NoAnswer(f"unreadable answer: {exc}", sent=True) from None
        return response

    # ---------------------------------------------------------------- sign-in

    def _uses_sign_in(self, code: str) -> bool:
        return self.settings.sign_in and code not in SESSION_CODES

    def _session_exchange(self, infno: str, input_obj: dict[str, Any], *, sign_no: str,
                          deadline: float, budget: int, log: list[dict[str, Any]]
                          ) -> dict[str, Any]:
        """One 9001/9002 exchange for the sessions (msgids without a row, retry-safe)."""
        msgid = Msgid(self._msgid_factory(), self._msgid_factory)
        return self._exchange(infno, input_obj, msgid, sign_no=sign_no, insuplc="",
                              deadline=deadline, budget=budget, retry_safe=True, log=log)

    def _local_msgid(self) -> str:
        with self._seq_lock:
            seq = next(self._seq)
        return envelope.format_msgid(self.settings.fixmedins_code, envelope.china_now(), seq)
