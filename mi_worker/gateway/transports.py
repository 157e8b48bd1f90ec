"""How a request reaches the centre: URL shape and auth headers per province family.

A  single  one URL (a 前置机 or the province's unified entry); infno only in the body.
B  tif     government TIF gateway: base + "/" + infno, or a path per infno; x-tif-* headers.
C  csb     Alibaba CSB: base + "/" + infno; _api_* headers signed with HMAC-SHA1.

The HTTP client is built here too: one per process, a small httpx.Client per thread under it
(gateway/http_pool.py), with the 医保专网's CA bundle / client certificate and separate connect and
read timeouts — connect failures are always safe to retry, read failures are not.
"""
from __future__ import annotations

import os
import secrets
import ssl
import tempfile

import httpx

from mi_worker.config_fields import ConfigError
from mi_worker.gateway import signing
from mi_worker.gateway.http_pool import ThreadLocalHttp, per_thread_client_factory
from mi_worker.gateway.settings import GatewaySettings, is_pkcs12

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


def build_http_client(settings: GatewaySettings, pool_size: int | None = None) -> ThreadLocalHttp:
    """The process's HTTP client: a small httpx.Client per thread (http_pool explains why),
    at most ``pool_size`` (the worker's threads, else gateway.max_connections) requests at
    once, TLS per configuration (one SSLContext shared by all)."""
    return ThreadLocalHttp(
        per_thread_client_factory(tls_verify(settings), timeout(settings),
                                  settings.keepalive_seconds),
        pool_size or settings.max_connections, pool_timeout=settings.connect_timeout)


def tls_verify(settings: GatewaySettings) -> bool | ssl.SSLContext:
    """httpx's ``verify``: an SSLContext trusting what the hospital's machine trusts.

    Trust = the operating system's store, plus ``gateway.ca_bundle`` on top. The stdlib's
    ``ssl.create_default_context()`` is used rather than httpx's default (certifi's Mozilla
    list, which ignores a 医保专网 CA imported into the Windows store or installed with
    update-ca-certificates) and rather than the ``truststore`` package: it calls
    ``load_default_certs``, which on Windows reads the machine's ROOT and CA certificate stores
    and elsewhere OpenSSL's default paths (the distribution bundle, honouring SSL_CERT_FILE /
    SSL_CERT_DIR); it works on Python 3.9 (truststore needs 3.10+), needs no dependency, lets a
    private CA file be layered on top with ``load_verify_locations`` and behaves the same in a
    Linux test as on the server. What it does not do is Windows' on-demand root download and
    revocation checks, which a private 专网 CA imported by IT does not rely on.
    """
    if not settings.verify_tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if settings.ca_bundle:
            ctx.load_verify_locations(cafile=settings.ca_bundle)
    if settings.client_cert:
        load_client_cert(ctx, settings.client_cert, settings.client_key,
                         settings.client_key_password)
    return ctx


def load_client_cert(ctx: ssl.SSLContext, cert: str, key: str = "", password: str = "") -> None:
    """Load a PEM cert (+ key, optionally encrypted) or a PKCS#12 .pfx / .p12 file into ``ctx``.

    ssl only loads PEM from files, so a PKCS#12 file is converted with ``cryptography`` into a
    temporary PEM whose key is re-encrypted with a one-off random password: the private key is
    never on disk in the clear, and the file is removed at once.
    """
    if not is_pkcs12(cert):
        try:
            ctx.load_cert_chain(certfile=cert, keyfile=key or None, password=password or None)
        except ssl.SSLError as exc:
            raise _config_error(f"gateway.client_cert {cert}: cannot load the certificate/key "
                             f"({exc.reason or exc}); check gateway.client_key and "
                             "gateway.client_key_password") from None
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    with open(cert, "rb") as f:
        data = f.read()
    try:
        pkey, leaf, extra = pkcs12.load_key_and_certificates(
            data, password.encode("utf-8") if password else None)
    except ValueError as exc:
        raise _config_error(f"gateway.client_cert {cert}: cannot open the PKCS#12 file ({exc}); "
                         "check gateway.client_key_password") from None
    if pkey is None or leaf is None:
        raise _config_error(f"gateway.client_cert {cert}: the PKCS#12 file holds no private key "
                         "and certificate")
    one_off = secrets.token_hex(16)
    pem = pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(one_off.encode()))
    for c in [leaf, *(extra or [])]:
        pem += c.public_bytes(serialization.Encoding.PEM)
    fd, tmp = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        ctx.load_cert_chain(certfile=tmp, password=one_off)
    finally:
        os.unlink(tmp)


def _config_error(message: str) -> Exception:
    """A ConfigError (a ValueError), so `mi-worker run` prints one line, not a traceback."""
    return ConfigError(f"config key {message}")


def describe_tls_error(exc: BaseException, where: str) -> str | None:
    """A sentence naming the server and the certificate problem, or None if not a TLS error.

    OpenSSL's "CERTIFICATE_VERIFY_FAILED … unable to get local issuer certificate" does not
    tell ops what to do; this says which trust is missing and which key adds it.
    """
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not c for c in chain):
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for err in chain:
        if isinstance(err, ssl.SSLCertVerificationError):
            reason = err.verify_message or str(err)
            low = reason.lower()
            if "hostname" in low or "ip address mismatch" in low:
                fix = "the certificate is for another name: use the host name it was issued for"
            elif "expired" in low:
                fix = "the server's certificate has expired: ask the province's 前置机 team"
            else:
                fix = ("its CA is in neither the operating system's certificate store nor "
                       "gateway.ca_bundle: import the 医保专网 CA into the system store or set "
                       "gateway.ca_bundle to its PEM file")
            return f"TLS certificate of {where} not trusted ({reason}): {fix}"
    for err in chain:
        if "CERTIFICATE_VERIFY_FAILED" in str(err):
            return (f"TLS certificate of {where} not trusted ({err}): its CA is in neither "
                    "the operating system's certificate store nor gateway.ca_bundle")
    return None
