"""Health, throughput, interface figures, queue and alerts: one source for the CLI and tests.

The figures come from the same SQL a DBA runs (the PostgreSQL functions / SQL Server
procedures, or the equivalent SQLite queries), so `mi-worker status` and
`sp_get_medical_insurance_monitor_data` can never disagree.
"""
from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, Dict, List

from mi_worker.db import Database

DATA_TYPES = ("health", "performance", "interfaces", "queue", "workers", "catalog")


def plain(value: Any) -> Any:
    """A JSON-friendly value (Decimal → float/int, datetime → ISO text)."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def rows(raw: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{k: plain(v) for k, v in r.items()} for r in raw]


def monitor(db: Database, data_type: str, *, warn_seconds: int = 30, down_seconds: int = 60,
            hours: int = 0) -> List[Dict[str, Any]]:
    """What sp_get_medical_insurance_monitor_data returns for ``data_type``."""
    kind = (data_type or "").lower()
    if kind == "health":
        return rows(db.run("monitor_health", warn_seconds=warn_seconds,
                           down_seconds=down_seconds))
    if kind == "performance":
        return rows(db.run("monitor_performance", hours=hours or 1))
    if kind == "interfaces":
        return rows(db.run("monitor_interfaces", hours=hours or 24))
    if kind == "queue":
        return rows(db.run("monitor_queue"))
    if kind == "workers":
        return rows(db.run("monitor_workers"))
    if kind == "catalog":  # catalogue sync runs (issue 15), newest first
        return rows(db.run("catalog_sync_history", limit=50))
    raise ValueError(f"unknown data type {data_type!r}: use {', '.join(DATA_TYPES)}")


def current_alert_conditions(db: Database, a) -> List[Dict[str, Any]]:
    """What sp_check_medical_insurance_alerts says is wrong now (``a`` = AlertSettings)."""
    return rows(db.run("check_alerts", error_rate_percent=a.error_rate_percent,
                       min_calls=a.error_rate_min_calls, slow_avg_ms=a.slow_avg_ms,
                       backlog_pending=a.backlog_pending,
                       backlog_age_seconds=a.backlog_age_seconds, down_seconds=60))


def alerts(db: Database, include_resolved: bool = False) -> List[Dict[str, Any]]:
    return rows(db.run("list_open_alerts", include_resolved=1 if include_resolved else 0))


def status(db: Database) -> Dict[str, Any]:
    """Everything `mi-worker status` shows, in one structure (also its --json output)."""
    return {"health": monitor(db, "health"), "workers": monitor(db, "workers"),
            "queue": monitor(db, "queue"), "performance": monitor(db, "performance"),
            "interfaces": monitor(db, "interfaces", hours=1), "alerts": alerts(db),
            "gateways": rows(db.run("live_gateway_kinds", down_seconds=60))}


def gateway_warnings(gateways: List[Dict[str, Any]]) -> List[str]:
    """Loud lines for `status` about live workers on a FAKE centre or without TLS checks."""
    out = []
    fake = [g for g in gateways if g.get("gateway_kind") in ("sandbox", "noop")]
    if fake:
        out.append("!! FAKE CENTRE: " + ", ".join(f"{g['worker_id']} ({g['gateway_kind']})"
                                                  for g in fake)
                   + " — calls are answered by a fake 医保中心, nothing reaches the national "
                   "platform")
    kinds = sorted({g["gateway_kind"] for g in gateways if g.get("gateway_kind")})
    if len(kinds) > 1:
        out.append(f"!! MIXED GATEWAY KINDS on one database: {', '.join(kinds)}")
    off = [g for g in gateways if g.get("gateway_tls_verified") == 0]
    if off:
        out.append("!! TLS NOT VERIFIED (gateway.verify_tls = false): "
                   + ", ".join(g["worker_id"] for g in off))
    return out


def table(data: List[Dict[str, Any]], columns: List[str]) -> str:
    """A plain text table (no dependency) for terminals and log files."""
    if not data:
        return "  (none)"
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in data]
    widths = [max(_width(c), *(_width(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  " + "  ".join(_pad(c, w) for c, w in zip(columns, widths)),
             "  " + "  ".join("-" * w for w in widths)]
    lines += ["  " + "  ".join(_pad(v, w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _width(text: str) -> int:
    # CJK characters take two columns in a terminal.
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))
