"""Alert notifications to a 企业微信 (WeCom) or 钉钉 (DingTalk) group robot webhook.

Posting happens on a background thread with a bounded queue and short timeouts, retried a
few times with back-off (tenacity): a dead or slow webhook must never stall the alert scan
or the worker. A notification that cannot be delivered is logged and dropped; the alert
itself is safe in medical_insurance_alerts.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Dict, Optional

import httpx
from tenacity import retry, stop_after_attempt, wait_exponential

log = logging.getLogger("mi_worker.notify")


def body(kind: str, alert_type: str, level: str, message: str, source: str) -> Dict[str, Any]:
    """The robot message: markdown, which both WeCom and DingTalk render."""
    title = f"医保接口告警 {alert_type}"
    text = (f"### {title}\n> 级别 level: **{level}**\n\n{message}\n\n"
            f"<font color=\"comment\">mi-worker · {source}</font>")
    if kind == "dingtalk":
        return {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    return {"msgtype": "markdown", "markdown": {"content": text}}


class WebhookNotifier:
    """Delivers alert notifications without ever blocking the caller."""

    def __init__(self, url: str, kind: str = "wecom", source: str = "",
                 on_delivered: Optional[Callable[[int], None]] = None, attempts: int = 3,
                 timeout: float = 5.0) -> None:
        self.url, self.kind, self.source = url, kind, source
        self.on_delivered = on_delivered
        self.attempts, self.timeout = attempts, timeout
        self._queue: queue.Queue[Optional[tuple]] = queue.Queue(maxsize=100)
        self._thread = threading.Thread(target=self._loop, name="mi-webhook", daemon=True)
        self._thread.start()

    def send(self, alert_id: int, alert_type: str, level: str, message: str) -> bool:
        try:
            self._queue.put_nowait((alert_id, alert_type, level, message))
            return True
        except queue.Full:
            log.error("webhook queue full: alert %s %s not notified", alert_id, alert_type)
            return False

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            alert_id, alert_type, level, message = item
            try:
                self._post(body(self.kind, alert_type, level, message, self.source))
                if self.on_delivered:
                    self.on_delivered(alert_id)
            except Exception as exc:
                log.error("webhook delivery of alert %s failed after %d attempts: %s",
                          alert_id, self.attempts, exc)

    def _post(self, payload: Dict[str, Any]) -> None:
        @retry(stop=stop_after_attempt(self.attempts),
               wait=wait_exponential(multiplier=0.5, max=5), reraise=True)
        def attempt() -> None:
            r = httpx.post(self.url, json=payload, timeout=self.timeout)
            r.raise_for_status()
            answer = r.json() if r.content else {}
            if isinstance(answer, dict) and answer.get("errcode", 0) not in (0, "0"):
                raise RuntimeError(f"robot refused: {answer}")
        attempt()

    def close(self, wait: float = 2.0) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            return
        self._thread.join(wait)
