"""What every settings dataclass stands on: the ``doc`` field helper and ConfigError.

Kept apart from config.py so that settings owned by a package (gateway/settings.py) can use
both without importing config.py, which imports them: no cycle.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any


class ConfigError(ValueError):
    """A bad configuration value; the message names the key, the value and what was expected."""


def doc(text: str, default: Any = dataclasses.MISSING, secret: bool = False, **kw: Any) -> Any:
    """A dataclass field carrying its documentation and whether it is a secret (never logged)."""
    meta = {"doc": text, "secret": secret}
    if isinstance(default, (dict, list)):
        value = default
        return dataclasses.field(default_factory=lambda: json.loads(json.dumps(value)),
                                 metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)
