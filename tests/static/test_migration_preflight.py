"""Review S8 (issue 12): 001 creates each table only when missing, so a same-named table of
an earlier integration (the seed schema) would be built on half-way. 001 starts with a
preflight listing every column it creates; this gate keeps that list equal to the CREATE
TABLE statements of the same file, in both server dialects, and is shown to catch a drift."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
FILES = {"mssql": ROOT / "sql" / "mssql" / "migrations" / "001_schema.sql",
         "postgresql": ROOT / "sql" / "postgresql" / "migrations" / "001_schema.sql"}
_CREATE = {"mssql": r"CREATE TABLE dbo\.(\w+) \((.*?)\n    \);",
           "postgresql": r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);"}
_NEED = {"mssql": r"\(N'(\w+)', N'(\w+)'\)", "postgresql": r"\('(\w+)', '(\w+)'\)"}


def created(text: str, dialect: str) -> Set[Tuple[str, str]]:
    out = set()
    for m in re.finditer(_CREATE[dialect], text, re.S):
        for line in m.group(2).split("\n"):
            w = re.match(r"([a-z_][a-z0-9_]*)\s", line.strip())
            if w and w.group(1).upper() not in ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK"):
                out.add((m.group(1), w.group(1)))
    return out


def preflight(text: str, dialect: str) -> Set[Tuple[str, str]]:
    start = text.index("Preflight (review S8)")
    end = text.index("GO" if dialect == "mssql" else "$preflight$;", start)
    return set(re.findall(_NEED[dialect], text[start:end]))


def drift(text: str, dialect: str) -> Dict[str, List[Tuple[str, str]]]:
    made, listed = created(text, dialect), preflight(text, dialect)
    return {"unlisted": sorted(made - listed), "not created": sorted(listed - made)}


@pytest.mark.parametrize("dialect", sorted(FILES))
def test_the_preflight_lists_every_column_001_creates(dialect):
    text = FILES[dialect].read_text(encoding="utf-8")
    assert len(created(text, dialect)) > 70
    assert drift(text, dialect) == {"unlisted": [], "not created": []}
    assert text.index("Preflight (review S8)") < text.index("CREATE TABLE")


@pytest.mark.parametrize("dialect", sorted(FILES))
def test_the_gate_catches_a_column_added_without_the_preflight(dialect):
    text = FILES[dialect].read_text(encoding="utf-8")
    mutated = text.replace("input_data ", "input_data_renamed ", 1)  # inside CREATE TABLE
    assert mutated != text
    found = drift(mutated, dialect)
    assert ("medical_insurance_requests", "input_data_renamed") in found["unlisted"]
