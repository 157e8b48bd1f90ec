"""Keep README's generated parts in step with the code (`python -m mi_worker.docs`)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from mi_worker.config import reference_markdown

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def with_reference(text: str) -> str:
    """The README text with the configuration reference block regenerated."""
    block = f"{START}\n{reference_markdown()}{END}"
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text,
                  flags=re.DOTALL)


def main() -> int:
    for name in ("README.md", "README.zh-CN.md"):
        path = Path(name)
        if path.is_file() and START in path.read_text(encoding="utf-8"):
            path.write_text(with_reference(path.read_text(encoding="utf-8")), encoding="utf-8")
            print(f"updated {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
