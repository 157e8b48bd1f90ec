"""The sandbox's file interfaces: 9101 文件上传 and 9102 文件下载 (issue 15).

Uploads (the file base64 in ``input.fsUploadIn.in``, or multipart ``jsonStr`` + ``file``)
are kept in memory under a new file_qury_no with a ``dld_endtime``; files the centre itself
produces (catalogues for 1301-1319, 3202 results) are put here the same way. 9102 answers the
bytes as ``application/octet-stream``, or a JSON envelope with infcode -1 for an unknown or
expired file, as centres do. Faults on 9102: ``truncate`` (Content-Length of the whole file,
half of it sent), ``cut`` (part sent, then a reset), ``http_error`` (a 503 before the body).
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.parser
import email.policy
import io
import itertools
import json
import socket
import struct
import threading
import zipfile
from dataclasses import dataclass
from typing import Any, Dict, Optional

from mi_worker.gateway.envelope import CHINA_TZ
from mi_worker.sandbox import catalogs

CODES = ("9101", "9102", "3202") + catalogs.CODES
CHINA = CHINA_TZ  # the one China time (gateway/envelope.py)


@dataclass
class SandboxFile:
    data: bytes
    filename: str
    dld_endtime: dt.datetime


class FileStore:
    """file_qury_no → file; thread-safe."""

    def __init__(self, keep_hours: float = 24.0) -> None:
        self.keep = dt.timedelta(hours=keep_hours)
        self._files: Dict[str, SandboxFile] = {}
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def put(self, data: bytes, filename: str) -> str:
        with self._lock:
            no = f"FQ{dt.datetime.now(CHINA):%Y%m%d%H%M%S}{next(self._seq):06d}"
            self._files[no] = SandboxFile(data, filename, dt.datetime.now(CHINA) + self.keep)
        return no

    def get(self, file_qury_no: str) -> Optional[SandboxFile]:
        with self._lock:
            return self._files.get(file_qury_no)

    def expire(self, file_qury_no: Optional[str] = None) -> None:
        """Move dld_endtime into the past (one file, or every file)."""
        past = dt.datetime.now(CHINA) - dt.timedelta(seconds=1)
        with self._lock:
            for no, f in self._files.items():
                if file_qury_no in (None, no):
                    f.dld_endtime = past

    def clear(self) -> None:
        with self._lock:
            self._files.clear()


def endtime(f: SandboxFile) -> str:
    return f.dld_endtime.strftime("%Y-%m-%d %H:%M:%S")


def multipart_envelope(content_type: str, body: bytes) -> bytes:
    """A multipart 9101 (``jsonStr`` + ``file``) as the equivalent JSON envelope bytes."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields: Dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = part.get_payload(decode=True) or b""
    try:
        env = json.loads(fields.get("jsonStr", b"").decode("utf-8"))
    except ValueError:
        return b""
    if isinstance(env, dict) and "file" in fields:
        up = (env.setdefault("input", {}) or {}).setdefault("fsUploadIn", {})
        up["in"] = base64.b64encode(fields["file"]).decode("ascii")
    return json.dumps(env, ensure_ascii=False).encode("utf-8")


