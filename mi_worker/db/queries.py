"""Named queries: every statement the worker runs lives in sql/<dialect>/queries.sql.

A DBA reviews one file per database; Python only says ``db.run("claim_batch", …)``. The
file format is procrastinate's: ``-- name: x`` starts a query, the comment lines right after
it say why, and ``:param`` placeholders are bound by name (translated to ``?`` for ODBC).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
# :name but not ::cast and not inside a string literal (strings are skipped by the tokenizer).
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_STRING = re.compile(r"N?'(?:[^']|'')*'")


def sql_root() -> Path:
    """The sql/ directory: next to the package in a checkout, inside it when installed."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "postgresql" / "queries.sql").is_file():
            return candidate
    raise FileNotFoundError(f"sql/ directory not found next to {here}")


@dataclass(frozen=True)
class Query:
    """One named statement, with its ODBC form (``?`` placeholders) precomputed."""

    name: str
    doc: str
    sql: str
    qmark_sql: str
    param_order: Tuple[str, ...]


def to_qmark(sql: str) -> Tuple[str, Tuple[str, ...]]:
    """Rewrite :name placeholders to ``?`` and return the names in binding order."""
    order: List[str] = []
    out: List[str] = []
    pos = 0
    for m in _STRING.finditer(sql):
        out.append(_replace(sql[pos:m.start()], order))
        out.append(m.group(0))
        pos = m.end()
    out.append(_replace(sql[pos:], order))
    return "".join(out), tuple(order)


def _replace(chunk: str, order: List[str]) -> str:
    def sub(m: re.Match) -> str:
        order.append(m.group(1))
        return "?"
    return _PARAM.sub(sub, chunk)


def parse(text: str) -> Dict[str, Query]:
    """Split a queries.sql file into named queries."""
    queries: Dict[str, Query] = {}
    matches = list(_NAME.finditer(text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[m.end():end].strip("\n")
        doc_lines, sql_lines = [], []
        for line in body.split("\n"):
            if not sql_lines and line.strip().startswith("--"):
                doc_lines.append(line.strip().lstrip("-").strip())
            else:
                sql_lines.append(line)
        # Full-line comments go before binding: an apostrophe in one would open a "string".
        sql = "\n".join(line for line in sql_lines if not line.strip().startswith("--"))
        sql = sql.strip().rstrip(";").strip()
        if not sql:
            raise ValueError(f"query {m.group(1)} has no SQL")
        if m.group(1) in queries:
            raise ValueError(f"query {m.group(1)} defined twice")
        qmark, order = to_qmark(sql)
        queries[m.group(1)] = Query(m.group(1), " ".join(doc_lines), sql, qmark, order)
    return queries


def load(dialect: str) -> Dict[str, Query]:
    return parse((sql_root() / dialect / "queries.sql").read_text(encoding="utf-8"))
