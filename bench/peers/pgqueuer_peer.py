"""pgqueuer drain peer (runs in bench/.venv-peers only).

    python pgqueuer_peer.py setup  --dsn DSN --n 20000
    python pgqueuer_peer.py work   --dsn DSN --batch-size 16
    python pgqueuer_peer.py window --dsn DSN

Fairness: one async no-op entrypoint (no per-entrypoint concurrency limit); QueueManager.run
in QueueExecutionMode.drain (exits when the queue is empty) with batch_size 16 (as
mi-worker's batch) and max_concurrent_tasks 32 (the smallest the library allows for batch 16:
at least twice the batch); default durability (logged tables), psycopg driver with
autocommit. Timing from pgqueuer's own pgqueuer_log: first 'picked' to last 'successful' on
the database clock (the log of finished jobs is written in buffered batches, as the library
does by default).
"""
from __future__ import annotations

import argparse
import asyncio
import json

import psycopg
from pgqueuer import PsycopgDriver, Queries, QueueManager
from pgqueuer.models import Job
from pgqueuer.types import QueueExecutionMode

try:
    from pgqueuer import __version__ as PGQ_VERSION
except ImportError:  # pragma: no cover
    PGQ_VERSION = "?"


def settings(batch_size: int, max_tasks: int) -> dict:
    return {"batch_size": batch_size, "max_concurrent_tasks": max_tasks or None, "mode": "drain",
            "concurrency_limit": 0, "driver": "psycopg AsyncConnection(autocommit=True)",
            "durability": "durable (default)", "task": "async def noop(job): return None"}


async def connect(dsn: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


async def setup(dsn: str, n: int) -> None:
    conn = await connect(dsn)
    try:
        q = Queries(PsycopgDriver(conn))
        await q.install()
        chunk = 5000
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            await q.enqueue(["noop"] * k, [None] * k, [0] * k)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def work(dsn: str, batch_size: int, max_tasks: int) -> None:
    conn = await connect(dsn)
    try:
        qm = QueueManager(Queries(PsycopgDriver(conn)))

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            return None

        # --max-tasks 0: the library's default (no cap, max_concurrent_tasks=None)
        await qm.run(batch_size=batch_size, mode=QueueExecutionMode.drain,
                     max_concurrent_tasks=max_tasks or None)
    finally:
        await conn.close()


async def window(dsn: str, batch_size: int, max_tasks: int) -> None:
    conn = await connect(dsn)
    try:
        cur = await conn.execute("""
            SELECT EXTRACT(EPOCH FROM (max(created) FILTER (WHERE status = 'successful')
                                       - min(created) FILTER (WHERE status = 'picked')))::float8,
                   count(*) FILTER (WHERE status = 'successful'),
                   (SELECT count(*) FROM pgqueuer)
            FROM pgqueuer_log""")
        seconds, completed, left = await cur.fetchone()
    finally:
        await conn.close()
    print(json.dumps({"seconds": seconds, "completed": completed, "open": left,
                      "version": PGQ_VERSION, "settings": settings(batch_size, max_tasks)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["setup", "work", "window"])
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-tasks", type=int, default=32)
    a = ap.parse_args()
    if a.action == "setup":
        asyncio.run(setup(a.dsn, a.n))
    elif a.action == "work":
        asyncio.run(work(a.dsn, a.batch_size, a.max_tasks))
    else:
        asyncio.run(window(a.dsn, a.batch_size, a.max_tasks))


if __name__ == "__main__":
    main()
