"""One deterministic instance of a JSON schema: tool-call arguments and structured outputs.

The fakes answer `tools` and `json_schema` requests with a value a test can predict
exactly, so the generator takes the first option everywhere instead of anything clever:
an object has its required properties (all of them when none are listed), a string is
"x", an integer 1, a number 1.5, a boolean true, an array one item, a choice its first
branch, an enum its first value.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 32  # a recursive schema (a tree whose children are required) bottoms out in null

_SCALARS: dict[str, Any] = {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "null": None}


def instance_of(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A value valid against `schema`; `$ref`s resolve against `root` (`schema` itself by default)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return None
    if "$ref" in schema:
        return instance_of(resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(combinator)
        if isinstance(branches, list) and branches:
            return instance_of(branches[0], root, depth + 1)
    kind = schema_type(schema)
    if kind == "object":
        return _object(schema, root, depth)
    if kind == "array":
        return _array(schema, root, depth)
    return _SCALARS.get(kind, "x")


def schema_type(schema: dict[str, Any]) -> str:
    """The declared type (the first of a list), else the one its keywords imply, else "string"."""
    kind = schema.get("type")
    if isinstance(kind, list) and kind:
        kind = kind[0]
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def resolve(ref: Any, root: Any) -> Any:
    """The schema a local JSON pointer (`#/$defs/Name`, `#/definitions/Name`) names; {} if none."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return {}
    return node


def _object(schema: dict[str, Any], root: Any, depth: int) -> dict[str, Any]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    names = [n for n in required if isinstance(n, str)] if isinstance(required, list) else list(properties)
    return {name: instance_of(properties.get(name, {}), root, depth + 1) for name in names}


def _array(schema: dict[str, Any], root: Any, depth: int) -> list[Any]:
    items = schema.get("items", {})
    if isinstance(items, list):  # the old tuple form: one value per position
        return [instance_of(item, root, depth + 1) for item in items]
    return [instance_of(items, root, depth + 1)]
