"""Pick the gateway named by gateway.kind: the real centre, the sandbox, or the no-op one."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mi_worker.gateway.base import Gateway, NoopGateway
from mi_worker.gateway.client import NHSAClient
from mi_worker.gateway.settings import GatewaySettings

__all__ = ["NHSAClient", "NoopGateway", "build_gateway", "sandbox_client_settings"]


def sandbox_client_settings(settings: GatewaySettings, sandbox_url: str) -> GatewaySettings:
    """``settings`` pointed at a sandbox: its URL, and its credentials where none are set.

    The sandbox is started with the same transport and (when given) the same secret, paasid
    and access key, so the whole client path, signatures included, runs as in production.
    """
    from mi_worker.sandbox import defaults

    return dataclasses.replace(
        settings,
        url=sandbox_url,
        secret=settings.secret or defaults.SECRET,
        paasid=settings.paasid or defaults.PAASID,
        access_key=settings.access_key or defaults.ACCESS_KEY,
        # A first run has no province codes yet; the fake centre's region stands in.
        mdtrtarea_admvs=settings.mdtrtarea_admvs or defaults.ADMVS,
        insuplc_admdvs=settings.insuplc_admdvs or defaults.ADMVS,
        opter=settings.opter or "SANDBOX",
        opter_name=settings.opter_name or "沙箱操作员",
        ca_bundle="", client_cert="", client_key="",
    )


def build_gateway(settings: GatewaySettings, sandbox_url: str | None = None, *,
                  pool_size: int | None = None,
                  msgid_factory: Callable[[], str] | None = None) -> Gateway:
    """nhsa -> NHSAClient(settings); sandbox -> NHSAClient at ``sandbox_url``; noop -> NoopGateway.

    ``pool_size`` should be at least the worker's thread count; ``msgid_factory`` makes msgids
    for 9001/9002 (pass one backed by the database sequence so they are unique cluster-wide).
    """
    if settings.kind == "noop":
        return NoopGateway()
    if settings.kind == "sandbox":
        if not sandbox_url:
            raise ValueError("gateway.kind = sandbox needs the URL of a running sandbox "
                             "(start one with mi_worker.sandbox.start_for_settings)")
        return NHSAClient(sandbox_client_settings(settings, sandbox_url), pool_size=pool_size,
                          msgid_factory=msgid_factory)
    if settings.kind == "nhsa":
        return NHSAClient(settings, pool_size=pool_size, msgid_factory=msgid_factory)
    raise ValueError(f"unknown gateway.kind {settings.kind!r} (sandbox, nhsa or noop)")
