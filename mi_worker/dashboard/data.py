"""What each dashboard page shows, read with named SELECTs only (queries.sql, "dashboard").

The overview reuses the monitoring queries (monitor.py) so the page and `mi-worker status`
show the same figures; the dashboard adds only what a chart or a list needs (buckets, p50,
keyset pages). Every personal field is masked here, before a template sees it, so no page
can forget to (masking.py's rules, as the CLI, plus ID-number and mobile shapes in free text).
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from mi_worker import monitor
from mi_worker.db import Database
from mi_worker.masking import mask_personal, mask_value
from mi_worker.states import ResultStatus, Status

STATUSES = tuple(s.value for s in Status)
OUTCOMES = tuple(r.value for r in (ResultStatus.SUCCESS, ResultStatus.ERROR, ResultStatus.TIMEOUT,
                                   ResultStatus.UNCERTAIN, ResultStatus.IN_PROGRESS))
PAGE_SIZE = 50
# Chart windows: (hours, bucket seconds) → 12 five-minute bars for the hour, 24 hourly bars.
WINDOWS = {"hour": (1, 300), "day": (24, 3600)}

# 18-digit resident ID (last may be X), 15-digit old ID, 11-digit mainland mobile: masked in
# free text even where no field name says what they are (an error message, a centre's answer).
_ID_SHAPES = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx]|\d{15}|1[3-9]\d{9})(?![0-9A-Za-z])")


def mask_text(text: Optional[str]) -> Optional[str]:
    """Personal data in a JSON body or message masked: by field name, then by shape."""
    if text is None:
        return None
    return _ID_SHAPES.sub(lambda m: mask_value(m.group(1)), mask_personal(str(text)))


def mask_id(value: Optional[str]) -> Optional[str]:
    return mask_value(str(value)) if value else value


def to_utc(value: Any) -> Optional[dt.datetime]:
    """A database time as an aware UTC datetime: every dialect stores UTC (PostgreSQL's
    session is pinned to UTC, SQL Server's DATETIME2 holds SYSUTCDATETIME(), SQLite UTC text)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None \
            else value.astimezone(dt.timezone.utc)
    if isinstance(value, dt.date):
        return None
    text = str(value).strip().replace("T", " ")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.timezone.utc) if parsed.tzinfo is None \
        else parsed.astimezone(dt.timezone.utc)


def latency_ms(row: Dict[str, Any]) -> Optional[int]:
    start, end = to_utc(row.get("request_time")), to_utc(row.get("response_time"))
    if start is None or end is None:
        return None
    return int(round((end - start).total_seconds() * 1000))


