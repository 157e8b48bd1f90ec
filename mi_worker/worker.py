"""The worker process: one claim loop feeding N gateway threads, and a graceful stop.

A single dispatcher thread claims for idle threads plus the few rows they can start within
~25 ms (mi_worker/claim_size.py: the claim size grows while claims come back full, the rows
in hand follow the measured call time), so a claimed row hardly waits in a local queue
where a crash would strand it; it claims again at once after a full batch and backs off
(min_poll_interval doubling up to poll_interval, after BUSY_POLLS quick looks while rows
keep arriving) while the queue is empty. Each row's outcome is written back in one
token-guarded statement.
"""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Tuple

from mi_worker import __version__, observe
from mi_worker.claim_size import ClaimSizer
from mi_worker.config import Settings
from mi_worker.db import ConnectionLost, Database, DatabaseError
from mi_worker.gateway.base import CallContext, Gateway, GatewayResult
from mi_worker.queue import RELEASED, ClaimedRequest, Queue
from mi_worker.states import ErrorCode, Outcome, Stage, flag_late_completion, may_release_at_stop
from mi_worker.wait_plan import LatencyBook

log = logging.getLogger("mi_worker.worker")

# How long the dispatcher waits for more free threads before claiming a partial batch.
LINGER_SECONDS = 0.005

# After a claim that found rows, this many empty claims still wait only min_poll_interval
# before the back-off starts doubling (issue 17). Rows arriving every 10-20 ms (50-100 HIS
# calls/s) are then picked up within ~min_poll_interval instead of on a doubled sleep: at
# 100 calls/s the claim wait fell from 3.1-4.0 to 2.0 ms p50 and the queue overhead p50 from
# 8.8 to 6.6 ms (bench latency, paired runs; 5.8 ms and p99 12 ms with wait_plan's 5 ms
# step). An idle queue never finds rows, so its claim rate (the back-off) is unchanged; a
# busy one pays at most this many cheap empty claims per claim that found rows (an empty
# claim is ~0.2 ms on PostgreSQL: its plan is prepared).
BUSY_POLLS = 8


