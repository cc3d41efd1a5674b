"""The instance generator picks the first option everywhere, so a test can write out the value it gets."""

from __future__ import annotations

from typing import Any

import pytest

from .schema_instance import MAX_DEPTH, instance_of


@pytest.mark.parametrize("schema, instance", [
    ({"type": "string"}, "x"),
    ({"type": "integer"}, 1),
    ({"type": "number"}, 1.5),
    ({"type": "boolean"}, True),
    ({"type": "null"}, None),
    ({"type": ["integer", "null"]}, 1),
    ({"enum": ["celsius", "fahrenheit"]}, "celsius"),
    ({"type": "string", "const": "fixed"}, "fixed"),
    ({"anyOf": [{"type": "number"}, {"type": "string"}]}, 1.5),
    ({"oneOf": [{"type": "boolean"}, {"type": "string"}]}, True),
    ({"allOf": [{"type": "integer"}]}, 1),
    ({"type": "array", "items": {"type": "integer"}}, [1]),
    ({"type": "array"}, ["x"]),
    ({}, "x"),
    ({"type": "object"}, {}),
])
def test_each_kind_of_schema_gets_its_first_simplest_value(schema: dict[str, Any], instance: Any) -> None:
    assert instance_of(schema) == instance


def test_an_object_has_its_required_properties_only() -> None:
    schema = {"type": "object", "required": ["city"],
              "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}
    assert instance_of(schema) == {"city": "x"}


def test_an_object_without_required_has_every_property_in_order() -> None:
    schema = {"properties": {"b": {"type": "integer"}, "a": {"type": "array", "items": {"type": "boolean"}}}}
    assert list(instance_of(schema).items()) == [("b", 1), ("a", [True])]


def test_refs_resolve_against_defs_and_definitions_of_the_root() -> None:
    schema = {"type": "object",
              "properties": {"when": {"$ref": "#/$defs/Day"}, "where": {"$ref": "#/definitions/Place"}},
              "$defs": {"Day": {"type": "string", "enum": ["mon", "tue"]}},
              "definitions": {"Place": {"type": "object", "properties": {"lat": {"type": "number"}}}}}
    assert instance_of(schema) == {"when": "mon", "where": {"lat": 1.5}}


def test_a_ref_that_names_nothing_reads_as_an_empty_schema() -> None:
    assert instance_of({"$ref": "#/$defs/Missing"}) == "x"
    assert instance_of({"$ref": "https://example.com/schema.json"}) == "x"


def test_a_recursive_schema_bottoms_out_in_null() -> None:
    schema = {"$ref": "#/$defs/Node",
              "$defs": {"Node": {"type": "object", "required": ["next"],
                                 "properties": {"next": {"$ref": "#/$defs/Node"}}}}}
    value, depth = instance_of(schema), 0
    while isinstance(value, dict):
        value, depth = value["next"], depth + 1
    assert value is None and 0 < depth <= MAX_DEPTH
