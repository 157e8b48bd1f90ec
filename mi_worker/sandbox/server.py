"""SandboxServer: a real HTTP server on loopback that behaves like the centre.

Real sockets (not a mocked client) so the code under test exercises exactly what production
does: connection pooling, keep-alive, timeouts, resets, signatures. stdlib only, one daemon
thread per connection (ThreadingHTTPServer), so it starts in milliseconds inside a test or
inside ``mi-worker run`` when no real gateway is configured.
"""
from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mi_worker.gateway import catalog
from mi_worker.gateway.envelope import find_psn_no, infcode_str
from mi_worker.sandbox import auth, defaults
from mi_worker.sandbox import files as sbfiles
from mi_worker.sandbox.centre import Centre
from mi_worker.sandbox.faults import Fault, FaultTable
from mi_worker.sandbox.ledger import CallLog, CallRecord, Ledger

logger = logging.getLogger(__name__)

TRANSPORTS = ("single", "tif", "csb")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256  # ≥ 64 concurrent clients without refused connections

    sandbox: SandboxServer
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshake on the connection's own thread, so one slow client blocks nobody."""
        ctx = self.ssl_context
        if ctx is None:
            super().finish_request(request, client_address)
            return
        try:
            tls = ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.info("sandbox TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real gateways
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed ACK)
    server_version = "mi-worker-sandbox"
    timeout = 120  # idle keep-alive connections are closed after this

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox %s - %s", self.address_string(), format % args)

    # ---------------------------------------------------------------- plumbing

    @property
    def box(self) -> SandboxServer:
        return self.server.sandbox  # type: ignore[attr-defined]

    def _send(self, status: int, body: bytes, ctype: str = "application/json;charset=utf-8"
              ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"))

    def _reset(self) -> None:
        """Close with RST and no answer: the client cannot tell what happened."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # ---------------------------------------------------------------- control

    def do_GET(self) -> None:
        box = self.box
        if self.path == "/_control/ledger":
            self._send_json(200, box.ledger.to_dict())
        elif self.path == "/_control/calls":
            self._send_json(200, box.calls.to_dict())
        elif self.path == "/_control/faults":
            self._send_json(200, {"faults": [f.to_dict() for f in box.faults.list()]})
        elif self.path in ("/", "/_control/health"):
            self._send_json(200, {"sandbox": True, "transport": box.transport,
                                  "url": box.url, "notice": defaults.BANNER})
        else:
            self._send_json(404, {"error": f"no such path {self.path}"})

    def _control(self, body: bytes) -> None:
        box = self.box
        try:
            payload = json.loads(body.decode("utf-8")) if body.strip() else {}
        except ValueError:
            self._send_json(400, {"error": "control body must be JSON"})
            return
        if self.path == "/_control/faults":
            # {"faults": [...], "replace": bool}, a list of specs, or one spec
            if isinstance(payload, list):
                specs = payload
            elif isinstance(payload, dict) and "kind" in payload:
                specs = [payload]
            elif isinstance(payload, dict):
                specs = payload.get("faults") or []
            else:
                specs = []
            if isinstance(specs, dict):
                specs = [specs]
            if isinstance(payload, dict) and payload.get("replace"):
                box.faults.clear()
            try:
                for spec in specs:
                    box.faults.add_spec(spec)
            except (TypeError, ValueError) as exc:
                self._send_json(400, {"error": str(exc)})
                return
            self._send_json(200, {"faults": [f.to_dict() for f in box.faults.list()]})
        elif self.path == "/_control/reset":
            box.reset()
            self._send_json(200, {"reset": True})
        elif self.path == "/_control/expire_sign_in":
            box.centre.expire_sign_ins()
            self._send_json(200, {"expired": True})
        else:
            self._send_json(404, {"error": f"no such control path {self.path}"})

    # ---------------------------------------------------------------- the centre

    def do_POST(self) -> None:
        body = self._read_body()
        if self.path.startswith("/_control/"):
            self._control(body)
            return
        if (self.headers.get("Content-Type") or "").startswith("multipart/"):
            body = sbfiles.multipart_envelope(self.headers["Content-Type"], body)  # 9101
        box = self.box
        env: dict[str, Any] | None = None
        try:
            parsed = json.loads(body.decode("utf-8"))
            env = parsed if isinstance(parsed, dict) else None
        except (UnicodeDecodeError, ValueError):
            env = None
        infno = catalog.normalize(str(env.get("infno") or "")) if env else None
        record = box.calls.add(CallRecord(
            infno=infno, msgid=str(env.get("msgid")) if env else None,
            psn_no=find_psn_no(env.get("input")) if env else None,
            t_start=time.monotonic(), thread=threading.current_thread().name, path=self.path))
        try:
            self._serve(env, infno, record)
        finally:
            record.t_end = time.monotonic()

    def _reject(self, record: CallRecord, status: int, message: str) -> None:
        record.http_status, record.infcode, record.err_msg = status, "-1", message
        self._send_json(status, {"infcode": -1, "err_msg": message, "output": None})

    def _serve(self, env: dict[str, Any] | None, infno: str | None,
               record: CallRecord) -> None:
        box = self.box
        problem = box.check_route(self.path, infno)
        if problem:
            self._reject(record, 404, problem)
            return
        problem = box.check_auth(self.headers)
        if problem:
            self._reject(record, 401, problem)
            return
        if env is None or not infno:
            self._reject(record, 400, "报文格式错误 the body must be a UTF-8 JSON envelope "
                         "with infno")
            return
        latencies, fault = box.faults.take(infno)
        delay = box.latency + sum(f.delay() for f in latencies)
        if delay > 0:
            box.stopping.wait(delay)
        record.fault = fault.kind if fault else None
        if fault is not None and not fault.commit and self._apply_fault(fault, record, env):
            return
        if infno in sbfiles.CODES:
            sbfiles.serve(self, box.files, env, record, fault)
            return
        response = box.centre.handle(env)
        record.infcode = infcode_str(response.get("infcode"))
        record.err_msg = response.get("err_msg")
        record.committed = record.infcode == "0" and catalog.is_state_changing(infno)
        if fault is not None and fault.commit and self._apply_fault(fault, record, env):
            return
        record.http_status = 200
        self._send_json(200, response)

    def _apply_fault(self, fault: Fault, record: CallRecord,
                     env: dict[str, Any] | None = None) -> bool:
        """Act out ``fault``; True when the request is finished (no normal answer)."""
        if fault.kind in ("reset_before", "reset_after"):
            self._reset()
            return True
        if fault.kind == "timeout":
            self.box.stopping.wait(fault.seconds or 5.0)
            self._reset()
            return True
        if fault.kind == "http_error":
            record.http_status = fault.status
            self._send(fault.status, f"<html><body>{fault.status} {fault.message}</body></html>"
                       .encode(), "text/html;charset=utf-8")
            return True
        if fault.kind == "garbage":
            record.http_status = 200
            self._send(200, b"<html>502 Bad Gateway (proxy)</html>\x00\xff",
                       "text/html")
            return True
        if fault.kind == "infcode":
            message = fault.render((env or {}).get("input"))
            record.http_status, record.infcode, record.err_msg = 200, "-1", message
            self._send_json(200, self.box.centre.answer(str(record.msgid), -1, None, message))
            return True
        return False


class SandboxServer:
    """The fake centre on ``host:port`` (port 0 = any free port); see the package docstring.

    ``url`` is what to put in gateway.url: the full URL for transport single, the base URL for
    tif and csb. Faults can be set here, with :meth:`add_fault`, or over HTTP
    (POST /_control/faults).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, transport: str = "single",
                 secret: str = defaults.SECRET, paasid: str = defaults.PAASID,
                 access_key: str = defaults.ACCESS_KEY, require_sign_in: bool = True,
                 latency: float = 0.0, faults: list[dict[str, Any]] | None = None,
                 fixmedins_code: str | None = None,
                 clock_skew_seconds: int = defaults.CLOCK_SKEW_SECONDS,
                 accept_unknown: bool = False, tls_cert: str | None = None,
                 tls_key: str | None = None, tls_client_ca: str | None = None) -> None:
        """``tls_cert``/``tls_key`` (PEM) make it serve HTTPS; ``tls_client_ca`` also demands a
        client certificate signed by that CA (mutual TLS, as some 专网 front-ends do)."""
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
        self.host, self.port, self.transport = host, port, transport
        self.secret, self.paasid, self.access_key = secret, paasid, access_key
        self.latency = latency
        self.clock_skew_seconds = clock_skew_seconds
        self.centre = Centre(require_sign_in=require_sign_in, fixmedins_code=fixmedins_code,
                             accept_unknown=accept_unknown)
        self.calls = CallLog()
        self.faults = FaultTable()
        self.files = sbfiles.FileStore()
        self.catalogs = sbfiles.catalogs.Catalogues()
        for spec in faults or []:
            self.faults.add_spec(spec)
        self.stopping = threading.Event()
        self._nonces: dict[str, float] = {}
        self._nonce_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ssl_context: ssl.SSLContext | None = None
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls_cert, tls_key or None)
            if tls_client_ca:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(cafile=tls_client_ca)
            self.ssl_context = ctx

    # ---------------------------------------------------------------- lifecycle

    @property
    def ledger(self) -> Ledger:
        return self.centre.ledger

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        path = {"single": defaults.SINGLE_PATH, "tif": defaults.TIF_BASE,
                "csb": defaults.CSB_BASE}[self.transport]
        return self.base_url + path

    def start(self) -> SandboxServer:
        if self._httpd is not None:
            return self
        self.stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.sandbox = self
        httpd.ssl_context = self.ssl_context
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        logger.warning("%s Listening on %s (transport %s)", defaults.BANNER, self.url,
                       self.transport)
        return self

    def stop(self) -> None:
        self.stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SandboxServer:  # noqa: PYI034 - Self needs Python 3.11
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start and block until Ctrl-C (the CLI)."""
        self.start()
        try:
            while not self.stopping.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # ---------------------------------------------------------------- test API

    def add_fault(self, kind: str, infno: str = "*", **kw: Any) -> Fault:
        """e.g. ``add_fault("reset_after", "2207", count=1)``; see mi_worker.sandbox.faults."""
        return self.faults.add(Fault(kind=kind, infno=infno, **kw))

    def clear_faults(self) -> None:
        self.faults.clear()

    def reset(self) -> None:
        """Forget ledger, calls, faults, msgids and sign-ins."""
        self.centre.reset()
        self.calls.clear()
        self.faults.clear()
        self.files.clear()
        with self._nonce_lock:
            self._nonces.clear()

    # ---------------------------------------------------------------- checks

    def check_route(self, path: str, infno: str | None) -> str | None:
        """The URL must match the transport: the fixed path, or base + "/" + infno."""
        path = path.split("?", 1)[0]
        if self.transport == "single":
            if path != defaults.SINGLE_PATH:
                return f"no such path {path}; the sandbox answers at {defaults.SINGLE_PATH}"
            return None
        last = path.rstrip("/").rsplit("/", 1)[-1]
        if catalog.is_valid_code(last) and infno and catalog.normalize(last) != infno:
            return f"path {path} is for {last} but the envelope's infno is {infno}"
        return None

    def check_auth(self, headers: Any) -> str | None:
        """Verify the transport's signature headers; the problem in words, or None."""
        return auth.check_headers(self, headers)
