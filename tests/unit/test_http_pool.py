"""The worker's HTTP client (gateway/http_pool.py) against a real loopback HTTP server:
a client per thread that keeps its connection, one SSLContext for all, the process-wide
cap, clients of ended threads closed, nothing sent after close()."""
from __future__ import annotations

import http.server
import threading
import time
from typing import Iterator, List

import httpx
import pytest

from mi_worker.gateway.http_pool import ThreadLocalHttp
from mi_worker.gateway.settings import GatewaySettings
from mi_worker.gateway.transports import build_http_client


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: List[int] = []
    delay = 0.0

    def setup(self) -> None:
        super().setup()
        _Handler.connections.append(self.client_address[1])

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        if _Handler.delay:
            time.sleep(_Handler.delay)
        body = b'{"infcode":0}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.connections = []
    _Handler.delay = 0.0
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/api"
    finally:
        srv.shutdown()
        srv.server_close()


def _pool(url: str, size: int = 8) -> ThreadLocalHttp:
    http = build_http_client(GatewaySettings(url=url, connect_timeout=0.5), pool_size=size)
    assert isinstance(http, ThreadLocalHttp)
    return http


def test_each_thread_keeps_one_connection(server: str) -> None:
    http = _pool(server)
    try:
        def five() -> None:
            for _ in range(5):
                assert http.post(server, content=b"{}").json() == {"infcode": 0}

        threads = [threading.Thread(target=five) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # 4 threads x 5 requests over 4 kept-alive connections, not 20 and not 1
        assert len(_Handler.connections) == 4
        assert http.open_clients() == 4
    finally:
        http.close()


def test_clients_share_one_tls_context(server: str) -> None:
    http = _pool(server)
    try:
        seen = []

        def grab() -> None:
            client = http._client()
            seen.append(client._transport._pool._ssl_context)  # type: ignore[attr-defined]

        threads = [threading.Thread(target=grab) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == 3 and all(ctx is seen[0] for ctx in seen)
    finally:
        http.close()


def test_requests_over_the_cap_wait_then_fail_as_not_sent(server: str) -> None:
    _Handler.delay = 1.0
    http = _pool(server, size=1)
    try:
        holder = threading.Thread(target=lambda: http.post(server, content=b"{}"))
        holder.start()
        time.sleep(0.2)  # the one slot is taken
        t0 = time.monotonic()
        with pytest.raises(httpx.PoolTimeout):
            http.post(server, content=b"{}", timeout=httpx.Timeout(5.0, pool=0.3))
        assert 0.25 <= time.monotonic() - t0 < 0.9
        holder.join()
        # the slot is back: the next request goes through
        assert http.post(server, content=b"{}").status_code == 200
    finally:
        http.close()


def test_stream_holds_its_slot_until_closed(server: str) -> None:
    http = _pool(server, size=1)
    try:
        with http.stream("POST", server, content=b"{}") as resp:
            assert resp.read() == b'{"infcode":0}'
            other: List[BaseException] = []

            def try_post() -> None:
                try:
                    http.post(server, content=b"{}", timeout=httpx.Timeout(5.0, pool=0.2))
                except BaseException as exc:  # noqa: BLE001 (collected for the assert)
                    other.append(exc)

            t = threading.Thread(target=try_post)
            t.start()
            t.join()
            assert other and isinstance(other[0], httpx.PoolTimeout)
        assert http.post(server, content=b"{}").status_code == 200
    finally:
        http.close()


def test_an_ended_threads_client_is_closed_by_the_next_new_thread(server: str) -> None:
    http = _pool(server)
    try:
        clients = []

        def one() -> None:
            http.post(server, content=b"{}")
            clients.append(http._client())

        t = threading.Thread(target=one)
        t.start()
        t.join()
        assert not clients[0].is_closed
        t2 = threading.Thread(target=one)
        t2.start()
        t2.join()
        assert clients[0].is_closed and not clients[1].is_closed
        assert http.open_clients() == 1
    finally:
        http.close()


def test_nothing_is_sent_after_close(server: str) -> None:
    http = _pool(server)
    http.post(server, content=b"{}")
    http.close()
    assert http.is_closed
    before = len(_Handler.connections)
    with pytest.raises(RuntimeError):
        http.post(server, content=b"{}")  # the thread's own (closed) client
    errors: List[BaseException] = []

    def other_thread() -> None:  # a thread with no client yet gets none
        try:
            http.post(server, content=b"{}")
        except BaseException as exc:  # noqa: BLE001 (collected for the assert)
            errors.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert errors and isinstance(errors[0], RuntimeError)
    assert len(_Handler.connections) == before
