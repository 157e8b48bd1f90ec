"""Keep secrets and personal data out of logs.

A hospital's logs are read by vendors and attached to tickets, so the gateway secret and
database passwords must never appear, and personal data (psn_no, certno, names) is masked
down to a recognisable stub. The filter is installed on the root handler, so it covers
every logger including third-party ones (httpx logs URLs).
"""
from __future__ import annotations

import logging
import re
from typing import Iterable, List

_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")
_ODBC_PASSWORD = re.compile(r"((?:PWD|Password)\s*=\s*)(\{[^}]*\}|[^;]*)", re.IGNORECASE)
# "psn_no": "123…" style JSON fields and key=value text.
_PERSONAL = re.compile(
    r'(["\']?(?:psn_no|certno|psn_cert_no|psn_name|name|opter_name|mobile|tel|addr)["\']?'
    r'\s*[:=]\s*["\']?)([^"\',}\s]+)', re.IGNORECASE)


def mask_url(url: str) -> str:
    """A database URL or ODBC string with its password replaced by ***."""
    return _ODBC_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\3", url))


def mask_value(value: str) -> str:
    """Keep the first and last character: enough to match a ticket, useless to a reader."""
    if len(value) <= 2:
        return "*" * len(value)
    return value[0] + "*" * min(len(value) - 2, 8) + value[-1]


def mask_personal(text: str) -> str:
    return _PERSONAL.sub(lambda m: m.group(1) + mask_value(m.group(2)), text)


class MaskingFilter(logging.Filter):
    """Rewrites every record's final message: secrets blanked, personal data masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: List[str] = sorted({s for s in secrets if s and len(s) >= 4},
                                         key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return mask_personal(mask_url(text))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        scrubbed = self.scrub(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        record.msg, record.args = scrubbed, None
        return True
