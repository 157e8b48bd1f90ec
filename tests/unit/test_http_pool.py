"""The worker's HTTP client (gateway/http_pool.py) against a real loopback HTTP server:
a client per thread that keeps its connection, one SSLContext for all, the process-wide
cap, clients of ended threads closed, nothing sent after close()."""
from __future__ import annotations

import http.server
import threading
import time
from typing import Callable, Iterator, List, Optional

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


def _in_threads(target: Callable[[], None], n: int = 1) -> None:
    """Run ``target`` on ``n`` new threads at once and wait for all of them."""
    threads = [threading.Thread(target=target) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _error_on_another_thread(target: Callable[[], object]) -> Optional[BaseException]:
    """What ``target`` raised on a thread that never used the client before (None: nothing)."""
    errors: List[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 (collected for the assert)
            errors.append(exc)

    _in_threads(run)
    return errors[0] if errors else None


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

        _in_threads(five, 4)
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

        _in_threads(grab, 3)
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
            other = _error_on_another_thread(lambda: http.post(
                server, content=b"{}", timeout=httpx.Timeout(5.0, pool=0.2)))
            assert isinstance(other, httpx.PoolTimeout)
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

        _in_threads(one)
        assert not clients[0].is_closed
        _in_threads(one)
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
    # a thread with no client yet gets none
    assert isinstance(_error_on_another_thread(lambda: http.post(server, content=b"{}")),
                      RuntimeError)
    assert len(_Handler.connections) == before
