"""What the generate endpoints accept and answer."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from appfactory.contract import Body, Integer, Query, Text
from appfactory.contract.schemas import absent_not_null
from appfactory.web.routing import MAX_ID
from blueprints.templates.schemas import VariableMap

MAX_TOKENS = 4096
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.7

# The prompt's longest length is MAX_PROMPT_CHARS, checked by the view; the document shows its value.
Prompt = Text()
ModelName = Text(100)
MaxTokens = Integer(Field(ge=1, le=MAX_TOKENS, description="Most tokens to generate."))
Temperature = Annotated[
    float, Field(ge=0, le=2, allow_inf_nan=False, description="Sampling temperature, 0 to 2.")
]
TemplateId = Integer(Field(ge=1, le=MAX_ID))


class Options(BaseModel):
    """What changes an answer besides its prompt."""

    model: ModelName | None = Field(None, description="One of the offered models; the default when absent.")
    max_tokens: MaxTokens = DEFAULT_MAX_TOKENS
    temperature: Temperature = DEFAULT_TEMPERATURE


class GenerateQuery(Query, Options):
    """`GET /generate`: the prompt travels in the URL (see the document's note on its length)."""

    prompt: Prompt


def _prompt_or_template(schema: dict[str, Any]) -> None:
    absent_not_null(schema)
    # What the view checks, told to clients: exactly one of prompt and template_id; variables with the latter.
    schema["oneOf"] = [
        {
            "required": ["prompt"],
            "not": {"anyOf": [{"required": ["template_id"]}, {"required": ["variables"]}]},
        },
        {"required": ["template_id"], "not": {"required": ["prompt"]}},
    ]


class GenerateBody(Body, Options):
    """`POST /generate`: a `prompt`, or a `template_id` with its `variables`."""

    model_config = ConfigDict(json_schema_extra=_prompt_or_template)

    prompt: Prompt = None
    template_id: TemplateId = None
    variables: VariableMap = None
    stream: bool = Field(
        False, description="true (or Accept: text/event-stream): server-sent events as the model writes."
    )


class Usage(BaseModel):
    """What the answer cost when the model made it, in tokens (docs/api.md)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool = Field(
        description="True when the model server reported no figures: about four characters a token."
    )
    upstream_tokens: int = Field(description="What this request spent upstream: 0 for a cached answer.")


class Answer(BaseModel):
    prompt: str
    model: str
    provider: str
    text: str
    cached: bool = Field(description="True when served from the cache.")
    generated_at: str = Field(description="When the model answered (ISO 8601, UTC).")
    usage: Usage
