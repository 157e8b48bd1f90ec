"""The field helper shared by every settings dataclass (kept apart to avoid import cycles)."""
from __future__ import annotations

import dataclasses
import json
from typing import Any


def doc(text: str, default: Any = dataclasses.MISSING, secret: bool = False, **kw: Any) -> Any:
    """A dataclass field carrying its documentation and whether it is a secret (never logged)."""
    meta = {"doc": text, "secret": secret}
    if isinstance(default, (dict, list)):
        value = default
        return dataclasses.field(default_factory=lambda: json.loads(json.dumps(value)),
                                 metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)
