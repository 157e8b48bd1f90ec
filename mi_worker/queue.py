"""The request queue as the worker sees it: claim, complete, requeue, release — dialect-neutral.

Every write after a claim names the claim token, so a worker that lost its lease (it stalled,
the sweep recovered the row, another worker took it) learns so from "0 rows" and never
overwrites someone else's outcome. A concurrent claim that trips a unique index (one
in-flight row per patient, one row per interface slot) loses the race harmlessly: it claims
nothing this round and tries again.
"""
from __future__ import annotations

import json
import logging
import queue as queue_mod
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from mi_worker.db import ConnectionLost, Database, UniqueViolation

log = logging.getLogger("mi_worker.queue")


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

    @property
    def deadline_monotonic(self) -> float:
        return self.claimed_monotonic + max(self.seconds_left, 0.0)


class LeaseLost(RuntimeError):
    """The row is no longer ours (recovered by the sweep after our lease ran out)."""


@dataclass
class _Pending:
    """One result waiting for the group commit."""

    req: ClaimedRequest
    params: Dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    written: bool = False
    error: Optional[BaseException] = None
    on_done: Optional[Callable[[], None]] = None


class GroupCommit:
    """Writes finished calls in batches: one statement (complete_batch) for all results that
    arrived while the previous batch was being written.

    A gateway thread hands over its result and waits until it is in the database, so a
    result is never acknowledged before it is durable and a crash loses nothing that a
    per-row write would have kept. Under load the batches grow by themselves; when idle a
    batch is a single row, so there is no added latency.
    """

    def __init__(self, q: Queue, max_batch: int = 128) -> None:
        self.q = q
        self.max_batch = max_batch
        self._items: queue_mod.Queue[_Pending] = queue_mod.Queue()
        self._thread = threading.Thread(target=self._loop, name="mi-commit", daemon=True)
        self._thread.start()

    def submit(self, req: ClaimedRequest, params: Dict[str, Any]) -> bool:
        """Write and wait until the outcome is in the database."""
        item = _Pending(req, params)
        self._items.put(item)
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.written

    def submit_async(self, req: ClaimedRequest, params: Dict[str, Any],
                     on_done: Callable[[], None]) -> None:
        """Hand over an outcome; ``on_done`` runs on the commit thread once it is written
        (or could not be: the row then stays PROCESSING for lease recovery)."""
        self._items.put(_Pending(req, params, on_done=on_done))

    def _loop(self) -> None:
        while True:
            batch = [self._items.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._items.get_nowait())
                except queue_mod.Empty:
                    break
            try:
                self._flush(batch)
            except Exception as exc:
                if len(batch) > 1:  # one bad row must not sink the others: write one by one
                    log.warning("batch write of %d results failed (%s); writing one by one",
                                len(batch), exc)
                    for item in batch:
                        try:
                            self._flush([item])
                        except Exception as one:
                            item.error = one
                else:
                    batch[0].error = exc
            finally:
                for item in batch:
                    item.done.set()
                    if item.on_done is not None:
                        if item.error is not None:
                            log.error("request %s: outcome not written (%s); the row stays "
                                      "PROCESSING until lease recovery", item.req.request_id,
                                      item.error)
                        try:
                            item.on_done()
                        except Exception:
                            log.exception("request %s: completion callback failed",
                                          item.req.request_id)

    def _flush(self, batch: List[_Pending]) -> None:
        if len(batch) == 1:
            item = batch[0]
            item.written = self.q._write("complete_request", item.req, item.params["status"],
                                         item.params)
            return
        rows = [dict(p.params) for p in batch]
        written = self.q._write_many(rows, [p.req for p in batch])
        for item in batch:
            item.written = item.req.request_id in written


