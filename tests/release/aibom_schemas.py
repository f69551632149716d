"""Validation of AI BOMs against the official schemas, offline.

SPDX 3.0.1: the JSON schema vendored in ``schemas/`` (source and licence in its README).
CycloneDX 1.6: the schema bundled with ``cyclonedx-python-lib`` (its strict JSON validator).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).parent / "schemas"


@cache
def _spdx_validator() -> Any:
    import jsonschema

    schema = json.loads((SCHEMAS / "spdx-3.0.1.schema.json").read_text("utf-8"))
    return jsonschema.Draft202012Validator(schema)


def spdx_errors(document: dict[str, Any]) -> list[str]:
    validator = _spdx_validator()
    return [f"{list(e.path)}: {e.message[:200]}" for e in validator.iter_errors(document)]


def cyclonedx_errors(document: dict[str, Any]) -> list[str]:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    found = JsonStrictValidator(SchemaVersion.V1_6).validate_str(
        json.dumps(document), all_errors=True
    )
    return [str(e)[:300] for e in found or ()]
