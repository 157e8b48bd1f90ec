"""A fake NHSA centre on loopback, with fault injection: for tests, demos and the benchmark.

It is NOT the real platform. It speaks transports A (single URL), B (TIF, x-tif-* SHA-256)
and C (CSB, HMAC-SHA1), checks signatures, msgid format and uniqueness and sign_no validity,
keeps a ledger of committed state-changing calls and a log of every request.
"""
from __future__ import annotations

from typing import Any

from mi_worker.sandbox.defaults import BANNER
from mi_worker.sandbox.faults import Fault
from mi_worker.sandbox.ledger import CallLog, CallRecord, Ledger, LedgerEntry
from mi_worker.sandbox.server import SandboxServer

__all__ = ["BANNER", "CallLog", "CallRecord", "Fault", "Ledger", "LedgerEntry", "SandboxServer",
           "start_for_settings"]


def start_for_settings(settings: Any, host: str = "127.0.0.1", port: int = 0,
                       **kw: Any) -> SandboxServer:
    """Start a sandbox matching a GatewaySettings (transport, credentials, fixmedins_code).

    Use with ``build_gateway(settings, sandbox_url=server.url)``; stop it with ``stop()``.
    """
    from mi_worker.sandbox import defaults

    server = SandboxServer(
        host=host, port=port, transport=settings.transport,
        secret=settings.secret or defaults.SECRET,
        paasid=settings.paasid or defaults.PAASID,
        access_key=settings.access_key or defaults.ACCESS_KEY,
        require_sign_in=settings.sign_in,
        fixmedins_code=settings.fixmedins_code, **kw)
    return server.start()
