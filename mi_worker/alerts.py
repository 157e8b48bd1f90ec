"""Alerts: written to medical_insurance_alerts (DBAs read them in SQL), de-duplicated per type.

An alert type stays open while its condition holds: raising it again only refreshes it, so a
stuck condition produces one alert and one notification, not one per scan. When the
condition clears the alert is resolved; if it returns within ``dedup_minutes`` the same alert
reopens (no new notification), which keeps a flapping condition from paging anyone twice.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional

from mi_worker import monitor
from mi_worker.db import Database
from mi_worker.states import Status

log = logging.getLogger("mi_worker.alerts")


def raise_alert(db: Database, alert_type: str, level: str, message: str,
                detail: Optional[str] = None, dedup_minutes: int = 30) -> Optional[int]:
    """Open (or refresh) an alert; return its id when it is new and should be notified."""
    current = db.run_one("open_alert", alert_type=alert_type)
    if current:
        db.run("touch_alert", alert_id=current["alert_id"], alert_message=message,
               detail=detail)
        return None
    if db.run("reopen_alert", alert_type=alert_type, alert_message=message,
              dedup_minutes=dedup_minutes):
        log.warning("ALERT %s reopened (flapping within %d min): %s", alert_type,
                    dedup_minutes, message)
        return None
    db.run("insert_alert", alert_type=alert_type, alert_level=level, alert_message=message,
           detail=detail)
    created = db.run_one("open_alert", alert_type=alert_type)
    log.log(logging.ERROR if level == "CRITICAL" else logging.WARNING,
            "ALERT %s [%s]: %s", alert_type, level, message)
    return int(created["alert_id"]) if created else None


# Alert types whose open alerts only this scan may resolve (NEEDS_MANUAL rows raised by the
# reversal job are resolved by the scan too, once no such row is left).
SCANNED_TYPES = ("SERVICE_DOWN", "HIGH_ERROR_RATE", "SLOW_RESPONSE", "QUEUE_BACKLOG",
                 "UNCERTAIN_REQUESTS", Status.NEEDS_MANUAL.value, "FAKE_GATEWAY",
                 "MIXED_GATEWAY_KINDS", "TLS_VERIFY_OFF")


def scan(db: Database, settings, notifier=None) -> Dict[str, List[str]]:
    """One alert scan: raise what is wrong now, resolve what has cleared, notify new ones."""
    a = settings.alerts
    now = monitor.current_alert_conditions(db, a)
    firing = {c["alert_type"]: c for c in now}
    raised, resolved = [], []
    for kind, cond in firing.items():
        new_id = raise_alert(db, kind, cond["alert_level"], cond["alert_message"],
                             dedup_minutes=a.dedup_minutes)
        if new_id is not None:
            raised.append(kind)
            if notifier is not None:
                notifier.send(new_id, kind, cond["alert_level"], cond["alert_message"])
    for alert in monitor.alerts(db):
        if alert["alert_type"] in SCANNED_TYPES and alert["alert_type"] not in firing:
            db.run("resolve_alert", alert_id=alert["alert_id"])
            resolved.append(alert["alert_type"])
            log.info("alert %s resolved: condition cleared", alert["alert_type"])
    return {"raised": raised, "resolved": resolved, "firing": sorted(firing)}
