"""Pick the gateway named by gateway.kind: the real centre (or a sandbox speaking its
protocol), or the no-op one. This package knows nothing of the sandbox: whoever starts a
sandbox points the settings at it first (``mi_worker.sandbox.client_settings_for``)."""
from __future__ import annotations

from collections.abc import Callable

from mi_worker.gateway.base import CallContext, Gateway, GatewayResult, Outcome
from mi_worker.gateway.client import NHSAClient
from mi_worker.gateway.settings import GatewaySettings

__all__ = ["NHSAClient", "NoopGateway", "build_gateway"]


class NoopGateway:
    """Answers every call with infcode 0 at once, in process: the benchmark's gateway.

    It measures the queue, not the network, so it does no I/O at all.
    """

    def call(self, ctx: CallContext) -> GatewayResult:
        response = {"infcode": 0, "inf_refmsgid": ctx.msgid, "output": {}, "err_msg": None}
        return GatewayResult(outcome=Outcome.COMPLETED, response=response, infcode="0",
                             msgid=ctx.msgid)

    def close(self) -> None:
        return None


def build_gateway(settings: GatewaySettings, *, pool_size: int | None = None,
                  msgid_factory: Callable[[], str] | None = None) -> Gateway:
    """nhsa or sandbox -> NHSAClient(settings); noop -> NoopGateway.

    For ``sandbox`` the settings must already point at a running sandbox (its URL and
    credentials). ``pool_size`` should be at least the worker's thread count;
    ``msgid_factory`` makes msgids for 9001/9002 (pass one backed by the database sequence
    so they are unique cluster-wide).
    """
    if settings.kind == "noop":
        return NoopGateway()
    if settings.kind == "sandbox" and not settings.url.startswith(("http://", "https://")):
        raise ValueError("gateway.kind = sandbox needs settings pointed at a running sandbox "
                         "(mi_worker.sandbox.start_for_settings + client_settings_for)")
    if settings.kind in ("nhsa", "sandbox"):
        return NHSAClient(settings, pool_size=pool_size, msgid_factory=msgid_factory)
    raise ValueError(f"unknown gateway.kind {settings.kind!r} (sandbox, nhsa or noop)")
