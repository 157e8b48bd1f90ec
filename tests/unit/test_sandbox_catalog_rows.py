"""`mi-worker sandbox --catalog-rows CODE=ROWS` refuses what is not a 13xx code and a count
(the rows themselves are checked end to end by tests/system/test_bench_catalog.py)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from mi_worker.sandbox.cli import sandbox


@pytest.mark.parametrize("value", ["1401=10", "1301", "1301=-5", "1301=many"])
def test_bad_catalog_rows_refused_before_start(value):
    res = CliRunner().invoke(sandbox, ["--port", "0", "--catalog-rows", value])
    assert res.exit_code == 2 and "--catalog-rows" in res.output and "CODE=ROWS" in res.output
