"""Logging set-up: text or JSON lines, secrets and personal data scrubbed on every handler.

Timestamps are in ``display.timezone`` with an explicit offset (mi_worker.display), so a log
line, a CLI table and a cashier's clock agree.

The log file rotates at midnight with concurrent-log-handler rather than the standard
TimedRotatingFileHandler: the standard handler renames the open file and, on Windows, that
rename fails while any other process holds the file (the README's ``Get-Content -Wait``, a
log shipper, an admin command writing the same file), after which every record is lost until
the handle goes. concurrent-log-handler serialises writers of several processes through a
lock file, and when the rename is refused it keeps writing to the current file and rotates
on a later record, so nothing is dropped.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

from concurrent_log_handler import ConcurrentTimedRotatingFileHandler

try:
    from pythonjsonlogger.json import JsonFormatter
except ImportError:  # python-json-logger < 3.1
    from pythonjsonlogger.jsonlogger import JsonFormatter

from mi_worker.display import DEFAULT_TIMEZONE, ZoneFormatter, zone
from mi_worker.masking import MaskingFilter, mask_value

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(threadName)s] %(message)s"
FORMATS = ("text", "json")
finished_log = logging.getLogger("mi_worker.calls")


def _json_formatter(tz: Any) -> logging.Formatter:
    """python-json-logger: one JSON object per line, with the record's ``extra`` fields."""
    class ZoneJson(JsonFormatter):  # the display zone with its offset, as in text lines
        formatTime = ZoneFormatter.formatTime

    formatter = ZoneJson("%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s",
                         rename_fields={"asctime": "time", "levelname": "level",
                                        "name": "logger", "threadName": "thread"},
                         json_ensure_ascii=False)
    formatter.tz = tz
    return formatter


def file_handler(file: str, backup_count: int = 14) -> logging.Handler:
    """The rotating log file handler (daily at midnight, ``backup_count`` files kept)."""
    Path(file).parent.mkdir(parents=True, exist_ok=True)
    return ConcurrentTimedRotatingFileHandler(file, when="midnight", backupCount=backup_count,
                                              encoding="utf-8")


def setup(level: str = "INFO", file: str = "", secrets: Iterable[str] = (),
          timezone: str = DEFAULT_TIMEZONE, fmt: str = "text") -> MaskingFilter:
    """Configure the root logger; return the filter so later secrets can be added to it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if getattr(handler, "baseFilename", None):
            handler.close()
    mask = MaskingFilter(secrets)
    tz = zone(timezone)
    handlers: list = [logging.StreamHandler(sys.stderr)]
    if file:
        handlers.append(file_handler(file))
    for handler in handlers:
        handler.setFormatter(_json_formatter(tz) if fmt == "json" else ZoneFormatter(FORMAT, tz))
        handler.addFilter(mask)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request line at INFO: kept at WARNING even in DEBUG runs (request URLs
    # and retries are already in the per-call line and the attempt log).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return mask


def log_finished(*, request_id: int, interface_code: str, msgid: Optional[str], outcome: str,
                 attempts: int, http_attempts: int, latency_ms: int, worker_id: str,
                 psn_no: Optional[str] = None, infcode: Any = None,
                 error_code: Optional[int] = None) -> None:
    """One INFO line per finished gateway call (logger ``mi_worker.calls``).

    The same fields go into the JSON line as keys (ELK/Loki index them). psn_no is masked
    here, before the record exists, so neither format can carry it in full.
    """
    if not finished_log.isEnabledFor(logging.INFO):
        return
    fields = {"request_id": request_id, "interface": str(interface_code).strip(),
              "msgid": msgid, "outcome": outcome, "attempts": attempts,
              "http_attempts": http_attempts, "latency_ms": latency_ms, "worker": worker_id,
              "psn_no": mask_value(str(psn_no)) if psn_no else None,
              "infcode": None if infcode is None else str(infcode), "error_code": error_code}
    finished_log.info(
        "finished request %s %s msgid %s outcome %s attempts %s (http %s) latency %sms "
        "worker %s psn %s infcode %s error_code %s", request_id, fields["interface"], msgid,
        outcome, attempts, http_attempts, latency_ms, worker_id, fields["psn_no"] or "-",
        fields["infcode"] or "-", error_code if error_code is not None else "-",
        extra={"call": fields})
