"""What the fake centre committed (the ledger) and every request it received (the call log).

Tests read these to prove the properties that matter to a hospital: no double settlement,
every uncertain settlement reversed, per-patient calls never overlapping.

Double-settlement rule (business key of a settlement, 2102/2207/2207A/2304): the input's
``data.setl_key`` or ``data.his_fee_id`` when the HIS sends one (tests do, to name "this bill"),
else (settlement family, psn_no, mdtrt_id). Two *open* settlements — not cancelled by
2103/2208/2305 nor reversed by 2601 — with one key are a double settlement.
"""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

SETTLEMENT_CODES = frozenset({"2102", "2207", "2207A", "2304"})
OPEN = "open"
CANCELLED = "cancelled"
REVERSED = "reversed"
DONE = "done"  # committed calls that are not "open" things (cancels, uploads, 2601 itself)


@dataclass
class LedgerEntry:
    """One committed state-changing call, keyed by the msgid the centre received."""

    msgid: str
    infno: str
    psn_no: str | None
    day: str
    t: float
    status: str = DONE
    kind: str = "other"  # settlement, registration, admission, fee, cancel, reversal, other
    mdtrt_id: str | None = None
    setl_id: str | None = None
    business_key: str | None = None
    insutype: str | None = None
    clr_type: str | None = None
    amounts: dict[str, float] = field(default_factory=dict)
    ref_msgid: str | None = None  # the entry a cancel/2601 undid
    undone_by: str | None = None  # msgid of the cancel/2601 that undid this one
    input: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def business_key(infno: str, data: dict[str, Any], psn_no: str | None,
                 mdtrt_id: str | None) -> str:
    """See the module docstring: the HIS's own bill key if given, else psn_no + mdtrt_id."""
    for marker in ("setl_key", "his_fee_id"):
        if data.get(marker) not in (None, ""):
            return f"{marker}:{data[marker]}"
    family = {"2102": "pharmacy", "2207": "outpatient", "2207A": "outpatient",
              "2304": "inpatient"}.get(infno, infno)
    return f"{family}:{psn_no}:{mdtrt_id}"


class Ledger:
    """Thread-safe list of committed entries with the queries tests need."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entries: dict[str, LedgerEntry] = {}

    def add(self, entry: LedgerEntry) -> LedgerEntry:
        with self._lock:
            self._entries[entry.msgid] = entry
        return entry

    def get(self, msgid: str) -> LedgerEntry | None:
        with self._lock:
            return self._entries.get(msgid)

    def entries(self, infno: str | None = None) -> list[LedgerEntry]:
        with self._lock:
            items = list(self._entries.values())
        return [e for e in items if infno is None or e.infno == infno]

    def find(self, **match: Any) -> list[LedgerEntry]:
        """Entries whose attributes equal every ``match`` value (e.g. setl_id=..., kind=...)."""
        return [e for e in self.entries()
                if all(getattr(e, k) == v for k, v in match.items())]

    def settlements(self) -> list[LedgerEntry]:
        return [e for e in self.entries() if e.kind == "settlement"]

    def open_settlements(self) -> list[LedgerEntry]:
        """Settlements neither cancelled nor reversed: what the centre would pay out."""
        return [e for e in self.settlements() if e.status == OPEN]

    def double_settlements(self) -> list[list[LedgerEntry]]:
        """Groups of two or more open settlements with the same business key."""
        groups: dict[str, list[LedgerEntry]] = {}
        for e in self.open_settlements():
            groups.setdefault(e.business_key or e.msgid, []).append(e)
        return [g for g in groups.values() if len(g) > 1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def to_dict(self) -> dict[str, Any]:
        return {
            "entries": [e.to_dict() for e in self.entries()],
            "open_settlements": [e.msgid for e in self.open_settlements()],
            "double_settlements": [[e.msgid for e in g] for g in self.double_settlements()],
        }


@dataclass
class CallRecord:
    """One HTTP request as the sandbox saw it; t_start/t_end are time.monotonic()."""

    infno: str | None
    msgid: str | None
    psn_no: str | None
    t_start: float
    thread: str
    path: str = ""
    t_end: float | None = None
    http_status: int | None = None
    infcode: str | None = None
    err_msg: str | None = None
    fault: str | None = None
    committed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CallLog:
    """Every request received, for concurrency and ordering assertions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[CallRecord] = []

    def add(self, record: CallRecord) -> CallRecord:
        with self._lock:
            self._calls.append(record)
        return record

    def calls(self, infno: str | None = None, psn_no: str | None = None
              ) -> list[CallRecord]:
        with self._lock:
            items = list(self._calls)
        return [c for c in items if (infno is None or c.infno == infno)
                and (psn_no is None or c.psn_no == psn_no)]

    def msgids(self, infno: str | None = None) -> list[str | None]:
        return [c.msgid for c in self.calls(infno)]

    def count(self, infno: str | None = None) -> int:
        return len(self.calls(infno))

    @staticmethod
    def _max_overlap(records: list[CallRecord]) -> int:
        events: list[tuple[float, int]] = []
        for c in records:
            end = c.t_end if c.t_end is not None else float("inf")
            events.append((c.t_start, 1))
            events.append((end, -1))
        events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
        best = cur = 0
        for _, delta in events:
            cur += delta
            best = max(best, cur)
        return best

    def max_concurrent(self, infno: str | None = None, psn_no: str | None = None) -> int:
        """The most requests (of ``infno`` / for ``psn_no``) in progress at one instant."""
        return self._max_overlap(self.calls(infno, psn_no))

    def psn_overlaps(self) -> list[tuple[CallRecord, CallRecord]]:
        """Pairs of requests for the same psn_no that were in progress at the same time."""
        by_psn: dict[str, list[CallRecord]] = {}
        for c in self.calls():
            if c.psn_no:
                by_psn.setdefault(c.psn_no, []).append(c)
        pairs = []
        for records in by_psn.values():
            records.sort(key=lambda c: c.t_start)
            for i, a in enumerate(records):
                a_end = a.t_end if a.t_end is not None else float("inf")
                for b in records[i + 1:]:
                    if b.t_start < a_end:
                        pairs.append((a, b))
        return pairs

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def to_dict(self) -> dict[str, Any]:
        return {"calls": [c.to_dict() for c in self.calls()]}
