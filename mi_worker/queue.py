"""The request queue as the worker sees it: claim, and one finish() path for every outcome.

Every write after a claim names the claim token, so a worker that lost its lease (it stalled,
the sweep recovered the row, another worker took it) learns so from "0 rows" and never
overwrites someone else's outcome. A concurrent claim that trips a unique index (one
in-flight row per patient, one row per interface slot) loses the race harmlessly: it claims
nothing this round and tries again.

A row enters here once (``finish``) and leaves once (its ``on_done`` callback), whatever the
outcome: written now on the calling thread (RowWriter) or with the next group commit
(BatchWriter). This is river's job completer (one interface; inline, async and batch
implementations behind it) with pgqueuer's status buffer as the batch.
"""
from __future__ import annotations

import json
import logging
import queue as queue_mod
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

from mi_worker.db import ConnectionLost, Database, UniqueViolation
from mi_worker.gateway.base import GatewayResult
from mi_worker.states import FINISH, Finish, Outcome

log = logging.getLogger("mi_worker.queue")

#: Called once per finished row: True when its outcome is in the database.
OnDone = Callable[[bool], None]

#: The outcome of a row a stopping worker never sent.
RELEASED = GatewayResult(outcome=Outcome.RELEASE)


@dataclass
class ClaimedRequest:
    """One leased row. ``claim_token`` is the lease: every later write must present it."""

    request_id: int
    interface_code: str
    input_data: str
    msgid: str
    attempts: int
    max_retry_count: int
    psn_no: Optional[str]
    insuplc_admdvs: Optional[str]
    priority: int
    parent_request_id: Optional[int]
    seconds_left: float
    claim_token: str
    claimed_monotonic: float
    workflow_id: Optional[int] = None  # a step of a settlement workflow (issue 14)
    queued_seconds: float = 0.0  # INSERT to claim, on the database clock (issue 17)

    @property
    def deadline_monotonic(self) -> float:
        return self.claimed_monotonic + max(self.seconds_left, 0.0)


@dataclass(frozen=True)
class Write:
    """One token-guarded write of a finished row: which statement, its parameters and what
    the row looks like after it (for the read-back of a retried write)."""

    finish: Finish
    params: Dict[str, Any]


class ResultWriter(Protocol):
    """Writes finished rows; calls ``on_done`` exactly once per row, never raises."""

    def write(self, req: ClaimedRequest, w: Write, on_done: OnDone) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class RowWriter:
    """Each write on the calling thread, retried until the database answers (the outcome of
    a call that reached the centre must not be lost)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def write(self, req: ClaimedRequest, w: Write, on_done: OnDone) -> None:
        written = False
        try:
            written = self.write_now(req, w)
        except Exception as exc:  # the database refused it: lease recovery will see the row
            log.error("request %s: outcome not written (%s); the row stays PROCESSING until "
                      "lease recovery", req.request_id, exc)
        finally:
            _done(req, on_done, written)

    def write_now(self, req: ClaimedRequest, w: Write) -> bool:
        rows, first_try = run_until_answered(self.db, f"request {req.request_id}",
                                             w.finish.statement, w.params)
        if rows or (not first_try and confirm(self.db, req, w.finish)):
            return True
        _lease_lost(req)
        return False


@dataclass
class _QueuedWrite:
    """One result waiting for the group commit."""

    req: ClaimedRequest
    write: Write
    on_done: OnDone
    written: bool = False
    error: Optional[BaseException] = None


_STOP = object()


class BatchWriter:
    """Group commit: every completion that arrives while the previous batch is being
    written goes into one ``complete_batch`` statement; under load batches grow by
    themselves, when idle a batch is one row, so there is no added latency.

    The gateway thread hands its result over and returns at once (the next batch is claimed
    meanwhile); ``on_done`` runs on the commit thread once the row is durable, so a row
    leaves the worker only when a crash could no longer lose its outcome. Statements it
    cannot batch (requeue, release) it declines: the RowWriter runs them on the caller's
    thread. A failed batch is written again one by one, so one bad row sinks no other.
    """

    def __init__(self, db: Database, rows: RowWriter, max_batch: int = 128) -> None:
        self.db = db
        self.rows = rows
        self.max_batch = max_batch
        self._items: queue_mod.Queue[Any] = queue_mod.Queue()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="mi-commit", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write what was handed over, then end the commit thread."""
        if self._thread is not None:
            self._items.put(_STOP)
            self._thread.join()
            self._thread = None

    def write(self, req: ClaimedRequest, w: Write, on_done: OnDone) -> None:
        if w.finish.statement != "complete_request" or self._thread is None:
            self.rows.write(req, w, on_done)
            return
        self._items.put(_QueuedWrite(req, w, on_done))

    def _loop(self) -> None:
        while True:
            first = self._items.get()
            if first is _STOP:
                return
            batch: List[_QueuedWrite] = [first]
            stop_after = False
            while len(batch) < self.max_batch:
                try:
                    item = self._items.get_nowait()
                except queue_mod.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop_after:
                return

    def _commit(self, batch: List[_QueuedWrite]) -> None:
        try:
            self._flush(batch)
        except Exception as exc:
            if len(batch) > 1:
                log.warning("batch write of %d results failed (%s); writing one by one",
                            len(batch), exc)
                for item in batch:
                    try:
                        self._flush([item])
                    except Exception as one:
                        item.error = one
            else:
                batch[0].error = exc
        for item in batch:
            if item.error is not None:
                log.error("request %s: outcome not written (%s); the row stays PROCESSING "
                          "until lease recovery", item.req.request_id, item.error)
            _done(item.req, item.on_done, item.written)

    def _flush(self, batch: List[_QueuedWrite]) -> None:
        if len(batch) == 1:
            item = batch[0]
            item.written = self.rows.write_now(item.req, item.write)
            return
        payload = json.dumps([item.write.params for item in batch], ensure_ascii=False)
        got, first_try = run_until_answered(self.db, f"{len(batch)} results",
                                            "complete_batch", {"rows": payload})
        written = {int(r["request_id"]) for r in got}
        for item in batch:
            item.written = item.req.request_id in written or (
                not first_try and confirm(self.db, item.req, item.write.finish))
            if not item.written:
                _lease_lost(item.req)


