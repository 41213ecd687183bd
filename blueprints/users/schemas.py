"""What the user endpoints accept and answer."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

from appfactory.contract import Body, Changes, Text

# Deliberately loose: one @, no spaces, a dot in the domain. Delivery is the real test.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise PydanticCustomError("email", "must be an email address")
    return value.lower()


Email = Annotated[Text(254), AfterValidator(_email), Field(json_schema_extra={"format": "email"})]
Name = Text(100)


class NewUser(Body):
    email: Email
    name: Name


class UserChanges(Changes):
    """Only the fields to change."""

    email: Email = None
    name: Name = None


class User(BaseModel):
    id: int
    email: str | None = Field(None, description="Shown only to the user's own keys and to admins.")
    name: str
    created_at: str
    updated_at: str


class NewUserWithKey(User):
    api_key: str = Field(description="The user's first API key, shown this once: keep it.")
