"""Scheduled maintenance jobs inside every worker (APScheduler 3, BackgroundScheduler).

"Jobs" here are maintenance passes, not the queued unit (that is a *request* row).
Per process: heartbeat (which also extends this worker's leases), sign-in and the latency
estimates the HIS procedures time their first poll by.
Once per cluster, under a database lock so ten workers do not all sweep: expire PENDING rows
past their deadline, recover rows of dead workers, reverse uncertain settlements, scan
alerts, reconcile. No job may kill the worker: each catches and logs everything. Every job
is one row of the table ``Scheduler.jobs()`` builds (river's one-service-per-pass, with
APScheduler doing the timing).
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from apscheduler.schedulers.background import BackgroundScheduler

from mi_worker import alerts, catalog_sync, reconcile, reconcile_detail, stats, wait_plan
from mi_worker.config import ConfigError, Settings
from mi_worker.db import Database, DatabaseError
from mi_worker.db.problems import is_permission_denied
from mi_worker.files.transfer import FileTransfer
from mi_worker.gateway.base import Gateway
from mi_worker.gateway.client import NHSAClient
from mi_worker.gateway.envelope import CHINA_TZ
from mi_worker.notify import WebhookNotifier
from mi_worker.retention import run_retention
from mi_worker.reversal import run_reversals
from mi_worker.states import Status, recover_abandoned
from mi_worker.worker import Worker
from mi_worker.workflows.definitions import DefinitionError
from mi_worker.workflows.definitions import load as load_workflows
from mi_worker.workflows.engine import Engine

log = logging.getLogger("mi_worker.jobs")


def guarded(name: str) -> Callable:
    """Wrap a job so an exception is logged, never raised into the scheduler."""
    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            started = time.monotonic()
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                log.error("job %s failed: %s", name, exc, exc_info=log.isEnabledFor(10))
            finally:
                elapsed = time.monotonic() - started
                if elapsed > 5:
                    log.warning("job %s took %.1fs", name, elapsed)
            return None
        return wrapper
    return deco


def expire_pending(db: Database) -> List[int]:
    """PENDING rows past their deadline → TIMEOUT (their caller has already given up)."""
    rows = db.run("expire_pending")
    if rows:
        log.info("expire sweep: %d PENDING row(s) past deadline set TIMEOUT", len(rows))
    return [int(r["request_id"]) for r in rows]


def recover_leases(db: Database, lease_seconds: int, stale_seconds: int) -> Dict[str, int]:
    """Rows of dead workers, each moved as ``states.recover_abandoned`` decides."""
    counts = {s.value: 0 for s in (Status.PENDING, Status.UNCERTAIN, Status.TIMEOUT)}
    for row in db.run("find_lost_leases", lease_seconds=lease_seconds,
                      stale_seconds=stale_seconds):
        code = str(row["interface_code"]).strip()
        r = recover_abandoned(code, str(row["worker_id"]), bool(int(row["past_deadline"])))
        if db.run("recover_lease", request_id=row["request_id"], claim_token=row["claim_token"],
                  status=r.status.value,
                  error_code=None if r.error_code is None else int(r.error_code),
                  error_message=r.message):
            counts[r.status.value] += 1
            log.warning("lease recovery: request %s (%s) of worker %s → %s", row["request_id"],
                        code, row["worker_id"], r.status)
    return counts


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: its id, APScheduler trigger and arguments, what it runs, and
    whether only one worker of the cluster may run it at a time (under a database lock)."""

    id: str
    trigger: str                    # "interval", "cron" or "date"
    trigger_args: Dict[str, Any]
    fn: Callable[[], Any]
    cluster_once: bool = False
    lock: str = ""  # the cluster lock's name when it is not the job's id


