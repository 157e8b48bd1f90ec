"""Keep the generated parts of the docs in step with the code (`python -m mi_worker.docs`):
the configuration reference in both READMEs, the state machine in docs/states.md."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from mi_worker import states
from mi_worker.config import reference_markdown

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
STATES_START, STATES_END = "<!-- states:start -->", "<!-- states:end -->"
STATES_DOC = Path("docs") / "states.md"


def with_reference(text: str) -> str:
    """The README text with the configuration reference block regenerated."""
    block = f"{START}\n{reference_markdown()}{END}"
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text,
                  flags=re.DOTALL)


def states_markdown() -> str:
    """The state machine drawn from states.TRANSITIONS: a Mermaid diagram and the table of
    every arrow with the named statements that make it."""
    by_verb: dict = {}
    for name, verb in sorted(states.WRITES.items()):
        by_verb.setdefault(verb, []).append(f"`{name}`")
    lines = ["```mermaid", "stateDiagram-v2"]
    for src, targets in states.diagram().items():
        for dst, verbs in targets.items():
            left = "[*]" if src is None else src.value
            lines.append(f"    {left} --> {dst.value}: {' / '.join(v.value for v in verbs)}")
    lines += ["```", "", "| from | to | by | statements |", "|---|---|---|---|"]
    for src, targets in states.diagram().items():
        for dst, verbs in targets.items():
            for verb in verbs:
                lines.append(f"| {'(new)' if src is None else src.value} | {dst.value} | "
                             f"{verb.value} | {', '.join(by_verb.get(verb, []))} |")
    # The workflow row (issue 14): states.WF_TRANSITIONS, every move by `wf_update` (the
    # new row by `wf_start`); its steps are request rows with the life above.
    order = list(states.WorkflowStatus)
    lines += ["", "Settlement workflows (`medical_insurance_workflows`, `states.WF_TRANSITIONS`;"
              " new rows by `wf_start`, every move by `wf_update`):", "", "```mermaid",
              "stateDiagram-v2"]
    for src, dst in sorted(states.WF_TRANSITIONS, key=lambda t: (
            -1 if t[0] is None else order.index(t[0]), order.index(t[1]))):
        lines.append(f"    {'[*]' if src is None else src.value} --> {dst.value}")
    lines.append("```")
    return "\n".join(lines) + "\n"


def with_states(text: str) -> str:
    """docs/states.md with the generated diagram and table regenerated."""
    block = f"{STATES_START}\n{states_markdown()}{STATES_END}"
    return re.sub(re.escape(STATES_START) + r".*?" + re.escape(STATES_END), lambda _: block,
                  text, flags=re.DOTALL)


def main() -> int:
    for name in ("README.md", "README.zh-CN.md"):
        path = Path(name)
        if path.is_file() and START in path.read_text(encoding="utf-8"):
            path.write_text(with_reference(path.read_text(encoding="utf-8")), encoding="utf-8")
            print(f"updated {name}")
    if STATES_DOC.is_file():
        STATES_DOC.write_text(with_states(STATES_DOC.read_text(encoding="utf-8")),
                              encoding="utf-8")
        print(f"updated {STATES_DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
