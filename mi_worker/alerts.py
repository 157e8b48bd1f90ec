"""Alerts: written to medical_insurance_alerts (DBAs read them in SQL), de-duplicated per type.

An alert type stays open while its condition holds; raising it again only refreshes it, so a
stuck condition produces one alert and one notification, not one per scan.
"""
from __future__ import annotations

import logging
from typing import Optional

from mi_worker.db import Database

log = logging.getLogger("mi_worker.alerts")


def raise_alert(db: Database, alert_type: str, level: str, message: str,
                detail: Optional[str] = None) -> bool:
    """Open an alert of ``alert_type`` unless one is open; True when a new one was written."""
    current = db.run_one("open_alert", alert_type=alert_type)
    if current:
        db.run("touch_alert", alert_id=current["alert_id"], alert_message=message,
               detail=detail)
        return False
    db.run("insert_alert", alert_type=alert_type, alert_level=level, alert_message=message,
           detail=detail)
    log.log(logging.ERROR if level == "CRITICAL" else logging.WARNING,
            "ALERT %s [%s]: %s", alert_type, level, message)
    return True
