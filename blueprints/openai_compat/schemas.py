"""What /v1/chat/completions accepts (OpenAI's request shape) and answers. Fields OpenAI defines that
the service does not act on are accepted and ignored (docs/openai.md lists them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from appfactory.contract import Integer
from blueprints.ai.schemas import MAX_TOKENS, Usage

Role = Literal["system", "developer", "user", "assistant"]


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    type: Literal["text"] = Field(description="Only text parts: images, audio and files are refused.")
    text: str


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    role: Role
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    include_usage: bool = False


Tokens = Integer(Field(ge=1, le=MAX_TOKENS))


class ChatRequest(BaseModel):
    """OpenAI's chat-completions request; `n`, when given, must be 1."""

    model_config = ConfigDict(strict=True, extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: Tokens | None = None
    max_completion_tokens: Tokens | None = None
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: Integer(Field(ge=-(2**63), le=2**63 - 1)) | None = None
    user: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Integer(Field(ge=1, le=1, description="Only one choice is generated.")) | None = None


class ChatMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    index: int
    message: ChatMessage
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]
