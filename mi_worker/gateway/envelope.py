"""The request/response envelope: msgid, inf_time, the fields around ``input``, parsing.

Pure functions only (no I/O), so the rules the centre enforces — a 30-character msgid, China
time whatever the host's zone, insuplc_admdvs whenever a psn_no is present, UTF-8 bytes —
are tested without a network.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from mi_worker.gateway.settings import GatewaySettings

PROVINCE_EXTRAS = ("enc_type", "fixmedins_soft_fcty", "serv_code", "serv_sign")


def _china_tz() -> tzinfo:
    """Asia/Shanghai, or a fixed UTC+8 when tzdata is missing (China has no DST since 1991)."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Asia/Shanghai")
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, or a broken tz database
        return timezone(timedelta(hours=8), "CST")


CHINA_TZ = _china_tz()


def china_now(now_utc: datetime | None = None) -> datetime:
    """The current (or given) instant as an aware datetime in China time.

    A naive ``now_utc`` is taken as UTC; the host's own zone never plays a part.
    """
    if now_utc is None:
        now_utc = datetime.now(timezone.utc)
    elif now_utc.tzinfo is None:
        now_utc = now_utc.replace(tzinfo=timezone.utc)
    return now_utc.astimezone(CHINA_TZ)


def china_date(now_utc: datetime | None = None) -> str:
    """yyyy-MM-dd in China: the sign-in day and the reconciliation day."""
    return china_now(now_utc).strftime("%Y-%m-%d")


def inf_time(now_utc: datetime | None = None) -> str:
    """The envelope's inf_time, "yyyy-MM-dd HH:mm:ss" in Asia/Shanghai."""
    return china_now(now_utc).strftime("%Y-%m-%d %H:%M:%S")


def format_msgid(fixmedins_code: str, china_time: datetime, seq: int) -> str:
    """fixmedins_code (12) + yyyyMMddHHmmss (14) + 4-digit sequence = 30 characters.

    ``china_time`` is used as given (pass China wall time, e.g. :func:`china_now`); the
    sequence wraps at 10000 so callers can pass a raw counter.
    """
    if len(fixmedins_code) != 12:
        raise ValueError(f"fixmedins_code must be 12 characters, got {fixmedins_code!r}")
    return f"{fixmedins_code}{china_time.strftime('%Y%m%d%H%M%S')}{seq % 10000:04d}"


def is_valid_msgid(msgid: str, fixmedins_code: str | None = None) -> bool:
    """30 characters, digits after the institution code, and the right prefix if given."""
    if not isinstance(msgid, str) or len(msgid) != 30 or not msgid[12:].isdigit():
        return False
    return fixmedins_code is None or msgid.startswith(fixmedins_code)


def find_key(obj: Any, key: str) -> Any | None:
    """The first non-empty value of ``key`` anywhere in nested dicts/lists (depth first)."""
    if isinstance(obj, dict):
        value = obj.get(key)
        if value not in (None, ""):
            return value
        children = obj.values()
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for child in children:
        found = find_key(child, key)
        if found not in (None, ""):
            return found
    return None


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) != ""


def find_field(input_obj: Any, key: str) -> str | None:
    """``key`` in the input, in the one documented order every path uses (the SQLite
    contract, the gateway client, and the PostgreSQL procedure): ``data.<key>``, then the
    top level, then the first string or number found depth first anywhere below."""
    if isinstance(input_obj, dict):
        for holder in (input_obj.get("data"), input_obj):
            if isinstance(holder, dict) and _scalar(holder.get(key)):
                return str(holder[key])
    value = find_key(input_obj, key)
    return str(value) if _scalar(value) else None


def find_psn_no(input_obj: Any) -> str | None:
    """人员编号 in the input (input.data.psn_no, input.psn_no, input.feedetail[0].psn_no...)."""
    return find_field(input_obj, "psn_no")


def resolve_insuplc_admdvs(input_obj: Any, from_call: str | None,
                           default: str) -> tuple[str, bool]:
    """(insuplc_admdvs to send, whether it is required).

    Required when the input carries a psn_no. Order: the call's own value (CallContext), then
    input.data.insuplc_admdvs (or any insuplc_admdvs in the input), then the configured
    default — the last only when required, because a wrong 参保地 is worse than none.
    """
    required = find_psn_no(input_obj) is not None
    if from_call:
        return str(from_call), required
    data = input_obj.get("data") if isinstance(input_obj, dict) else None
    value = data.get("insuplc_admdvs") if isinstance(data, dict) else None
    if not value:
        value = find_key(input_obj, "insuplc_admdvs")
    if value:
        return str(value), required
    return (default if required else ""), required


def build_envelope(settings: GatewaySettings, infno: str, msgid: str, input_obj: dict[str, Any],
                   sign_no: str = "", insuplc_admdvs: str = "",
                   now_utc: datetime | None = None) -> dict[str, Any]:
    """The request envelope in the spec's field order; ``input`` passes through untouched."""
    env: dict[str, Any] = {
        "infno": infno,
        "msgid": msgid,
        "mdtrtarea_admvs": settings.mdtrtarea_admvs,
        "insuplc_admdvs": insuplc_admdvs,
        "recer_sys_code": settings.recer_sys_code,
        "dev_no": settings.dev_no,
        "dev_safe_info": settings.dev_safe_info,
        "cainfo": settings.cainfo,
        "signtype": settings.signtype,
        "infver": settings.infver or "V1.0",
        "opter_type": settings.opter_type,
        "opter": settings.opter,
        "opter_name": settings.opter_name,
        "inf_time": inf_time(now_utc),
        "fixmedins_code": settings.fixmedins_code,
        "fixmedins_name": settings.fixmedins_name,
        "sign_no": sign_no,
    }
    for extra in PROVINCE_EXTRAS:
        value = getattr(settings, extra, "")
        if value:
            env[extra] = value
    env["input"] = input_obj
    return env


def encode(envelope: dict[str, Any]) -> bytes:
    """UTF-8 JSON bytes; Chinese stays readable (ensure_ascii False), never the host code page."""
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class BadResponse(ValueError):
    """The body is not a JSON envelope with an infcode: the answer is not definite."""


def infcode_str(value: Any) -> str | None:
    """infcode as a string: 0, "0", 0.0 and " 0 " all become "0"; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    try:
        return str(int(text))
    except ValueError:
        return text


def is_success(response: dict[str, Any]) -> bool:
    """Success iff infcode equals 0 (string or number)."""
    return infcode_str(response.get("infcode")) == "0"


def parse_response(body: bytes) -> dict[str, Any]:
    """Decode a UTF-8 JSON response envelope (a BOM is tolerated).

    Raises :class:`BadResponse` for anything else — an empty body, HTML from a proxy, JSON
    without infcode — because such an answer says nothing about whether the centre acted.
    """
    if not body or not body.strip():
        raise BadResponse("empty response body")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadResponse(f"response is not UTF-8: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadResponse(f"response is not JSON ({exc.msg}): {text[:80]!r}") from None
    if not isinstance(data, dict) or "infcode" not in data:
        raise BadResponse(f"response has no infcode: {text[:80]!r}")
    return data


def error_message(response: dict[str, Any]) -> str:
    """err_msg, or a stand-in naming the infcode when the centre left it empty."""
    msg = response.get("err_msg")
    if msg in (None, ""):
        return f"infcode {infcode_str(response.get('infcode'))} without err_msg"
    return str(msg)
