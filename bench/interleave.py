"""Interleaved rounds: every system runs once per round, run after run, fresh database each.

The machine is shared; figures taken at different moments for each system measure the
machine's load, not the systems. So a round runs every system back to back (the order
rotates from round to round, so none is always first), and a comparison is the *paired*
ratio of the same round, whose median over the rounds is what counts: a ratio is "met" only
when its median over at least MIN_ROUNDS rounds is. Each run records the load average and
the machine's CPU busy share while it ran (``/proc/stat``), so a noisy round can be seen.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from bench import common

MIN_ROUNDS = 5

System = Tuple[str, Callable[[], Dict[str, Any]]]


def _cpu_times() -> Optional[Tuple[float, float]]:
    """(busy, total) jiffies of the whole machine since boot, None without /proc."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return sum(fields) - idle, sum(fields)
    return None


def timed_run(fn: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """One measurement with the machine's load around it (PostgreSQL outages retried)."""
    load0, cpu0 = common.loadavg(), _cpu_times()
    got = dict(common.retrying(fn))
    load1, cpu1 = common.loadavg(), _cpu_times()
    got["loadavg_before"], got["loadavg_after"] = load0, load1
    if cpu0 and cpu1 and cpu1[1] > cpu0[1]:
        got["cpu_busy"] = round((cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]), 3)
    return got


def rounds(systems: Sequence[System], n_rounds: int, label: str = "") -> List[Dict[str, Any]]:
    """n_rounds rounds of every system once, order rotated each round."""
    out: List[Dict[str, Any]] = []
    k = len(systems)
    for i in range(n_rounds):
        order = list(systems[i % k:]) + list(systems[:i % k])
        rnd: Dict[str, Any] = {"round": i + 1, "order": [name for name, _ in order], "runs": {}}
        for name, fn in order:
            common.log(f"{label} round {i + 1}/{n_rounds}: {name}")
            rnd["runs"][name] = timed_run(fn)
        out.append(rnd)
    return out


def series(rnds: List[Dict[str, Any]], name: str, key: str = "rps", digits: int = 1
           ) -> Dict[str, Any]:
    """The summary (median, min, max, runs) of one system's figure over the rounds."""
    return common.summarize([r["runs"][name][key] for r in rnds if name in r["runs"]], digits)


def paired(rnds: List[Dict[str, Any]], a: str, b: str, target: Optional[float] = None,
           key: str = "rps") -> Dict[str, Any]:
    """Ratio a / b of each round, their median and range, and whether the median meets the
    target over enough rounds."""
    ratios = [r["runs"][a][key] / r["runs"][b][key] for r in rnds
              if a in r["runs"] and b in r["runs"] and r["runs"][b][key]]
    med = statistics.median(ratios) if ratios else None
    res: Dict[str, Any] = {
        "per_round": [round(x, 3) for x in ratios], "rounds": len(ratios),
        "median": None if med is None else round(med, 3),
        "min": round(min(ratios), 3) if ratios else None,
        "max": round(max(ratios), 3) if ratios else None,
        "load_per_round": [_load(r, a, b) for r in rnds]}
    if target is not None:
        res["target"] = target
        res["met"] = bool(med is not None and len(ratios) >= MIN_ROUNDS and med >= target)
        res["met_but_too_few_rounds"] = bool(med is not None and len(ratios) < MIN_ROUNDS
                                             and med >= target)
    return res


def _load(rnd: Dict[str, Any], a: str, b: str) -> Dict[str, Any]:
    """The 1-minute load average after each of the two runs, and their CPU busy share."""
    out: Dict[str, Any] = {}
    for name in (a, b):
        run = rnd["runs"].get(name, {})
        la = run.get("loadavg_after")
        out[name] = {"loadavg_1m": la[0] if la else None, "cpu_busy": run.get("cpu_busy")}
    return out


def slim(rnds: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The rounds for the JSON: per run the figures and the load, nothing bulky."""
    keep = ("rps", "seconds", "wall", "loadavg_before", "loadavg_after", "cpu_busy", "n",
            "rss_mb")
    return [{"round": r["round"], "order": r["order"],
             "runs": {name: {k: (round(v, 3) if isinstance(v, float) else v)
                             for k, v in run.items() if k in keep}
                      for name, run in r["runs"].items()}} for r in rnds]


def wait_quiet(max_load: float, timeout: float) -> List[float]:
    """Wait (up to ``timeout`` s) for the 1-minute load to drop below max_load; the load."""
    deadline = time.monotonic() + timeout
    load = common.loadavg() or [0.0]
    while load[0] > max_load and time.monotonic() < deadline:
        time.sleep(5)
        load = common.loadavg() or [0.0]
    return load
