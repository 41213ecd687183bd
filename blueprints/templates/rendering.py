"""Template placeholders: `{{ name }}` is replaced by the variable `name`."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from appfactory.web.errors import ApiError
from appfactory.web.validation import check_text

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def variables_of(body: str) -> list[str]:
    """The placeholder names of a template body, in order of first use."""
    return list(dict.fromkeys(PLACEHOLDER.findall(body)))


def render(body: str, variables: Mapping[str, Any]) -> str:
    """Fill every placeholder; 422 naming the variables that are missing."""
    missing = [name for name in variables_of(body) if name not in variables]
    if missing:
        raise ApiError(422, f"missing variables: {', '.join(missing)}", field="variables", missing=missing)
    return PLACEHOLDER.sub(lambda match: _as_text(match.group(1), variables[match.group(1)]), body)


def _as_text(name: str, value: Any) -> str:
    field = f"variables.{name}"
    if isinstance(value, str):
        check_text(field, value)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError(422, f"{field}: must be a string or a finite number", field=field)
    return str(value)
