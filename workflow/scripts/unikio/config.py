"""Configuration checks beyond the JSON schema, with one-sentence errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml


def load_schema(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def explain_invalid(config: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """Return one sentence naming the first offending key, or None if valid."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    error = errors[0]
    key = _key_path(error)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = key if error.absolute_path else "top level"
        known = ", ".join(sorted(error.schema.get("properties", {})))
        return (
            f"unknown config key {', '.join(repr(e) for e in extra)} at {where}; "
            f"known keys there: {known}"
        )
    if error.validator == "required":
        return f"config key {key} lacks {error.message.split(' ')[0]}; add it (see config/config.yaml)"
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"config key {key} has {error.instance!r}; allowed values: {allowed}"
    return f"config key {key} is invalid: {error.message}"
