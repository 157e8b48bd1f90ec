"""The sandbox's side of gateway/signing.py: it verifies what the client signs (TIF's
x-tif-* SHA-256 headers with a nonce that may not repeat, CSB's HMAC-SHA1 _api_* headers),
and says in words what is wrong, as a province gateway would."""
from __future__ import annotations

import time
from typing import Any

from mi_worker.gateway import signing


def check_headers(box: Any, headers: Any) -> str | None:
    """The problem with ``headers`` for ``box``'s transport, or None when they verify."""
    if box.transport == "tif":
        return _check_tif(box, headers)
    if box.transport == "csb":
        return _check_csb(box, headers)
    return None


def _fresh(box: Any, ts: int) -> bool:
    return abs(time.time() - ts) <= box.clock_skew_seconds

def _check_tif(box: Any, h: Any) -> str | None:
    paasid, ts = h.get("x-tif-paasid"), h.get("x-tif-timestamp") or ""
    nonce, sig = h.get("x-tif-nonce") or "", h.get("x-tif-signature") or ""
    if paasid != box.paasid:
        return f"x-tif-paasid 无效 unknown paasid {paasid!r}"
    if not ts.isdigit() or not _fresh(box, int(ts)):
        return f"x-tif-timestamp 无效或超时 must be Unix seconds within " \
               f"{box.clock_skew_seconds}s of now, got {ts!r}"
    if not nonce:
        return "x-tif-nonce 不能为空"
    expected = signing.tif_signature(ts, box.secret, nonce)
    if not signing.constant_time_equal(sig, expected):
        return "x-tif-signature 签名校验失败 signature mismatch (check gateway.secret)"
    with box._nonce_lock:
        now = time.time()
        for old in [n for n, t in box._nonces.items() if now - t > 2 * 300]:
            del box._nonces[old]
        if nonce in box._nonces:
            return "x-tif-nonce 重复 replayed nonce"
        box._nonces[nonce] = now
    return None

def _check_csb(box: Any, h: Any) -> str | None:
    params = {k: h.get(k) or "" for k in ("_api_access_key", "_api_name",
                                           "_api_timestamp", "_api_version")}
    if params["_api_access_key"] != box.access_key:
        return f"_api_access_key 无效 unknown access key {params['_api_access_key']!r}"
    ts = params["_api_timestamp"]
    if not ts.isdigit():
        return "_api_timestamp 无效 must be epoch milliseconds or seconds"
    seconds = int(ts) / 1000 if len(ts) >= 13 else int(ts)
    if not _fresh(box, int(seconds)):
        return f"_api_timestamp 超时 more than {box.clock_skew_seconds}s from now"
    if not params["_api_name"]:
        return "_api_name 不能为空"
    expected = signing.csb_signature(box.secret, params)
    if not signing.constant_time_equal(h.get("_api_signature") or "", expected):
        return "_api_signature 签名校验失败 signature mismatch (check gateway.secret)"
    return None