def serve(handler: Any, store: FileStore, env: Dict[str, Any], record: Any,
          fault: Any) -> None:
    """Answer one 9101 / 9102 on ``handler`` (the sandbox's request handler)."""
    inp = env.get("input") if isinstance(env.get("input"), dict) else {}
    msgid = str(env.get("msgid"))
    centre = handler.box.centre
    if env.get("infno") in catalogs.CODES:
        _json(handler, record, centre.answer(msgid, 0, catalogs.answer(
            handler.box.catalogs, store, str(env["infno"]), inp), None))
        return
    if env.get("infno") == "3202":
        try:
            out = detail_3202(handler.box.ledger, store, (inp or {}).get("data") or {})
        except ValueError as exc:
            _json(handler, record, centre.answer(msgid, -1, None, str(exc)))
            return
        _json(handler, record, centre.answer(msgid, 0, out, None))
        return
    if env.get("infno") == "9101":
        up = inp.get("fsUploadIn") or {}
        try:
            data = base64.b64decode(str(up.get("in") or ""), validate=True)
        except (binascii.Error, ValueError):
            data = b""
        if not data or not up.get("filename"):
            _json(handler, record, centre.answer(msgid, -1, None,
                                                 "文件上传失败: fsUploadIn.in and filename required"))
            return
        no = store.put(data, str(up["filename"]))
        f = store.get(no)
        _json(handler, record, centre.answer(msgid, 0, {
            "file_qury_no": no, "filename": f.filename, "dld_endtime": endtime(f)}, None))
        return
    down = inp.get("fsDownloadIn") or {}
    f = store.get(str(down.get("file_qury_no") or ""))
    if f is None:
        _json(handler, record, centre.answer(msgid, -1, None, "文件不存在: no file "
                                             f"{down.get('file_qury_no')!r}"))
        return
    if dt.datetime.now(CHINA) > f.dld_endtime:
        _json(handler, record, centre.answer(msgid, -1, None, "文件已过期: 下载截止时间 "
                                             f"dld_endtime {endtime(f)} has passed"))
        return
    record.http_status, record.infcode = 200, "0"
    kind = getattr(fault, "kind", None)
    body = f.data if kind not in ("truncate", "cut") else f.data[: max(1, len(f.data) // 2)]
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Disposition", f"attachment; filename=\"{f.filename}\"")
    handler.send_header("Content-Length", str(len(f.data)))
    handler.end_headers()
    handler.wfile.write(body)
    if kind in ("truncate", "cut"):
        handler.wfile.flush()
        handler.close_connection = True
        if kind == "cut":
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                          struct.pack("ii", 1, 0))
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _json(handler: Any, record: Any, answer: Dict[str, Any]) -> None:
    record.http_status = 200
    record.infcode = str(answer.get("infcode"))
    record.err_msg = answer.get("err_msg")
    handler._send_json(200, answer)


def _m(value: Any) -> str:
    try:
        return f"{float(value or 0):.2f}"
    except (TypeError, ValueError):
        return "0.00"


def detail_3202(ledger: Any, store: FileStore, data: Dict[str, Any]) -> Dict[str, Any]:
    """3202 对明细账: compare the uploaded detail file (setl_id, mdtrt_id, psn_no, medfee_sumamt,
    fund_pay_sumamt, acct_pay, refd_setl_flag; TAB, no header, zipped) with the ledger's open
    settlements of the period (and clr_type / insutype when given). The result file holds
    the rows that disagree: psn_no, mdtrt_id, setl_id, msgid, stmt_rslt (1 中心多, 2 医药机构多,
    3 不一致), refd_setl_flag, memo, medfee_sumamt, fund_pay_sumamt, acct_pay."""
    f = store.get(str(data.get("file_qury_no") or ""))
    if f is None:
        raise ValueError(f"文件不存在: no uploaded file {data.get('file_qury_no')!r}")
    with zipfile.ZipFile(io.BytesIO(f.data)) as z:
        text = z.read(z.namelist()[0]).decode("utf-8")
    ours = {}
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) >= 6 and cols[0]:
            ours[cols[0]] = cols
    begin = str(data.get("stmt_begndate") or "")[:10]
    end = str(data.get("stmt_enddate") or begin)[:10]
    theirs = {e.setl_id: e for e in ledger.open_settlements()
              if begin <= e.day <= end
              and (not data.get("clr_type") or e.clr_type == str(data["clr_type"]))
              and (not data.get("insutype") or e.insutype == str(data["insutype"]))}
    out = []
    keys = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay")
    for setl_id, e in theirs.items():
        amounts = [_m(e.amounts.get(k)) for k in keys]
        if setl_id not in ours:
            out.append([e.psn_no or "", e.mdtrt_id or "", setl_id, e.msgid, "1", "0",
                        "中心多: the hospital's file lacks this settlement", *amounts])
        elif [_m(v) for v in ours[setl_id][3:6]] != amounts:
            out.append([e.psn_no or "", e.mdtrt_id or "", setl_id, e.msgid, "3", "0",
                        "不一致: amounts differ", *amounts])
    for setl_id, cols in ours.items():
        if setl_id not in theirs:
            out.append([cols[2], cols[1], setl_id, "", "2", cols[6] if len(cols) > 6 else "0",
                        "医药机构多: the centre has no such settlement",
                        *[_m(v) for v in cols[3:6]]])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("3202_result.txt", "".join("\t".join(r) + "\n" for r in out))
    no = store.put(buf.getvalue(), "3202_result.zip")
    return {"fileinfo": {"file_qury_no": no, "filename": "3202_result.zip",
                         "dld_endtime": endtime(store.get(no))}}
