"""The run-bundle JSON Schema: one file is the single source of the required fields for run.json and events."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

FORMAT = "carepath.run-bundle/1"
SCHEMA_RESOURCE = "data/evidence/run-bundle.schema.json"


@cache
def schema() -> dict[str, Any]:
    """The parsed schema shipped with the package (read once)."""
    return json.loads(resources.files("carepath").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8"))


def required(definition: str) -> frozenset[str]:
    """Required keys of ``run`` or ``event``, straight from the schema."""
    return frozenset(schema()["$defs"][definition]["required"])


def validate(instance: Any, definition: str) -> list[str]:
    """Problems with ``instance`` against ``$defs/<definition>``, as sentences (empty when valid).

    Uses ``jsonschema`` when it is installed; otherwise falls back to required keys and the format value,
    so verification still works on a controller with only the runtime dependencies.
    """
    try:
        import jsonschema  # optional: only ansible-lint brings it today
    except ImportError:
        return _fallback(instance, definition)
    subschema = {**schema(), "$ref": f"#/$defs/{definition}"}
    validator = jsonschema.Draft202012Validator(subschema)
    problems = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path)
        problems.append(f"{where or '(top level)'}: {error.message[:200]}")
    return problems


def _fallback(instance: Any, definition: str) -> list[str]:
    if not isinstance(instance, dict):
        return ["(top level): must be a JSON object"]
    problems = [f"(top level): {key!r} is a required property" for key in sorted(required(definition) - instance.keys())]
    if definition == "run" and "format" in instance and instance["format"] != FORMAT:
        problems.append(f"format: {instance['format']!r} is not {FORMAT!r}")
    return problems
