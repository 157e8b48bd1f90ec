"""Gateway header signatures: TIF (x-tif-*, SHA-256) and Alibaba CSB (_api_*, HMAC-SHA1).

Both sign headers only, never the body. Timestamps come from ``time.time()`` (true epoch,
whatever the host's zone: one HIS vendor computed epoch from local time assuming UTC+8 and
broke on other hosts). Every string is hashed as UTF-8, so a Chinese secret works.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string
import time

_ALNUM = string.ascii_letters + string.digits


def nonce(length: int = 32) -> str:
    """A random alphanumeric nonce from ``secrets`` (the gateway may reject a replayed one)."""
    if length < 16:
        raise ValueError("nonce shorter than 16 characters")
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def tif_signature(timestamp: str, secret: str, nonce_value: str) -> str:
    """Lowercase hex SHA-256 of UTF-8(timestamp + secret + nonce + timestamp)."""
    text = f"{timestamp}{secret}{nonce_value}{timestamp}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tif_headers(paasid: str, secret: str, now: float | None = None,
                nonce_value: str | None = None) -> dict[str, str]:
    """x-tif-paasid, x-tif-timestamp (Unix seconds), x-tif-nonce, x-tif-signature."""
    ts = str(int(time.time() if now is None else now))
    n = nonce_value or nonce()
    return {
        "x-tif-paasid": paasid,
        "x-tif-timestamp": ts,
        "x-tif-nonce": n,
        "x-tif-signature": tif_signature(ts, secret, n),
    }


def csb_string_to_sign(params: dict[str, str]) -> str:
    """"k=v" pairs sorted by key and joined by "&" (values used verbatim, not URL-encoded)."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params))


def csb_signature(secret: str, params: dict[str, str]) -> str:
    """Base64(HMAC-SHA1(key = UTF-8 secret, msg = UTF-8 sorted string))."""
    mac = hmac.new(secret.encode("utf-8"), csb_string_to_sign(params).encode("utf-8"),
                   hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def csb_timestamp(unit: str = "ms", now: float | None = None) -> str:
    """Epoch milliseconds (the CSB SDK's default) or seconds (seen in Jiangsu)."""
    t = time.time() if now is None else now
    return str(int(t * 1000)) if unit == "ms" else str(int(t))


def csb_headers(api_name: str, access_key: str, secret: str, version: str = "1.0.0",
                unit: str = "ms", now: float | None = None) -> dict[str, str]:
    """_api_name, _api_version, _api_access_key, _api_timestamp and _api_signature."""
    params = {
        "_api_access_key": access_key,
        "_api_name": api_name,
        "_api_timestamp": csb_timestamp(unit, now),
        "_api_version": version,
    }
    return {**params, "_api_signature": csb_signature(secret, params)}


def constant_time_equal(a: str, b: str) -> bool:
    """For verifiers (the sandbox): compare signatures without a timing side channel."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
