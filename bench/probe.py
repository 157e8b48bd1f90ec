"""``python -m bench.probe OUT.json -- <mi-worker arguments>``: a worker that counts its SQL.

Runs the real ``mi-worker`` CLI in this process after wrapping ``Database.run`` (the single
door every named statement goes through) with a counter: executions, rows returned and
seconds spent (round trip included) per query name. The counts are written to OUT.json when
the process exits (SIGTERM stops mi-worker gracefully, so atexit runs) and, every second, to
OUT.json.tmp-free snapshots, so a harness can read a live count. Nothing in mi_worker is
changed; the wrapper costs a dict update per statement.
"""
from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from collections import defaultdict
from typing import Any, Dict


def install(out_path: str) -> Dict[str, Dict[str, float]]:
    from mi_worker.db import base

    stats: Dict[str, Dict[str, float]] = defaultdict(lambda: {"n": 0, "rows": 0, "seconds": 0.0})
    lock = threading.Lock()
    original = base.Database.run

    def run(self: Any, name: str, retry: bool = True, **params: Any):
        t0 = time.perf_counter()
        rows = original(self, name, retry=retry, **params)
        dt = time.perf_counter() - t0
        with lock:
            s = stats[name]
            s["n"] += 1
            s["rows"] += len(rows)
            s["seconds"] += dt
        return rows

    base.Database.run = run  # type: ignore[method-assign]

    def dump() -> None:
        with lock:
            data = {"pid": os.getpid(), "time": time.time(),
                    "statements": {k: dict(v) for k, v in stats.items()}}
        tmp = out_path + ".part"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, out_path)

    def loop() -> None:
        while True:
            time.sleep(1.0)
            dump()

    threading.Thread(target=loop, name="bench-probe", daemon=True).start()
    atexit.register(dump)
    return stats


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) < 2 or argv[1] != "--":
        sys.exit("usage: python -m bench.probe OUT.json -- <mi-worker arguments>")
    install(argv[0])
    from mi_worker.cli import main as cli_main
    cli_main(args=argv[2:], prog_name="mi-worker")


if __name__ == "__main__":
    main()
