"""The sandbox's national catalogues (1301-1319 目录下载), realistic enough to test the load
path and its speed: tens of thousands of rows of Chinese text, GBK for some catalogues and
UTF-8 for others (centres differ), a version per row, and changes on demand.

A query ``{"data": {"ver": V}}`` answers ``file_qury_no`` / ``filename`` / ``dld_endtime`` of a
zip holding one TAB-separated text file (no header, ``\\n`` line ends) of every row whose
version is newer than V; 9102 then serves it (sandbox/files.py). Row layout: the fields of
``mi_worker.catalog_sync.FIELDS`` (item code first, name second, version and update time
last).
"""
from __future__ import annotations

import datetime as dt
import io
import random
import threading
import zipfile
from typing import Dict, List, Optional

CODES = tuple(str(c) for c in range(1301, 1320))
#: Catalogues the sandbox writes in GBK (the others in UTF-8), as some provinces still do.
GBK_CODES = frozenset({"1301", "1305", "1307", "1309"})
#: Rows per catalogue unless set (``SandboxServer.catalogs.size[code] = n``).
DEFAULT_ROWS = {"1301": 30000, "1302": 8000, "1305": 12000, "1306": 20000, "1307": 25000}
OTHER_ROWS = 2000
_HANZI = ("阿莫西林胶囊头孢克肟片布洛芬缓释维生素复方甘草口服液氯化钠注射液葡萄糖盐酸二甲双胍"
          "硝苯地平控释片阿司匹林肠溶奥美拉唑清热解毒颗粒板蓝根连花清瘟感冒灵血塞通医用棉签"
          "一次性输液器导管支架人工关节缝合线检查化验诊疗手术护理床位中药饮片黄芪当归党参枸杞")


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_HANZI) for _ in range(rng.randint(4, 12)))


class Catalogue:
    """One catalogue's rows: item code → fields (the version and update time last)."""

    def __init__(self, code: str, size: int) -> None:
        self.code = code
        self.generation = 1
        self.rng = random.Random(int(code))
        self.rows: Dict[str, List[str]] = {}
        for i in range(size):
            self._put(f"{self._prefix()}{i:08d}")

    def _prefix(self) -> str:
        return {"1301": "XA", "1302": "T", "1305": "00", "1306": "C"}.get(self.code, "Y")

    def version(self) -> str:
        return f"{self.code}_{self.generation:010d}"

    def _put(self, key: str) -> None:
        rng = self.rng
        updt = dt.datetime(2026, 1, 1) + dt.timedelta(minutes=self.generation * 7 + len(key))
        self.rows[key] = [key, _name(rng), f"{rng.randint(1, 500)}mg*{rng.randint(6, 48)}片",
                          f"{rng.uniform(0.5, 3000):.2f}", _name(rng)[:6] + "制药有限公司",
                          f"国药准字H{rng.randint(10000000, 99999999)}", "1",
                          self.version(), updt.strftime("%Y-%m-%d %H:%M:%S")]

    def change(self, count: int, add: int = 0) -> List[str]:
        """A new version: ``count`` existing rows changed and ``add`` new ones; their keys."""
        self.generation += 1
        keys = self.rng.sample(sorted(self.rows), min(count, len(self.rows)))
        start = len(self.rows)
        keys += [f"{self._prefix()}{start + i:08d}" for i in range(add)]
        for key in keys:
            self._put(key)
        return keys

    def newer_than(self, ver: str) -> List[List[str]]:
        return [r for r in self.rows.values() if r[-2] > (ver or "")]

    def zipped(self, ver: str) -> tuple[bytes, str]:
        rows = self.newer_than(ver)
        encoding = "gbk" if self.code in GBK_CODES else "utf-8"
        text = "".join("\t".join(r) + "\n" for r in rows).encode(encoding)
        name = f"{self.code}_{self.version()}"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"{name}.txt", text)
        return buf.getvalue(), f"{name}.zip"


class Catalogues:
    """Every catalogue, built on first use; thread-safe."""

    def __init__(self) -> None:
        self.size: Dict[str, int] = {}
        self._made: Dict[str, Catalogue] = {}
        self._lock = threading.Lock()

    def get(self, code: str) -> Catalogue:
        with self._lock:
            if code not in self._made:
                self._made[code] = Catalogue(code, self.size.get(
                    code, DEFAULT_ROWS.get(code, OTHER_ROWS)))
            return self._made[code]

    def clear(self) -> None:
        with self._lock:
            self._made.clear()


def answer(catalogues: Catalogues, store, code: str, inp: Optional[dict]) -> dict:
    """The output of a 13xx query: the file of rows newer than ``input.data.ver``."""
    data = (inp or {}).get("data") if isinstance((inp or {}).get("data"), dict) else (inp or {})
    ver = str((data or {}).get("ver") or "")
    blob, filename = catalogues.get(code).zipped(ver)
    no = store.put(blob, filename)
    f = store.get(no)
    return {"file_qury_no": no, "filename": filename,
            "dld_endtime": f.dld_endtime.strftime("%Y-%m-%d %H:%M:%S")}