class Queue:
    """Claims and the one finish path for one worker process."""

    def __init__(self, db: Database, worker_id: str, fixmedins_code: str,
                 lease_seconds: int, group_commit: bool = True) -> None:
        self.db = db
        self.worker_id = worker_id
        self.fixmedins_code = fixmedins_code
        self.lease_seconds = lease_seconds
        rows = RowWriter(db)
        self.writer: ResultWriter = BatchWriter(db, rows) \
            if group_commit and db.supports("batch_complete") else rows

    def start(self) -> None:
        """Start the writer's thread (if it has one); call before the first finish()."""
        self.writer.start()

    def stop(self) -> None:
        """Write every outcome already handed over, then stop the writer."""
        self.writer.stop()

    def claim(self, n: int) -> List[ClaimedRequest]:
        """Lease up to ``n`` runnable rows; [] when none (or a concurrent claim won a race)."""
        token = uuid.uuid4().hex
        sent = time.monotonic()
        try:
            rows = self.db.run(
                # Rows scanned are row-locked (FOR UPDATE): scan only a few more than wanted,
                # for the rare candidate the per-patient or slot rule then drops.
                "claim_batch", retry=False, batch_size=n, scan_size=n + max(2, n // 8),
                slot_offset=random.randrange(1000), worker_id=self.worker_id,
                claim_token=token, lease_seconds=self.lease_seconds,
                fixmedins_code=self.fixmedins_code)
        except UniqueViolation as exc:
            log.debug("claim lost a race to another worker (%s); retrying", exc)
            return []
        now = time.monotonic()
        # Started in priority, then age order whatever order the statement returned them in
        # (SQLite's UPDATE … RETURNING has none).
        rows = sorted(rows, key=lambda r: (int(r["priority"]), int(r["request_id"])))
        return [ClaimedRequest(
            request_id=int(r["request_id"]), interface_code=str(r["interface_code"]).strip(),
            input_data=r["input_data"], msgid=r["msgid"], attempts=int(r["attempts"]),
            max_retry_count=int(r["max_retry_count"]), psn_no=r.get("psn_no"),
            insuplc_admdvs=r.get("insuplc_admdvs"), priority=int(r["priority"]),
            parent_request_id=r.get("parent_request_id"),
            seconds_left=float(r["seconds_left"]), claim_token=token, claimed_monotonic=now,
            workflow_id=None if r.get("workflow_id") is None else int(r["workflow_id"]),
            # the wait the database saw before the claim began, plus the claim's own trip
            queued_seconds=float(r.get("queued_seconds") or 0.0) + (now - sent))
            for r in rows]

    def new_msgid(self, req: ClaimedRequest) -> Optional[str]:
        """Store a fresh msgid on the row before a resend; None when the row is not ours."""
        row = self.db.run_one("assign_new_msgid", request_id=req.request_id,
                              claim_token=req.claim_token, fixmedins_code=self.fixmedins_code)
        if not row:
            return None
        req.msgid = row["msgid"]
        return req.msgid

    def finish(self, req: ClaimedRequest, result: GatewayResult, on_done: OnDone, *,
               flag_late_completion: bool = False) -> None:
        """The one way a claimed row leaves this worker, whatever its outcome.

        ``on_done(written)`` runs exactly once: at once for a lost lease (nothing is written),
        after the write for the others. Never raises.
        """
        if result.outcome is Outcome.LEASE_LOST:
            _lease_lost(req, "before a resend")
            _done(req, on_done, False)
            return
        finish = FINISH[result.outcome]
        self.writer.write(req, Write(finish, _params(req, finish, result,
                                                     flag_late_completion)), on_done)

    def extend_leases(self, tokens: List[str]) -> None:
        for token in tokens:
            self.db.run("extend_lease", claim_token=token, lease_seconds=self.lease_seconds)


def _params(req: ClaimedRequest, finish: Finish, result: GatewayResult,
            flag_late: bool) -> Dict[str, Any]:
    """The bound parameters of ``finish.statement`` for this row and outcome."""
    guard = dict(request_id=req.request_id, claim_token=req.claim_token)
    if result.outcome is Outcome.RELEASE:
        return guard
    attempt_log = json.dumps(result.attempt_log or [], ensure_ascii=False)
    message = _clip(result.error_message)
    code = None if result.error_code is None else int(result.error_code)
    if result.outcome is Outcome.RETRY:
        return dict(guard, delay_seconds=float(result.retry_after), error_code=code, error_message=message,
                    msgid=result.msgid, attempt_log=attempt_log)
    assert finish.status is not None
    return dict(guard, status=finish.status.value, infcode=result.infcode,
                response_data=None if result.response is None else json.dumps(
                    result.response, ensure_ascii=False),
                error_code=code, error_message=message, msgid=result.msgid,
                attempt_log=attempt_log,
                late_reversible=1 if flag_late and result.outcome is Outcome.COMPLETED else 0)


def run_until_answered(db: Database, what: str, name: str,
                       params: Dict[str, Any]) -> Tuple[List[Dict[str, Any]], bool]:
    """Run a result write until the database answers; also say whether the first try did,
    since after a dropped connection the first try may have landed unseen."""
    delay = 0.5
    first_try = True
    while True:
        try:
            return db.run(name, **params), first_try
        except ConnectionLost as exc:
            first_try = False
            log.warning("%s: database unreachable while writing the result (%s); retrying "
                        "in %.1fs", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def confirm(db: Database, req: ClaimedRequest, finish: Finish) -> bool:
    """After a retried write found 0 rows: did the first try land before the connection
    dropped? The row must look as that write leaves it: our token still on it (complete) or
    no token (requeue, release clear it), and the status the write sets, where it sets one."""
    row = db.run_one("get_request", request_id=req.request_id)
    if not row:
        return False
    token = row.get("claim_token")
    token_ok = token == req.claim_token if finish.keeps_token else token is None
    return token_ok and (finish.status is None or row.get("status") == finish.status.value)


def _lease_lost(req: ClaimedRequest, when: str = "at the result write") -> None:
    log.warning("request %s: lease lost %s (the row was recovered for another worker); "
                "nothing more sent or written by this worker", req.request_id, when)


def _done(req: ClaimedRequest, on_done: OnDone, written: bool) -> None:
    try:
        on_done(written)
    except Exception:
        log.exception("request %s: completion callback failed", req.request_id)


def _clip(text: Optional[str], limit: int = 2000) -> Optional[str]:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 3] + "..."
