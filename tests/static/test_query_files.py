"""The three queries.sql files read the same way: lifecycle sections in one order, the same
statements in the same order (so the files diff cleanly side by side), every statement
under a section, and each header saying what runs outside the file."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIALECTS = ("sqlite", "postgresql", "mssql")
ONLY_WITH_PROCEDURES = {"call_procedure", "submit_procedure", "result_procedure",
                        "call_workflow_procedure"}


def outline(dialect: str):
    """[(section title, [statement names])] in file order."""
    text = (ROOT / "sql" / dialect / "queries.sql").read_text(encoding="utf-8")
    out, current = [], None
    for line in text.splitlines():
        m = re.match(r"^-- =+ (.+?) =+$", line)
        if m:
            current = (m.group(1), [])
            out.append(current)
            continue
        m = re.match(r"^-- name: (\w+)", line)
        if m:
            assert current is not None, f"{dialect}: {m.group(1)} stands before any section"
            current[1].append(m.group(1))
    return out


def test_same_sections_and_statements_in_the_same_order():
    seen = {d: outline(d) for d in DIALECTS}
    ref = [(title, [n for n in names if n not in ONLY_WITH_PROCEDURES])
           for title, names in seen["sqlite"]]
    for d in DIALECTS[1:]:
        got = [(title, [n for n in names if n not in ONLY_WITH_PROCEDURES])
               for title, names in seen[d]]
        assert got == ref, f"{d}/queries.sql is not in sqlite's order"


def test_the_lifecycle_comes_first():
    titles = [t for t, _ in outline("postgresql")]
    assert titles[:3] == ["claim and results", "workers", "the HIS contract"]
    first = outline("postgresql")[0][1]
    assert first.index("complete_batch") == first.index("complete_request") + 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_header_says_what_runs_outside_the_file(dialect):
    text = (ROOT / "sql" / dialect / "queries.sql").read_text(encoding="utf-8")
    head = re.split(r"(?m)^-- name:", text, maxsplit=1)[0]
    assert "Run outside this file" in head
