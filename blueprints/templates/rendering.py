"""Template placeholders: `{{ name }}` is replaced by the variable `name`, any Python identifier."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from appfactory.web.errors import ApiError

# A candidate `{{ word }}`; it is a placeholder when the word is an identifier as str.isidentifier()
# says (名前, नाम, café, _x1; not 1x, a-b or x²): no regex class matches exactly that set.
_CANDIDATE = re.compile(r"\{\{\s*([^\s{}]+)\s*\}\}")


def _placeholders(body: str) -> Iterator[re.Match[str]]:
    return (match for match in _CANDIDATE.finditer(body) if match.group(1).isidentifier())


def variables_of(body: str) -> list[str]:
    """The placeholder names of a template body, in order of first use."""
    return list(dict.fromkeys(match.group(1) for match in _placeholders(body)))


def rendered_length(body: str, variables: Mapping[str, str | int | float]) -> int:
    """The length of `body` filled with `variables`, counted without building the text."""
    length = len(body)
    for match in _placeholders(body):
        length += len(str(variables[match.group(1)])) - (match.end() - match.start())
    return length


def render(
    body: str, variables: Mapping[str, str | int | float], max_chars: int, field: str = "variables"
) -> str:
    """Fill every placeholder; 422 naming the variables that are missing, or on `field` when the text
    would pass `max_chars`. The values are those the `Variable` schema let in, written as they are."""
    missing = [name for name in variables_of(body) if name not in variables]
    if missing:
        raise ApiError(422, f"missing variables: {', '.join(missing)}", field="variables", missing=missing)
    # Counted first: 4,000 placeholders of one 20,000-character value would be an 80 MB text.
    length = rendered_length(body, variables)
    if length > max_chars:
        raise ApiError(
            422,
            f"{field}: the filled template would be {length} characters, more than the {max_chars} allowed",
            field=field,
        )
    return _CANDIDATE.sub(_filler(variables), body)


def _filler(variables: Mapping[str, str | int | float]) -> Callable[[re.Match[str]], str]:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(variables[name]) if name.isidentifier() else match.group(0)

    return fill
