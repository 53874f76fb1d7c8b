"""The JSON Schema subset a reply is held to: which keywords a request's schema may use (``check_schema``), and the
schema as OpenAI's ``strict`` mode reads it (``strictly``)."""

from __future__ import annotations

import re
from typing import Any

from tuneloop.errors import StructuredOutputError

# JSON Schema keywords a reply is held to (OpenAI's documented subset for Structured Outputs, and the few more the
# grammar enforces as well: minLength/maxLength, oneOf and allOf).
SUPPORTED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "oneOf", "allOf",
    "$ref", "$defs", "definitions", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "minLength", "maxLength",
})
# Annotations: they describe, they constrain nothing, and a grammar has nothing to enforce for them.
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
                         "readOnly", "writeOnly", "nullable", "discriminator", "strict"})
FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid", "uri"})
TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf")


def check_schema(schema: Any, where: str) -> None:
    """Raise ``StructuredOutputError`` naming the first keyword (by its path) that a reply cannot be held to."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise StructuredOutputError(f"{where} must be a JSON Schema object, not {type(schema).__name__}", param=where)
    for key, value in schema.items():
        path = f"{where}.{key}"
        if key.startswith("x-") or key in ANNOTATIONS:
            continue
        if key not in SUPPORTED:
            raise StructuredOutputError(
                f"{path}: the JSON Schema keyword {key!r} is not supported in structured outputs; supported: "
                f"{', '.join(sorted(SUPPORTED))}", param=path)
        if key == "type":
            kinds = value if isinstance(value, list) else [value]
            bad = [k for k in kinds if not isinstance(k, str) or k not in TYPES]
            if bad or not kinds:
                raise StructuredOutputError(f"{path}: {bad[0] if bad else value!r} is not a JSON Schema type; use one "
                                            f"of {', '.join(sorted(TYPES))}", param=path)
        elif key == "format" and (not isinstance(value, str) or value not in FORMATS):
            raise StructuredOutputError(f"{path}: the string format {value!r} is not supported; supported: "
                                        f"{', '.join(sorted(FORMATS))}", param=path)
        elif key in _SCHEMA_MAPS:
            if not isinstance(value, dict):
                raise StructuredOutputError(f"{path} must be an object of schemas", param=path)
            for name, sub in value.items():
                check_schema(sub, f"{path}.{name}")
        elif key in _SCHEMA_LISTS:
            if not isinstance(value, list) or not value:
                raise StructuredOutputError(f"{path} must be a non-empty list of schemas", param=path)
            for i, sub in enumerate(value):
                check_schema(sub, f"{path}[{i}]")
        elif key in ("items", "additionalProperties"):
            check_schema(value, path)
        elif key == "required" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise StructuredOutputError(f"{path} must be a list of property names", param=path)
        elif key == "enum" and not (isinstance(value, list) and value):
            raise StructuredOutputError(f"{path} must be a non-empty list", param=path)
        elif key == "pattern":
            try:
                re.compile(value)
            except (re.error, TypeError) as exc:
                raise StructuredOutputError(f"{path}: {value!r} is not a regular expression ({exc})",
                                            param=path) from None


def strictly(schema: Any) -> Any:
    """The schema as OpenAI's ``strict`` mode reads it: an object without ``additionalProperties`` takes none."""
    if isinstance(schema, list):
        return [strictly(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (strictly(v) if k in ("items", "additionalProperties", *_SCHEMA_LISTS) else
               {n: strictly(s) for n, s in v.items()} if k in _SCHEMA_MAPS and isinstance(v, dict) else v)
           for k, v in schema.items()}
    kinds = out.get("type") if isinstance(out.get("type"), list) else [out.get("type")]
    if ("object" in kinds or "properties" in out) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out
