"""Base schemas. JSON bodies are strict (a string is not a number, a boolean is not an integer); query
strings carry only text, so their numbers are parsed from it. Both refuse fields they do not declare."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError


class Body(BaseModel):
    """A JSON request body: types as declared, unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


def absent_not_null(schema: dict[str, Any]) -> None:
    """For fields declared `name: Type = None`: absent is allowed, null is not (the default is never
    validated, an explicit null is), so the document shows no null default."""
    for field in schema.get("properties", {}).values():
        if field.get("default", ...) is None:
            del field["default"]


class Changes(Body):
    """A partial update (PATCH): absent fields stay as they are; null is the value of none of them."""

    model_config = ConfigDict(json_schema_extra=absent_not_null)


class Query(BaseModel):
    """A query string: numbers parsed from text, unknown parameters refused."""

    model_config = ConfigDict(extra="forbid")


class NoQuery(Query):
    """A route that takes no query parameter: any one is refused by name."""


def _whole(value: Any) -> Any:
    """64.0 is 64: JSON has one number type, and JSON Schema's `integer` takes a whole float too."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def Integer(*constraints: Any) -> Any:  # noqa: N802
    """A whole number (a whole float such as 64.0 included; never "64" or true), with `constraints`
    (a Field with bounds)."""
    return Annotated[int, *constraints, BeforeValidator(_whole)]


def storable(value: str) -> str:
    """Refuse what no database or log line should hold: NUL and unpaired surrogates."""
    if "\x00" in value:
        raise PydanticCustomError("text", "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("text", "must be valid Unicode text") from None
    return value


# Declared in the document too, so a client (or a fuzzer) knows NUL is refused.
NO_NUL = {"pattern": "^[^\\u0000]*$"}


def Text(max_length: int | None = None, *, min_length: int = 1, strip: bool = True) -> Any:  # noqa: N802
    """A text field: length-checked after stripping surrounding blanks (unless `strip=False`), no NUL."""
    return Annotated[
        str,
        StringConstraints(strip_whitespace=strip, min_length=min_length, max_length=max_length),
        AfterValidator(storable),
        Field(json_schema_extra=NO_NUL),
    ]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. validation_error, rate_limited.")
    message: str = Field(description="What went wrong, for people.")
    field: str | None = Field(None, description="The request field at fault (validation errors).")

    model_config = ConfigDict(extra="allow")


class ErrorEnvelope(BaseModel):
    """Every error the service answers, whatever its status."""

    error: ErrorDetail
