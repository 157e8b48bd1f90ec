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


def test_states_doc_is_drawn_from_the_transition_table():
    from mi_worker import states
    from mi_worker.docs import STATES_DOC, with_states
    text = (ROOT / STATES_DOC).read_text(encoding="utf-8")
    assert with_states(text) == text, "run `python -m mi_worker.docs` to refresh docs/states.md"
    for src, dst, by in states.TRANSITIONS:
        left = "(new)" if src is None else src.value
        assert f"| {left} | {dst.value} | {by.value} |" in text
