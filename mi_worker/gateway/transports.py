"""How a request reaches the centre: URL shape and auth headers per province family.

A  single  one URL (a 前置机 or the province's unified entry); infno only in the body.
B  tif     government TIF gateway: base + "/" + infno, or a path per infno; x-tif-* headers.
C  csb     Alibaba CSB: base + "/" + infno; _api_* headers signed with HMAC-SHA1.

The httpx client is built here too: one per process, shared by the worker threads (httpx.Client
is thread-safe), with the 医保专网's CA bundle / client certificate and separate connect and
read timeouts — connect failures are always safe to retry, read failures are not.
"""
from __future__ import annotations

import ssl

import httpx

from mi_worker.gateway import signing
from mi_worker.gateway.settings import GatewaySettings

BASE_HEADERS = {"Content-Type": "application/json;charset=utf-8", "Accept": "application/json"}


class Transport:
    """Transport A (single URL, no auth headers). Subclasses add URL rules and signatures."""

    name = "single"

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings

    def url(self, infno: str) -> str:
        return self.settings.url

    def headers(self, infno: str) -> dict[str, str]:
        """Fresh headers per request (timestamps and nonces must not be reused)."""
        return dict(BASE_HEADERS)


def _join(base: str, path: str) -> str:
    if path.startswith(("http://", "https://")):
        return path
    return base.rstrip("/") + "/" + path.lstrip("/")


class TifTransport(Transport):
    """Transport B: x-tif-paasid/timestamp/nonce/signature; URL base+infno or a path table."""

    name = "tif"

    def url(self, infno: str) -> str:
        paths = self.settings.paths or {}
        path = paths.get(infno)
        if path is None and "*" in paths:
            return _join(self.settings.url, paths["*"])
        return _join(self.settings.url, path if path is not None else infno)

    def headers(self, infno: str) -> dict[str, str]:
        h = dict(BASE_HEADERS)
        h.update(signing.tif_headers(self.settings.paasid, self.settings.secret))
        return h


class CsbTransport(Transport):
    """Transport C: _api_name (infno or a configured service name), HMAC-SHA1 signature."""

    name = "csb"

    def url(self, infno: str) -> str:
        return _join(self.settings.url, infno)

    def api_name(self, infno: str) -> str:
        return (self.settings.csb_api_names or {}).get(infno, infno)

    def headers(self, infno: str) -> dict[str, str]:
        h = dict(BASE_HEADERS)
        h.update(signing.csb_headers(self.api_name(infno), self.settings.access_key,
                                     self.settings.secret, self.settings.csb_version or "1.0.0",
                                     self.settings.csb_timestamp_unit))
        return h


_TRANSPORTS = {"single": Transport, "tif": TifTransport, "csb": CsbTransport}


def make_transport(settings: GatewaySettings) -> Transport:
    try:
        cls = _TRANSPORTS[settings.transport]
    except KeyError:
        raise ValueError(f"unknown gateway.transport {settings.transport!r}") from None
    return cls(settings)


def timeout(settings: GatewaySettings, read: float | None = None) -> httpx.Timeout:
    """Connect and pool waits use connect_timeout (nothing sent); write/read use read_timeout."""
    r = settings.read_timeout if read is None else read
    return httpx.Timeout(connect=settings.connect_timeout, read=r, write=r,
                         pool=settings.connect_timeout)


def build_http_client(settings: GatewaySettings, pool_size: int | None = None) -> httpx.Client:
    """The shared httpx.Client: pool sized for the worker threads, TLS per configuration."""
    size = max(1, pool_size or settings.max_connections)
    return httpx.Client(
        verify=tls_verify(settings),
        timeout=timeout(settings),
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size,
                            keepalive_expiry=settings.keepalive_seconds),
        trust_env=False,  # never route the 医保专网 through a desktop proxy setting
        follow_redirects=False,
    )


def tls_verify(settings: GatewaySettings) -> bool | ssl.SSLContext:
    """httpx's ``verify``: True/False, or an SSLContext with the CA bundle / client cert."""
    if not settings.client_cert and not settings.ca_bundle:
        return bool(settings.verify_tls)
    if settings.verify_tls:
        import certifi

        ctx = ssl.create_default_context(cafile=settings.ca_bundle or certifi.where())
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if settings.client_cert:
        ctx.load_cert_chain(certfile=settings.client_cert,
                            keyfile=settings.client_key or None)
    return ctx
