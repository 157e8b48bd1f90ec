"""procrastinate drain peer (runs in bench/.venv-peers only).

    python procrastinate_peer.py setup  --dsn DSN --n 20000
    python procrastinate_peer.py work   --dsn DSN --concurrency 16
    python procrastinate_peer.py window --dsn DSN

Fairness: one async no-op task; worker concurrency 16 (as mi-worker's 16 threads);
wait=False is procrastinate's drain mode (the worker exits when no job is left);
listen_notify and delete_jobs keep their defaults (notify on, finished jobs kept, as
mi-worker keeps its rows). Timing comes from procrastinate's own procrastinate_events
table: first 'started' to last 'succeeded' on the database clock.
"""
from __future__ import annotations

import argparse
import asyncio
import json

import procrastinate

SETTINGS = {"concurrency": 16, "wait": False, "listen_notify": True, "delete_jobs": "never",
            "task": "async def noop(): return None"}


def make_app(dsn: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop", queue="bench")
    async def noop() -> None:
        return None

    return app


async def setup(dsn: str, n: int) -> None:
    app = make_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        task = app.tasks["noop"]
        chunk = 5000
        for start in range(0, n, chunk):
            await task.batch_defer_async(*({} for _ in range(min(chunk, n - start))))
        await app.connector.execute_query_async("ANALYZE procrastinate_jobs")


async def work(dsn: str, concurrency: int) -> None:
    app = make_app(dsn)
    async with app.open_async():
        await app.run_worker_async(queues=["bench"], concurrency=concurrency, wait=False,
                                   listen_notify=True, delete_jobs="never")


async def window(dsn: str) -> None:
    app = make_app(dsn)
    async with app.open_async():
        row = await app.connector.execute_query_one_async("""
            SELECT EXTRACT(EPOCH FROM (max(at) FILTER (WHERE type = 'succeeded')
                                       - min(at) FILTER (WHERE type = 'started')))::float8
                       AS seconds,
                   (SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded')
                       AS completed,
                   (SELECT count(*) FROM procrastinate_jobs
                     WHERE status IN ('todo', 'doing')) AS open
            FROM procrastinate_events""")
    print(json.dumps({"seconds": row["seconds"], "completed": row["completed"],
                      "open": row["open"], "version": procrastinate.__version__,
                      "settings": SETTINGS}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["setup", "work", "window"])
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=16)
    a = ap.parse_args()
    if a.action == "setup":
        asyncio.run(setup(a.dsn, a.n))
    elif a.action == "work":
        asyncio.run(work(a.dsn, a.concurrency))
    else:
        asyncio.run(window(a.dsn))


if __name__ == "__main__":
    main()
