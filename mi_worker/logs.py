"""Logging set-up: one format, secrets and personal data scrubbed on every handler.

Timestamps are in ``display.timezone`` with an explicit offset (mi_worker.display), so a log
line, a CLI table and a cashier's clock agree.
"""
from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Iterable

from mi_worker.display import DEFAULT_TIMEZONE, ZoneFormatter, zone
from mi_worker.masking import MaskingFilter

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(threadName)s] %(message)s"


def setup(level: str = "INFO", file: str = "", secrets: Iterable[str] = (),
          timezone: str = DEFAULT_TIMEZONE) -> MaskingFilter:
    """Configure the root logger; return the filter so later secrets can be added to it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    mask = MaskingFilter(secrets)
    tz = zone(timezone)
    handlers: list = [logging.StreamHandler(sys.stderr)]
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.TimedRotatingFileHandler(
            file, when="midnight", backupCount=14, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(ZoneFormatter(FORMAT, tz))
        handler.addFilter(mask)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request line at INFO; keep it for DEBUG runs only.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return mask
