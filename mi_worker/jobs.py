"""Scheduled jobs inside every worker (APScheduler 3, BackgroundScheduler).

Per process: heartbeat (which also extends this worker's leases) and sign-in.
Once per cluster, under a database lock so ten workers do not all sweep: expire PENDING rows
past their deadline, recover rows of dead workers, reverse uncertain settlements, scan
alerts, reconcile. No job may kill the worker: each catches and logs everything.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Callable, List, Optional

from apscheduler.schedulers.background import BackgroundScheduler

from mi_worker import stats
from mi_worker.db import Database
from mi_worker.gateway import catalog
from mi_worker.gateway.base import E_TIMEOUT, E_UNCERTAIN

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


def recover_leases(db: Database, lease_seconds: int, stale_seconds: int) -> dict:
    """Rows of dead workers: queries go back to PENDING, state-changing calls become UNCERTAIN.

    A state-changing request may have reached the centre before its worker died, so it is
    never sent again; the reversal job settles it. A retry-safe one past its deadline has no
    caller left and ends TIMEOUT.
    """
    counts = {"PENDING": 0, "UNCERTAIN": 0, "TIMEOUT": 0}
    for row in db.run("find_lost_leases", lease_seconds=lease_seconds,
                      stale_seconds=stale_seconds):
        code = str(row["interface_code"]).strip()
        if catalog.is_retry_safe(code):
            if int(row["past_deadline"]):
                status, err, msg = "TIMEOUT", E_TIMEOUT, (
                    f"请求超时: worker {row['worker_id']} stopped while processing; the caller's "
                    "deadline has passed")
            else:
                status, err, msg = "PENDING", None, (
                    f"worker {row['worker_id']} stopped while processing; sent again")
        else:
            status, err, msg = "UNCERTAIN", E_UNCERTAIN, (
                f"结果不确定: worker {row['worker_id']} stopped while a {code} call was in "
                f"flight; it may have reached the centre. {catalog.doubt_advice(code)}")
        if db.run("recover_lease", request_id=row["request_id"], claim_token=row["claim_token"],
                  status=status, error_code=err, error_message=msg):
            counts[status] += 1
            log.warning("lease recovery: request %s (%s) of worker %s → %s", row["request_id"],
                        code, row["worker_id"], status)
    return counts


class Scheduler:
    """Owns the BackgroundScheduler and the job set of one worker process."""

    def __init__(self, worker, db: Database, settings, gateway=None) -> None:
        self.worker = worker
        self.db = db
        self.settings = settings
        self.gateway = gateway
        self.notifier = None
        if settings.alerts.webhook_url:
            from mi_worker.notify import WebhookNotifier
            self.notifier = WebhookNotifier(
                settings.alerts.webhook_url, settings.alerts.webhook_kind,
                source=getattr(worker, "worker_id", ""), secret=settings.alerts.webhook_secret,
                keyword=settings.alerts.webhook_keyword,
                attempts=settings.alerts.webhook_attempts, stats=stats.stats_of(worker),
                on_delivered=lambda alert_id: db.run("mark_alert_notified", alert_id=alert_id))
        self.scheduler = BackgroundScheduler(daemon=True, timezone="UTC",
                                             job_defaults={"coalesce": True,
                                                           "max_instances": 1,
                                                           "misfire_grace_time": 30})

    def start(self) -> None:
        js = self.settings.jobs
        hb = guarded("heartbeat")(self.heartbeat)
        hb()  # from the first second: the HIS procedure's -1002 check must pass at once
        self.scheduler.add_job(hb, "interval", seconds=js.heartbeat_seconds, id="heartbeat")
        self.scheduler.add_job(guarded("expire")(self.once("expire", expire_pending)),
                               "interval", seconds=js.expire_seconds, id="expire")
        self.scheduler.add_job(
            guarded("lease_recovery")(self.once(
                "lease_recovery", lambda db: recover_leases(
                    db, self.settings.worker.lease_seconds, js.heartbeat_stale_seconds))),
            "interval", seconds=js.lease_recovery_seconds, id="lease_recovery")
        for job_id, fn, seconds in self.extra_jobs():
            self.scheduler.add_job(fn, "interval", seconds=seconds, id=job_id)
        self.add_reconcile_job()
        self.add_sign_in_job()
        self.scheduler.start()

    def extra_jobs(self) -> list:
        """Cluster-wide jobs beyond the sweeps: reversal and the alert scan."""
        from mi_worker import alerts
        from mi_worker.reversal import run_reversals
        js = self.settings.jobs
        reversal = self.once("reversal", lambda db: run_reversals(
            db, js.reversal_max_attempts, js.reversal_done_pattern, js.reversal_not_found_pattern,
            js.reversal_delay_seconds, js.reversal_timeout_seconds))
        scan = self.once("alerts", lambda db: alerts.scan(db, self.settings, self.notifier))
        from mi_worker.retention import run_retention
        retention = self.once("retention", lambda db: run_retention(
            db, self.settings, stopping=lambda: self.worker.stopping))
        return [("reversal", guarded("reversal")(reversal), js.reversal_seconds),
                ("alerts", guarded("alerts")(scan), js.alerts_seconds),
                ("retention", guarded("retention")(retention), js.retention_seconds)]

    def add_sign_in_job(self) -> None:
        """9001 at start and just after midnight China time (the client also re-signs when
        the centre rejects a sign_no); 9002 happens in gateway.close() at graceful stop."""
        import datetime as dt
        sign_in = getattr(self.gateway, "sign_in", None)
        if sign_in is None or not getattr(self.settings.gateway, "sign_in", False):
            return
        job = guarded("sign_in")(lambda: log.info("signed in (9001): sign_no %s…",
                                                  str(sign_in(force=True))[:6]))
        self.scheduler.add_job(job, "date", id="sign_in_start")
        self.scheduler.add_job(job, "cron", hour=0, minute=0, second=10,
                               timezone=dt.timezone(dt.timedelta(hours=8)), id="sign_in_daily")

    def add_reconcile_job(self) -> None:
        """The daily 对账 of the previous China day at jobs.reconcile_time (China time)."""
        import datetime as dt

        from mi_worker import reconcile
        js, gw = self.settings.jobs, self.settings.gateway
        if not js.reconcile_time:
            return
        hour, minute = (int(x) for x in js.reconcile_time.split(":"))
        optins = js.reconcile_setl_optins or gw.mdtrtarea_admvs or gw.insuplc_admdvs

        def job() -> None:
            # Runs on a scheduler thread while the worker pool answers the 3201 rows.
            with self.db.cluster_lock("reconcile") as granted:
                if granted:
                    reconcile.reconcile(self.db, reconcile.yesterday_china(), optins,
                                        extra_groups=js.reconcile_groups)
        self.scheduler.add_job(guarded("reconcile")(job), "cron", hour=hour, minute=minute,
                               timezone=dt.timezone(dt.timedelta(hours=8)), id="reconcile")

        def check() -> None:
            # A missed day (no worker at reconcile_time, centre away) is run when a worker
            # returns and an hour after each scheduled run; still missing raises an alert.
            with self.db.cluster_lock("reconcile") as granted:
                if granted:
                    reconcile.catch_up(self.db, optins, js.reconcile_time,
                                       js.reconcile_catch_up_days,
                                       extra_groups=js.reconcile_groups,
                                       notifier=self.notifier)
        china = dt.timezone(dt.timedelta(hours=8))
        self.scheduler.add_job(guarded("reconcile_catch_up")(check), "date",
                               run_date=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5),
                               id="reconcile_catch_up")
        self.scheduler.add_job(guarded("reconcile_check")(check), "cron", hour=(hour + 1) % 24,
                               minute=minute, timezone=china, id="reconcile_check")

    def once(self, name: str, fn: Callable[[Database], object]) -> Callable[[], object]:
        """Run ``fn`` only if this process wins the cluster lock for ``name``."""
        def run() -> Optional[object]:
            with self.db.cluster_lock(name) as granted:
                if not granted:
                    log.debug("job %s: another worker holds the lock", name)
                    return None
                return fn(self.db)
        return run

    def heartbeat(self, status: str = "RUNNING") -> None:
        from mi_worker.worker import heartbeat_params
        self.db.run("heartbeat", **heartbeat_params(self.worker, status))
        self.db.run("heartbeat_counters", **stats.heartbeat_counter_params(self.worker))
        if status == "RUNNING":
            self.worker.queue.extend_leases(self.worker.active_tokens())

    def shutdown(self) -> None:
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
