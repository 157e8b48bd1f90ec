"""Catalogue sync (目录下载, 1301-1319): the query names a file, 9102 fetches the zip, its rows
are loaded into medical_insurance_catalog (one view per catalogue, v_mi_catalog_1301 …).

Why this shape:
* Incremental by version: each run asks the centre for rows newer than the version the last
  successful run reached (``ver`` in the query input), as centres expect; the rows' own
  versions give the next starting point. A failed or interrupted run leaves that point where
  it was, so the next run fetches the same rows again and resumes.
* Idempotent: every row's fields are hashed (sha256 of its text); a row whose hash is already
  stored is counted unchanged and not written, so a rerun — or the overlap after a resumed
  run — changes nothing. New and changed rows are written in batches (one statement per
  ``batch_size`` rows; per row where the database cannot take a batch, SQL Server before 2016).
* The query goes through the queue as an async call (mi_worker/his_async.py), so it has a
  request row, a msgid, the retry rules and an audit trail like every call; the file itself
  is fetched by mi_worker/files/transfer.py (streamed, size-limited, checksummed).
* Text in GBK or UTF-8, as centres send it: UTF-8 when the bytes decode as UTF-8, else
  GB18030 (a superset of GBK), never the host's code page.
* Each run has a row in medical_insurance_catalog_sync (counts, bytes, duration, outcome),
  shown by the monitoring data type ``catalog``.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import zipfile
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from mi_worker.db import Database, DatabaseError
from mi_worker.files.transfer import FileTransfer, FileTransferError, Stored
from mi_worker.gateway import catalog
from mi_worker.gateway.client import NHSAClient
from mi_worker.gateway.envelope import find_field
from mi_worker.his_async import result, submit

log = logging.getLogger(__name__)

CODES = tuple(str(c) for c in range(1301, 1320))
#: Field names of a catalogue file's TAB-separated columns (item code first, name second,
#: version and update time last). The centre's full layouts differ per catalogue and
#: province; unknown extra columns are kept as field_N so nothing is lost.
FIELDS: Dict[str, Tuple[str, ...]] = {
    code: ("item_code", "item_name", "spec", "pric", "prodentp_name", "aprvno", "vali_flag",
           "ver", "updt_time") for code in CODES}


class CatalogError(RuntimeError):
    """A sync that failed; the message says why (for people and the history row)."""


@dataclass
class SyncResult:
    catalog_code: str
    sync_id: int
    outcome: str = "RUNNING"
    ver_from: str = ""
    ver_to: str = ""
    bytes: int = 0
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    duration_ms: int = 0
    encoding: str = ""
    error_message: str = ""
    file: Optional[Dict[str, Any]] = field(default=None)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / max(self.duration_ms / 1000.0, 1e-6)

    def as_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["rows_per_second"] = round(self.rows_per_second, 1)
        return d


#: progress(rows, bytes_done, bytes_total)
Progress = Callable[[int, int, int], None]


def decode(data: bytes) -> Tuple[str, str]:
    """The file's text and its encoding (UTF-8 if it decodes, else GB18030 ⊇ GBK)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("gb18030"), "gbk"


def read_zip(path: str) -> Tuple[bytes, str]:
    """The first text member of a catalogue zip (or the file itself when it is not a zip)."""
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            return fh.read(), path
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        if not names:
            raise CatalogError(f"目录文件为空: {path} holds no file")
        return z.read(names[0]), names[0]


def row_of(code: str, line: str) -> Optional[Dict[str, Any]]:
    cols = line.rstrip("\r").split("\t")
    if not cols or not cols[0].strip():
        return None
    names = FIELDS.get(code, FIELDS["1301"])
    data = {(names[i] if i < len(names) else f"field_{i}"): v for i, v in enumerate(cols)}
    text = "\t".join(cols)
    return {"catalog_code": code, "item_code": cols[0].strip()[:100],
            "item_name": data.get("item_name"), "ver": data.get("ver"),
            "updt_time": data.get("updt_time"),
            "row_hash": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "row_data": json.dumps(data, ensure_ascii=False)}


def query_file(db: Database, code: str, ver: str, deadline_s: int = 3600,
               wait_s: float = 120.0) -> Dict[str, Any]:
    """Ask the centre (through the queue) for the file of rows newer than ``ver``."""
    sub = submit(db, code, json.dumps({"data": {"ver": ver}}), timeout=deadline_s)
    if sub.error_code != 0 or sub.request_id is None:
        hint = " (start a worker: mi-worker run)" if sub.error_code == -1002 else ""
        raise CatalogError(f"{code} 查询未能入队: {sub.error_code} {sub.error_message}{hint}")
    answer = result(db, sub.request_id, int(wait_s * 1000))
    if answer.error_code != 0:
        raise CatalogError(f"{code} 查询失败 (request {sub.request_id}): {answer.error_code} "
                           f"{answer.error_message}")
    out = json.loads(answer.result or "{}").get("output") or {}
    no, name = find_field(out, "file_qury_no"), find_field(out, "filename")
    if not no or not name:
        raise CatalogError(f"{code}: the answer names no file (file_qury_no / filename)")
    return {"file_qury_no": str(no), "filename": str(name),
            "dld_endtime": str(find_field(out, "dld_endtime") or ""),
            "request_id": sub.request_id}


