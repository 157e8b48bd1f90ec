"""Helpers for tests that talk to a sandbox: a running server, matching client settings,
a CallContext factory with a fake ``new_msgid``.

    with running_sandbox(transport="tif") as box:
        client = NHSAClient(client_settings(box))
        result = client.call(make_ctx("1101", {"data": {...}}))
"""
from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from mi_worker.gateway.base import CallContext
from mi_worker.gateway.envelope import china_now, format_msgid
from mi_worker.gateway.settings import GatewaySettings
from mi_worker.sandbox import defaults
from mi_worker.sandbox.server import SandboxServer

FIXMEDINS_CODE = "H99000000001"


class MsgidCounter:
    """Valid, unique 30-character msgids from a thread-safe counter (stands in for the DB)."""

    def __init__(self, fixmedins_code: str = FIXMEDINS_CODE, start: int = 0) -> None:
        self.fixmedins_code = fixmedins_code
        self._count = itertools.count(start)
        self._lock = threading.Lock()
        self._base = china_now().replace(microsecond=0)
        self.issued: list[str] = []

    def __call__(self) -> str:
        with self._lock:
            seq = next(self._count)
            # past 9999 the counter moves the time part on, so ids stay unique
            msgid = format_msgid(self.fixmedins_code,
                                 self._base + timedelta(seconds=seq // 10000), seq)
            self.issued.append(msgid)
            return msgid


_SHARED = MsgidCounter()


def client_settings(box: SandboxServer, **overrides: Any) -> GatewaySettings:
    """GatewaySettings that talk to ``box`` with its transport and credentials; fast retries."""
    values: dict[str, Any] = {
        "kind": "nhsa", "url": box.url, "transport": box.transport, "secret": box.secret,
        "paasid": box.paasid, "access_key": box.access_key, "fixmedins_code": FIXMEDINS_CODE,
        "fixmedins_name": "沙箱测试医院", "mdtrtarea_admvs": defaults.ADMVS,
        "insuplc_admdvs": defaults.ADMVS, "opter": "T001", "opter_name": "测试员",
        "connect_timeout": 2.0, "read_timeout": 2.0, "retry_initial_seconds": 0.01,
        "retry_max_seconds": 0.05, "max_connections": 64}
    values.update(overrides)
    return GatewaySettings(**values)


def make_ctx(code: str, input_obj: dict[str, Any] | None = None, *,
             msgids: MsgidCounter | None = None, timeout: float = 10.0,
             max_attempts: int = 3, request_id: int = 1, **kw: Any) -> CallContext:
    """A CallContext whose msgid and new_msgid come from ``msgids`` (a process-wide counter
    if None, so contexts made in one second never share a msgid)."""
    msgids = msgids or _SHARED
    return CallContext(request_id=request_id, interface_code=code,
                       input=input_obj if input_obj is not None else {"data": {}},
                       msgid=msgids(), deadline_monotonic=time.monotonic() + timeout,
                       max_attempts=max_attempts, new_msgid=msgids, **kw)


@contextlib.contextmanager
def running_sandbox(**kw: Any) -> Iterator[SandboxServer]:
    """A started SandboxServer on a free loopback port, stopped on exit."""
    box = SandboxServer(**kw)
    box.start()
    try:
        yield box
    finally:
        box.stop()
