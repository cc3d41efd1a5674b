"""`${VAR}` and `${VAR:-default}` in config values, taken from the environment after YAML parsing.

A value from the environment is taken literally: it is never substituted again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute(node: Any, env: Mapping[str, str]) -> Any:
    """`node` with every `${VAR}` replaced in every string; an unset or empty VAR takes its default."""
    if isinstance(node, str):
        return _ENV.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), node)
    if isinstance(node, list):
        return [substitute(item, env) for item in node]
    if isinstance(node, dict):
        return {key: substitute(value, env) for key, value in node.items()}
    return node
