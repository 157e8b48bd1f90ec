"""Fault injection: the network and centre failures the retry rules must survive.

Kinds (each for one infno or "*", optionally ``count`` times or with ``probability``):

    latency        sleep ``seconds`` (or a random time up to ``max_seconds``), then answer
    http_error     HTTP ``status`` (500/502/503...) with an HTML body; before the centre
                   commits unless ``commit`` is true
    reset_before   close the socket (RST) without answering; nothing recorded
    reset_after    commit (ledger), then close the socket without answering
    timeout        commit, then sleep ``seconds`` (longer than the client's read timeout) and
                   close without answering
    infcode        answer infcode -1 with ``message``; nothing committed. ``message`` may
                   name input fields in braces ({psn_no}, {certno}, {psn_name}, {mobile}…):
                   they are filled from the request's input, because real centres echo
                   identifiers in err_msg (证件号码[…] 人员编号 …) and masking must be
                   tested against that
    garbage        answer HTTP 200 with a non-JSON body; after committing unless ``commit``
                   is false
    truncate       9102 only: announce the whole file (Content-Length) and send half of it
    cut            9102 only: send part of the file, then reset the connection (a download
                   broken mid-stream); an HTTP 503 before the body is http_error on 9102

Why "after commit" variants exist: they are the dangerous ones — the centre settled but the
hospital never heard — and the client must end UNCERTAIN instead of settling again.
"""
from __future__ import annotations

import builtins
import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from mi_worker.gateway.envelope import find_key

KINDS = ("latency", "http_error", "reset_before", "reset_after", "timeout", "infcode",
         "garbage", "truncate", "cut")
_COMMIT_DEFAULT = {"http_error": False, "reset_before": False, "reset_after": True,
                   "timeout": True, "infcode": False, "garbage": True, "latency": True,
                   "truncate": True, "cut": True}


@dataclass
class Fault:
    kind: str
    infno: str = "*"
    count: int | None = None
    probability: float | None = None
    seconds: float = 0.0
    max_seconds: float | None = None
    status: int = 500
    message: str = "模拟故障 simulated failure"
    commit: bool | None = None
    fired: int = field(default=0)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (one of {', '.join(KINDS)})")
        if self.commit is None:
            self.commit = _COMMIT_DEFAULT[self.kind]

    def matches(self, infno: str | None) -> bool:
        return self.infno in ("*", infno)

    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def delay(self) -> float:
        if self.max_seconds is not None and self.max_seconds > self.seconds:
            return random.uniform(self.seconds, self.max_seconds)
        return self.seconds

    def render(self, input_obj: Any) -> str:
        """``message`` with {field} placeholders filled from the request's input."""
        if "{" not in self.message:
            return self.message

        class _Fields(dict):
            def __missing__(self, key: str) -> str:
                value = find_key(input_obj, key)
                return "" if value is None else str(value)

        try:
            return self.message.format_map(_Fields())
        except (ValueError, IndexError, AttributeError):
            return self.message

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultTable:
    """Thread-safe list of faults; :meth:`take` decides which fire for one request."""

    def __init__(self, faults: builtins.list[Fault] | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults or [])

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def add_spec(self, spec: dict[str, Any]) -> Fault:
        allowed = {k: v for k, v in spec.items() if k != "fired"}
        return self.add(Fault(**allowed))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> builtins.list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, infno: str | None) -> tuple[builtins.list[Fault], Fault | None]:
        """(latency faults to apply, at most one other fault) for one request.

        Each fault that fires counts once against its ``count``.
        """
        latencies: list[Fault] = []
        terminal: Fault | None = None
        with self._lock:
            for f in self._faults:
                if not f.matches(infno) or f.exhausted():
                    continue
                if f.kind != "latency" and terminal is not None:
                    continue
                if f.probability is not None and random.random() >= f.probability:
                    continue
                f.fired += 1
                if f.kind == "latency":
                    latencies.append(f)
                else:
                    terminal = f
        return latencies, terminal
