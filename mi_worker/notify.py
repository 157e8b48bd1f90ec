"""Alert notifications to a 企业微信 (WeCom) or 钉钉 (DingTalk) group robot webhook.

Posting happens on a background thread with a bounded queue and short timeouts, retried with
exponential back-off (tenacity): a dead or slow webhook must never stall the alert scan or
the worker. A notification that cannot be delivered is logged and counted
(mi_webhook_notifications{result="failed"}); the alert itself is safe in
medical_insurance_alerts.

DingTalk robots refuse messages that fail their security setting: 加签 robots need
``timestamp`` (ms) and ``sign`` = urlencode(base64(HMAC-SHA256(key=secret,
msg="{timestamp}\\n{secret}"))) on the URL, computed per attempt (the centre allows an hour of
skew); keyword robots need the keyword in the text. Both answer HTTP 200 with a non-zero
errcode (310000), which counts as a failure here.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import queue
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Optional

import httpx
from tenacity import retry, stop_after_attempt, wait_exponential

log = logging.getLogger("mi_worker.notify")


def body(kind: str, alert_type: str, level: str, message: str, source: str,
         keyword: str = "") -> Dict[str, Any]:
    """The robot message: markdown, which both WeCom and DingTalk render."""
    title = f"{keyword + ' ' if keyword else ''}医保接口告警 {alert_type}"
    text = (f"### {title}\n> 级别 level: **{level}**\n\n{message}\n\n"
            f"<font color=\"comment\">mi-worker · {source}</font>")
    if kind == "dingtalk":
        return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    return {"msgtype": "markdown", "markdown": {"content": text}}


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk 加签: base64 HMAC-SHA256 of "timestamp\\nsecret", URL-encoded."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode("ascii"))


def signed_url(url: str, secret: str, timestamp_ms: Optional[int] = None) -> str:
    """The robot URL with ``&timestamp=…&sign=…`` appended (DingTalk 加签)."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}timestamp={ts}&sign={dingtalk_sign(secret, ts)}"


class WebhookNotifier:
    """Delivers alert notifications without ever blocking the caller."""

    def __init__(self, url: str, kind: str = "wecom", source: str = "",
                 on_delivered: Optional[Callable[[int], None]] = None, attempts: int = 3,
                 timeout: float = 5.0, secret: str = "", keyword: str = "",
                 stats: Any = None, backoff: float = 0.5) -> None:
        self.url, self.kind, self.source = url, kind, source
        self.secret, self.keyword = secret, keyword
        self.on_delivered = on_delivered
        self.attempts, self.timeout, self.backoff = attempts, timeout, backoff
        self.stats = stats
        self._queue: queue.Queue[Optional[tuple]] = queue.Queue(maxsize=100)
        self._thread = threading.Thread(target=self._loop, name="mi-webhook", daemon=True)
        self._thread.start()

    def _count(self, event: str) -> None:
        if self.stats is not None:
            self.stats.add(f"webhook_{event}")

    def send(self, alert_id: int, alert_type: str, level: str, message: str) -> bool:
        try:
            self._queue.put_nowait((alert_id, alert_type, level, message))
            return True
        except queue.Full:
            log.error("webhook queue full: alert %s %s not notified", alert_id, alert_type)
            self._count("failed")
            return False

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            alert_id, alert_type, level, message = item
            try:
                self._post(body(self.kind, alert_type, level, message, self.source,
                                self.keyword))
                self._count("delivered")
                if self.on_delivered:
                    self.on_delivered(alert_id)
            except Exception as exc:
                self._count("failed")
                log.error("webhook delivery of alert %s failed after %d attempts: %s",
                          alert_id, self.attempts, exc)
            finally:
                self._queue.task_done()

    def _post(self, payload: Dict[str, Any]) -> None:
        tries = {"n": 0}

        @retry(stop=stop_after_attempt(self.attempts),
               wait=wait_exponential(multiplier=self.backoff, max=30), reraise=True)
        def attempt() -> None:
            tries["n"] += 1
            if tries["n"] > 1:
                self._count("retried")
            url = signed_url(self.url, self.secret) if self.kind == "dingtalk" and self.secret \
                else self.url
            r = httpx.post(url, json=payload, timeout=self.timeout)
            r.raise_for_status()
            answer = r.json() if r.content else {}
            if isinstance(answer, dict) and answer.get("errcode", 0) not in (0, "0"):
                raise RuntimeError(f"robot refused: errcode {answer.get('errcode')} "
                                   f"{str(answer.get('errmsg', ''))[:200]}")
        attempt()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification was delivered or given up (tests, stop)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._queue.unfinished_tasks

    def close(self, wait: float = 2.0) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return
        self._thread.join(wait)