class Queue:
    """Claims and result writes for one worker process."""

    def __init__(self, db: Database, worker_id: str, fixmedins_code: str,
                 lease_seconds: int, group_commit: bool = True) -> None:
        self.db = db
        self.worker_id = worker_id
        self.fixmedins_code = fixmedins_code
        self.lease_seconds = lease_seconds
        self._commit: Optional[GroupCommit] = None
        if group_commit and "complete_batch" in db.queries and getattr(
                db.dialect, "supports_batch_complete", True):
            self._commit = GroupCommit(self)

    def claim(self, n: int) -> List[ClaimedRequest]:
        """Lease up to ``n`` runnable rows; [] when none (or a concurrent claim won a race)."""
        token = uuid.uuid4().hex
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
        return [ClaimedRequest(
            request_id=int(r["request_id"]), interface_code=str(r["interface_code"]).strip(),
            input_data=r["input_data"], msgid=r["msgid"], attempts=int(r["attempts"]),
            max_retry_count=int(r["max_retry_count"]), psn_no=r.get("psn_no"),
            insuplc_admdvs=r.get("insuplc_admdvs"), priority=int(r["priority"]),
            parent_request_id=r.get("parent_request_id"),
            seconds_left=float(r["seconds_left"]), claim_token=token, claimed_monotonic=now)
            for r in rows]

    @staticmethod
    def _complete_params(req: ClaimedRequest, status: str, *, infcode: Optional[str] = None,
                         response: Optional[Dict[str, Any]] = None,
                         error_code: Optional[int] = None, error_message: Optional[str] = None,
                         msgid: Optional[str] = None, attempt_log: Optional[list] = None,
                         late_reversible: bool = False) -> Dict[str, Any]:
        return dict(request_id=req.request_id, claim_token=req.claim_token, status=status,
                    infcode=infcode,
                    response_data=None if response is None else json.dumps(
                        response, ensure_ascii=False),
                    error_code=error_code, error_message=_clip(error_message), msgid=msgid,
                    attempt_log=json.dumps(attempt_log or [], ensure_ascii=False),
                    late_reversible=1 if late_reversible else 0)

    def new_msgid(self, req: ClaimedRequest) -> str:
        """Store a fresh msgid on the row before a resend; raises LeaseLost if not ours."""
        row = self.db.run_one("assign_new_msgid", request_id=req.request_id,
                              claim_token=req.claim_token, fixmedins_code=self.fixmedins_code)
        if not row:
            raise LeaseLost(f"request {req.request_id}: lease lost before resend")
        req.msgid = row["msgid"]
        return req.msgid

    def complete(self, req: ClaimedRequest, status: str, *, infcode: Optional[str] = None,
                 response: Optional[Dict[str, Any]] = None, error_code: Optional[int] = None,
                 error_message: Optional[str] = None, msgid: Optional[str] = None,
                 attempt_log: Optional[list] = None, late_reversible: bool = False) -> bool:
        """Write a final outcome (COMPLETED / ERROR / UNCERTAIN). False if the lease was lost."""
        params = self._complete_params(req, status, infcode=infcode, response=response,
                                       error_code=error_code, error_message=error_message,
                                       msgid=msgid, attempt_log=attempt_log,
                                       late_reversible=late_reversible)
        if self._commit is not None:
            return self._commit.submit(req, params)
        return self._write("complete_request", req, status, params)

    def complete_async(self, req: ClaimedRequest, status: str, on_done: Callable[[], None],
                       **kw: Any) -> None:
        """Like complete(), but returns at once; ``on_done`` runs when the row is written."""
        if self._commit is None:
            try:
                self.complete(req, status, **kw)
            finally:
                on_done()
            return
        params = self._complete_params(req, status, **kw)
        self._commit.submit_async(req, params, on_done)

    def requeue(self, req: ClaimedRequest, delay: float, *, error_code: Optional[int],
                error_message: Optional[str], attempt_log: Optional[list] = None,
                msgid: Optional[str] = None) -> bool:
        """Back to PENDING after ``delay`` s (or ERROR/TIMEOUT when out of tries or time)."""
        params = dict(request_id=req.request_id, claim_token=req.claim_token,
                      delay_seconds=float(delay), error_code=error_code,
                      error_message=_clip(error_message), msgid=msgid,
                      attempt_log=json.dumps(attempt_log or [], ensure_ascii=False))
        return self._write("requeue_request", req, None, params)

    def release(self, req: ClaimedRequest) -> bool:
        """Give back a row that was never sent (graceful stop)."""
        return self._write("release_request", req, "PENDING",
                           dict(request_id=req.request_id, claim_token=req.claim_token))

    def extend_leases(self, tokens: List[str]) -> None:
        for token in tokens:
            self.db.run("extend_lease", claim_token=token, lease_seconds=self.lease_seconds)

    def _run_until_answered(self, what: str, name: str, **params: Any):
        """Run a result write until the database answers (an outcome that reached the centre
        must not be lost); also say whether it took more than one try, since then the first
        try may have landed before the connection dropped."""
        delay = 0.5
        first_try = True
        while True:
            try:
                return self.db.run(name, **params), first_try
            except ConnectionLost as exc:
                first_try = False
                log.warning("%s: database unreachable while writing the result (%s); retrying "
                            "in %.1fs", what, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _write_many(self, rows: List[Dict[str, Any]], reqs: List[ClaimedRequest]) -> set:
        """complete_batch with the same durability rules as _write; returns written ids."""
        got, first_try = self._run_until_answered(f"{len(rows)} results", "complete_batch",
                                                  rows=_rows_json(rows))
        written = {int(r["request_id"]) for r in got}
        for req, row in zip(reqs, rows):
            if req.request_id in written:
                continue
            if not first_try:
                back = self.db.run_one("get_request", request_id=req.request_id)
                if back and back.get("claim_token") == req.claim_token \
                        and back.get("status") == row["status"]:
                    written.add(req.request_id)
                    continue
            log.warning("request %s: lease lost (the row was recovered by another worker); "
                        "this worker's outcome was not written", req.request_id)
        return written

    def _write(self, name: str, req: ClaimedRequest, status: Optional[str],
               params: Dict[str, Any]) -> bool:
        """Run a token-guarded write; survive a dropped connection without losing the result.

        The write is retried until the database answers (the outcome of a call that reached
        the centre must not be lost). If a retry finds 0 rows, the first try may have landed
        before the connection dropped: the row is read back to tell that from a lost lease.
        """
        rows, first_try = self._run_until_answered(f"request {req.request_id}", name, **params)
        if rows:
            return True
        if not first_try:
            row = self.db.run_one("get_request", request_id=req.request_id)
            # complete keeps our token on the row; requeue and release clear it.
            if row and row.get("claim_token") in (req.claim_token, None) \
                    and (status is None or row.get("status") == status):
                return True
        log.warning("request %s: lease lost (the row was recovered by another worker); "
                    "this worker's outcome was not written", req.request_id)
        return False


def _rows_json(rows: List[Dict[str, Any]]) -> str:
    return json.dumps(rows, ensure_ascii=False)


def _clip(text: Optional[str], limit: int = 2000) -> Optional[str]:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 3] + "..."
