"""Verifying presented keys: each worker remembers verified keys until a key is revoked anywhere.

Every revocation (a key revoked, a user deleted) writes a new random value to one Redis key, the
revocation version. A remembered key carries the version current before it was read from the
database; the rate limiter's round trip reads the version on every request (`readahead.read_along`),
and a remembered key under another version is read again. So verifying a remembered key costs no
database round trip and no Redis round trip of its own, and a revocation reaches every worker and
instance on its next request. Without Redis (one worker, but `flask keys revoke` runs in another
process), and while Redis does not answer, every presented key is read from the database.

A remembered key is read again after REMEMBER_S, or at its expiry when that comes first. No key is
read while its address is past its failed-authentication budget (`may_look_up`): it is refused unread.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import redis

from appfactory import readahead
from appfactory.db.engine import db, retried_read
from appfactory.db.models import as_utc, utcnow
from appfactory.identity import store, tokens
from appfactory.identity.context import REFUSED, REMEMBERED, VERIFIED, Credentials
from appfactory.observability.timing import timed
from appfactory.redis.client import REDIS_ERRORS
from appfactory.resilience.breaker import Breaker

log = logging.getLogger(__name__)

UNKNOWN = object()  # no version could be read: matches no remembered key
REMEMBER_S = 60.0  # a remembered key is read again after this long (and its last use noted)
TOUCH_EVERY = timedelta(seconds=60)  # last_used_at is written at most this often per key
MAX_REMEMBERED = 10_000


@retried_read
def _find(key_id: int) -> store.KeyRecord | None:
    return store.find(db.connection(), key_id)


def refused() -> Credentials:
    return Credentials(REFUSED)


def _forget_at(record: store.KeyRecord, now: datetime) -> float:
    """When a remembered key is read again (monotonic clock): after REMEMBER_S, or at its expiry
    when sooner, so memory never accepts an expired key."""
    left = REMEMBER_S
    if record.expires_at is not None:
        left = min(left, (as_utc(record.expires_at) - now).total_seconds())
    return time.monotonic() + left


class KeyVerifier:
    """Per worker: verified keys by id, each with the revocation version it was read under."""

    def __init__(
        self,
        client: redis.Redis | None,
        breaker: Breaker | None,
        namespace: str,
        may_look_up: Callable[[], bool] = lambda: True,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.may_look_up = may_look_up  # False: the address is past its failures budget
        self.version_key = f"{namespace}:auth:version" if client is not None else None
        self._remembered: dict[int, tuple[store.KeyRecord, object, float]] = {}
        self._seen: object = UNKNOWN  # the last version a round trip read

    def present(self, header: str) -> Credentials:
        """Before the rate limiter: the credentials an Authorization header carries."""
        scheme, _, raw = header.strip().partition(" ")
        presented = tokens.parse(raw.strip()) if scheme.lower() == "bearer" else None
        if presented is None:
            return refused()
        if self.version_key is None:
            return self._look_up(presented, UNKNOWN)
        readahead.read_along(self.version_key)
        held = self._remembered.get(presented.key_id)
        if held is not None:
            record, version, until = held
            if time.monotonic() < until and tokens.same_hash(record.secret_hash, presented.secret_hash):
                return Credentials(REMEMBERED, presented, record, version)
        return self._look_up(presented, self._seen)

    def confirm(self, credentials: Credentials) -> None:
        """After the rate limiter: a remembered key still stands, or is read again."""
        if self.version_key is None or credentials.state == REFUSED:
            return
        read, value = readahead.found(self.version_key)
        if credentials.state == VERIFIED:  # read from the database this very request
            if read:
                self._note(value)
            return
        version = value if read else self._read_version()
        self._note(version)
        if version is UNKNOWN or version != credentials.version:
            fresh = self._look_up(credentials.presented, version)
            credentials.state, credentials.record = fresh.state, fresh.record

    def _note(self, version: object) -> None:
        """The version a round trip read: when it changed, some key was revoked, so forget them all."""
        if version is not UNKNOWN and version != self._seen:
            self._remembered.clear()
            self._seen = version

    def _look_up(self, presented: tokens.Presented, version: object) -> Credentials:
        """The key from the database, unless its address may not fail again: then refused unread."""
        if not self.may_look_up():
            return refused()
        return self._from_database(presented, version)

    @timed("db")
    def _from_database(self, presented: tokens.Presented, version: object) -> Credentials:
        record = _find(presented.key_id)
        conn = db.connection()
        now = utcnow()
        if (
            record is None
            or not tokens.same_hash(record.secret_hash, presented.secret_hash)
            or not record.usable(now)
        ):
            return refused()
        if record.last_used_at is None or now - as_utc(record.last_used_at) >= TOUCH_EVERY:
            store.touch(conn, record.key_id)
        if version is not UNKNOWN:
            if len(self._remembered) >= MAX_REMEMBERED:
                self._remembered.clear()
            self._remembered[record.key_id] = (record, version, _forget_at(record, now))
        return Credentials(VERIFIED, presented, record)

    def _read_version(self) -> object:
        """The version, read on its own (the limiter did not: exempt path, limiter off, public way)."""
        if self.breaker is not None and not self.breaker.allow():
            self._remembered.clear()
            return UNKNOWN
        try:
            return self.client.get(self.version_key)
        except REDIS_ERRORS as exc:
            if self.breaker is not None:
                self.breaker.failed(exc)
            self._remembered.clear()  # entries from before the outage are read again after it
            return UNKNOWN

    def revoked(self) -> bool:
        """After a revocation is committed: tell every worker. False when Redis could not be told."""
        self._remembered.clear()
        if self.client is None:
            return True
        try:
            self.client.set(self.version_key, secrets.token_hex(16))
        except REDIS_ERRORS as exc:
            log.error("A key was revoked, but Redis could not be told: %s", exc)
            return False
        return True
