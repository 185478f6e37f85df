"""JSON Schema of protocol files, for editors (``rtcheck protocols schema``).

The loader in :mod:`rtcheck.constraints.protocol` is the authority (it also checks what a
schema cannot: metric grammar, role references, cited sources); this schema mirrors its
keys, built from the same key tables so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from rtcheck.constraints.protocol import (
    BUILTIN_FACTS,
    COMMON_RULE_KEYS,
    INTEGRITY_CHECKS,
    NUMERIC_FACTS,
    PLAN_QUALITY_QUANTITIES,
    RULE_KEYS,
    TOP_KEYS,
    RuleKind,
)

_NUMBER = {"type": "number"}
_TEXT = {"type": "string", "minLength": 1}
_TEXTS = {"anyOf": [_TEXT, {"type": "array", "items": _TEXT}]}
_RANGE = {
    "anyOf": [
        _NUMBER,
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {"min": _NUMBER, "max": _NUMBER, "value": _NUMBER, "tolerance": _NUMBER},
        },
    ]
}
_LIMIT = {
    "anyOf": [
        _NUMBER,
        {
            "type": "object",
            "patternProperties": {"^[0-9]+$": _NUMBER},
            "additionalProperties": False,
        },
    ]
}
#: ``when``/``unless``: fact values, or a range for a numeric built-in fact.
_CONDITION = {
    "type": "object",
    "properties": {k: {"anyOf": [_TEXTS, _RANGE]} for k in NUMERIC_FACTS},
    "additionalProperties": _TEXTS,
}
_METRIC = {"type": "string", "description": "TG-263 metric, e.g. D95%[Gy], V20Gy[cc]"}

_FIELD_SCHEMAS: dict[str, Any] = {
    "schedules": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["fractions"],
            "properties": {"fractions": _RANGE, "dose_per_fraction_gy": _RANGE, "total_gy": _RANGE},
        },
    },
    "quantity": {"enum": ["BED", "EQD2", "bed", "eqd2"]},
    "alpha_beta": _NUMBER,
    "min_gy": _NUMBER,
    "max_gy": _NUMBER,
    "minor_min_gy": _NUMBER,
    "minor_max_gy": _NUMBER,
    "structure": _TEXT,
    "metric": _METRIC,
    "max": _LIMIT,
    "min": _LIMIT,
    "minor_max": _LIMIT,
    "minor_min": _LIMIT,
    "reference_dose_per_fraction_gy": _NUMBER,
    "to": _TEXTS,
    "min_mm": _NUMBER,
    "max_mm": _NUMBER,
    "median_fraction": _NUMBER,
    "dose_region": {
        "type": "object",
        "additionalProperties": False,
        "properties": {k: _NUMBER for k in ("high_percent", "low_percent", "margin_mm", "max_cc")},
    },
    "inside": _TEXT,
    "tolerance_mm": _NUMBER,
    "checks": {"type": "array", "items": {"enum": list(INTEGRITY_CHECKS)}},
    "target_median_percent": _RANGE,
    "body": _TEXT,
    "table": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["volume_cc", "max"],
            "properties": {"volume_cc": _NUMBER, "max": _NUMBER, "minor_max": _NUMBER},
        },
    },
}


def _rule_schema(kind: RuleKind) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "kind": {"const": kind.value},
        "description": {"type": "string"},
        "when": _CONDITION,
        "unless": _CONDITION,
        "source": _TEXT,
    }
    for key in RULE_KEYS[kind]:
        properties[key] = _FIELD_SCHEMAS[key]
    if kind is RuleKind.PLAN_QUALITY:
        properties["quantity"] = {"enum": list(PLAN_QUALITY_QUANTITIES)}
        properties["max"] = properties["minor_max"] = _NUMBER
    assert set(properties) == {*COMMON_RULE_KEYS, *RULE_KEYS[kind]}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "kind"],
        "properties": properties,
    }


def protocol_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a protocol file."""
    properties: dict[str, Any] = {
        "id": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
        "title": _TEXT,
        "version": {"type": ["string", "number"]},
        "description": {"type": "string"},
        "sources": {"type": "object", "minProperties": 1, "additionalProperties": _TEXT},
        "select": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "labels": _TEXTS,
                "fractions": _RANGE,
                "intent": _TEXTS,
                "requires": {"type": "array", "items": _TEXT},
                "priority": {"type": "integer"},
            },
        },
        "structures": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type", "names"],
                "properties": {
                    "type": {"enum": ["target", "oar", "external"]},
                    "names": _TEXTS,
                    "aliases": _TEXTS,
                    "multiple": {"type": "boolean"},
                    "optional": {"type": "boolean"},
                    "description": {"type": "string"},
                },
            },
        },
        "facts": {
            "type": "object",
            "propertyNames": {"not": {"enum": list(BUILTIN_FACTS)}},
            "additionalProperties": {
                "oneOf": [
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["kind", "from", "to", "within_mm", "near", "far"],
                        "properties": {
                            "kind": {"const": "proximity"},
                            "from": _TEXT,
                            "to": _TEXTS,
                            "within_mm": _NUMBER,
                            "near": _TEXT,
                            "far": _TEXT,
                        },
                    },
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["kind", "schedules", "match", "otherwise"],
                        "properties": {
                            "kind": {"const": "schedule"},
                            "schedules": _FIELD_SCHEMAS["schedules"],
                            "match": _TEXT,
                            "otherwise": _TEXT,
                        },
                    },
                ]
            },
        },
        "rules": {
            "type": "array",
            "minItems": 1,
            "items": {"oneOf": [_rule_schema(k) for k in RuleKind]},
        },
        "decisions": _TEXTS,
        "target_levels": {
            "type": "object",
            "additionalProperties": False,
            "properties": {w: _NUMBER for w in ("high", "mid", "low")},
        },
    }
    assert set(properties) == set(TOP_KEYS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://rtcheck.invalid/schemas/protocol-1.json",
        "title": "rtcheck protocol",
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "title", "version", "sources", "rules"],
        "properties": properties,
    }
