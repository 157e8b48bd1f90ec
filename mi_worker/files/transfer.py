"""9101 文件上传 and 9102 文件下载 with the centre, streamed (httpx), size-limited, checksummed.

Why a module of its own: a 9102 answer is not a JSON envelope but the file itself
(``application/octet-stream``, usually a zip), which the row path (one JSON answer per row)
cannot carry; and a file must land on disk without ever being held whole in memory. The
envelope, the transport's URL and signed headers, the TLS client and today's sign_no are the
gateway client's own (mi_worker/gateway/client.py), so a province's settings apply unchanged.

Rules:
* A centre-supplied file name is never a path: one with a directory part, ``..``, a drive, a
  control character or more than 200 characters is refused (:class:`UnsafeFileName`), never
  "cleaned" into something else. Files are written under gateway.file_directory only.
* gateway.file_max_bytes bounds both directions; a download that grows past it is cut off and
  its partial file deleted (:class:`FileTooLarge`).
* A download is written to ``<name>.part`` and renamed only when complete: shorter than its
  Content-Length (a truncated body, a connection cut mid-stream) or an HTTP 5xx is fetched
  again, up to gateway.file_attempts; an expired ``dld_endtime`` (the centre answers a JSON
  envelope with infcode ≠ 0) is final (:class:`CentreRefused`).
* 9101 is resent only when nothing reached the centre (connect phase): an upload the centre
  may have stored is not repeated blindly (a second file_qury_no would be harmless but the
  caller must know which one counts).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import httpx

from mi_worker.gateway import envelope
from mi_worker.gateway.client import NHSAClient
from mi_worker.gateway.transports import timeout

CHUNK = 256 * 1024
_CONNECT_PHASE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f<>:\"|?*]")


class FileTransferError(RuntimeError):
    """A transfer that did not succeed; ``str()`` is the clear message for people and logs."""


class UnsafeFileName(FileTransferError):
    """A file name that could leave the file directory (path traversal) or is not portable."""


class FileTooLarge(FileTransferError):
    """Larger than gateway.file_max_bytes."""


class CentreRefused(FileTransferError):
    """The centre answered a definite error (infcode ≠ 0), e.g. 下载截止时间 dld_endtime passed."""

    def __init__(self, message: str, infcode: str) -> None:
        super().__init__(message)
        self.infcode = infcode


@dataclass
class Stored:
    """A file on disk and what the centre called it."""

    path: str
    filename: str
    size_bytes: int
    sha256: str
    file_qury_no: str = ""
    dld_endtime: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def safe_name(name: Any) -> str:
    """``name`` as a plain file name, or :class:`UnsafeFileName` saying why not."""
    text = "" if name is None else str(name)
    shown = text[:80]
    if not text.strip() or text in (".", ".."):
        raise UnsafeFileName(f"拒绝文件名: empty or dot-only file name {shown!r}")
    if "/" in text or "\\" in text or ".." in text or re.match(r"^[A-Za-z]:", text):
        raise UnsafeFileName(f"拒绝文件名: {shown!r} is a path, not a plain file name "
                             "(path traversal refused)")
    if _UNSAFE.search(text) or len(text) > 200 or text != text.strip():
        raise UnsafeFileName(f"拒绝文件名: {shown!r} has control or reserved characters, "
                             "blanks at an end, or more than 200 characters")
    return text


def inside(directory: Path, name: str) -> Path:
    """The path of ``name`` in ``directory``; refuses anything that resolves elsewhere."""
    base = directory.resolve()
    target = (base / safe_name(name)).resolve()
    if target.parent != base:
        raise UnsafeFileName(f"拒绝文件名: {name!r} resolves outside {base}")
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FileTransfer:
    """9101 / 9102 through an :class:`NHSAClient`'s transport, TLS client and sign-in."""

    def __init__(self, client: NHSAClient, directory: Optional[str] = None) -> None:
        self.client = client
        self.settings = client.settings
        self.directory = Path(directory or self.settings.file_directory)

    # ---------------------------------------------------------------- 9101
    def upload(self, path: str, filename: Optional[str] = None) -> Stored:
        """Upload one local file; returns the centre's file_qury_no (and the sha256 sent)."""
        src = Path(path)
        name = safe_name(filename or src.name)
        size = src.stat().st_size
        if size > self.settings.file_max_bytes:
            raise FileTooLarge(f"文件过大: {name} is {size} bytes, more than gateway."
                               f"file_max_bytes = {self.settings.file_max_bytes}")
        data = src.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        s = self.settings
        meta = {"filename": name, "fixmedins_code": s.fixmedins_code}
        last = ""
        for _ in range(s.file_attempts):
            env = self._envelope("9101", {"fsUploadIn": dict(meta, **(
                {} if s.file_upload_mode == "multipart"
                else {"in": base64.b64encode(data).decode("ascii")}))})
            try:
                if s.file_upload_mode == "multipart":
                    headers = {k: v for k, v in self.client.transport.headers("9101").items()
                               if k.lower() != "content-type"}
                    resp = self.client.http.post(
                        self.client.transport.url("9101"), headers=headers,
                        data={"jsonStr": envelope.encode(env).decode("utf-8")},
                        files={"file": (name, data, "application/octet-stream")},
                        timeout=timeout(s))
                else:
                    resp = self.client.http.post(
                        self.client.transport.url("9101"), content=envelope.encode(env),
                        headers=self.client.transport.headers("9101"), timeout=timeout(s))
            except _CONNECT_PHASE as exc:
                last = f"not sent: {type(exc).__name__}: {exc}"
                time.sleep(min(s.retry_max_seconds, s.retry_initial_seconds))
                continue
            except httpx.TransportError as exc:
                raise FileTransferError(f"9101 上传结果不明: {name} was sent and no answer came "
                                        f"back ({type(exc).__name__}); upload it again and "
                                        "use the new file_qury_no") from None
            answer = self._envelope_answer("9101", resp)
            out = answer.get("output") or {}
            info = out.get("fileinfo", out) if isinstance(out, dict) else {}
            if not info.get("file_qury_no"):
                raise FileTransferError("9101 answered without output.file_qury_no")
            return Stored(path=str(src), filename=str(info.get("filename") or name),
                          size_bytes=size, sha256=digest,
                          file_qury_no=str(info["file_qury_no"]),
                          dld_endtime=str(info.get("dld_endtime") or ""))
        raise FileTransferError(f"9101 上传失败: {name} could not be sent ({last})")

    # ---------------------------------------------------------------- 9102
    def download(self, file_qury_no: str, filename: str,
                 save_as: Optional[str] = None) -> Stored:
        """Fetch one file into the file directory; retried when cut short or on HTTP 5xx."""
        target = inside(self.directory, save_as or filename)
        self.directory.mkdir(parents=True, exist_ok=True)
        last = ""
        for attempt in range(1, self.settings.file_attempts + 1):
            try:
                return self._download_once(file_qury_no, filename, target)
            except (_Retry, httpx.TransportError) as exc:
                last = str(exc) or type(exc).__name__
                if attempt < self.settings.file_attempts:
                    time.sleep(min(self.settings.retry_max_seconds,
                                   self.settings.retry_initial_seconds * attempt))
        raise FileTransferError(f"9102 下载失败: {filename} after {self.settings.file_attempts} "
                                f"attempts, last: {last}")

    def _download_once(self, file_qury_no: str, filename: str, target: Path) -> Stored:
        s = self.settings
        env = self._envelope("9102", {"fsDownloadIn": {
            "file_qury_no": file_qury_no, "filename": filename,
            "fixmedins_code": s.fixmedins_code}})
        part = target.with_name(target.name + ".part")
        digest, size = hashlib.sha256(), 0
        with self.client.http.stream("POST", self.client.transport.url("9102"),
                                     content=envelope.encode(env),
                                     headers=self.client.transport.headers("9102"),
                                     timeout=timeout(s)) as resp:
            ctype = resp.headers.get("content-type", "")
            if resp.status_code >= 500:
                raise _Retry(f"HTTP {resp.status_code} from the gateway")
            if "json" in ctype or resp.status_code >= 400:
                resp.read()
                self._envelope_answer("9102", resp)  # raises CentreRefused on infcode ≠ 0
                raise FileTransferError("9102 answered an envelope instead of the file")
            expected = resp.headers.get("content-length")
            if expected is not None and int(expected) > s.file_max_bytes:
                raise FileTooLarge(f"文件过大: {filename} is {expected} bytes, more than "
                                   f"gateway.file_max_bytes = {s.file_max_bytes}")
            try:
                with open(part, "wb") as fh:
                    for chunk in resp.iter_bytes(CHUNK):
                        size += len(chunk)
                        if size > s.file_max_bytes:
                            raise FileTooLarge(f"文件过大: {filename} passed gateway."
                                               f"file_max_bytes = {s.file_max_bytes} while "
                                               "downloading; the partial file was deleted")
                        digest.update(chunk)
                        fh.write(chunk)
                if expected is not None and size != int(expected):
                    raise _Retry(f"truncated: {size} of {expected} bytes")
            except BaseException:
                part.unlink(missing_ok=True)
                raise
        os.replace(part, target)
        return Stored(path=str(target), filename=filename, size_bytes=size,
                      sha256=digest.hexdigest(), file_qury_no=file_qury_no)

    # ---------------------------------------------------------------- plumbing
    def _envelope(self, infno: str, input_obj: Dict[str, Any]) -> Dict[str, Any]:
        sign_no = ""
        if self.settings.sign_in:
            sign_no, failure = self.client.sessions.ensure(
                self.settings.opter, time.monotonic() + 3 * self.settings.connect_timeout, [])
            if failure is not None:
                raise FileTransferError(failure.error_message)
        return envelope.build_envelope(self.settings, infno, self.client.new_msgid(), input_obj,
                                       sign_no)

    @staticmethod
    def _envelope_answer(infno: str, resp: httpx.Response) -> Dict[str, Any]:
        if resp.status_code >= 500:
            raise FileTransferError(f"{infno}: HTTP {resp.status_code} from the gateway")
        try:
            answer = envelope.parse_response(resp.content)
        except envelope.BadResponse as exc:
            raise FileTransferError(f"{infno}: unreadable answer (HTTP {resp.status_code}): "
                                    f"{exc}") from None
        code = envelope.infcode_str(answer.get("infcode"))
        if code != "0":
            raise CentreRefused(f"{infno} 中心拒绝: {envelope.error_message(answer)}", code)
        return answer


class _Retry(Exception):
    """A download worth fetching again (cut short, HTTP 5xx)."""


def dumps(stored: Stored) -> str:
    return json.dumps(stored.as_dict(), ensure_ascii=False)