def record_file(db: Database, stored: Stored, direction: str, purpose: str) -> None:
    db.run("record_file", direction=direction, purpose=purpose,
           file_qury_no=stored.file_qury_no or None, filename=stored.filename,
           local_path=stored.path, size_bytes=stored.size_bytes, sha256=stored.sha256,
           dld_endtime=stored.dld_endtime or None)


def sync(db: Database, transfer: FileTransfer, code: str, *, full: bool = False,
         batch_size: int = 1000, progress: Optional[Progress] = None,
         wait_s: float = 120.0) -> SyncResult:
    """One catalogue, incrementally (``full``: from version 0, rewriting only what changed)."""
    if code not in CODES:
        raise CatalogError(f"参数错误: {code!r} is not a catalogue code (1301…1319)")
    last = db.run_one("catalog_last_version", catalog_code=code)
    ver_from = "" if full or last is None else str(last["ver_to"] or "")
    started = time.monotonic()
    res = SyncResult(code, int(db.run_one("catalog_sync_start", catalog_code=code,
                                          ver_from=ver_from or "0")["sync_id"]),
                     ver_from=ver_from or "0", ver_to=ver_from or "0")
    try:
        info = query_file(db, code, ver_from or "0", wait_s=wait_s)
        stored = transfer.download(info["file_qury_no"], info["filename"])
        stored.dld_endtime = info["dld_endtime"]
        record_file(db, stored, "DOWN", code)
        res.file = stored.as_dict()
        _load(db, code, stored, res, batch_size, progress)
        res.outcome = "OK"
    except BaseException as exc:  # KeyboardInterrupt too: the history row must say so
        res.outcome = "FAILED"
        res.error_message = (str(exc) or type(exc).__name__)[:2000]
        if isinstance(exc, KeyboardInterrupt):
            res.error_message = "interrupted; the next run resumes from " + res.ver_from
        _finish(db, res, started)
        if isinstance(exc, (FileTransferError, DatabaseError, ValueError)):
            raise CatalogError(f"{code} {catalog.name(code)}: {exc}") from exc
        raise
    _finish(db, res, started)
    return res


def _load(db: Database, code: str, stored: Stored, res: SyncResult, batch_size: int,
          progress: Optional[Progress]) -> None:
    raw, _member = read_zip(stored.path)
    text, res.encoding = decode(raw)
    total = len(raw)
    res.bytes = stored.size_bytes
    known = {r["item_code"]: r["row_hash"] for r in db.run("catalog_hashes", catalog_code=code)}
    batch: List[Dict[str, Any]] = []
    done_bytes = 0
    use_batch = [True]
    for line in io.StringIO(text):
        done_bytes += len(line.encode(res.encoding, "replace"))
        row = row_of(code, line.rstrip("\n"))
        if row is None:
            continue
        res.rows_read += 1
        if row["ver"] and row["ver"] > res.ver_to:
            res.ver_to = row["ver"]
        before = known.get(row["item_code"])
        if before == row["row_hash"]:
            res.rows_unchanged += 1
            continue
        if before is None:
            res.rows_inserted += 1
        else:
            res.rows_updated += 1
        known[row["item_code"]] = row["row_hash"]
        batch.append(row)
        if len(batch) >= batch_size:
            _write(db, batch, use_batch)
            batch = []
            if progress:
                progress(res.rows_read, done_bytes, total)
    if batch:
        _write(db, batch, use_batch)
    if progress:
        progress(res.rows_read, total, total)


def _write(db: Database, batch: List[Dict[str, Any]], use_batch: List[bool]) -> None:
    if use_batch[0]:
        try:
            db.run("catalog_upsert_batch", rows=json.dumps(batch, ensure_ascii=False))
            return
        except DatabaseError as exc:
            if "catalog_upsert_batch needs OPENJSON" not in str(exc):
                raise
            use_batch[0] = False  # SQL Server before 2016: one row per statement
    for row in batch:
        db.run("catalog_upsert_row", **row)


def _finish(db: Database, res: SyncResult, started: float) -> None:
    res.duration_ms = int((time.monotonic() - started) * 1000)
    sha = (res.file or {}).get("sha256")
    db.run("catalog_sync_finish", sync_id=res.sync_id, outcome=res.outcome, ver_to=res.ver_to,
           file_qury_no=(res.file or {}).get("file_qury_no"), file_sha256=sha, bytes=res.bytes,
           rows_read=res.rows_read, rows_inserted=res.rows_inserted,
           rows_updated=res.rows_updated, rows_unchanged=res.rows_unchanged,
           duration_ms=res.duration_ms, error_message=res.error_message or None)


def sync_all(db: Database, client: NHSAClient, codes: List[str]) -> List[SyncResult]:
    """The scheduled job (jobs.catalog_time): each catalogue in turn; one failing (the centre
    away, a bad file) is logged and in its history row, the others still run."""
    transfer, done = FileTransfer(client), []
    for code in codes:
        try:
            res = sync(db, transfer, code)
        except CatalogError as exc:
            log.error("catalogue sync %s failed: %s", code, exc)
            continue
        log.info("catalogue sync %s: %d rows read (%d new, %d changed), %.0f rows/s",
                 code, res.rows_read, res.rows_inserted, res.rows_updated, res.rows_per_second)
        done.append(res)
    return done
