"""A sandbox centre in its own process, and mi-worker gateway settings that point at it.

The sandbox (mi_worker.sandbox, a stdlib HTTP server) runs as ``python -m mi_worker sandbox``
in a separate process so its CPU is not charged to the worker; the worker uses gateway.kind
= "nhsa" (the production client: httpx, envelope, 9001 sign-in) with the sandbox's URL.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, Sequence

from bench import common


def gateway_settings(url: str) -> Dict[str, Any]:
    from mi_worker.sandbox import defaults
    return {"kind": "nhsa", "url": url, "transport": "single",
            "fixmedins_code": "H99000000001", "fixmedins_name": "基准测试医院",
            "mdtrtarea_admvs": defaults.ADMVS, "insuplc_admdvs": defaults.ADMVS,
            "opter": "B001", "opter_name": "基准", "read_timeout": 10.0,
            "max_connections": 64}


@contextlib.contextmanager
def sandbox(workdir: Path, latency: float, extra_args: Sequence[str] = ()) -> Iterator[str]:
    """A running sandbox with ``latency`` seconds per answer (and ``extra_args`` of
    ``mi-worker sandbox``, e.g. ``--catalog-rows 1301=5000``); yields gateway.url."""
    from mi_worker.sandbox import defaults
    port = common.free_port()
    logf = open(workdir / f"sandbox-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mi_worker", "sandbox", "--port", str(port),
                             "--latency", str(latency), *extra_args], cwd=str(common.CODE_ROOT),
                            env=common.child_env(), stdout=logf, stderr=subprocess.STDOUT)
    logf.close()
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(base + "/_control/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return proc.poll() is not None

    try:
        common.wait_until(up, 30, step=0.1, what="the sandbox to listen")
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox exited at start; see {workdir}")
        yield base + defaults.SINGLE_PATH
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
