"""`mi-worker db upgrade`: apply sql/<dialect>/migrations/NNN_*.sql in order, exactly once.

Each file runs in its own transaction, under a database lock taken inside that transaction
(pg_advisory_xact_lock, sp_getapplock, SQLite's BEGIN IMMEDIATE), and the version table is
re-read under the lock: two hosts upgrading at once apply each file once, and a second run is
a no-op. A file whose text changed after it was applied is reported, not re-run.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List

from mi_worker.db.base import Database, lock_key
from mi_worker.db.queries import sql_root

log = logging.getLogger("mi_worker.migrate")
_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

# Files edited after release in ways that do not change what they create on a database that
# already ran them (issue 12: SQL Server's DROP + CREATE of the HIS objects became stub +
# ALTER; 001's preflight against an earlier integration's tables, review S8). Their earlier
# checksums are known, so an upgraded database logs no "changed" warning.
_REVISED = {
    ("mssql", 1): {"32b6a0356d96d529dc00327251e88dca361edb3348c996a79ed837542d672637",
                   "184abd050179eda3afa06d76f1897ecaa8e6a936b10c19e2cb3aa360742e3a8b"},
    ("postgresql", 1): {"2c29001b024ea315037fe7a94822948ad15b9018dccb2259cebabc5945f7c07c"},
    ("mssql", 2): {"d1264db1f3606fe1c2f0440edb76037dad4426153749cc2ee5248673cf584695"},
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def migrations(dialect: str) -> List[Migration]:
    folder = sql_root() / dialect / "migrations"
    found = []
    for path in sorted(folder.glob("*.sql")):
        m = _FILE.match(path.name)
        if not m:
            raise ValueError(f"migration file name {path.name} is not NNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number in {folder}")
    return found


def _execute(db: Database, cur, query: str, /, **params) -> None:
    sql, bound = db.prepared(query, **params)
    cur.execute(sql, bound)
    while getattr(cur, "nextset", None) and cur.nextset():
        pass


def _applied(db: Database, cur) -> dict:
    sql, bound = db.prepared("applied_migrations")
    cur.execute(sql, bound)
    return {int(r[0]): r[1] for r in cur.fetchall()}


def upgrade(db: Database) -> List[int]:
    """Apply what is missing; return the versions applied by this call."""
    conn = db.raw()
    try:
        return _upgrade(db, conn)
    finally:
        conn.close()


def _upgrade(db: Database, conn) -> List[int]:
    cur = conn.cursor()
    dialect = db.dialect
    _execute(db, cur, "create_migrations_table")
    applied_now: List[int] = []
    for mig in migrations(db.name):
        dialect.begin(conn, cur)
        try:
            if "migration_lock" in dialect.features:
                _execute(db, cur, "migration_lock", lock_key=lock_key("migrations"))
            done = _applied(db, cur)
            if mig.version in done:
                if done[mig.version] != mig.checksum and done[mig.version] not in \
                        _REVISED.get((db.name, mig.version), ()):
                    log.warning("migration %03d_%s changed after it was applied (checksum "
                                "differs); not re-run", mig.version, mig.name)
                dialect.commit(conn, cur)
                continue
            for stmt in dialect.script_statements(mig.text):
                cur.execute(stmt)
                while getattr(cur, "nextset", None) and cur.nextset():
                    pass
            _execute(db, cur, "record_migration", version=mig.version, name=mig.name,
                     checksum=mig.checksum)
            dialect.commit(conn, cur)
            applied_now.append(mig.version)
            log.info("applied migration %03d_%s", mig.version, mig.name)
        except Exception:
            try:
                dialect.rollback(conn, cur)
            except Exception:  # the connection may be gone; nothing was committed either way
                pass
            raise
    cur.close()
    return applied_now
