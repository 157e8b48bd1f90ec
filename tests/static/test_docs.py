"""README promises: the generated configuration reference matches the settings model, the
two quick-start commands are there, and every error code of the contract is documented."""
from __future__ import annotations

from pathlib import Path

import pytest

from mi_worker.docs import with_reference

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["README.md", "README.zh-CN.md"])
def test_config_reference_matches_the_model(name):
    path = ROOT / name
    if not path.exists():
        pytest.skip(f"{name} not written")
    text = path.read_text(encoding="utf-8")
    assert "<!-- config-reference:start -->" in text
    assert with_reference(text) == text, f"run `python -m mi_worker.docs` to refresh {name}"


def test_readme_has_the_two_commands_and_every_error_code():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in text and "make test" in text
    for code in ("-1001", "-1002", "-1003", "-1004", "-1005", "-1006", "-1007", "-1008",
                 "-1999"):
        assert f"| {code} |" in text, code