def make_worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Claims rows and calls the gateway for them until stopped."""

    def __init__(self, settings: Settings, db: Database, gateway: Gateway,
                 worker_id: Optional[str] = None) -> None:
        self.settings = settings
        self.db = db
        self.gateway = gateway
        self.worker_id = worker_id or make_worker_id()
        self.queue = Queue(db, self.worker_id, settings.gateway.fixmedins_code,
                           settings.worker.lease_seconds)
        self.threads = settings.worker.threads
        # Claim size and the rows this process may hold before a thread is free for them:
        # adaptive (mi_worker/claim_size.py) unless fixed by settings.
        ws = settings.worker
        self.sizer = ClaimSizer(self.threads, ws.batch_size, ws.max_batch_size, ws.prefetch)
        # INSERT-to-result time per interface, published for the HIS procedures' first poll
        self.latency = LatencyBook()
        self.started_at = time.time()
        self.processed_total = 0
        # Every claimed row until its outcome is in the database: (ClaimedRequest, stage).
        self._inflight: Dict[int, Tuple[ClaimedRequest, Stage]] = {}
        # Rows holding a gateway thread (claimed or sending). A row whose result waits for
        # the group commit no longer holds one, so the next batch is claimed while the
        # previous one is being written.
        self._busy = 0
        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        # Called with the workflow id once a workflow step's outcome is written, so the next
        # step starts at once instead of at the advance job's next pass (jobs.Scheduler).
        self.on_workflow_step: Optional[Callable[[int], None]] = None
        self.db.give_up_when(self._stop.is_set)

    # -- state shared with the jobs ---------------------------------------------------------
    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def active_tokens(self) -> List[str]:
        with self._lock:
            return sorted({req.claim_token for req, _ in self._inflight.values()})

    def extend_leases(self) -> None:
        """Keep the leases of every row this worker still holds (the heartbeat calls it)."""
        self.queue.extend_leases(self.active_tokens())

    def heartbeat_row(self, status: str = "RUNNING") -> Dict[str, object]:
        """This process's sdk_heartbeat row (the parameters of the ``heartbeat`` statement)."""
        return dict(service_name=self.settings.worker.service_name, worker_id=self.worker_id,
                    host=socket.gethostname()[:255], pid=os.getpid(), version=__version__,
                    status=status, in_flight=self.in_flight,
                    processed_total=self.processed_total, **gateway_params(self.settings))

    def stop(self) -> None:
        """Ask the loop to stop claiming; run() then drains and returns."""
        self._stop.set()
        with self._slot_free:
            self._slot_free.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        """Claim and dispatch until stop(); then let in-flight calls finish (grace period)."""
        ws = self.settings.worker
        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="mi-call")
        idle = ws.min_poll_interval
        busy_polls = 0
        db_down_since: Optional[float] = None
        log.info("worker %s claiming: %d threads, batch %d, database %s", self.worker_id,
                 self.threads, ws.batch_size, self.db.dialect.safe_url())
        self.queue.start()
        try:
            while not self._stop.is_set():
                fill = max(1, min(self.sizer.size, self.capacity) // 2)
                free = self._wait_for_slots(fill, ws.poll_interval)
                if free <= 0:
                    continue
                want = self.sizer.want(free)
                try:
                    rows = self.queue.claim(want)
                    if db_down_since is not None:
                        log.info("database reachable again after %.0fs",
                                 time.monotonic() - db_down_since)
                        db_down_since = None
                except (ConnectionLost, DatabaseError) as exc:
                    if db_down_since is None:
                        db_down_since = time.monotonic()
                        log.error("claim failed: %s; retrying with back-off", exc)
                    self._stop.wait(min(ws.poll_interval * 4, 5.0) * random.uniform(0.5, 1.0))
                    continue
                with self._lock:
                    for req in rows:
                        self._inflight[req.request_id] = (req, Stage.CLAIMED)
                    self._busy += len(rows)
                for req in rows:
                    pool.submit(self._process, req)
                self.sizer.claimed(want, len(rows))
                if rows:
                    idle = ws.min_poll_interval
                    busy_polls = BUSY_POLLS
                    if len(rows) == want:
                        continue  # more may be waiting: claim again at once
                elif busy_polls > 0:
                    busy_polls -= 1
                    idle = ws.min_poll_interval
                else:
                    idle = min(idle * 2, ws.poll_interval)
                self._stop.wait(idle)
        finally:
            self._drain(pool)
            self._stopped.set()

    @property
    def capacity(self) -> int:
        return self.sizer.capacity

    def _free(self) -> int:
        """Idle gateway threads, less any excess of results still waiting to be written
        (if the database is slow to take results, claiming slows down with it)."""
        waiting_write = len(self._inflight) - self._busy
        return self.capacity - self._busy - max(0, waiting_write - self.capacity)

    def _slow_calls(self) -> bool:
        """Calls take long enough that a round trip per claim does not matter, while a
        linger would: with a 100 ms gateway, claim as soon as a thread is free."""
        return (self.sizer.call_seconds or 0.0) > 20 * LINGER_SECONDS

    def _wait_for_slots(self, fill: int, poll: float) -> int:
        """Wait until a worthwhile batch can be claimed; return the number of free slots.

        Slots free up one by one; claiming each as it frees would cost a round trip per row,
        so with calls still running the dispatcher lingers up to LINGER_SECONDS for ``fill``
        free slots before claiming a partial batch.
        """
        with self._slot_free:
            linger_until = None
            while not self._stop.is_set():
                free = self._free()
                if free >= fill or (free > 0 and (self._busy == 0 or self._slow_calls())):
                    return free
                if free > 0:
                    now = time.monotonic()
                    linger_until = linger_until or now + LINGER_SECONDS
                    if now >= linger_until:
                        return free
                    self._slot_free.wait(linger_until - now)
                else:
                    self._slot_free.wait(poll)
            return 0

    def _drain(self, pool: ThreadPoolExecutor) -> None:
        grace = self.settings.worker.grace_seconds
        deadline = time.monotonic() + grace
        with self._slot_free:
            while self._inflight and time.monotonic() < deadline:
                self._slot_free.wait(min(0.2, max(deadline - time.monotonic(), 0.01)))
            left = list(self._inflight.values())
        for req, stage in left:
            if may_release_at_stop(stage, req.interface_code):
                self.queue.finish(req, RELEASED, lambda ok, req=req: self._written(req, ok))
            else:
                log.warning("request %s (%s) still in flight after the %.0fs grace period; "
                            "left to lease recovery (it may have reached the centre)",
                            req.request_id, req.interface_code, grace)
        pool.shutdown(wait=False, cancel_futures=True)
        self.queue.stop()
        log.info("worker %s stopped; %d processed", self.worker_id, self.processed_total)

    # -- one row -------------------------------------------------------------------------------
    def _stage(self, req: ClaimedRequest, stage: Stage) -> None:
        with self._lock:
            if req.request_id in self._inflight:
                self._inflight[req.request_id] = (req, stage)

    def _process(self, req: ClaimedRequest) -> None:
        """One row on a gateway thread: its outcome, then the one finish() path. The thread
        is free again once finish() returns (a group-committed result is still on its way:
        ``_written`` is where the row leaves this worker)."""
        started = time.monotonic()
        try:
            try:
                result = self._outcome(req)
            except Exception as exc:  # the worker must survive anything one row does
                log.exception("request %s: unexpected error", req.request_id)
                result = GatewayResult(outcome=Outcome.ERROR, error_code=ErrorCode.UNEXPECTED,
                                       error_message=f"unexpected error in worker: {exc}",
                                       msgid=req.msgid)
                self._log_error(req, exc)
            self._stage(req, Stage.WRITING)
            if result.outcome not in (Outcome.RELEASE, Outcome.LEASE_LOST):
                observe.finished(self, req, result)  # metrics counters + the per-call INFO line
            late = flag_late_completion(req.interface_code,
                                        self.settings.jobs.reverse_late_completions)
            # the caller's answer: what the latency book measures (a requeue is not one)
            answer = result.outcome in (Outcome.COMPLETED, Outcome.ERROR)
            self.queue.finish(req, result, lambda ok: self._written(req, ok, answer),
                              flag_late_completion=late)
        finally:
            with self._slot_free:
                self._busy -= 1
                self.sizer.observe_call(time.monotonic() - started)
                self._slot_free.notify_all()

    def _written(self, req: ClaimedRequest, written: bool, answer: bool = False) -> None:
        """The one place a row leaves this worker: its outcome is written (or cannot be).
        ``answer``: the write ends the caller's wait, so a first attempt's INSERT-to-written
        time goes into the latency book."""
        with self._slot_free:
            if self._inflight.pop(req.request_id, None) is not None:
                self.processed_total += 1
            self._slot_free.notify_all()
        if written and answer and req.attempts == 1:
            self.latency.observe(req.interface_code, 1000.0 * (
                req.queued_seconds + time.monotonic() - req.claimed_monotonic))
        if written and req.workflow_id is not None and self.on_workflow_step is not None:
            self.on_workflow_step(req.workflow_id)

    def _outcome(self, req: ClaimedRequest) -> GatewayResult:
        """What became of one row: released (stopping), bad input, or the gateway's answer."""
        if self._stop.is_set():
            return RELEASED
        payload = parse_input(req.input_data)
        if isinstance(payload, str):
            return GatewayResult(outcome=Outcome.ERROR, error_code=ErrorCode.BAD_INPUT,
                                 error_message=f"参数错误: request {req.request_id}: {payload}",
                                 msgid=req.msgid)
        ctx = CallContext(
            request_id=req.request_id, interface_code=req.interface_code, input=payload,
            msgid=req.msgid, deadline_monotonic=req.deadline_monotonic, attempt=req.attempts,
            max_attempts=req.max_retry_count + 1, psn_no=req.psn_no,
            insuplc_admdvs=req.insuplc_admdvs, new_msgid=lambda: self.queue.new_msgid(req))
        self._stage(req, Stage.SENDING)
        result = self.gateway.call(ctx)
        if result.outcome is Outcome.UNCERTAIN:
            log.warning("request %s (%s): outcome uncertain, left for reversal: %s",
                        req.request_id, req.interface_code, result.error_message)
        return result

    def _log_error(self, req: ClaimedRequest, exc: BaseException) -> None:
        try:
            self.db.run("log_error", request_id=req.request_id,
                        error_code=int(ErrorCode.UNEXPECTED), error_message=str(exc)[:2000],
                        detail=type(exc).__name__)
        except Exception:
            log.exception("request %s: could not record the error", req.request_id)


def parse_input(text: str):
    """The input as a dict, or a string saying why it is not acceptable."""
    if text is None or not str(text).strip():
        return "input_data is empty"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return f"input_data is not valid JSON ({str(exc)[:200]})"
    if not isinstance(value, dict):
        return "input_data must be a JSON object"
    return value


def gateway_params(settings: Settings) -> Dict[str, object]:
    """What the heartbeat says about the gateway: its kind (sandbox / noop are FAKE centres)
    and, for the real one, whether TLS is verified; alerts and status read both."""
    g = settings.gateway
    return dict(gateway_kind=g.kind,
                gateway_tls_verified=(1 if g.verify_tls else 0) if g.kind == "nhsa" else None)
