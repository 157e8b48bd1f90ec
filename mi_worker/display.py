"""One clock for people: times shown in ``display.timezone`` with an explicit offset.

The database keeps UTC (rows compare and sort without zone arithmetic, and a cluster spread
over hosts with different zones agrees), while msgids and ``inf_time`` are China time
because the centre says so. Ops correlate a cashier's "05:07, 窗口3" with rows, so every
time a person reads (CLI tables, ``--json``, log lines) is converted to one zone and carries
its offset (``2026-12-02 05:07:49+08:00``), so no reader has to guess which clock it is.

zoneinfo is the standard library (3.9+); on Windows it needs the ``tzdata`` package, which
setup.cfg already installs there. A zone the machine cannot load falls back to a fixed
UTC+8 only for the default Asia/Shanghai (China has had no DST since 1991), otherwise the
config check names the key.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Optional

DEFAULT_TIMEZONE = "Asia/Shanghai"
_CHINA_FIXED = dt.timezone(dt.timedelta(hours=8), "CST")
# What the dialects hand back for a UTC timestamp column once monitor.plain() made it text:
# SQLite's stored 'YYYY-MM-DD HH:MM:SS.SSS', or a naive datetime's isoformat(sep=" ").
_DB_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$")


def zone(name: str) -> dt.tzinfo:
    """The tzinfo for an IANA name; ValueError (for the config check) if it is unknown."""
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover - Python < 3.9 is not supported anyway
        if name == DEFAULT_TIMEZONE:
            return _CHINA_FIXED
        raise ValueError("zoneinfo is not available") from None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        if name == DEFAULT_TIMEZONE:
            return _CHINA_FIXED  # no tz database on this host: China's fixed offset is exact
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as "
                         f"Asia/Shanghai or UTC; on Windows install tzdata): {exc}") from None


def to_zone(value: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """A database time (naive = UTC, as every dialect stores it) in the display zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(tz)


def parse_db_time(text: str) -> Optional[dt.datetime]:
    """A UTC timestamp string from a row, or None when the text is not one."""
    if not isinstance(text, str) or not _DB_TIME.match(text):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        return None


def format_time(value: dt.datetime, tz: dt.tzinfo, for_json: bool = False) -> str:
    """``2026-12-02 05:07:49+08:00`` for tables, ISO 8601 with milliseconds for JSON."""
    local = to_zone(value, tz)
    if for_json:
        return local.isoformat(timespec="milliseconds")
    return local.isoformat(sep=" ", timespec="seconds")


def localize(data: Any, tz: dt.tzinfo, for_json: bool = False) -> Any:
    """Every database time inside a CLI result (dicts, lists) shown in ``tz`` with its offset.

    Only whole values are converted (a column holding a timestamp), never text inside JSON
    documents: ``inf_time`` in a response is already China time and stays as the centre sent
    it.
    """
    if isinstance(data, dict):
        return {k: localize(v, tz, for_json) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [localize(v, tz, for_json) for v in data]
    if isinstance(data, dt.datetime):
        return format_time(data, tz, for_json)
    if isinstance(data, str):
        parsed = parse_db_time(data)
        return format_time(parsed, tz, for_json) if parsed else data
    return data


class ZoneFormatter(logging.Formatter):
    """Log timestamps in the display zone with their offset: 2026-12-02 05:07:49.123+08:00."""

    def __init__(self, fmt: str, tz: dt.tzinfo) -> None:
        super().__init__(fmt)
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        when = dt.datetime.fromtimestamp(record.created, self.tz)
        if datefmt:
            return when.strftime(datefmt)
        return when.isoformat(sep=" ", timespec="milliseconds")
