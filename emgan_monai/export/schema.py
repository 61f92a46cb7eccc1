"""Offline validation of ``configs/metadata.json`` against the JSON schema kept in this package.

The model-zoo schema that ``metadata["schema"]`` names is a URL and cannot be fetched offline, so the repository keeps
its own statement of the MONAI bundle specification, :data:`METADATA_SCHEMA` (``metadata_schema.json`` beside this
module, draft-07). :func:`validate_metadata_schema` checks a metadata dictionary against it with a small validator of
the draft-07 keywords that schema uses; the validator refuses a schema with any other keyword instead of ignoring it,
so tightening the schema file cannot silently weaken the check. Where ``jsonschema`` is installed,
``jsonschema.Draft7Validator(load_metadata_schema())`` gives the same verdict (the tests compare both).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["METADATA_SCHEMA", "SchemaError", "load_metadata_schema", "schema_problems", "validate_metadata_schema"]

#: The metadata schema file shipped with the package.
METADATA_SCHEMA = Path(__file__).with_name("metadata_schema.json")

_ANNOTATIONS = {"$schema", "$comment", "title", "description", "definitions"}
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


class SchemaError(ValueError):
    """A metadata dictionary violates the schema, or the schema uses a keyword this validator does not implement."""


def load_metadata_schema(path: str | Path | None = None) -> dict[str, Any]:
    """The schema at ``path`` (default :data:`METADATA_SCHEMA`) as a dictionary."""
    return json.loads(Path(path or METADATA_SCHEMA).read_text(encoding="utf-8"))


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name not in _TYPES:
        raise SchemaError(f"unknown JSON type {name!r} in the schema")
    return isinstance(value, _TYPES[name])


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise SchemaError(f"only local references are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _check(value: Any, schema: dict[str, Any], path: str, root: dict[str, Any], out: list[str]) -> None:  # noqa: C901
    unknown = (
        set(schema)
        - _ANNOTATIONS
        - {
            "$ref",
            "type",
            "enum",
            "required",
            "properties",
            "additionalProperties",
            "propertyNames",
            "minProperties",
            "items",
            "minItems",
            "maxItems",
            "pattern",
            "minLength",
            "minimum",
            "anyOf",
        }
    )
    if unknown:
        raise SchemaError(f"schema keyword(s) {sorted(unknown)} at {path} are not implemented by this validator")
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), path, root, out)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, n) for n in names):
            out.append(f"{path}: {value!r:.60} is not of type {'/'.join(names)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r:.60} is not one of {schema['enum']}")
    if "anyOf" in schema:
        trials = []
        for sub in schema["anyOf"]:
            errs: list[str] = []
            _check(value, sub, path, root, errs)
            trials.append(errs)
        if all(trials):
            out.append(f"{path}: {value!r:.60} matches none of anyOf ({'; '.join(t[0] for t in trials)})")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            out.append(f"{path}: string shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: {value!r:.60} does not match {schema['pattern']!r}")
    if _is_type(value, "number") and "minimum" in schema and value < schema["minimum"]:
        out.append(f"{path}: {value!r} is below the minimum {schema['minimum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{path}: more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{path}[{i}]", root, out)
    if isinstance(value, dict):
        out.extend(f"{path}: missing required {k!r}" for k in schema.get("required", ()) if k not in value)
        if len(value) < schema.get("minProperties", 0):
            out.append(f"{path}: fewer than {schema['minProperties']} entries")
        props = schema.get("properties", {})
        for key, item in value.items():
            if "propertyNames" in schema:
                _check(key, schema["propertyNames"], f"{path} key {key!r}", root, out)
            if key in props:
                _check(item, props[key], f"{path}.{key}", root, out)
            elif isinstance(schema.get("additionalProperties"), dict):
                _check(item, schema["additionalProperties"], f"{path}.{key}", root, out)
            elif schema.get("additionalProperties") is False:
                out.append(f"{path}: unexpected key {key!r}")


def schema_problems(meta: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Every violation of ``schema`` (default: :data:`METADATA_SCHEMA`) by ``meta``, one line each ([] if valid)."""
    schema = load_metadata_schema() if schema is None else schema
    problems: list[str] = []
    _check(meta, schema, "metadata", schema, problems)
    return problems


def validate_metadata_schema(meta: Any, schema: dict[str, Any] | None = None, where: str = "metadata.json") -> None:
    """Raise :class:`SchemaError` listing every violation of the schema by ``meta``."""
    problems = schema_problems(meta, schema)
    if problems:
        raise SchemaError(f"{where} does not follow {METADATA_SCHEMA.name}:\n  " + "\n  ".join(problems))
