"""A fake NHSA centre on loopback, with fault injection: for tests, demos and the benchmark.

It is NOT the real platform. It speaks transports A (single URL), B (TIF, x-tif-* SHA-256)
and C (CSB, HMAC-SHA1), checks signatures, msgid format and uniqueness and sign_no validity,
keeps a ledger of committed state-changing calls and a log of every request.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

from mi_worker.sandbox import defaults
from mi_worker.sandbox.defaults import BANNER
from mi_worker.sandbox.faults import Fault
from mi_worker.sandbox.ledger import CallLog, CallRecord, Ledger, LedgerEntry
from mi_worker.sandbox.server import SandboxServer

__all__ = ["BANNER", "CallLog", "CallRecord", "Fault", "Ledger", "LedgerEntry", "SandboxServer",
           "client_settings_for", "start_for_settings"]


def _credentials(settings: Any) -> Dict[str, str]:
    """The configured credentials, or the sandbox's own where none are set (a first run)."""
    return {"secret": settings.secret or defaults.SECRET,
            "paasid": settings.paasid or defaults.PAASID,
            "access_key": settings.access_key or defaults.ACCESS_KEY}


def start_for_settings(settings: Any, host: str = "127.0.0.1", port: int = 0,
                       **kw: Any) -> SandboxServer:
    """Start a sandbox matching a GatewaySettings (transport, credentials, fixmedins_code).

    Point the client with ``client_settings_for(settings, server.url)``; stop it with
    ``stop()``.
    """
    server = SandboxServer(
        host=host, port=port, transport=settings.transport, **_credentials(settings),
        require_sign_in=settings.sign_in,
        fixmedins_code=settings.fixmedins_code, **kw)
    return server.start()


def client_settings_for(settings: Any, sandbox_url: str) -> Any:
    """``settings`` (a GatewaySettings) pointed at a sandbox: its URL, and its credentials
    where none are set.

    The sandbox is started with the same transport and (when given) the same secret, paasid
    and access key, so the whole client path, signatures included, runs as in production.
    """
    return dataclasses.replace(
        settings, url=sandbox_url, **_credentials(settings),
        # A first run has no province codes yet; the fake centre's region stands in.
        mdtrtarea_admvs=settings.mdtrtarea_admvs or defaults.ADMVS,
        insuplc_admdvs=settings.insuplc_admdvs or defaults.ADMVS,
        opter=settings.opter or "SANDBOX",
        opter_name=settings.opter_name or "沙箱操作员",
        ca_bundle="", client_cert="", client_key="",
    )
