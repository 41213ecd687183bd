"""What the template endpoints accept and answer."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from appfactory.contract import Body, Changes, Query, Text
from appfactory.contract.schemas import NO_NUL, storable
from appfactory.web.routing import MAX_ID

MAX_NAME, MAX_BODY, MAX_DESCRIPTION = 100, 20_000, 500
MAX_PAGE = 100
# A variable's value: text no longer than a template's body, or a number in the signed 64-bit range;
# a request names at most MAX_VARIABLES. What the filled text may reach is bounded by the config
# (RENDER_MAX_CHARS, MAX_PROMPT_CHARS), checked before it is built (rendering.py).
MAX_VARIABLE_CHARS, MAX_VARIABLES = MAX_BODY, 1_000
LOWEST, HIGHEST = -(2**63), 2**63 - 1


def _variable(value: Any) -> str | int | float:
    """A placeholder's value: text, or a number within 64 bits (written into the text as it is)."""
    if isinstance(value, str):
        if len(value) > MAX_VARIABLE_CHARS:
            raise PydanticCustomError("variable", f"must be at most {MAX_VARIABLE_CHARS} characters")
        return storable(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("variable", "must be a string or a number")
    # Compared, never converted: float() of a 309-digit integer overflows. NaN and infinities fail too.
    if not LOWEST <= value <= HIGHEST:
        raise PydanticCustomError("variable", f"must be a number from {LOWEST} to {HIGHEST}")
    return value


Variable = Annotated[
    str | int | float,
    PlainValidator(_variable),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_VARIABLE_CHARS, **NO_NUL},
                {"type": "number", "minimum": LOWEST, "maximum": HIGHEST},
            ]
        }
    ),
]
VariableMap = Annotated[
    dict[str, Variable],
    Field(max_length=MAX_VARIABLES, description="Each placeholder's value, by name."),
]
Name = Text(MAX_NAME)
TemplateText = Text(MAX_BODY, strip=False)
Description = Text(MAX_DESCRIPTION, min_length=0)


class NewTemplate(Body):
    """A whole template (POST and PUT)."""

    name: Name = Field(description="Unique among templates.")
    body: TemplateText = Field(description="The text, with `{{ name }}` placeholders.")
    description: Description = ""


class TemplateChanges(Changes):
    """Only the fields to change."""

    name: Name = None
    body: TemplateText = None
    description: Description = None


class Page(Query):
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="Templates per page.")] = 20
    offset: Annotated[int, Field(ge=0, le=MAX_ID, description="Templates to skip.")] = 0


class Variables(Body):
    variables: VariableMap = Field(default_factory=dict)


class Template(BaseModel):
    id: int
    name: str
    body: str
    description: str
    variables: list[str] = Field(description="The placeholders of `body`, in order of first use.")
    owner_id: int | None = Field(description="The owner's user id; null for templates from before keys.")
    created_at: str
    updated_at: str


class TemplatePage(BaseModel):
    items: list[Template]
    total: int
    limit: int
    offset: int


class Rendered(BaseModel):
    template_id: int
    text: str = Field(description="At most RENDER_MAX_CHARS characters (422 beyond, before it is built).")
