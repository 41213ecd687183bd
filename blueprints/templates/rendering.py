"""Template placeholders: `{{ name }}` is replaced by the variable `name`."""

from __future__ import annotations

import re
from collections.abc import Mapping

from appfactory.web.errors import ApiError

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def variables_of(body: str) -> list[str]:
    """The placeholder names of a template body, in order of first use."""
    return list(dict.fromkeys(PLACEHOLDER.findall(body)))


def render(body: str, variables: Mapping[str, str | int | float]) -> str:
    """Fill every placeholder; 422 naming the variables that are missing. The values are those the
    `Variable` schema let in (text without NUL, finite numbers), written as they are."""
    missing = [name for name in variables_of(body) if name not in variables]
    if missing:
        raise ApiError(422, f"missing variables: {', '.join(missing)}", field="variables", missing=missing)
    return PLACEHOLDER.sub(lambda match: str(variables[match.group(1)]), body)
