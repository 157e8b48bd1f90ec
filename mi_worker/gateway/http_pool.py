"""The worker's HTTP client: one small httpx.Client per thread, one cap for the process.

Why not one shared httpx.Client: httpcore 1.0's connection pool does its bookkeeping under
one lock on every request and every response close, and that bookkeeping walks every pooled
connection (an ``is_idle`` list per connection, a readability ``select`` per idle one). With
32 worker threads on 32 connections the lock became the bottleneck of the whole worker: the
saturation bench (32 threads x 100 ms gateway) reached 47-77 % of the ideal 320 calls/s on a
2-core machine, the worker's GIL time mostly inside that pool (py-spy ``--gil``). A thread
makes one request at a time, so a client of its own needs one kept-alive connection and its
pool bookkeeping is O(1); the lock is never contended.

What stays as before: every client shares one ``ssl.SSLContext`` (the system trust store +
``gateway.ca_bundle`` + client certificate, loaded once), the same timeouts and limits per
request, ``trust_env=False``, no redirects. The process-wide limit (``pool_size`` = worker
threads, or ``gateway.max_connections``) is a semaphore held for the length of a request: a
request over it waits up to the pool timeout and then fails with ``httpx.PoolTimeout``
(nothing was sent), exactly as the shared pool did. A thread that has ended leaves its
client behind; it is closed the next time a new thread makes its first request.
"""
from __future__ import annotations

import contextlib
import ssl
import threading
from typing import Any, Callable, Dict, Iterator, Optional

import httpx

# a thread's own pool: one request at a time, plus one for a nested exchange (a 9001
# sign-in made while a stream is open) so that it never waits on itself
PER_THREAD_CONNECTIONS = 2


class ThreadLocalHttp:
    """Looks like the part of httpx.Client the gateway uses: post, stream, close."""

    def __init__(self, make_client: Callable[[], httpx.Client], size: int,
                 pool_timeout: float) -> None:
        self._make = make_client
        self.size = max(1, size)
        self._slots = threading.BoundedSemaphore(self.size)
        self._pool_timeout = pool_timeout
        self._lock = threading.Lock()
        self._clients: Dict[threading.Thread, httpx.Client] = {}
        self._local = threading.local()
        self._closed = False

    # -- the client of this thread --------------------------------------------------------
    def _client(self) -> httpx.Client:
        client: Optional[httpx.Client] = getattr(self._local, "client", None)
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise RuntimeError("Cannot send a request, as the client has been closed.")
            stale = [self._clients.pop(t) for t in list(self._clients) if not t.is_alive()]
            client = self._make()
            self._clients[threading.current_thread()] = client
        for old in stale:
            old.close()
        self._local.client = client
        return client

    @contextlib.contextmanager
    def _slot(self, timeout: Any) -> Iterator[None]:
        wait = self._pool_timeout
        if isinstance(timeout, httpx.Timeout) and timeout.pool is not None:
            wait = timeout.pool
        if not self._slots.acquire(timeout=wait):
            raise httpx.PoolTimeout(f"all {self.size} gateway connections busy for {wait:.1f}s")
        try:
            yield
        finally:
            self._slots.release()

    # -- the httpx.Client surface the gateway uses ----------------------------------------
    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        client = self._client()
        with self._slot(kwargs.get("timeout")):
            return client.post(url, **kwargs)

    @contextlib.contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        client = self._client()
        with self._slot(kwargs.get("timeout")):
            with client.stream(method, url, **kwargs) as resp:
                yield resp

    def close(self) -> None:
        """Close every thread's client; later requests raise RuntimeError."""
        with self._lock:
            self._closed = True
            clients = list(self._clients.values())
            self._clients.clear()
        for c in clients:
            c.close()

    @property
    def is_closed(self) -> bool:
        return self._closed

    def open_clients(self) -> int:
        """Clients currently held (one per thread that has made a request): for tests."""
        with self._lock:
            return len(self._clients)


def per_thread_client_factory(verify: bool | ssl.SSLContext, timeout: httpx.Timeout,
                              keepalive_seconds: float) -> Callable[[], httpx.Client]:
    """A maker of small clients that all share ``verify`` (one SSLContext, loaded once)."""
    def make() -> httpx.Client:
        return httpx.Client(
            verify=verify, timeout=timeout,
            limits=httpx.Limits(max_connections=PER_THREAD_CONNECTIONS,
                                max_keepalive_connections=1,
                                keepalive_expiry=keepalive_seconds),
            trust_env=False,  # never route the 医保专网 through a desktop proxy setting
            follow_redirects=False)
    return make
