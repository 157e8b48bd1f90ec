"""The scenarios of `make bench`; each module has ``run(ctx) -> dict`` (see bench/README.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict

from bench import common

ORDER = ["drain", "latency", "saturation", "idle", "growth", "profile", "catalog"]


@dataclass
class Context:
    quick: bool
    runs: int
    workdir: Path
    dbs: common.PgDatabases
    pg_reason: Any = None  # None when PostgreSQL answers
    extra: Dict[str, Any] = field(default_factory=dict)
