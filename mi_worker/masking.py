"""Keep secrets and personal data out of logs and screens.

A hospital's logs are read by vendors and attached to tickets, so the gateway secret and
database passwords must never appear, and personal data is masked down to a recognisable
stub. The filter is installed on the root handler, so it covers every logger including
third-party ones (httpx logs URLs); the CLI runs its tables and JSON through the same
functions before printing.

Two kinds of rule, because a centre's free-text ``err_msg`` carries identifiers in prose
(``参保人张三(身份证号430726198410283970)未找到``), not only as ``key=value``:

* by key: ``psn_no=…``, ``"certno": "…"``, ``"psn_name": "张 三"`` (the whole quoted value);
* by shape: 18-digit ID numbers (X check digit too) and 15-digit old ones, psn_no-shaped and
  bank-card-shaped digit runs (15–24 digits), mobiles (``1[3-9]`` + 9 digits), and Chinese
  names after 姓名 / 患者 / 参保人 / 持卡人.

What is deliberately left alone: a digit run glued to letters or longer than 24 digits, so a
30-character msgid (``H43010500123`` + ``20261202050749`` + ``0001``) stays whole and
searchable; numbers of 14 digits or fewer (timestamps, request ids, amounts). A long purely
numeric business id (some centres' ``setl_id``) is masked like a psn_no: the cost of
leaking an identifier is higher than the cost of a shortened id in a log line, and the
first 4 and last 4 digits are kept so a ticket can still be matched to a row.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Iterable, List

_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")
_ODBC_PASSWORD = re.compile(r"((?:PWD|Password)\s*=\s*)(\{[^}]*\}|[^;]*)", re.IGNORECASE)

#: Field names whose value is personal data, wherever they appear (JSON, key=value, URLs).
PERSONAL_KEYS = ("psn_no", "certno", "psn_cert_no", "mdtrt_cert_no", "cert_no", "idcard",
                 "psn_name", "name", "opter_name", "patn_name", "mobile", "tel", "phone",
                 "addr", "card_sn", "bank_acct", "bankcard")
# "psn_no": "123…" JSON fields (the whole quoted value, spaces included) and key=value text.
_PERSONAL = re.compile(
    r'((?<![A-Za-z0-9_])["\']?(?:' + "|".join(PERSONAL_KEYS) + r')["\']?\s*[:=]\s*)'
    r'(?:"([^"\\]*(?:\\.[^"\\]*)*)"|\'([^\'\\]*)\'|([^"\',}\]\s;&]+))', re.IGNORECASE)

_NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z])"
_NOT_ALNUM_AFTER = r"(?![0-9A-Za-z])"
# 18-digit ID with an X check digit (digit-only IDs are caught by the digit-run rule).
_ID_X = re.compile(_NOT_ALNUM_BEFORE + r"\d{17}[Xx]" + _NOT_ALNUM_AFTER)
# 15-digit old ID, 16–19-digit bank card, 18-digit ID, 20-digit-ish psn_no.
_DIGIT_RUN = re.compile(_NOT_ALNUM_BEFORE + r"\d{15,24}" + _NOT_ALNUM_AFTER)
# A bank card written in groups: 6222 0212 3456 7890 123.
_CARD_GROUPS = re.compile(_NOT_ALNUM_BEFORE + r"\d{4}(?:[ -]\d{4}){3}(?:[ -]\d{1,4})?"
                          + _NOT_ALNUM_AFTER)
_MOBILE = re.compile(r"(?<![0-9A-Za-z])(?:\+?86[- ]?)?1[3-9]\d{9}" + _NOT_ALNUM_AFTER)
# A name after its label: first character any CJK, then up to three more that are not the
# particles prose continues with (未找到, 不存在, 的…), so "参保人张三未找到" masks 张三 only.
_NAME_LABEL = re.compile(
    r"((?:姓名|患者|病人|参保人|持卡人|就诊人|psn_name)[\s:：=\[\(（【'\"]*)"
    r"(?!员|信息|身份|编号|类型|姓名)"
    r"([\u4e00-\u9fff](?:(?![未不无的已在为是于身证号])[\u4e00-\u9fff·]){1,3})")
# Values after Chinese labels for identifiers that need not be digit runs (人员编号 P000…).
_ID_LABEL = re.compile(r"((?:人员编号|证件号码|身份证号码?|身份证|手机号码?|联系电话|银行卡号|卡号)"
                       r"[\s:：=\[\(（【'\"]*)([0-9A-Za-z*]{4,})")


def mask_url(url: str) -> str:
    """A database URL or ODBC string with its password replaced by ***."""
    return _ODBC_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\3", url))


def mask_value(value: str) -> str:
    """Keep the first and last character: enough to match a ticket, useless to a reader."""
    if len(value) <= 2:
        return "*" * len(value)
    return value[0] + "*" * min(len(value) - 2, 8) + value[-1]


def mask_name(name: str) -> str:
    """张三 → 张*, 欧阳娜娜 → 欧***: the surname helps a cashier, the rest identifies."""
    return name[:1] + "*" * (len(name) - 1)


def mask_number(digits: str) -> str:
    """Keep the first 4 and last 4 characters of a long identifier (ID, psn_no, card)."""
    if len(digits) <= 8:
        return mask_value(digits)
    return digits[:4] + "*" * (len(digits) - 8) + digits[-4:]


def mask_mobile(number: str) -> str:
    """13800138000 → 138****8000 (the usual Chinese display form)."""
    return number[:-8] + "****" + number[-4:]


_NAME_KEYS = ("psn_name", "name", "opter_name", "patn_name")


def mask_field(key: str, value: str) -> str:
    """Mask a value known (by its key) to be personal data: names keep the surname only."""
    if key.strip("\"' ").lower() in _NAME_KEYS:
        return mask_name(value.replace(" ", ""))
    return mask_value(value)


def _mask_key(match: re.Match[str]) -> str:
    prefix = match.group(1)
    key = re.split(r"[:=]", prefix)[0]
    if match.group(2) is not None:
        return f'{prefix}"{mask_field(key, match.group(2))}"'
    if match.group(3) is not None:
        return f"{prefix}'{mask_field(key, match.group(3))}'"
    return prefix + mask_field(key, match.group(4))


def mask_personal(text: str) -> str:
    """Mask personal data in free text, by key and by shape (see the module docstring)."""
    if not text:
        return text
    text = _PERSONAL.sub(_mask_key, text)
    text = _ID_LABEL.sub(lambda m: m.group(1) + mask_number(m.group(2)), text)
    text = _NAME_LABEL.sub(lambda m: m.group(1) + mask_name(m.group(2)), text)
    text = _ID_X.sub(lambda m: mask_number(m.group(0)), text)
    text = _CARD_GROUPS.sub(lambda m: mask_number(re.sub(r"[ -]", "", m.group(0))), text)
    text = _DIGIT_RUN.sub(lambda m: mask_number(m.group(0)), text)
    return _MOBILE.sub(lambda m: mask_mobile(m.group(0)), text)


def mask_data(value: Any) -> Any:
    """The same masking over a CLI result: every string inside dicts and lists.

    A dict key named like personal data (``psn_no``) masks its whole value, since a bare
    value ("P0001") has no shape to recognise.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in PERSONAL_KEYS and isinstance(
                    item, (str, int)) and not isinstance(item, bool) and str(item):
                out[key] = mask_field(key, str(item))
            else:
                out[key] = mask_data(item)
        return out
    if isinstance(value, (list, tuple)):
        return [mask_data(v) for v in value]
    if isinstance(value, str):
        return mask_personal(value)
    return value


def mask_json_text(text: str) -> str:
    """A JSON document (input_data, response_data) masked structurally, else as text."""
    try:
        doc = json.loads(text)
    except (TypeError, ValueError):
        return mask_personal(text)
    return json.dumps(mask_data(doc), ensure_ascii=False)


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