def _masked_row(row: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(row)
    if "psn_no" in out:
        out["psn_no"] = mask_id(out["psn_no"])
    for key in ("input_data", "response_data", "error_message", "resolution_note",
                "stmt_rslt_dscr", "alert_message"):
        if key in out:
            out[key] = mask_text(out[key])
    return out


# -- overview ----------------------------------------------------------------------------
def overview(db: Database, *, warn_seconds: int = 30, down_seconds: int = 60,
             recon_day: Optional[dt.date] = None) -> Dict[str, Any]:
    """Workers with their UP/WARNING/DOWN state, queue depth, last hour / day, charts, alerts."""
    health = monitor.monitor(db, "health", warn_seconds=warn_seconds, down_seconds=down_seconds)
    state = {r["worker_id"]: r["status"] for r in health if r["worker_id"] != "*"}
    overall = next((r for r in health if r["worker_id"] == "*"), None)
    workers = []
    for w in monitor.monitor(db, "workers"):
        workers.append({**w, "state": state.get(w["worker_id"], "DOWN")})
    queue: Dict[str, Dict[str, Any]] = {}
    for r in monitor.monitor(db, "queue"):
        q = queue.setdefault(r["status"], {"status": r["status"], "depth": 0,
                                            "oldest_age_seconds": 0})
        q["depth"] += int(r["depth"] or 0)
        q["oldest_age_seconds"] = max(q["oldest_age_seconds"], int(r["oldest_age_seconds"] or 0))
    perf = {name: (monitor.monitor(db, "performance", hours=hours) or [{}])[0]
            for name, (hours, _) in WINDOWS.items()}
    interfaces = {name: monitor.monitor(db, "interfaces", hours=hours)
                  for name, (hours, _) in WINDOWS.items()}
    recon = None
    if recon_day is not None:
        recon = {"day": recon_day,
                 "rows": [_masked_row(r) for r in monitor.rows(
                     db.run("list_reconciliation", stmt_date=recon_day.isoformat()))]}
    return {
        "overall": overall and overall["status"],
        "workers": workers,
        "queue": [queue[s] for s in STATUSES if s in queue],
        "performance": perf,
        "interfaces": interfaces,
        "throughput": {name: throughput(db, name) for name in WINDOWS},
        "latency": {name: latency(db, name) for name in WINDOWS},
        "alerts": [_masked_row(a) for a in monitor.alerts(db)],
        "reconciliation": recon,
    }


def throughput(db: Database, window: str) -> Dict[str, Any]:
    """Calls per bucket and outcome, oldest bucket first (a full series, zeros included)."""
    hours, bucket_seconds = WINDOWS[window]
    n_buckets = hours * 3600 // bucket_seconds
    series = {o: [0] * n_buckets for o in OUTCOMES}
    for r in db.run("dash_throughput", hours=hours, bucket_seconds=bucket_seconds):
        b = min(max(int(r["bucket"]), 0), n_buckets - 1)
        outcome = r["result_status"] if r["result_status"] in series \
            else ResultStatus.IN_PROGRESS.value
        series[outcome][n_buckets - 1 - b] += int(r["n"])
    return {"hours": hours, "bucket_seconds": bucket_seconds, "buckets": n_buckets,
            "series": series, "total": sum(sum(v) for v in series.values())}


def latency(db: Database, window: str) -> List[Dict[str, Any]]:
    hours, _ = WINDOWS[window]
    return monitor.rows(db.run("dash_latency", hours=hours))


# -- requests ----------------------------------------------------------------------------
@dataclass
class RequestFilter:
    """The request list's filters, validated: a bad value is a message, never a query."""

    status: Optional[str] = None
    interface_code: Optional[str] = None
    psn_no: Optional[str] = None
    msgid: Optional[str] = None
    his_fee_id: Optional[str] = None
    from_utc: Optional[dt.datetime] = None
    to_utc: Optional[dt.datetime] = None
    before_id: Optional[int] = None
    errors: List[str] = field(default_factory=list)

    def params(self, limit_rows: int) -> Dict[str, Any]:
        fmt = "%Y-%m-%d %H:%M:%S"
        return {"status": self.status, "interface_code": self.interface_code,
                "psn_no": self.psn_no, "msgid": self.msgid, "his_fee_id": self.his_fee_id,
                "from_utc": self.from_utc.strftime(fmt) if self.from_utc else None,
                "to_utc": self.to_utc.strftime(fmt) if self.to_utc else None,
                "before_id": self.before_id, "limit_rows": limit_rows}


def parse_filter(args: Dict[str, str], zone: dt.tzinfo) -> RequestFilter:
    """Form fields → RequestFilter; times are read in the display zone, sent as UTC."""
    f = RequestFilter()

    def text(name: str, max_len: int) -> Optional[str]:
        value = (args.get(name) or "").strip()
        if not value:
            return None
        if len(value) > max_len:
            f.errors.append(name)
            return None
        return value

    status = text("status", 20)
    if status:
        if status.upper() in STATUSES:
            f.status = status.upper()
        else:
            f.errors.append("status")
    f.interface_code = text("interface_code", 10)
    f.psn_no = text("psn_no", 30)
    f.msgid = text("msgid", 30)
    f.his_fee_id = text("his_fee_id", 64)
    for name in ("from", "to"):
        value = text(name, 30)
        if value:
            try:
                local = dt.datetime.fromisoformat(value.replace("T", " "))
            except ValueError:
                f.errors.append(name)
                continue
            if local.tzinfo is None:
                local = local.replace(tzinfo=zone)
            setattr(f, f"{name}_utc", local.astimezone(dt.timezone.utc).replace(tzinfo=None))
    before = text("before", 20)
    if before:
        if before.isdigit():
            f.before_id = int(before)
        else:
            f.errors.append("before")
    return f


def requests_page(db: Database, f: RequestFilter, page_size: int = PAGE_SIZE
                  ) -> Dict[str, Any]:
    """One keyset page: page_size rows plus one to know whether an older page exists."""
    raw = monitor.rows(db.run("dash_requests_page", **f.params(page_size + 1)))
    more = len(raw) > page_size
    rows = [dict(_masked_row(r), latency_ms=latency_ms(r)) for r in raw[:page_size]]
    for r in rows:
        r["his_fee_id"] = r.get("his_fee_id")
    return {"rows": rows, "next_before": rows[-1]["request_id"] if more and rows else None}


def request_detail(db: Database, request_id: int) -> Optional[Dict[str, Any]]:
    """One row, its attempt log, the centre's answer and its reversal chain (both ways)."""
    row = db.run_one("get_request", request_id=request_id)
    if not row:
        return None
    row = monitor.rows([row])[0]
    try:
        attempts = json.loads(row.get("attempt_log") or "[]")
        if not isinstance(attempts, list):
            attempts = []
    except ValueError:
        attempts = []
    attempts = [{k: mask_text(v) if isinstance(v, str) else v for k, v in a.items()}
                if isinstance(a, dict) else {"entry": mask_text(str(a))} for a in attempts]
    parents = []
    seen = {request_id}
    parent_id = row.get("parent_request_id")
    while parent_id and parent_id not in seen and len(parents) < 10:
        seen.add(parent_id)
        parent = db.run_one("get_request", request_id=parent_id)
        if not parent:
            break
        parents.append(_masked_row(monitor.rows([parent])[0]))
        parent_id = parents[-1].get("parent_request_id")
    children = [_masked_row(c) for c in monitor.rows(
        db.run("find_children", parent_request_id=request_id))]
    detail = _masked_row(row)
    detail["latency_ms"] = latency_ms(row)
    for secretish in ("claim_token", "attempt_log"):
        detail.pop(secretish, None)
    return {"row": detail, "attempts": attempts, "parents": parents, "children": children,
            "response_pretty": _pretty(detail.get("response_data")),
            "input_pretty": _pretty(detail.get("input_data"))}


def _pretty(text: Optional[str]) -> Optional[str]:
    """Indented JSON for reading (the text is masked already, so re-parsing is safe)."""
    if not text:
        return text
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, indent=2)
    except ValueError:
        return text


def doubtful(db: Database) -> List[Dict[str, Any]]:
    return [_masked_row(r) for r in monitor.rows(db.run("dash_doubtful"))]


def alerts(db: Database) -> List[Dict[str, Any]]:
    return [_masked_row(a) for a in monitor.alerts(db, include_resolved=True)]


def reconciliation(db: Database) -> List[Dict[str, Any]]:
    return [_masked_row(r) for r in monitor.rows(db.run("dash_reconciliation"))]
