"""Issue 15, part 2: 9101 / 9102 with the centre over real loopback HTTP (the sandbox), every
fault the sandbox offers: a truncated download, a connection cut mid-stream, an HTTP 503, an
expired dld_endtime; path traversal from a centre-supplied name and oversized files refused
with a clear error, nothing left behind."""
from __future__ import annotations

import hashlib
import io
import os
import zipfile

import pytest

from mi_worker.files.transfer import (
    CentreRefused,
    FileTooLarge,
    FileTransfer,
    FileTransferError,
    UnsafeFileName,
    safe_name,
)
from mi_worker.gateway.client import NHSAClient
from mi_worker.sandbox.testing import client_settings


def _zip(rows: int = 5000) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("detail.txt", "".join(f"S{i}\tM{i}\tP{i}\t{i}.00\t1.00\t0.00\t0\n"
                                         for i in range(rows)))
    return buf.getvalue() + os.urandom(200_000)  # incompressible tail: many chunks


@pytest.fixture
def transfer(sandbox, tmp_path):
    def make(**overrides):
        client = NHSAClient(client_settings(sandbox, sign_in=False, **overrides))
        made.append(client)
        return FileTransfer(client, str(tmp_path / "files"))
    made = []
    yield make
    for c in made:
        c.close()


def _upload(t, tmp_path, data: bytes, name: str = "detail.zip"):
    src = tmp_path / name
    src.write_bytes(data)
    return t.upload(str(src))


@pytest.mark.parametrize("mode", ["envelope", "multipart"])
def test_upload_then_download_round_trip(transfer, sandbox, tmp_path, mode):
    t = transfer(file_upload_mode=mode)
    data = _zip()
    up = _upload(t, tmp_path, data)
    assert up.file_qury_no and up.dld_endtime and up.sha256 == hashlib.sha256(data).hexdigest()
    assert sandbox.files.get(up.file_qury_no).data == data  # the centre got the exact bytes
    down = t.download(up.file_qury_no, up.filename, save_as="back.zip")
    assert down.sha256 == up.sha256 and down.size_bytes == len(data)
    assert open(down.path, "rb").read() == data
    assert os.path.dirname(down.path) == str((tmp_path / "files").resolve())


@pytest.mark.parametrize("kind", ["truncate", "cut"])
def test_a_download_cut_short_is_fetched_again(transfer, sandbox, tmp_path, kind):
    t = transfer()
    data = _zip()
    no = sandbox.files.put(data, "cat.zip")
    sandbox.add_fault(kind, "9102", count=1)
    down = t.download(no, "cat.zip")
    assert open(down.path, "rb").read() == data
    assert sandbox.calls.msgids("9102") and len(sandbox.calls.msgids("9102")) == 2


def test_a_503_is_fetched_again(transfer, sandbox):
    t = transfer()
    no = sandbox.files.put(b"PK-data" * 1000, "cat.zip")
    sandbox.add_fault("http_error", "9102", count=1, status=503)
    assert t.download(no, "cat.zip").size_bytes == 7000
    assert len(sandbox.calls.msgids("9102")) == 2


def test_always_truncated_fails_clearly_and_leaves_nothing(transfer, sandbox, tmp_path):
    t = transfer(file_attempts=3)
    no = sandbox.files.put(_zip(), "cat.zip")
    sandbox.add_fault("truncate", "9102")
    with pytest.raises(FileTransferError, match="9102 下载失败: cat.zip after 3 attempts"):
        t.download(no, "cat.zip")
    assert list((tmp_path / "files").iterdir()) == []


def test_expired_dld_endtime_is_final(transfer, sandbox):
    t = transfer()
    no = sandbox.files.put(b"x" * 10, "cat.zip")
    sandbox.files.expire(no)
    with pytest.raises(CentreRefused, match="dld_endtime"):
        t.download(no, "cat.zip")
    assert len(sandbox.calls.msgids("9102")) == 1  # not retried


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b.zip", "..\\x.zip", "C:x.zip",
                                  "/abs.zip", "x\x00.zip", "..", " lead.zip", ""])
def test_path_traversal_refused_before_anything_is_sent(transfer, sandbox, name):
    t = transfer()
    with pytest.raises(UnsafeFileName, match="拒绝文件名"):
        t.download("FQ1", name)
    assert sandbox.calls.msgids("9102") == []


def test_plain_chinese_names_are_fine():
    assert safe_name("西药中成药目录_20261201.zip") == "西药中成药目录_20261201.zip"


def test_oversized_files_refused(transfer, sandbox, tmp_path):
    t = transfer(file_max_bytes=50_000)
    with pytest.raises(FileTooLarge, match="文件过大"):
        _upload(t, tmp_path, os.urandom(60_000), "big.zip")
    no = sandbox.files.put(os.urandom(60_000), "big.zip")
    with pytest.raises(FileTooLarge, match="gateway.file_max_bytes = 50000"):
        t.download(no, "big.zip")
    assert list((tmp_path / "files").iterdir()) == []
    assert sandbox.calls.msgids("9101") == []
