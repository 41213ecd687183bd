"""Who is calling: the request's credentials, as the identity hooks left them on `g`."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from flask import g

if TYPE_CHECKING:
    from appfactory.identity.store import KeyRecord
    from appfactory.identity.tokens import Presented

_SLOT = "credentials"  # the one name on g

# What a request's credentials are known to be.
VERIFIED = "verified"  # read from the database during this request
REMEMBERED = "remembered"  # from this worker's memory; the revocation version is still to be checked
REFUSED = "refused"  # malformed, unknown, expired or revoked


class Caller(NamedTuple):
    """The owner of a verified key."""

    key_id: int
    user_id: int
    admin: bool


class Credentials:
    """What a request presented, and what became of it."""

    __slots__ = ("presented", "record", "state", "version")

    def __init__(
        self,
        state: str,
        presented: Presented | None = None,
        record: KeyRecord | None = None,
        version: object = None,
    ) -> None:
        self.state = state
        self.presented = presented
        self.record = record
        self.version = version  # the revocation version a remembered key was read under

    @property
    def caller(self) -> Caller | None:
        record = self.record
        if self.state == REFUSED or record is None:
            return None
        return Caller(record.key_id, record.user_id, record.admin)


def current_credentials() -> Credentials | None:
    """The request's credentials; None when it presented no key."""
    return g._get_current_object().get(_SLOT)


def set_credentials(credentials: Credentials) -> None:
    setattr(g._get_current_object(), _SLOT, credentials)


def current_caller() -> Caller | None:
    """The verified caller of this request, or None (anonymous, or a key that was refused)."""
    credentials = current_credentials()
    return None if credentials is None else credentials.caller


def current_key_id() -> int | None:
    """For the rate limiter: the id of the key presented, once it is not refused."""
    credentials = current_credentials()
    if credentials is None or credentials.state == REFUSED or credentials.record is None:
        return None
    return credentials.record.key_id