class Scheduler:
    """Owns the BackgroundScheduler and the job set of one worker process."""

    def __init__(self, worker: Worker, db: Database, settings: Settings,
                 gateway: Optional[Gateway] = None) -> None:
        self.worker = worker
        self.db = db
        self.settings = settings
        self.gateway = gateway
        self.notifier: Optional[WebhookNotifier] = None
        if settings.alerts.webhook_url:
            self.notifier = WebhookNotifier(
                settings.alerts.webhook_url, settings.alerts.webhook_kind,
                source=worker.worker_id, secret=settings.alerts.webhook_secret,
                keyword=settings.alerts.webhook_keyword,
                attempts=settings.alerts.webhook_attempts, stats=stats.stats_of(worker),
                on_delivered=lambda alert_id: db.run("mark_alert_notified", alert_id=alert_id))
        try:  # checked at start: a bad definition stops the worker, naming every problem
            self.workflows = load_workflows(settings.workflows.file)
        except DefinitionError as exc:
            raise ConfigError(f"config key workflows.file: {exc}") from None
        self.engine = Engine(db, self.workflows)
        # a step's outcome is written: advance its workflow now, on one thread of its own
        self._advancer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mi-workflow")
        if worker is not None:
            worker.on_workflow_step = lambda wid: self._advancer.submit(
                guarded("workflow_step")(self.engine.advance_id), wid)
        self._latency_refused = False  # see publish_latency
        self.scheduler = BackgroundScheduler(daemon=True, timezone="UTC",
                                             job_defaults={"coalesce": True,
                                                           "max_instances": 1,
                                                           "misfire_grace_time": 30})

    def jobs(self) -> List[JobSpec]:
        """The whole job set of this process, in one table."""
        s, js = self.settings, self.settings.jobs
        every = lambda seconds: {"seconds": seconds}  # noqa: E731
        table = [
            JobSpec("heartbeat", "interval", every(js.heartbeat_seconds), self.heartbeat),
            JobSpec("latency", "interval", every(wait_plan.PUBLISH_SECONDS),
                    self.publish_latency),
            JobSpec("expire", "interval", every(js.expire_seconds),
                    lambda: expire_pending(self.db), cluster_once=True),
            JobSpec("lease_recovery", "interval", every(js.lease_recovery_seconds),
                    lambda: recover_leases(self.db, s.worker.lease_seconds,
                                           js.heartbeat_stale_seconds), cluster_once=True),
            JobSpec("reversal", "interval", every(js.reversal_seconds),
                    lambda: run_reversals(self.db, js), cluster_once=True),
            JobSpec("alerts", "interval", every(js.alerts_seconds),
                    lambda: alerts.scan(self.db, s, self.notifier), cluster_once=True),
        ]
        table.append(JobSpec("workflows", "interval", every(s.workflows.advance_seconds),
                             self.engine.run, cluster_once=True))
        table.append(JobSpec("retention", "interval", every(js.retention_seconds),
                             lambda: run_retention(self.db, s,
                                                   stopping=lambda: self.worker.stopping),
                             cluster_once=True))
        if js.reconcile_time:
            hour, minute = (int(x) for x in js.reconcile_time.split(":"))
            table.append(JobSpec(
                "reconcile", "cron", {"hour": hour, "minute": minute, "timezone": CHINA_TZ},
                lambda: reconcile.reconcile(self.db, reconcile.yesterday_china(),
                                            reconcile.setl_optins(s),
                                            extra_groups=js.reconcile_groups,
                                            on_mismatch=self.detail_reconciliation()),
                cluster_once=True))

            def catch_up() -> None:
                # A missed day (no worker at reconcile_time, centre away) is run when a worker
                # returns and an hour after each scheduled run; still missing raises an alert.
                reconcile.catch_up(self.db, reconcile.setl_optins(s), js.reconcile_time,
                                   js.reconcile_catch_up_days,
                                   extra_groups=js.reconcile_groups, notifier=self.notifier,
                                   on_mismatch=self.detail_reconciliation())
            soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
            # the same lock name as the daily run: never two 3201 rounds at once
            table.append(JobSpec("reconcile_catch_up", "date", {"run_date": soon},
                                 catch_up, cluster_once=True, lock="reconcile"))
            table.append(JobSpec("reconcile_check", "cron",
                                 {"hour": (hour + 1) % 24, "minute": minute,
                                  "timezone": CHINA_TZ}, catch_up, cluster_once=True,
                                 lock="reconcile"))
        if js.catalog_time and js.catalog_codes and isinstance(self.gateway, NHSAClient):
            c_hour, c_minute = (int(x) for x in js.catalog_time.split(":"))
            table.append(JobSpec(
                "catalog_sync", "cron", {"hour": c_hour, "minute": c_minute,
                                         "timezone": CHINA_TZ},
                functools.partial(catalog_sync.sync_all, self.db, self.gateway,
                                  js.catalog_codes), cluster_once=True))
        if isinstance(self.gateway, NHSAClient) and s.gateway.sign_in:
            sign_in = self.gateway.sign_in  # only the NHSA client signs in
            # 9001 at start and just after midnight China time (the client also re-signs
            # when the centre rejects a sign_no); 9002 happens in gateway.close().
            def sign() -> None:
                log.info("signed in (9001): sign_no %s…", str(sign_in(force=True))[:6])
            table.append(JobSpec("sign_in_start", "date", {}, sign))
            table.append(JobSpec("sign_in_daily", "cron", {"hour": 0, "minute": 0, "second": 10,
                                                           "timezone": CHINA_TZ}, sign))
        return table

    def detail_reconciliation(self) -> Optional[Callable[[Dict[str, Any]], Any]]:
        """The automated 3202 after a 3201 mismatch (needs the real client: files by 9101)."""
        if not isinstance(self.gateway, NHSAClient):
            return None
        transfer, optins = FileTransfer(self.gateway), reconcile.setl_optins(self.settings)
        return lambda result: reconcile_detail.detail(self.db, transfer, result, optins)

    def start(self) -> None:
        # The first beat at once: the HIS procedure's -1002 check must pass from the start.
        guarded("heartbeat")(self.heartbeat)()
        for spec in self.jobs():
            fn = self.once(spec.lock or spec.id, spec.fn) if spec.cluster_once else spec.fn
            self.scheduler.add_job(guarded(spec.id)(fn), spec.trigger, id=spec.id,
                                   **spec.trigger_args)
        self.scheduler.start()

    def once(self, name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``fn`` only if this process wins the cluster lock for ``name``."""
        def run_if_granted() -> Optional[Any]:
            with self.db.cluster_lock(name) as granted:
                if not granted:
                    log.debug("job %s: another worker holds the lock", name)
                    return None
                return fn()
        return run_if_granted

    def heartbeat(self, status: str = "RUNNING") -> None:
        self.db.run("heartbeat", **self.worker.heartbeat_row(status))
        self.db.run("heartbeat_counters", **stats.heartbeat_counter_params(self.worker))
        if status == "RUNNING":
            self.worker.extend_leases()

    def publish_latency(self) -> None:
        """This worker's INSERT-to-result median per interface, for the HIS procedures'
        first poll (mi_worker/wait_plan.py); nothing when no row finished since last time."""
        if self._latency_refused:
            return
        for row in self.worker.latency.publishable():
            try:
                self.db.run("record_interface_latency", **row)
            except DatabaseError as exc:
                if not is_permission_denied(exc):
                    raise
                # a database upgraded without security.sql run again: callers keep the
                # fixed poll schedule; say so once instead of every two seconds
                self._latency_refused = True
                log.warning("cannot record interface latency (%s): HIS callers keep the "
                            "fixed poll schedule; run security.sql again to grant UPDATE on "
                            "medical_insurance_interfaces (expected_ms, expected_at)", exc)
                return

    def shutdown(self) -> None:
        self._advancer.shutdown(wait=True)
        try:
            self.scheduler.shutdown(wait=False)
        except Exception:  # not started
            pass
        if self.notifier is not None:
            self.notifier.close()
        try:
            self.heartbeat("STOPPED")
        except Exception as exc:
            log.warning("could not mark the heartbeat STOPPED: %s", exc)
